// Streaming delta delivery: cost per onProgress delta and deltas/s on one long stream,
// chatgpt-native vs openai-node's `for await`, against the simulator in a separate process.
//   node bench/progress.mjs [tokens=20000]
import OpenAI from 'openai'
import { ChatGPTAPI } from '../index.js'
import { startSimulatorProcess, median, time } from './common.mjs'

const N = Number(process.argv[2] ?? 20000)
const sim = await startSimulatorProcess()
const headers = { 'x-sim-response-tokens': String(N) }
const messages = [{ role: 'user', content: 'one long stream' }]

// Cache off: every run must really stream (a cache hit would replay the deltas from memory).
const native = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', headers, maxResponseBytes: 256 * 1024 * 1024, cache: false })
// Cache and coalescing on, with a new prompt each run: deltas then pass through the
// shared-flight recorder first (BENCHMARKS.md's earlier runs call this the default config).
const cacheOn = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', headers, maxResponseBytes: 256 * 1024 * 1024, cache: true })
let run = 0
const params = { model: 'sim-gpt', max_tokens: N }
const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: sim.url, maxRetries: 0 })

let count = 0
const withCallback = await time(async () => {
  count = 0
  const r = await native.sendMessage('one long stream', { completionParams: params, onProgress: () => count++ })
  if (count !== N || r.usage.completionTokens !== N) throw new Error(`expected ${N} deltas, got ${count}`)
})
const withoutCallback = await time(() => native.sendMessage('one long stream', { completionParams: params, stream: true }))
const withCacheOn = await time(async () => {
  let n = 0
  await cacheOn.sendMessage(`one long stream ${run++}`, { completionParams: params, onProgress: () => n++ })
  if (n !== N) throw new Error(`expected ${N} deltas, got ${n}`)
})
const openaiRuns = await time(async () => {
  let n = 0
  const stream = await openai.chat.completions.create({ ...params, messages, stream: true }, { headers })
  for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) n++
  if (n !== N) throw new Error(`openai: expected ${N} deltas, got ${n}`)
})
sim.stop()

const tNative = median(withCallback)
const tBare = median(withoutCallback)
const tOpenai = median(openaiRuns)
const rate = (t) => Math.round(N / (t / 1000))
const result = {
  tokens: N,
  'chatgpt-native onProgress (ms)': tNative.toFixed(1),
  'chatgpt-native stream, no callback (ms)': tBare.toFixed(1),
  'chatgpt-native onProgress, cache on (ms)': median(withCacheOn).toFixed(1),
  'openai-node for await (ms)': tOpenai.toFixed(1),
  'cost per delivered delta (µs)': (((tNative - tBare) * 1000) / N).toFixed(2),
  'chatgpt-native deltas/s': rate(tNative),
  'openai-node deltas/s': rate(tOpenai),
  'delta-rate ratio (native / openai)': (tOpenai / tNative).toFixed(2),
  'delta-rate ratio, cache on (native / openai)': (tOpenai / median(withCacheOn)).toFixed(2),
}
console.table(result)
