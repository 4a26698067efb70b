// `chatgpt-native batch` as a load test: writes N request lines, starts a simulator with an
// organisation limit (600 RPM / 60k TPM by default), runs the bin's `batch --json` against it
// with the same limits as a child process (its progress display on stderr), prints the bin's
// load-test table from that summary, the simulator's own counts beside it, and the steady-state
// share of the request limit: both buckets start full (a minute's worth of requests goes at
// once), so the table's utilisation of a run of a quarter of an hour reads about 6% above the
// steady rate; (attempts - rpm) / (rpm x elapsed minutes) takes that first minute's worth out.
//
//   node bench/cli-batch.mjs [--requests 10000] [--rpm 600] [--tpm 60000] [--concurrency 32]
//                            [--response-tokens 50] [--latency-ms 200] [--keep]
//
// Each line asks for `--response-tokens` tokens (its max_tokens), so the token limiter reserves
// what the simulator charges (prompt + max_tokens). The defaults make the request limit the one
// that binds (about 70 tokens a request: ~42k of the 60k TPM). The full 10,000 requests at
// 600 RPM take about 17 minutes. Run after `npm run build` (release).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { ChatGPTSimulator } from '../index.js'
import report from '../lib/cli/batch-report.js'

const BIN = fileURLToPath(new URL('../bin/chatgpt-native.js', import.meta.url))
const API_KEY = 'sk-bench-0123456789abcdef'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' },
    rpm: { type: 'string', default: '600' },
    tpm: { type: 'string', default: '60000' },
    concurrency: { type: 'string', default: '32' },
    'response-tokens': { type: 'string', default: '50' },
    'latency-ms': { type: 'string', default: '200' },
    keep: { type: 'boolean', default: false },
  },
})
const n = Number(values.requests)
const rpm = Number(values.rpm)
const tpm = Number(values.tpm)
const responseTokens = Number(values['response-tokens'])

const dir = mkdtempSync(path.join(tmpdir(), 'cli-batch-bench-'))
const input = path.join(dir, 'requests.jsonl')
const output = path.join(dir, 'results.jsonl')
const lines = []
for (let i = 0; i < n; i++) {
  lines.push(JSON.stringify({ id: `q${i}`, text: `Question ${i}: what is ${i} plus ${i}?`, max_tokens: responseTokens }))
}
writeFileSync(input, `${lines.join('\n')}\n`)

const sim = await ChatGPTSimulator.start({
  apiKey: API_KEY,
  rateLimitRpm: rpm,
  rateLimitTpm: tpm,
  responseTokens,
  ttftMs: Number(values['latency-ms']),
})
try {
  console.log(`${n} requests, ${rpm} RPM / ${tpm} TPM at the simulator and in the client, concurrency ${values.concurrency}`)
  const args = [BIN, 'batch', input, '-o', output, '--json', '--rpm', String(rpm), '--tpm', String(tpm), '--concurrency', values.concurrency, '--model', 'sim-gpt']
  let json = ''
  const code = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, OPENAI_API_KEY: API_KEY, OPENAI_BASE_URL: sim.url },
    })
    child.stdout.on('data', (d) => (json += d))
    child.on('error', reject)
    child.on('exit', (status) => resolve(status))
  })
  const summary = JSON.parse(json)
  process.stdout.write(report.formatTable(summary))
  const minutes = summary.elapsedSeconds / 60
  if (summary.attempts > rpm) {
    const share = (summary.attempts - rpm) / (rpm * minutes)
    console.log(`steady-state share of the request limit: ${(share * 100).toFixed(1)}% ((attempts - ${rpm}) / (${rpm} x ${minutes.toFixed(2)} min))`)
  } else {
    console.log('steady-state share of the request limit: none (every request fit in the starting bucket)')
  }
  const stats = sim.stats()
  const records = readFileSync(output, 'utf8').trim().split('\n').map((line) => JSON.parse(line))
  const failed = records.filter((r) => r.error).length
  console.log(`\nbatch exited ${code}; ${records.length} records, ${failed} with an error`)
  console.log(
    `simulator: ${stats.chatRequests} chat requests, ${stats.rateLimited} rate-limited (429), ${stats.randomFailures} random failures, ` +
      `${stats.promptTokens} prompt + ${stats.completionTokens} completion tokens, at most ${stats.maxInFlight} in flight`,
  )
} finally {
  await sim.close()
  if (values.keep) console.log(`kept ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
}
