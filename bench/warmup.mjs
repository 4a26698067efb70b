// First-call latency with and without warmup(), fresh client each time, simulator in a separate
// process (plain HTTP on loopback: this measures connection set-up only; TLS to a real
// endpoint adds a handshake round trip or two that warmup() also moves out of the first call).
//   node bench/warmup.mjs [rounds=30]
import { ChatGPTAPI } from '../index.js'
import { startSimulatorProcess, median } from './common.mjs'

const ROUNDS = Number(process.argv[2] ?? 30)
const sim = await startSimulatorProcess()
const make = () => new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', cache: false, completionParams: { model: 'sim-gpt' } })
const cold = []
const warm = []
const warmupCost = []
for (let i = 0; i < ROUNDS; i++) {
  let api = make()
  let t = performance.now()
  await api.sendMessage(`first ${i}`)
  cold.push(performance.now() - t)
  api = make()
  warmupCost.push(await api.warmup())
  t = performance.now()
  await api.sendMessage(`first warm ${i}`)
  warm.push(performance.now() - t)
}
sim.stop()
console.table({
  'first call, cold client': { 'median ms': median(cold).toFixed(3) },
  'first call after warmup()': { 'median ms': median(warm).toFixed(3) },
  'warmup() itself': { 'median ms': median(warmupCost).toFixed(3) },
})
