// 200 concurrent streams: event-loop lag (p99, sampled every 10 ms by a timer) and total deltas
// per second delivered, chatgpt-native onProgress vs openai-node `for await`, simulator in a
// separate process.   node bench/streams.mjs [streams=200] [tokens=400]
import OpenAI from 'openai'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { ChatGPTAPI } from '../index.js'
import { startSimulatorProcess } from './common.mjs'

const STREAMS = Number(process.argv[2] ?? 200)
const TOKENS = Number(process.argv[3] ?? 400)
const sim = await startSimulatorProcess(['--token-delay-ms', '2', '--response-tokens', String(TOKENS)])
const native = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', cache: false, completionParams: { model: 'sim-gpt', max_tokens: TOKENS } })
const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: sim.url, maxRetries: 0 })

async function measure(one) {
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()
  const started = performance.now()
  const counts = await Promise.all(Array.from({ length: STREAMS }, (_, i) => one(i)))
  const seconds = (performance.now() - started) / 1000
  lag.disable()
  const deltas = counts.reduce((a, b) => a + b, 0)
  if (deltas !== STREAMS * TOKENS) throw new Error(`expected ${STREAMS * TOKENS} deltas, got ${deltas}`)
  return { seconds, deltasPerSecond: deltas / seconds, lagP99Ms: lag.percentile(99) / 1e6, lagMaxMs: lag.max / 1e6 }
}

const contenders = {
  'chatgpt-native onProgress': async (i) => {
    let n = 0
    await native.sendMessage(`stream ${i}`, { onProgress: () => n++ })
    return n
  },
  'openai-node for await': async (i) => {
    let n = 0
    const stream = await openai.chat.completions.create({ model: 'sim-gpt', max_tokens: TOKENS, stream: true, messages: [{ role: 'user', content: `stream ${i}` }] })
    for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) n++
    return n
  },
}
const rows = {}
for (const [name, one] of Object.entries(contenders)) {
  await measure(one) // warm-up
  const r = await measure(one)
  rows[name] = { 'deltas/s': Math.round(r.deltasPerSecond), 'event-loop lag p99 ms': r.lagP99Ms.toFixed(1), 'lag max ms': r.lagMaxMs.toFixed(1), seconds: r.seconds.toFixed(2) }
}
sim.stop()
console.log(`${STREAMS} concurrent streams of ${TOKENS} tokens (2 ms apart)`)
console.table(rows)
