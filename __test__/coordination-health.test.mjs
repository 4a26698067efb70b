// Key health shared through Redis (`coordination`): a key one process cooled down after a 429, or
// disabled after a 401/403, is skipped by every process with the same Redis and keyPrefix. The
// upstream is a raw node:http server that counts requests per API key; the other process runs
// __test__/coordination/peer.mjs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { randomUUID } from 'node:crypto'

import { ChatGPTAPI } from '../index.js'
import { startRedis, freePort } from '../scripts/redis.mjs'
import { completionJson } from './helpers.mjs'
import { eventually, peer, redisCommand } from './coordination/redis-client.mjs'

const KEY_A = 'sk-test-health-key-aaaa'
const KEY_B = 'sk-test-health-key-bbbb'

let redis
before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis?.stop()
})

/**
 * An upstream that counts requests per API key and answers each with `answer(key, nth)`: a
 * status with its headers, or null for a 200 completion.
 */
async function keyServer(answer) {
  const perKey = {}
  const server = http.createServer((req, res) => {
    const key = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    perKey[key] = (perKey[key] ?? 0) + 1
    const nth = perKey[key]
    req.resume()
    req.on('end', () => {
      const failure = answer(key, nth)
      if (failure) {
        res.writeHead(failure.status, { 'content-type': 'application/json', ...failure.headers })
        res.end(JSON.stringify({ error: { message: 'refused', type: 'test', code: failure.code ?? null } }))
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(completionJson('fine'))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    count: (key) => perKey[key] ?? 0,
    close: () =>
      new Promise((resolve) => {
        server.close(resolve)
        // Clients keep their connections alive: end them, or closing waits for their timeout.
        server.closeAllConnections()
      }),
  }
}

/** The options of one process: both keys, sharing through `redisUrl` under `keyPrefix`. */
function options(server, redisUrl, keyPrefix, extra = {}) {
  return {
    apiKeys: [KEY_A, KEY_B],
    apiBaseUrl: server.url,
    completionParams: { model: 'sim-gpt' },
    systemMessage: '',
    maxRetries: 2,
    timeoutMs: 60_000,
    coordination: { redis: { url: redisUrl, keyPrefix, operationTimeoutMs: 1000 } },
    ...extra,
  }
}

/** The health hashes under `keyPrefix` (one per key some process marked). */
const healthKeys = (keyPrefix) => redisCommand(redis.port, 'KEYS', `{${keyPrefix}:rl:*}:h`)

test('a 429 cool-down in one process makes the other use another key: the cooled key is not sent again', async () => {
  const server = await keyServer((key, nth) => (key === KEY_A && nth === 1 ? { status: 429, headers: { 'retry-after': '30' } } : null))
  const keyPrefix = `t-${randomUUID()}`
  const other = await peer(options(server, redis.url, keyPrefix))
  try {
    const api = new ChatGPTAPI(options(server, redis.url, keyPrefix))
    assert.equal((await api.sendMessage('hi')).text, 'fine')
    assert.equal(server.count(KEY_A), 1, 'the first key got the 429')
    await eventually(async () => (await healthKeys(keyPrefix)).length === 1, 'the cool-down is in Redis')

    for (let i = 0; i < 3; i++) {
      const sent = await other.send(`call ${i}`)
      assert.equal(sent.ok, true, JSON.stringify(sent))
    }
    assert.equal(server.count(KEY_A), 1, 'the other process never sent the cooled key')
    const metrics = await other.metrics()
    assert.equal(metrics.coordination.peerKeyCoolDowns, 1)
    assert.equal(metrics.keyCoolDowns, 0)
    const cooled = metrics.keys.find((k) => k.cooling)
    assert.ok(cooled?.fromPeer && cooled.fingerprint.endsWith('aaaa'), JSON.stringify(metrics.keys))
    assert.match(api.metricsText(), /^chatgpt_native_coordination_peer_key_cool_downs_total 0$/m)
  } finally {
    other.stop()
    await server.close()
  }
})

test('a 401 disable in one process is seen by the other, which never sends the rejected key', async () => {
  const server = await keyServer((key) => (key === KEY_A ? { status: 401, code: 'invalid_api_key' } : null))
  const keyPrefix = `t-${randomUUID()}`
  const other = await peer(options(server, redis.url, keyPrefix))
  try {
    const api = new ChatGPTAPI(options(server, redis.url, keyPrefix))
    assert.equal((await api.sendMessage('hi')).text, 'fine')
    assert.equal(server.count(KEY_A), 1)
    await eventually(async () => (await healthKeys(keyPrefix)).length === 1, 'the disable is in Redis')
    // The shared disable expires on its own (10 minutes), so a key fixed upstream comes back.
    const [health] = await healthKeys(keyPrefix)
    const ttlMs = await redisCommand(redis.port, 'PTTL', health)
    assert.ok(ttlMs > 9 * 60_000 && ttlMs <= 10 * 60_000, String(ttlMs))

    for (let i = 0; i < 3; i++) {
      const sent = await other.send(`call ${i}`)
      assert.equal(sent.ok, true, JSON.stringify(sent))
    }
    assert.equal(server.count(KEY_A), 1, 'the other process never sent the rejected key')
    const metrics = await other.metrics()
    assert.equal(metrics.coordination.peerKeysDisabled, 1)
    const disabled = metrics.keys.find((k) => k.disabled)
    assert.ok(disabled?.fromPeer, JSON.stringify(metrics.keys))
  } finally {
    other.stop()
    await server.close()
  }
})

test('a shared cool-down ends when its retry-after has passed: the other process uses the key again', async () => {
  const server = await keyServer((key, nth) => (key === KEY_A && nth === 1 ? { status: 429, headers: { 'retry-after': '2' } } : null))
  const keyPrefix = `t-${randomUUID()}`
  const other = await peer(options(server, redis.url, keyPrefix))
  try {
    const api = new ChatGPTAPI(options(server, redis.url, keyPrefix))
    await api.sendMessage('hi')
    await eventually(async () => (await healthKeys(keyPrefix)).length === 1, 'the cool-down is in Redis')
    assert.equal((await other.send('while cooling')).ok, true)
    assert.equal(server.count(KEY_A), 1)
    // The health hash expires with the cool-down.
    await eventually(async () => (await healthKeys(keyPrefix)).length === 0, 'the cool-down expired', 5000)
    for (let i = 0; i < 2; i++) assert.equal((await other.send(`after ${i}`)).ok, true)
    assert.ok(server.count(KEY_A) >= 2, 'the key is used again')
  } finally {
    other.stop()
    await server.close()
  }
})

test('Redis killed: key health falls back to each process, without waiting on Redis', async () => {
  const server = await keyServer((key) => (key === KEY_A ? { status: 429, headers: { 'retry-after': '30' } } : null))
  const port = await freePort()
  const own = await startRedis({ port })
  try {
    const api = new ChatGPTAPI(
      options(server, own.url, `t-${randomUUID()}`, {
        coordination: { redis: { url: own.url, keyPrefix: `t-${randomUUID()}`, operationTimeoutMs: 200 } },
      }),
    )
    await own.stop()
    const started = Date.now()
    for (let i = 0; i < 3; i++) assert.equal((await api.sendMessage(`call ${i}`)).text, 'fine')
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`)
    // The 429 cooled the key in this process alone: it was sent once.
    assert.equal(server.count(KEY_A), 1)
    const metrics = api.metrics()
    assert.equal(metrics.coordination.mode, 'local')
    assert.equal(metrics.keyCoolDowns, 1)
    assert.ok(metrics.keys.find((k) => k.cooling && !k.fromPeer))
  } finally {
    await own.stop()
    await server.close()
  }
})
