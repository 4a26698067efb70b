// Non-streaming throughput at concurrency 64 against the simulator in a separate process:
// chatgpt-native vs openai-node vs the chatgpt package v5, and a bare Rust reqwest loop as the
// practical limit.   node bench/throughput.mjs [requests=10000]
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { ChatGPTAPI as ChatGPTv5 } from 'chatgpt'
import { ChatGPTAPI } from '../index.js'
import { startSimulatorProcess } from './common.mjs'

const N = Number(process.argv[2] ?? 10000)
const CONCURRENCY = 64
const root = fileURLToPath(new URL('..', import.meta.url))

async function run(send) {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await send(next++)
    }),
  )
  return N / ((performance.now() - started) / 1000)
}

const sim = await startSimulatorProcess()
const native = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', cache: false, completionParams: { model: 'sim-gpt' } })
const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: sim.url, maxRetries: 0 })
const v5 = new ChatGPTv5({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', completionParams: { model: 'sim-gpt' } })

const contenders = {
  'chatgpt-native': (i) => native.sendMessage(`bench ${i}`),
  'openai-node': (i) => openai.chat.completions.create({ model: 'sim-gpt', messages: [{ role: 'user', content: `bench ${i}` }] }),
  'chatgpt v5': (i) => v5.sendMessage(`bench ${i}`),
}
const rows = {}
for (const [name, send] of Object.entries(contenders)) {
  await run(send) // warm-up pass
  rows[name] = { 'requests/s': Math.round(await run(send)) }
}
execFileSync('cargo', ['build', '--release', '--example', 'bare_reqwest'], { cwd: root, stdio: 'ignore' })
execFileSync('cargo', ['run', '--release', '--example', 'bare_reqwest', '--', sim.url, String(N), String(CONCURRENCY)], { cwd: root, stdio: 'ignore' })
const bare = Number(execFileSync('cargo', ['run', '--release', '--example', 'bare_reqwest', '--', sim.url, String(N), String(CONCURRENCY)], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
rows['bare Rust reqwest loop'] = { 'requests/s': Math.round(bare) }
sim.stop()
const nativeRate = rows['chatgpt-native']['requests/s']
for (const row of Object.values(rows)) row['chatgpt-native / this'] = (nativeRate / row['requests/s']).toFixed(2)
console.log(`${N} requests, concurrency ${CONCURRENCY}, simulator in a separate process`)
console.table(rows)
