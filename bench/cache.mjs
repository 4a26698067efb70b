// Cache hits: latency from the JS call to the resolved Promise, and hits per second, for
// chatgpt-native vs the JS pile (lru-cache in front of the openai client), same process.
//   node bench/cache.mjs
import OpenAI from 'openai'
import { LRUCache } from 'lru-cache'
import { createHash } from 'node:crypto'
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import { median } from './common.mjs'

const sim = await ChatGPTSimulator.start({ ttftMs: 800 }) // a slow (800 ms) upstream, so a miss is obvious
const native = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', completionParams: { model: 'sim-gpt' }, cache: true })
const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: sim.url })
const lru = new LRUCache({ max: 1024, ttl: 3600_000 })
async function jsCached(text) {
  const body = { model: 'sim-gpt', messages: [{ role: 'user', content: text }] }
  const key = createHash('sha256').update(JSON.stringify(body)).digest('hex')
  const hit = lru.get(key)
  if (hit) return hit
  const res = await openai.chat.completions.create(body)
  lru.set(key, res)
  return res
}

const prompt = 'What is the capital of France?'
let t = performance.now()
await native.sendMessage(prompt)
const missMs = performance.now() - t
await jsCached(prompt)

async function latencies(fn, n) {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint()
    await fn()
    out[i] = Number(process.hrtime.bigint() - s) / 1000
  }
  return Array.from(out)
}
async function throughput(fn, seconds, concurrency = 64) {
  let done = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await fn()
        done++
      }
    }),
  )
  return done / seconds
}

const rows = {}
for (const [name, fn] of [
  ['chatgpt-native (built-in cache)', () => native.sendMessage(prompt)],
  ['lru-cache + openai (JS)', () => jsCached(prompt)],
]) {
  await latencies(fn, 2000) // warm up
  const l = await latencies(fn, 20000)
  const p99 = [...l].sort((a, b) => a - b)[Math.floor(l.length * 0.99)]
  rows[name] = { 'median µs': median(l).toFixed(1), 'p99 µs': p99.toFixed(1), 'hits/s (64 concurrent)': Math.round(await throughput(fn, 3)) }
}
console.log(`first call (miss, simulated 800 ms upstream): ${missMs.toFixed(0)} ms`)
console.table(rows)
console.log(`cache hits: ${native.metrics().cacheHits}, misses: ${native.metrics().cacheMisses}`)
await sim.close()
