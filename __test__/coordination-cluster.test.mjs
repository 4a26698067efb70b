// `coordination.redis.nodes`: rate limits shared through a Redis Cluster. Three redis-server
// masters (pinned, from scripts/redis.mjs) run on 127.0.0.1 on free ports and are joined with
// `redis-cli --cluster create`; other processes are child processes running
// __test__/coordination/worker.mjs against the same simulator.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { ChatGPTAPI } from '../index.js'
import { startRedisCluster, redisCli } from '../scripts/redis.mjs'
import { API_KEY, clientFor, rejection, startSimulator, thrown } from './helpers.mjs'
import { FALLBACK_WARNING, freshPrefix, startWorker, twoProcessesShareOneBucket, warningsDuring } from './coordination/harness.mjs'

let cluster
before(async () => {
  cluster = await startRedisCluster()
})
after(async () => {
  await cluster?.stop()
})

/** How many keys each node of the cluster holds. */
const keysPerNode = () => cluster.nodes.map((n) => Number(redisCli(['-p', String(n.port), 'dbsize']).trim()))

test('two processes sharing one bucket through a Redis Cluster together stay within rateLimit', async () => {
  const sim = await startSimulator({ rateLimitRpm: 10 })
  try {
    await twoProcessesShareOneBucket(sim, { nodes: cluster.urls, keyPrefix: freshPrefix() })
  } finally {
    await sim.close()
  }
})

/**
 * A pool of 30 keys. A bucket's hash tag is its API key's (the key's health shares its slot), so
 * buckets spread over the nodes by key: 30 keys used in turn miss a node with odds of about 1e-5.
 */
const manyKeys = Array.from({ length: 30 }, (_, i) => `${API_KEY}-${i}`)

test('buckets of many models and keys land on every node of the cluster and all work', async () => {
  // Any key is accepted: the pool's 30 keys are all valid.
  const sim = await startSimulator({ apiKey: undefined })
  try {
    const before = keysPerNode()
    const api = new ChatGPTAPI({
      apiKeys: manyKeys,
      apiBaseUrl: sim.url,
      systemMessage: '',
      rateLimit: { requestsPerMinute: 6000 },
      coordination: { redis: { nodes: cluster.urls, keyPrefix: freshPrefix(), operationTimeoutMs: 2000 } },
    })
    for (let i = 0; i < manyKeys.length; i++) {
      await api.sendMessage(`hi ${i}`, { completionParams: { model: `sim-model-${i}` } })
    }
    const after = keysPerNode()
    assert.ok(
      after.every((n, i) => n > before[i]),
      `every node got buckets of its own: ${JSON.stringify({ before, after })}`,
    )
    const coordination = api.metrics().coordination
    assert.equal(coordination.mode, 'shared')
    assert.equal(coordination.redisErrors, 0)
    assert.equal(coordination.fallbacks, 0)
  } finally {
    await sim.close()
  }
})

test("a 429 pauses the other process through the cluster: its call fails fast without reaching the server", async () => {
  const sim = await startSimulator()
  const keyPrefix = freshPrefix()
  try {
    const api = clientFor(sim, {
      maxRetries: 0,
      coordination: { redis: { nodes: cluster.urls, keyPrefix, operationTimeoutMs: 2000 } },
    })
    sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfter: '20' })
    assert.equal((await rejection(api.sendMessage('hi'))).code, 'ERR_CHATGPT_RATE_LIMITED')
    const before = sim.stats().chatRequests
    const worker = await startWorker({ simUrl: sim.url, redis: { nodes: cluster.urls, keyPrefix }, calls: 1, timeoutMs: 3000 })
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

test('a cluster node killed: calls go on with local limits, one warning, and sharing resumes after its restart', async () => {
  const sim = await startSimulator({ apiKey: undefined })
  try {
    const api = new ChatGPTAPI({
      apiKeys: manyKeys,
      apiBaseUrl: sim.url,
      systemMessage: '',
      rateLimit: { requestsPerMinute: 6000 },
      coordination: { redis: { nodes: cluster.urls, keyPrefix: freshPrefix(), operationTimeoutMs: 300 } },
    })
    // One call per key (the pool takes them in turn): buckets on all three nodes.
    const models = Array.from({ length: manyKeys.length }, (_, i) => `sim-model-${i}`)
    const sendAll = async (label) => {
      for (const model of models) await api.sendMessage(`${label} ${model}`, { completionParams: { model } })
    }
    await sendAll('before')
    assert.equal(api.metrics().coordination.mode, 'shared')
    assert.equal(api.metrics().coordination.redisErrors, 0)

    await cluster.nodes[1].kill()
    const started = Date.now()
    const warnings = await warningsDuring(FALLBACK_WARNING, () => sendAll('during'))
    assert.ok(Date.now() - started < 15_000, `no hang: ${Date.now() - started} ms`)
    assert.equal(warnings.length, 1)
    const during = api.metrics().coordination
    assert.equal(during.mode, 'local')
    assert.ok(during.fallbacks >= 1 && during.redisErrors >= 1, JSON.stringify(during))
    assert.match(api.metricsText(), /^chatgpt_native_coordination_shared 0$/m)

    await cluster.nodes[1].restart()
    await cluster.waitUntilOk()
    // Calls drive the reconnection: keep sending until a round over every node goes through
    // Redis without an error.
    const resumed = async () => {
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline) {
        const { redisErrors, fallbacks } = api.metrics().coordination
        await sendAll('after')
        const now = api.metrics().coordination
        if (now.mode === 'shared' && now.redisErrors === redisErrors && now.fallbacks === fallbacks) return true
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      return false
    }
    const later = await warningsDuring(FALLBACK_WARNING, async () => {
      assert.ok(await resumed(), 'sharing resumed')
    })
    assert.equal(later.length, 0, 'warned once only')
    assert.match(api.metricsText(), /^chatgpt_native_coordination_shared 1$/m)
  } finally {
    await sim.close()
  }
})

test('bad coordination.redis.nodes values are refused naming the option and the value, never the password', () => {
  const base = { apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:9' }
  const secret = 'hunter2-cluster-secret'
  const cases = [
    [{ nodes: [] }, 'coordination.redis.nodes'],
    [{ nodes: 'redis://127.0.0.1:7000' }, 'coordination.redis.nodes'],
    [{ nodes: ['redis://127.0.0.1:7000', 7001] }, 'coordination.redis.nodes'],
    [{ nodes: Array(65).fill('redis://127.0.0.1:7000') }, 'coordination.nodes'],
    [{ nodes: ['redis://127.0.0.1:7000', `http://:${secret}@127.0.0.1:7001`] }, 'coordination.nodes[1]'],
    [{ nodes: ['redis://127.0.0.1:7000', `rediss://:${secret}@127.0.0.1:7001`] }, 'coordination.nodes'],
    [{ url: `redis://:${secret}@127.0.0.1:6379`, nodes: ['redis://127.0.0.1:7000'] }, 'coordination.nodes'],
    // One client seeds from all of them: one user and password, database 0.
    [{ nodes: [`redis://:${secret}@127.0.0.1:7000`, 'redis://:other@127.0.0.1:7001'] }, 'coordination.nodes'],
    [{ nodes: [`redis://:${secret}@127.0.0.1:7000/3`] }, 'coordination.nodes[0]'],
  ]
  for (const [redis, named] of cases) {
    const err = thrown(() => new ChatGPTAPI({ ...base, coordination: { redis } }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', named)
    assert.ok(err.message.includes(named), `${named}: ${err.message}`)
    assert.ok(!err.message.includes(secret) && !err.stack.includes(secret), err.message)
  }
})
