// `coordination` over TLS: a `rediss://` URL, and `coordination.redis.ca` to trust a private CA.
// A pinned redis-server (scripts/redis.mjs) speaks only TLS on 127.0.0.1 on a free port, with a
// certificate the private CA of private-ca.mjs (made at run time with the openssl CLI) signed,
// and requires a password.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { ChatGPTAPI } from '../index.js'
import { startRedis } from '../scripts/redis.mjs'
import { API_KEY, clientFor, rejection, startSimulator, thrown } from './helpers.mjs'
import { FALLBACK_WARNING, freshPrefix, warningsDuring } from './coordination/harness.mjs'
import { makePrivateCa } from './private-ca.mjs'

const PASSWORD = 'tls-hunter2-do-not-print'

let ca
let redis
let url
before(async () => {
  ca = makePrivateCa()
  const file = (name, text) => {
    const path = join(ca.dir, name)
    writeFileSync(path, text)
    return path
  }
  redis = await startRedis({
    password: PASSWORD,
    tls: { certFile: file('redis-server.pem', ca.cert), keyFile: file('redis-server.key', ca.key), caFile: ca.caFile },
  })
  url = `rediss://:${PASSWORD}@127.0.0.1:${redis.port}`
})
after(async () => {
  await redis?.stop()
  ca?.remove()
})

test('rediss:// with the private CA in coordination.redis.ca shares one bucket between two instances', async () => {
  const sim = await startSimulator()
  try {
    const coordination = { redis: { url, ca: ca.caPem, keyPrefix: freshPrefix(), operationTimeoutMs: 2000 } }
    const options = { maxRetries: 0, rateLimit: { requestsPerMinute: 1 }, coordination }
    // Two instances, two connections: only Redis connects their buckets.
    const [a, b] = [clientFor(sim, options), clientFor(sim, { ...options, coordination: { redis: { ...coordination.redis, ca: [Buffer.from(ca.caPem)] } } })]
    const warnings = await warningsDuring(FALLBACK_WARNING, async () => {
      await a.sendMessage('first')
      // The minute's only request is spent: the other instance waits for it past its deadline.
      const err = await rejection(b.sendMessage('second', { timeoutMs: 800 }))
      assert.ok(['ERR_CHATGPT_TIMEOUT', 'ERR_CHATGPT_RATE_LIMITED'].includes(err.code), err.code)
    })
    assert.equal(warnings.length, 0)
    assert.equal(sim.stats().chatRequests, 1)
    for (const api of [a, b]) {
      const c = api.metrics().coordination
      assert.equal(c.mode, 'shared')
      assert.equal(c.redisErrors, 0)
      assert.ok(c.operations >= 1, JSON.stringify(c))
    }
  } finally {
    await sim.close()
  }
})

test('rediss:// without trusting the CA falls back to local limits with one warning, without the password', async () => {
  const sim = await startSimulator()
  try {
    const api = clientFor(sim, {
      rateLimit: { requestsPerMinute: 600 },
      coordination: { redis: { url, keyPrefix: freshPrefix(), operationTimeoutMs: 500 } },
    })
    const started = Date.now()
    const warnings = await warningsDuring(FALLBACK_WARNING, async () => {
      await api.sendMessage('one')
      await api.sendMessage('two')
    })
    assert.ok(Date.now() - started < 5000, `no hang: ${Date.now() - started} ms`)
    assert.equal(warnings.length, 1)
    assert.ok(warnings[0].message.includes(`rediss://`) && warnings[0].message.includes(String(redis.port)))
    const c = api.metrics().coordination
    assert.equal(c.mode, 'local')
    assert.ok(c.fallbacks >= 1 && c.redisErrors >= 1, JSON.stringify(c))
    for (const text of [warnings[0].message, api.metricsText(), JSON.stringify(api.metrics())]) {
      assert.ok(!text.includes(PASSWORD), text)
    }
  } finally {
    await sim.close()
  }
})

test('bad coordination.redis.ca values are refused naming the option, never the password', () => {
  const base = { apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:9' }
  const cases = [
    [{ url, ca: 'not a certificate' }, 'coordination.ca'],
    [{ url, ca: [ca.caPem, 'nope'] }, 'coordination.ca[1]'],
    [{ url, ca: 42 }, 'coordination.redis.ca'],
    [{ url: `redis://:${PASSWORD}@127.0.0.1:6379`, ca: ca.caPem }, 'coordination.ca'],
  ]
  for (const [redisOptions, named] of cases) {
    const err = thrown(() => new ChatGPTAPI({ ...base, coordination: { redis: redisOptions } }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', named)
    assert.ok(err.message.includes(named), `${named}: ${err.message}`)
    assert.ok(!err.message.includes(PASSWORD) && !err.stack.includes(PASSWORD), err.message)
  }
})
