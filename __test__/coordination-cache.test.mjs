// The response cache's second level in Redis (`cache` with `coordination`): an answer one process
// paid for answers the same request in another process without an upstream request, within the
// cache's TTL and size bound; what Redis holds is untrusted, and Redis away is a miss. The other
// process runs __test__/coordination/peer.mjs against the same simulator.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { ChatGPTAPI } from '../index.js'
import { startRedis, freePort } from '../scripts/redis.mjs'
import { API_KEY, startSimulator, thrown } from './helpers.mjs'
import { eventually, peer, redisCommand } from './coordination/redis-client.mjs'

let redis
before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis?.stop()
})

/** The options of one process with the cache on, sharing through `redisUrl` under `keyPrefix`. */
function options(sim, redisUrl, keyPrefix, cache = true) {
  return {
    apiKey: API_KEY,
    apiBaseUrl: sim.url,
    completionParams: { model: 'sim-gpt' },
    systemMessage: '',
    maxRetries: 0,
    cache,
    coordination: { redis: { url: redisUrl, keyPrefix, operationTimeoutMs: 1000 } },
  }
}

/** Resolves once `api` has stored `n` answers in Redis. */
const stored = (api, n) => eventually(async () => api.metrics().coordination.cacheStores >= n, `${n} answers stored in Redis`)

test("another process gets the first one's answer from Redis without an upstream request", async () => {
  const sim = await startSimulator()
  const keyPrefix = `t-${randomUUID()}`
  const other = await peer(options(sim, redis.url, keyPrefix))
  try {
    const api = new ChatGPTAPI(options(sim, redis.url, keyPrefix))
    const first = await api.sendMessage('What is the capital of France?')
    await stored(api, 1)
    assert.equal(sim.stats().chatRequests, 1)

    // Streamed: the answer from Redis replays its deltas.
    const streamed = await other.send('What is the capital of France?', {}, true)
    assert.equal(streamed.text, first.text)
    assert.ok(streamed.cached && streamed.deltas >= 1, JSON.stringify(streamed))
    const again = await other.send('What is the capital of France?')
    assert.deepEqual(again, { ok: true, text: first.text, cached: true, deltas: 0 })
    assert.equal(sim.stats().chatRequests, 1, 'no upstream request from the other process')
    const metrics = await other.metrics()
    assert.equal(metrics.coordination.cacheHits, 1, JSON.stringify(metrics.coordination))
    // The second call was a hit of its own cache (the first level), filled from Redis.
    assert.equal(metrics.cacheHits, 1)
    // Different text: a miss everywhere, sent upstream.
    assert.equal((await other.send('And of Spain?')).cached, false)
    assert.equal(sim.stats().chatRequests, 2)
    assert.match(api.metricsText(), /^chatgpt_native_coordination_cache_stores_total 1$/m)
  } finally {
    other.stop()
    await sim.close()
  }
})

test('an entry past the TTL is not answered: the other process sends its own request', async () => {
  const sim = await startSimulator()
  const keyPrefix = `t-${randomUUID()}`
  const cache = { ttlMs: 300 }
  const other = await peer(options(sim, redis.url, keyPrefix, cache))
  try {
    const api = new ChatGPTAPI(options(sim, redis.url, keyPrefix, cache))
    await api.sendMessage('short-lived')
    await stored(api, 1)
    // The keys expire with their last entry.
    await eventually(async () => (await redisCommand(redis.port, 'EXISTS', `{${keyPrefix}:cache}:i`)) === 0, 'the entry expired')
    const late = await other.send('short-lived')
    assert.equal(late.cached, false)
    assert.equal(sim.stats().chatRequests, 2)
  } finally {
    other.stop()
    await sim.close()
  }
})

test('Redis holds at most maxEntries answers, however many processes store', async () => {
  const sim = await startSimulator()
  const keyPrefix = `t-${randomUUID()}`
  const cache = { maxEntries: 2 }
  const other = await peer(options(sim, redis.url, keyPrefix, cache))
  try {
    const api = new ChatGPTAPI(options(sim, redis.url, keyPrefix, cache))
    for (let i = 0; i < 2; i++) await api.sendMessage(`question ${i}`)
    await stored(api, 2)
    for (let i = 2; i < 4; i++) assert.equal((await other.send(`question ${i}`)).cached, false)
    await eventually(async () => (await other.metrics()).coordination.cacheStores >= 2, 'the other process stored')
    assert.equal(await redisCommand(redis.port, 'HLEN', `{${keyPrefix}:cache}:e`), 2)
    assert.equal(await redisCommand(redis.port, 'ZCARD', `{${keyPrefix}:cache}:i`), 2)
    // The oldest went; the latest are answered from Redis.
    const third = new ChatGPTAPI(options(sim, redis.url, keyPrefix, cache))
    assert.equal((await third.sendMessage('question 3')).cached, true)
    assert.equal((await third.sendMessage('question 0')).cached, false)
  } finally {
    other.stop()
    await sim.close()
  }
})

test('a corrupt entry in Redis is a counted miss: the call goes upstream and succeeds', async () => {
  const sim = await startSimulator()
  const keyPrefix = `t-${randomUUID()}`
  const other = await peer(options(sim, redis.url, keyPrefix))
  try {
    const api = new ChatGPTAPI(options(sim, redis.url, keyPrefix))
    const first = await api.sendMessage('tamper with me')
    await stored(api, 1)
    const entries = `{${keyPrefix}:cache}:e`
    const [name] = await redisCommand(redis.port, 'HKEYS', entries)
    await redisCommand(redis.port, 'HSET', entries, name, '{"v":1,"text":[[[')
    const reply = await other.send('tamper with me')
    assert.deepEqual(reply, { ok: true, text: first.text, cached: false, deltas: 0 })
    assert.equal(sim.stats().chatRequests, 2)
    const metrics = await other.metrics()
    assert.equal(metrics.coordination.cacheRejected, 1)
    assert.equal(metrics.coordination.cacheMisses, 1)
  } finally {
    other.stop()
    await sim.close()
  }
})

test('coordination.redis.cache: false keeps the cache in-process: nothing is stored in or read from Redis', async () => {
  const sim = await startSimulator()
  const keyPrefix = `t-${randomUUID()}`
  const own = (extra) => ({
    ...options(sim, redis.url, keyPrefix),
    coordination: { redis: { url: redis.url, keyPrefix, operationTimeoutMs: 1000, ...extra } },
  })
  try {
    const api = new ChatGPTAPI(own({ cache: false }))
    await api.sendMessage('kept at home')
    assert.equal((await api.sendMessage('kept at home')).cached, true, 'the in-process cache answers')
    const other = new ChatGPTAPI(own({ cache: false }))
    assert.equal((await other.sendMessage('kept at home')).cached, false)
    assert.equal(sim.stats().chatRequests, 2)
    assert.equal(await redisCommand(redis.port, 'EXISTS', `{${keyPrefix}:cache}:i`), 0)
    const coordination = api.metrics().coordination
    assert.equal(coordination.cacheMisses + coordination.cacheStores, 0, JSON.stringify(coordination))

    const err = thrown(() => new ChatGPTAPI(own({ cache: 'yes' })))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.ok(err.message.includes('coordination.redis.cache'), err.message)
  } finally {
    await sim.close()
  }
})

test('Redis killed: the cache falls back to the process, calls do not wait on Redis', async () => {
  const sim = await startSimulator()
  const port = await freePort()
  const own = await startRedis({ port })
  try {
    const api = new ChatGPTAPI({
      ...options(sim, own.url, `t-${randomUUID()}`),
      coordination: { redis: { url: own.url, keyPrefix: `t-${randomUUID()}`, operationTimeoutMs: 200 } },
    })
    await api.sendMessage('before')
    await stored(api, 1)
    await own.stop()
    const started = Date.now()
    assert.equal((await api.sendMessage('during')).cached, false)
    assert.equal((await api.sendMessage('during')).cached, true, 'the in-process cache still answers')
    assert.equal((await api.sendMessage('before')).cached, true)
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`)
    const coordination = api.metrics().coordination
    assert.equal(coordination.mode, 'local')
    assert.ok(coordination.cacheMisses >= 1, JSON.stringify(coordination))
    assert.equal(sim.stats().chatRequests, 2)
  } finally {
    await own.stop()
    await sim.close()
  }
})
