// `coordination`: rate limits shared through Redis by several processes. A real redis-server
// (pinned, installed by scripts/redis.mjs) runs on 127.0.0.1 on a free port; other processes are
// child processes running __test__/coordination/worker.mjs against the same simulator.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { ChatGPTAPI } from '../index.js'
import { startRedis, freePort } from '../scripts/redis.mjs'
import { API_KEY, clientFor, rejection, startSimulator, thrown, until } from './helpers.mjs'
import { FALLBACK_WARNING, freshPrefix, startWorker, twoProcessesShareOneBucket, warningsDuring } from './coordination/harness.mjs'

let redis
before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis?.stop()
})

test('two processes sharing one bucket together stay within rateLimit: the server never answers 429', async () => {
  const sim = await startSimulator({ rateLimitRpm: 10 })
  try {
    await twoProcessesShareOneBucket(sim, { url: redis.url, keyPrefix: freshPrefix() })
  } finally {
    await sim.close()
  }
})

test("a 429 pauses the other process too: its call fails fast without reaching the server", async () => {
  const sim = await startSimulator()
  const keyPrefix = freshPrefix()
  try {
    const api = clientFor(sim, { maxRetries: 0, coordination: { redis: { url: redis.url, keyPrefix } } })
    sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfter: '20' })
    assert.equal((await rejection(api.sendMessage('hi'))).code, 'ERR_CHATGPT_RATE_LIMITED')
    const before = sim.stats().chatRequests
    const worker = await startWorker({ simUrl: sim.url, redisUrl: redis.url, keyPrefix, calls: 1, timeoutMs: 3000 })
    try {
      const report = await worker.run()
      assert.deepEqual(report.failures, { ERR_CHATGPT_RATE_LIMITED: 1 }, JSON.stringify(report))
      assert.equal(sim.stats().chatRequests, before, 'the other process sent nothing')
    } finally {
      worker.stop()
    }
  } finally {
    await sim.close()
  }
})

test('Redis killed mid-run: calls go on with local limits, one warning, and sharing resumes after a restart', async () => {
  const sim = await startSimulator()
  const port = await freePort()
  let own = await startRedis({ port })
  try {
    const api = clientFor(sim, {
      rateLimit: { requestsPerMinute: 6000 },
      coordination: { redis: { url: own.url, keyPrefix: freshPrefix(), operationTimeoutMs: 200 } },
    })
    await api.sendMessage('before')
    assert.equal(api.metrics().coordination.mode, 'shared')
    await own.stop()
    const warnings = await warningsDuring(FALLBACK_WARNING, async () => {
      for (let i = 0; i < 5; i++) await api.sendMessage(`during ${i}`)
    })
    assert.equal(warnings.length, 1)
    const during = api.metrics().coordination
    assert.equal(during.mode, 'local')
    assert.ok(during.fallbacks >= 1 && during.redisErrors >= 1, JSON.stringify(during))
    assert.match(api.metricsText(), /^chatgpt_native_coordination_shared 0$/m)

    own = await startRedis({ port })
    // Calls drive the reconnection: keep sending until a reservation goes through Redis again.
    const resumed = async () => {
      const started = Date.now()
      while (Date.now() - started < 10_000) {
        const ops = api.metrics().coordination.operations
        await api.sendMessage('after')
        const now = api.metrics().coordination
        if (now.mode === 'shared' && now.operations > ops) return true
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      return false
    }
    const later = await warningsDuring(FALLBACK_WARNING, async () => {
      assert.ok(await resumed(), 'sharing resumed')
    })
    assert.equal(later.length, 0, 'warned once only')
    assert.match(api.metricsText(), /^chatgpt_native_coordination_shared 1$/m)
  } finally {
    await own.stop()
    await sim.close()
  }
})

test('the circuit breaker is shared: one process opening it stops the other, and one probe goes out across both', async () => {
  const sim = await startSimulator({ ttftMs: 300 })
  const keyPrefix = freshPrefix()
  const circuitBreaker = { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeoutMs: 1500 }
  const config = { simUrl: sim.url, redisUrl: redis.url, keyPrefix, circuitBreaker, timeoutMs: 5000 }
  const workers = await Promise.all([startWorker({ ...config, calls: 2 }), startWorker({ ...config, calls: 3 })])
  try {
    const api = clientFor(sim, { maxRetries: 0, circuitBreaker, coordination: { redis: { url: redis.url, keyPrefix } } })
    for (let i = 0; i < 4; i++) {
      sim.enqueueFault({ kind: 'status', status: 500 })
      assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_HTTP')
    }
    // Outcomes reach Redis in the background; the answer to the fourth says it opened.
    await until(() => api.metrics().breakerState === 'open', 'the shared breaker to open')
    assert.equal(api.metrics().breakerOpened, 1)
    const sent = sim.stats().chatRequests

    const stopped = await workers[0].run()
    assert.deepEqual(stopped.failures, { ERR_CHATGPT_CIRCUIT_OPEN: 2 }, JSON.stringify(stopped))
    assert.equal(sim.stats().chatRequests, sent, 'the other process sent nothing')

    // Time is what is tested: the probe may go once resetTimeoutMs (1500) has passed.
    await new Promise((resolve) => setTimeout(resolve, 1600))
    const [here, there] = await Promise.all([
      Promise.allSettled([1, 2, 3].map((i) => api.sendMessage(`probe? ${i}`))),
      workers[1].run(),
    ])
    const succeededHere = here.filter((r) => r.status === 'fulfilled').length
    for (const r of here) if (r.status === 'rejected') assert.equal(r.reason.code, 'ERR_CHATGPT_CIRCUIT_OPEN')
    for (const code of Object.keys(there.failures)) assert.equal(code, 'ERR_CHATGPT_CIRCUIT_OPEN')
    assert.equal(succeededHere + there.succeeded, 1, `one probe of six calls: ${JSON.stringify(there)}`)
    assert.equal(sim.stats().chatRequests, sent + 1, 'exactly one request reached the server')

    // The probe succeeded (its outcome reaches Redis in the background): closed for everyone.
    let reply
    for (let i = 0; i < 50 && !reply; i++) {
      reply = await api.sendMessage('closed again').catch(async (e) => {
        assert.equal(e.code, 'ERR_CHATGPT_CIRCUIT_OPEN')
        await new Promise((resolve) => setTimeout(resolve, 20))
      })
    }
    assert.equal(reply?.finishReason, 'stop')
    assert.equal(api.metrics().breakerState, 'closed')
  } finally {
    for (const w of workers) w.stop()
    await sim.close()
  }
})

test('bad coordination options are refused naming the option and the value', () => {
  const base = { apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:9' }
  const cases = [
    [{ redis: 'http://127.0.0.1:6379' }, 'coordination.url'],
    [{ redis: 42 }, 'coordination.redis'],
    [{}, 'coordination.redis'],
    [{ redis: { url: 'redis://127.0.0.1', keyPrefix: 'a{b}' } }, 'coordination.keyPrefix'],
    [{ redis: { url: 'redis://127.0.0.1', operationTimeoutMs: 0 } }, 'coordination.operationTimeoutMs'],
    [{ redis: { url: 'redis://127.0.0.1', localShare: 1.5 } }, 'coordination.localShare'],
    [{ redis: { url: 'redis://127.0.0.1', localShare: 0 } }, 'coordination.localShare'],
    [{ redis: { url: 'redis://127.0.0.1', keyPrefx: 'x' } }, 'keyPrefx'],
  ]
  for (const [coordination, named] of cases) {
    const err = thrown(() => new ChatGPTAPI({ ...base, coordination }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', JSON.stringify(coordination))
    assert.ok(err.message.includes(named), `${JSON.stringify(coordination)}: ${err.message}`)
  }
})

test("the Redis URL's password appears in no error, warning or metric", async () => {
  const sim = await startSimulator()
  try {
    const secret = 'hunter2-do-not-print'
    for (const coordination of [
      { redis: `http://:${secret}@127.0.0.1:6379` },
      { redis: `redis://:${secret}@[::1` },
      { redis: { url: `redis://user:${secret}@127.0.0.1:6379`, localShare: 2 } },
    ]) {
      const err = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, coordination }))
      assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
      assert.ok(!err.message.includes(secret) && !err.stack.includes(secret), err.message)
    }
    // Nothing listens on this port: every call falls back, and warns.
    const port = await freePort()
    const api = clientFor(sim, {
      rateLimit: { requestsPerMinute: 600 },
      coordination: { redis: `redis://:${secret}@127.0.0.1:${port}` },
    })
    const warnings = await warningsDuring(FALLBACK_WARNING, () => api.sendMessage('hi'))
    assert.equal(warnings.length, 1)
    assert.ok(warnings[0].message.includes(String(port)), warnings[0].message)
    for (const text of [warnings[0].message, api.metricsText(), JSON.stringify(api.metrics())]) {
      assert.ok(!text.includes(secret), text)
    }
  } finally {
    await sim.close()
  }
})

test('without coordination, metrics have no coordination entry and the text no coordination lines', async () => {
  const sim = await startSimulator()
  try {
    const api = clientFor(sim)
    await api.sendMessage('hi')
    assert.equal(api.metrics().coordination, undefined)
    assert.doesNotMatch(api.metricsText(), /coordination/)
  } finally {
    await sim.close()
  }
})

test('two upstreams with coordination never share a bucket, and the instance has one set of Redis counters', async () => {
  const [a, b] = await Promise.all([startSimulator(), startSimulator()])
  try {
    const api = new ChatGPTAPI({
      // The same key on both: only the upstream tells their buckets apart.
      upstreams: [
        { name: 'a', apiBaseUrl: a.url, apiKey: API_KEY },
        { name: 'b', apiBaseUrl: b.url, apiKey: API_KEY },
      ],
      completionParams: { model: 'sim-gpt' },
      systemMessage: '',
      maxRetries: 0,
      timeoutMs: 2000,
      rateLimit: { requestsPerMinute: 1 },
      coordination: { redis: { url: redis.url, keyPrefix: freshPrefix(), operationTimeoutMs: 2000 } },
    })
    // `a` spends its minute's only request on a 503; `b` still has its own to answer with (a
    // shared bucket would hold the call for a minute, past its deadline).
    a.enqueueFault({ kind: 'status', status: 503 })
    const reply = await api.sendMessage('hi')
    assert.equal(reply.upstream, 'b')
    assert.equal(a.stats().chatRequests, 1)
    const coordination = api.metrics().coordination
    assert.equal(coordination.mode, 'shared')
    assert.equal(coordination.fallbacks, 0)
    assert.ok(coordination.operations >= 2, JSON.stringify(coordination))
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})
