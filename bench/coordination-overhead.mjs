// What `coordination` costs a call: Redis operations per call, and the added latency per call
// on loopback (p50 and p95 of sequential calls against the simulator, with `rateLimit` alone and
// with `rateLimit` shared through a local redis-server from scripts/redis.mjs). Prints a table;
// run after `npm run build:dev` (or `npm run build` for release figures). `SIM_RPM=1000000` makes
// the simulator send `x-ratelimit-*` headers, which are shared too (one more operation per call).
// `REDIS_CLUSTER=1` shares through a 3-node Redis Cluster (`coordination.redis.nodes`) instead.
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import { startRedis, startRedisCluster } from '../scripts/redis.mjs'

const CALLS = Number(process.argv[2] ?? 2000)
const WARMUP = 200
const rateLimit = { requestsPerMinute: 1_000_000, tokensPerMinute: 100_000_000 }

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

async function measure(api) {
  for (let i = 0; i < WARMUP; i++) await api.sendMessage(`warm ${i}`)
  const before = api.metrics().coordination?.operations ?? 0
  const times = []
  for (let i = 0; i < CALLS; i++) {
    const started = process.hrtime.bigint()
    await api.sendMessage(`call ${i}`)
    times.push(Number(process.hrtime.bigint() - started) / 1e6)
  }
  // Reconciling runs in the background: let the last ones land before counting.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const ops = (api.metrics().coordination?.operations ?? 0) - before
  times.sort((a, b) => a - b)
  return { p50: percentile(times, 50), p95: percentile(times, 95), opsPerCall: ops / CALLS }
}

const sim = await ChatGPTSimulator.start({ rateLimitRpm: Number(process.env.SIM_RPM ?? 0) })
const inCluster = process.env.REDIS_CLUSTER === '1'
const redis = inCluster ? await startRedisCluster() : await startRedis()
try {
  const base = { apiKey: 'sk-bench-0123456789abcdef', apiBaseUrl: sim.url, systemMessage: '', completionParams: { model: 'sim-gpt' }, rateLimit }
  const local = await measure(new ChatGPTAPI(base))
  const coordination = { redis: inCluster ? { nodes: redis.urls } : redis.url }
  const shared = await measure(new ChatGPTAPI({ ...base, coordination }))
  const row = (name, r) => `${name.padEnd(22)} ${r.p50.toFixed(3).padStart(8)} ${r.p95.toFixed(3).padStart(8)} ${r.opsPerCall.toFixed(2).padStart(8)}`
  console.log(`${CALLS} sequential calls on loopback (ms)`)
  console.log(`${''.padEnd(22)} ${'p50'.padStart(8)} ${'p95'.padStart(8)} ${'ops/call'.padStart(8)}`)
  console.log(row('rateLimit alone', local))
  console.log(row(inCluster ? 'rateLimit + Cluster' : 'rateLimit + Redis', shared))
  console.log(`added p50: ${(shared.p50 - local.p50).toFixed(3)} ms`)
} finally {
  await redis.stop()
  await sim.close()
}
