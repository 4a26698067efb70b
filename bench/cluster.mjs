// Many processes, one budget: N worker processes share one simulated organisation limit
// (600 RPM / 60k TPM, 5% random 5xx) and send M requests between them, once with per-process
// `rateLimit` (each worker configured with the whole budget, as a single process would be) and
// once with the same `rateLimit` shared through Redis (`coordination`). The simulator runs in its
// own process behind a small recording proxy, so each request that met a 429 on any attempt is
// counted once. Afterwards a light run (sequential calls, no server limit) compares the p50
// latency per call with and without `coordination`. Prints a table.
//
//   node bench/cluster.mjs [--requests 2000] [--workers 4] [--concurrency 16] [--modes local,shared]
//                          [--strip-ratelimit-headers]
//
// Run after `npm run build` (release). The full 2,000 requests take about 3.5 minutes per mode.
import { fork } from 'node:child_process'
import http from 'node:http'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'

const SELF = fileURLToPath(import.meta.url)
const LIMIT = { requestsPerMinute: 600, tokensPerMinute: 60_000 }
const FAILURE_RATE = 0.05
const LIGHT_CALLS = 300
const LIGHT_WARMUP = 50

/** The options every worker's client gets; `coordination` is added for the shared mode. */
function clientOptions(url) {
  return {
    apiKey: 'sk-bench-0123456789abcdef',
    apiBaseUrl: url,
    systemMessage: '',
    completionParams: { model: 'sim-gpt' },
    // The simulator charges prompt + max_tokens up front: ~10 + 50 tokens, so at 600 requests a
    // minute the request budget binds, not the token budget (~36k of 60k).
    maxResponseTokens: 50,
    rateLimit: LIMIT,
    // 5% 5xx: the chance that 9 attempts in a row fail is 2e-12; 429s spend retries too.
    maxRetries: 8,
    timeoutMs: 120_000,
    attemptTimeoutMs: 10_000,
  }
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

// ---- simulator process: ChatGPTSimulator plus a recording proxy in front of it ----
async function runSimulator() {
  const { ChatGPTSimulator } = await import('../index.js')
  const config = JSON.parse(process.env.CLUSTER_BENCH_SIM)
  const stripRateHeaders = process.env.CLUSTER_BENCH_STRIP === '1'
  const sim = await ChatGPTSimulator.start(config)
  const target = new URL(sim.url)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  // Tags (the user message's text, unique per request) of requests answered 429 at least once.
  const saw429 = new Set()
  const proxy = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      let tag
      try {
        const parsed = JSON.parse(body.toString('utf8'))
        tag = parsed.messages?.at(-1)?.content
      } catch {}
      const upstream = http.request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers, agent },
        (up) => {
          if (up.statusCode === 429 && tag) saw429.add(tag)
          const headers = { ...up.headers }
          if (stripRateHeaders) for (const name of Object.keys(headers)) if (name.startsWith('x-ratelimit-')) delete headers[name]
          res.writeHead(up.statusCode, headers)
          up.pipe(res)
        },
      )
      upstream.on('error', () => res.destroy())
      upstream.end(body)
    })
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const proxyUrl = `http://127.0.0.1:${proxy.address().port}${target.pathname}`
  process.on('message', async (msg) => {
    if (msg.type === 'stats') process.send({ type: 'stats', stats: sim.stats(), requestsSaw429: saw429.size })
    if (msg.type === 'stop') {
      proxy.close()
      await sim.close()
      process.exit(0)
    }
  })
  process.send({ type: 'ready', proxyUrl, directUrl: sim.url })
}

// ---- worker process: one client, `concurrency` loops over its share of the requests ----
async function runWorker() {
  const { ChatGPTAPI } = await import('../index.js')
  const { url, redisUrl, keyPrefix, share, concurrency, id } = JSON.parse(process.env.CLUSTER_BENCH_WORKER)
  const options = clientOptions(url)
  if (redisUrl) options.coordination = { redis: { url: redisUrl, keyPrefix } }
  const api = new ChatGPTAPI(options)
  await new Promise((resolve) => {
    process.once('message', resolve)
    process.send({ type: 'ready' })
  })
  let next = 0
  const latencies = []
  const loop = async () => {
    while (next < share) {
      const i = next++
      const started = performance.now()
      try {
        await api.sendMessage(`worker ${id} request ${i}`)
      } catch {}
      latencies.push(performance.now() - started)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  const finishedAt = Date.now()
  // Reconciling runs in the background: let the last operations land before counting them.
  await new Promise((resolve) => setTimeout(resolve, 300))
  const m = api.metrics()
  latencies.sort((a, b) => a - b)
  process.send({
    type: 'done',
    finishedAt,
    succeeded: m.callsSucceeded,
    failed: m.callsFailed,
    failuresByCode: m.failuresByCode,
    attempts: m.attempts,
    retries: m.retries,
    rateLimitedResponses: m.rateLimitedResponses,
    operations: m.coordination?.operations ?? 0,
    redisErrors: m.coordination?.redisErrors ?? 0,
    fallbacks: m.coordination?.fallbacks ?? 0,
    p50: percentile(latencies, 50),
  })
  process.exit(0)
}

function startChild(env) {
  const child = fork(SELF, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const nextMessage = (type) =>
    new Promise((resolve, reject) => {
      const onMessage = (msg) => {
        if (msg.type !== type) return
        child.off('message', onMessage)
        child.off('exit', onExit)
        resolve(msg)
      }
      const onExit = (code) => reject(new Error(`bench child exited with ${code} before '${type}'`))
      child.on('message', onMessage)
      child.once('exit', onExit)
    })
  return { child, nextMessage }
}

async function startSimulator(config, { stripRateHeaders = false } = {}) {
  const sim = startChild({ CLUSTER_BENCH_ROLE: 'simulator', CLUSTER_BENCH_SIM: JSON.stringify(config), CLUSTER_BENCH_STRIP: stripRateHeaders ? '1' : '0' })
  const ready = await sim.nextMessage('ready')
  return {
    ...ready,
    stats: async () => {
      const reply = sim.nextMessage('stats')
      sim.child.send({ type: 'stats' })
      return reply
    },
    stop: async () => {
      const exited = new Promise((resolve) => sim.child.once('exit', resolve))
      sim.child.send({ type: 'stop' })
      await exited
    },
  }
}

/** One mode: a fresh simulator (full buckets), `workers` processes, the totals. */
async function runMode({ requests, workers, concurrency, redisUrl, keyPrefix, stripRateHeaders }) {
  const limits = { rateLimitRpm: LIMIT.requestsPerMinute, rateLimitTpm: LIMIT.tokensPerMinute, failureRate: FAILURE_RATE, seed: 1 }
  const sim = await startSimulator(limits, { stripRateHeaders })
  try {
    const children = []
    for (let id = 0; id < workers; id++) {
      const share = Math.floor(requests / workers) + (id < requests % workers ? 1 : 0)
      const w = startChild({
        CLUSTER_BENCH_ROLE: 'worker',
        CLUSTER_BENCH_WORKER: JSON.stringify({ url: sim.proxyUrl, redisUrl, keyPrefix, share, concurrency, id }),
      })
      children.push({ w, ready: w.nextMessage('ready') })
    }
    for (const c of children) await c.ready
    const done = children.map((c) => c.w.nextMessage('done'))
    const startedAt = Date.now()
    for (const c of children) c.w.child.send({ type: 'go' })
    const results = await Promise.all(done)
    const wallMs = Math.max(...results.map((r) => r.finishedAt)) - startedAt
    const { stats, requestsSaw429 } = await sim.stats()
    const sum = (k) => results.reduce((a, r) => a + r[k], 0)
    const failuresByCode = {}
    for (const r of results) for (const [k, v] of Object.entries(r.failuresByCode)) failuresByCode[k] = (failuresByCode[k] ?? 0) + v
    const admitted = stats.chatRequests - stats.rateLimited
    // As bench/goodput.mjs measures it: the simulator's bucket starts full, so the requests it
    // admitted beyond that first minute's burst, per second, against the refill rate.
    const shareOfLimit = (admitted - LIMIT.requestsPerMinute) / ((wallMs / 1000) * (LIMIT.requestsPerMinute / 60))
    return {
      requests,
      wallMs,
      succeeded: sum('succeeded'),
      failed: sum('failed'),
      failuresByCode,
      retries: sum('retries'),
      sim429: stats.rateLimited,
      sim5xx: stats.randomFailures,
      simRequests: stats.chatRequests,
      requestsSaw429,
      rpm: (sum('succeeded') / wallMs) * 60_000,
      admitted,
      sharePct: 100 * shareOfLimit,
      opsPerRequest: sum('operations') / requests,
      redisErrors: sum('redisErrors'),
      fallbacks: sum('fallbacks'),
    }
  } finally {
    await sim.stop()
  }
}

/** Sequential calls in this process against an unlimited simulator: p50 per call. */
async function lightP50(url, coordination) {
  const { ChatGPTAPI } = await import('../index.js')
  const options = { ...clientOptions(url), rateLimit: { requestsPerMinute: 1_000_000, tokensPerMinute: 100_000_000 } }
  if (coordination) options.coordination = coordination
  const api = new ChatGPTAPI(options)
  for (let i = 0; i < LIGHT_WARMUP; i++) await api.sendMessage(`warm ${i}`)
  const times = []
  for (let i = 0; i < LIGHT_CALLS; i++) {
    const started = process.hrtime.bigint()
    await api.sendMessage(`light ${i}`)
    times.push(Number(process.hrtime.bigint() - started) / 1e6)
  }
  times.sort((a, b) => a - b)
  return percentile(times, 50)
}

async function runPrimary() {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '2000' },
      workers: { type: 'string', default: '4' },
      concurrency: { type: 'string', default: '16' },
      modes: { type: 'string', default: 'local,shared' },
      // Diagnostic: the proxy drops the `x-ratelimit-*` headers (429s keep their `retry-after`),
      // so the clients pace on their configured buckets alone.
      'strip-ratelimit-headers': { type: 'boolean', default: false },
    },
  })
  const requests = Number(values.requests)
  const workers = Number(values.workers)
  const concurrency = Number(values.concurrency)
  for (const [name, v] of Object.entries({ requests, workers, concurrency })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`Expected \`--${name}\` to be a positive integer, got ${values[name]}`)
  }
  const modes = values.modes.split(',')
  const { startRedis } = await import('../scripts/redis.mjs')
  const redis = await startRedis()
  const rows = {}
  let light
  try {
    for (const mode of modes) {
      console.error(`running ${mode}: ${requests} requests, ${workers} workers x ${concurrency} concurrent calls`)
      rows[mode] = await runMode({ requests, workers, concurrency, redisUrl: mode === 'shared' ? redis.url : undefined, keyPrefix: 'bench-cluster', stripRateHeaders: values['strip-ratelimit-headers'] })
    }
    const sim = await startSimulator({})
    try {
      const local = await lightP50(sim.directUrl)
      const shared = await lightP50(sim.directUrl, { redis: { url: redis.url, keyPrefix: 'bench-light' } })
      light = { local, shared }
    } finally {
      await sim.stop()
    }
  } finally {
    await redis.stop()
  }

  const names = { local: 'per-process rateLimit', shared: 'coordinated (Redis)' }
  const stripped = values['strip-ratelimit-headers'] ? ', x-ratelimit-* headers stripped' : ''
  console.log(`${requests} requests, ${workers} worker processes x ${concurrency} concurrent calls, one simulator at ${LIMIT.requestsPerMinute} RPM / ${LIMIT.tokensPerMinute} TPM, ${FAILURE_RATE * 100}% 5xx${stripped}`)
  const cols = modes.map((m) => names[m] ?? m)
  const line = (label, f) => console.log(`| ${label.padEnd(36)} | ${modes.map((m, i) => String(f(rows[m])).padStart(cols[i].length)).join(' | ')} |`)
  console.log(`| ${''.padEnd(36)} | ${cols.join(' | ')} |`)
  console.log(`|${'-'.repeat(38)}|${cols.map((c) => `${'-'.repeat(c.length + 1)}:`).join('|')}|`)
  line('succeeded / failed', (r) => `${r.succeeded} / ${r.failed}`)
  line('wall time', (r) => `${(r.wallMs / 1000).toFixed(1)} s`)
  line('successful requests/min', (r) => r.rpm.toFixed(0))
  line('admitted by the simulator (2xx+5xx)', (r) => r.admitted)
  // Meaningless until the run outlasts the first minute's burst.
  line('share of the limit used', (r) => (r.admitted > LIMIT.requestsPerMinute ? `${r.sharePct.toFixed(1)}%` : '-'))
  line('429s sent by the simulator', (r) => r.sim429)
  line('requests that saw a 429', (r) => `${r.requestsSaw429} (${((100 * r.requestsSaw429) / r.requests).toFixed(2)}%)`)
  line('5xx sent by the simulator', (r) => r.sim5xx)
  line('retries', (r) => r.retries)
  line('HTTP requests at the simulator', (r) => r.simRequests)
  line('Redis operations per request', (r) => (r.opsPerRequest ? r.opsPerRequest.toFixed(2) : '-'))
  line('Redis errors / local fallbacks', (r) => `${r.redisErrors} / ${r.fallbacks}`)
  for (const m of modes) {
    if (Object.keys(rows[m].failuresByCode).length) console.log(`failures (${names[m] ?? m}): ${JSON.stringify(rows[m].failuresByCode)}`)
  }
  console.log(
    `light run, ${LIGHT_CALLS} sequential calls, no server limit: p50 ${light.local.toFixed(3)} ms per-process, ${light.shared.toFixed(3)} ms coordinated, added ${(light.shared - light.local).toFixed(3)} ms`,
  )
  // Clients keep their connections (and the Redis client its reconnect timer) open.
  process.exit(0)
}

// Dispatch last, so the constants above are initialised before any role runs.
const role = process.env.CLUSTER_BENCH_ROLE
if (role === 'simulator') await runSimulator()
else if (role === 'worker') await runWorker()
else await runPrimary()
