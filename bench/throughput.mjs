// Non-streaming throughput at concurrency 64 against the simulator in a separate process:
// chatgpt-native vs openai-node vs the chatgpt package v5, and a bare Rust reqwest loop as the
// practical limit. The client core without JavaScript (examples/core_loop.rs) is measured too, to
// show where the gap to the bare loop comes from.
//
// Each contender runs in a process of its own (one client's heap and sockets must not tax the
// next: measured in one shared process, chatgpt-native lost ~3 µs of CPU per call to the peers'
// leftovers), and they take turns for several rounds (the machine's noise drifts, so a single
// back-to-back pass favours whoever ran in a quiet moment). The table gives medians and the
// median of the per-round ratios. CPU µs per request is the client process's user + system time.
//   node bench/throughput.mjs [requests=10000] [rounds=5]
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startSimulatorProcess, median } from './common.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const CONCURRENCY = 64

// ---- child: one contender, one warm-up pass and one measured pass, JSON on stdout ----
if (process.argv[2] === '--child') {
  const [, , , name, url, n] = process.argv
  const N = Number(n)
  let send
  if (name === 'chatgpt-native') {
    const { ChatGPTAPI } = await import('../index.js')
    const api = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: url, systemMessage: '', cache: false, completionParams: { model: 'sim-gpt' } })
    send = (i) => api.sendMessage(`bench ${i}`)
  } else if (name === 'openai-node') {
    const { default: OpenAI } = await import('openai')
    const openai = new OpenAI({ apiKey: 'sk-bench', baseURL: url, maxRetries: 0 })
    send = (i) => openai.chat.completions.create({ model: 'sim-gpt', messages: [{ role: 'user', content: `bench ${i}` }] })
  } else {
    const { ChatGPTAPI } = await import('chatgpt')
    const v5 = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: url, systemMessage: '', completionParams: { model: 'sim-gpt' } })
    send = (i) => v5.sendMessage(`bench ${i}`)
  }
  const pass = async () => {
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
  await pass()
  console.log(JSON.stringify(await pass()))
  process.exit(0)
}

// ---- parent ----
const N = Number(process.argv[2] ?? 10000)
const ROUNDS = Number(process.argv[3] ?? 5)

const cargo = (args) => execFileSync('cargo', args, { cwd: root, stdio: 'ignore' })
cargo(['build', '--release', '--example', 'bare_reqwest'])
// The core without the napi binding (see Cargo.toml's `core-only` feature).
cargo(['build', '--release', '--features', 'core-only', '--example', 'core_loop'])
const rustLoop = (bin) => (url) => {
  const out = execFileSync(`${root}target/release/examples/${bin}`, [url, String(N), String(CONCURRENCY)], { encoding: 'utf8' })
  const [rate, cpuUs] = out.trim().split(' ').map(Number)
  return { rate, cpuUs }
}
const nodeChild = (name) => (url) =>
  JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', name, url, String(N)], { cwd: root, encoding: 'utf8' }))

const contenders = {
  'chatgpt-native': nodeChild('chatgpt-native'),
  'openai-node': nodeChild('openai-node'),
  'chatgpt v5': nodeChild('chatgpt v5'),
  'bare Rust reqwest loop': rustLoop('bare_reqwest'),
  'chatgpt-native core, no JS': rustLoop('core_loop'),
}

const sim = await startSimulatorProcess()
const results = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, measure] of Object.entries(contenders)) results[name].push(measure(sim.url))
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
console.log(`${N} requests per round, ${ROUNDS} rounds, concurrency ${CONCURRENCY}, simulator in a separate process, each client in its own process`)
console.table(rows)
