// Non-streaming throughput at concurrency 64 against the simulator in a separate process:
// chatgpt-native vs openai-node vs the chatgpt package v5, and a bare Rust reqwest loop as the
// practical limit. The contenders take turns for several rounds (the machine's noise drifts, so a
// single back-to-back pass favours whoever ran in a quiet moment); the table gives medians and the
// median of the per-round ratios. CPU µs per request is the client process's user + system time.
//   node bench/throughput.mjs [requests=10000] [rounds=3]
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { ChatGPTAPI as ChatGPTv5 } from 'chatgpt'
import { ChatGPTAPI } from '../index.js'
import { startSimulatorProcess, median } from './common.mjs'

const N = Number(process.argv[2] ?? 10000)
const ROUNDS = Number(process.argv[3] ?? 3)
const CONCURRENCY = 64
const root = fileURLToPath(new URL('..', import.meta.url))

async function run(send) {
  let next = 0
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await send(next++)
    }),
  )
  const rate = N / ((performance.now() - started) / 1000)
  const used = process.cpuUsage(cpu)
  return { rate, cpuUs: (used.user + used.system) / N }
}

execFileSync('cargo', ['build', '--release', '--example', 'bare_reqwest'], { cwd: root, stdio: 'ignore' })
const bareBin = `${root}target/release/examples/bare_reqwest`
function runBare(url) {
  const [rate, cpuUs] = execFileSync(bareBin, [url, String(N), String(CONCURRENCY)], { encoding: 'utf8' }).trim().split(' ').map(Number)
  return { rate, cpuUs }
}

const sim = await startSimulatorProcess()
const native = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', cache: false, completionParams: { model: 'sim-gpt' } })
const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: sim.url, maxRetries: 0 })
const v5 = new ChatGPTv5({ apiKey: 'sk-bench', apiBaseUrl: sim.url, systemMessage: '', completionParams: { model: 'sim-gpt' } })

const contenders = {
  'chatgpt-native': () => run((i) => native.sendMessage(`bench ${i}`)),
  'openai-node': () => run((i) => openai.chat.completions.create({ model: 'sim-gpt', messages: [{ role: 'user', content: `bench ${i}` }] })),
  'chatgpt v5': () => run((i) => v5.sendMessage(`bench ${i}`)),
  'bare Rust reqwest loop': async () => runBare(sim.url),
}
const results = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]))
for (const measure of Object.values(contenders)) await measure() // warm-up pass each
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, measure] of Object.entries(contenders)) results[name].push(await measure())
}
sim.stop()

const rows = {}
for (const [name, rs] of Object.entries(results)) {
  const ratios = rs.map((r, i) => results['chatgpt-native'][i].rate / r.rate)
  rows[name] = {
    'requests/s (median)': Math.round(median(rs.map((r) => r.rate))),
    'per round': rs.map((r) => Math.round(r.rate)).join(' / '),
    'client CPU µs/request': Number.isFinite(rs[0].cpuUs) ? median(rs.map((r) => r.cpuUs)).toFixed(1) : 'n/a',
    'chatgpt-native / this (median of rounds)': median(ratios).toFixed(2),
  }
}
console.log(`${N} requests per round, ${ROUNDS} rounds, concurrency ${CONCURRENCY}, simulator in a separate process`)
console.table(rows)
