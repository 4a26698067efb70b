// Response cache, coalescing of identical in-flight calls, sendMany, warmup and metrics.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator } from '../index.js'
import { startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 8 })
})
after(() => sim.close())

async function counted(fn, server = sim) {
  server.resetStats()
  const result = await fn()
  return { result, requests: server.stats().chatRequests }
}

test('a repeated request is served from the cache with a fresh id and the same text', async () => {
  const api = clientFor(sim)
  const first = await counted(() => api.sendMessage('cache me'))
  const second = await counted(() => api.sendMessage('cache me'))
  assert.equal(first.requests, 1)
  assert.equal(second.requests, 0)
  assert.equal(first.result.cached, false)
  assert.equal(second.result.cached, true)
  assert.equal(second.result.text, first.result.text)
  assert.notEqual(second.result.id, first.result.id)
  assert.match(second.result.id, /^chatcmpl-/)
  const m = api.metrics()
  assert.equal(m.cacheHits, 1)
  assert.equal(m.cacheMisses, 1)
  assert.equal(m.cacheEntries, 1)
})

test('different parameters or messages miss', async () => {
  const api = clientFor(sim)
  await api.sendMessage('vary me')
  const { requests } = await counted(async () => {
    await api.sendMessage('vary me', { completionParams: { temperature: 0.1 } })
    await api.sendMessage('vary me!')
    await api.sendMessage('vary me', { systemMessage: 'Be brief.' })
  })
  assert.equal(requests, 3)
})

test('entries expire after ttlMs', async () => {
  const api = clientFor(sim, { cache: { ttlMs: 100 } })
  await api.sendMessage('expire me')
  await new Promise((r) => setTimeout(r, 150))
  const { result, requests } = await counted(() => api.sendMessage('expire me'))
  assert.equal(requests, 1)
  assert.equal(result.cached, false)
})

test('cache: false per call neither reads nor writes the cache', async () => {
  const api = clientFor(sim)
  await api.sendMessage('bypass me')
  const bypass = await counted(() => api.sendMessage('bypass me', { cache: false }))
  assert.equal(bypass.requests, 1)
  assert.equal(bypass.result.cached, false)
  await api.sendMessage('never stored', { cache: false })
  assert.equal((await counted(() => api.sendMessage('never stored'))).requests, 1)
})

test('cache: false on the instance turns caching and coalescing off', async () => {
  const api = clientFor(sim, { cache: false })
  await api.sendMessage('no cache')
  assert.equal((await counted(() => api.sendMessage('no cache'))).requests, 1)
  assert.equal(api.metrics().cacheEntries, 0)
})

test('memory stays under maxBytes and entries under maxEntries', async () => {
  const big = clientFor(sim, { cache: { maxBytes: 64 * 1024, maxEntries: 1000 }, headers: { 'x-sim-response-tokens': '500' } })
  for (let i = 0; i < 40; i++) await big.sendMessage(`big ${i}`, { completionParams: { max_tokens: 500 } })
  assert.ok(big.metrics().cacheBytes <= 64 * 1024, `bytes ${big.metrics().cacheBytes}`)
  const many = clientFor(sim, { cache: { maxEntries: 8 } })
  for (let i = 0; i < 40; i++) await many.sendMessage(`small ${i}`)
  assert.ok(many.metrics().cacheEntries <= 8, `entries ${many.metrics().cacheEntries}`)
})

test('a streaming hit replays the original deltas in order', async () => {
  const api = clientFor(sim)
  const original = []
  const first = await api.sendMessage('stream and cache', { onProgress: (p) => original.push(p.delta) })
  const replayed = []
  const partials = []
  const second = await api.sendMessage('stream and cache', {
    onProgress: (p) => {
      replayed.push(p.delta)
      partials.push(p)
    },
  })
  assert.equal(second.cached, true)
  assert.deepEqual(replayed, original)
  assert.ok(replayed.length > 1, 'not one lump')
  assert.equal(partials.at(-1).text, first.text)
  assert.equal(partials[0].id, second.id)
})

test('errors are never cached', async () => {
  const api = clientFor(sim, { maxRetries: 0 })
  sim.enqueueFault({ kind: 'status', status: 500 })
  await rejection(api.sendMessage('fail then succeed'))
  const { result, requests } = await counted(() => api.sendMessage('fail then succeed'))
  assert.equal(requests, 1)
  assert.equal(result.cached, false)
})

test('10 identical concurrent calls share one upstream request, and every streaming caller gets every delta', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 150, tokenDelayMs: 5, responseTokens: 6 })
  try {
    const api = clientFor(slow, { apiKey: 'any' })
    const deltas = Array.from({ length: 10 }, () => [])
    const replies = await Promise.all(
      deltas.map((list, i) => api.sendMessage('same question', i % 2 ? { onProgress: (p) => list.push(p.delta) } : { stream: true })),
    )
    assert.equal(slow.stats().chatRequests, 1)
    assert.equal(new Set(replies.map((r) => r.text)).size, 1)
    assert.equal(new Set(replies.map((r) => r.id)).size, 10, 'each caller has its own message id')
    for (let i = 1; i < 10; i += 2) assert.equal(deltas[i].join(''), replies[0].text)
    assert.equal(api.metrics().coalesced, 9)
  } finally {
    await slow.close()
  }
})

test('a failure reaches every waiter and is not cached', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 100 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxRetries: 0 })
    // A malformed answer arrives after the 100 ms answer delay, so all five calls are waiting.
    slow.enqueueFault({ kind: 'malformed' })
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.sendMessage('shared failure')))
    assert.equal(slow.stats().chatRequests, 1)
    for (const r of results) {
      assert.equal(r.status, 'rejected')
      assert.equal(r.reason.code, 'ERR_CHATGPT_BAD_RESPONSE')
    }
    const again = await api.sendMessage('shared failure')
    assert.equal(again.cached, false)
    assert.equal(slow.stats().chatRequests, 2)
  } finally {
    await slow.close()
  }
})

test('aborting one waiter does not cancel the shared request for the others', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 200 })
  try {
    const api = clientFor(slow, { apiKey: 'any' })
    const controller = new AbortController()
    const aborted = api.sendMessage('shared', { abortSignal: controller.signal })
    const others = [api.sendMessage('shared'), api.sendMessage('shared')]
    setTimeout(() => controller.abort(), 50)
    assert.equal((await rejection(aborted)).code, 'ABORT_ERR')
    const replies = await Promise.all(others)
    assert.equal(replies.length, 2)
    assert.equal(slow.stats().chatRequests, 1)
  } finally {
    await slow.close()
  }
})

test('sendMany resolves in input order with partial failures, reporting each item as it completes', async () => {
  const api = clientFor(sim, { maxModelTokens: 200, maxResponseTokens: 50 })
  const inputs = ['one', { text: 'two', completionParams: { max_tokens: 3 } }, { text: 'x '.repeat(400) }, 'four']
  const reported = []
  const results = await api.sendMany(inputs, { onItem: (index, result) => reported.push([index, result.ok]) })
  assert.equal(results.length, 4)
  assert.deepEqual(results.map((r) => r.ok), [true, true, false, true])
  assert.equal(results[1].message.usage.completionTokens, 3)
  assert.equal(results[2].error.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
  assert.deepEqual(reported.map(([i]) => i).sort(), [0, 1, 2, 3], 'every item reported before the Promise settled')
  assert.deepEqual(reported.find(([i]) => i === 2), [2, false])
})

test('sendMany respects maxConcurrency and abortSignal cancels what is left', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 100 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxConcurrency: 2 })
    const controller = new AbortController()
    // Each pair takes about 100 ms: by 250 ms one or two pairs are done, the rest are cut.
    setTimeout(() => controller.abort(), 250)
    const results = await api.sendMany(Array.from({ length: 8 }, (_, i) => `item ${i}`), { abortSignal: controller.signal })
    assert.equal(slow.stats().maxInFlight, 2)
    const ok = results.filter((r) => r.ok).length
    const aborted = results.filter((r) => !r.ok && r.error.code === 'ABORT_ERR').length
    assert.ok(ok >= 2 && ok < 8, `ok ${ok}`)
    assert.equal(ok + aborted, 8)
  } finally {
    await slow.close()
  }
})

test('sendMany rejects invalid inputs', async () => {
  const api = clientFor(sim)
  for (const [inputs, pattern] of [['x', /`inputs` to be an array/], [[1], /`inputs\[0\]`/], [[{}], /`inputs\[0\].text`/]]) {
    const err = await rejection(api.sendMany(inputs))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, pattern)
  }
})

test('warmup opens the connection before the first call', async () => {
  const api = clientFor(sim)
  sim.resetStats()
  const ms = await api.warmup()
  assert.equal(typeof ms, 'number')
  assert.equal(sim.stats().requests, 1)
  assert.equal(sim.stats().chatRequests, 0)
})

test('metrics count a scripted run, and resetMetrics zeroes them', async () => {
  const api = clientFor(sim, { retryBaseMs: 5, maxModelTokens: 1000, maxResponseTokens: 100 })
  sim.enqueueFault({ kind: 'status', status: 500 })
  await api.sendMessage('metrics one', { onProgress: () => {} })
  sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5' })
  await api.sendMessage('metrics two')
  await api.sendMessage('metrics two')
  sim.enqueueFault({ kind: 'status', status: 400 })
  await rejection(api.sendMessage('metrics three'))
  const m = api.metrics()
  assert.equal(m.callsStarted, 4)
  assert.equal(m.callsSucceeded, 3)
  assert.equal(m.callsFailed, 1)
  assert.deepEqual(m.failuresByCode, { ERR_CHATGPT_HTTP: 1 })
  assert.equal(m.attempts, 5)
  assert.equal(m.retries, 2)
  assert.equal(m.rateLimitedResponses, 1)
  assert.equal(m.cacheHits, 1)
  assert.equal(m.latencyMs.count, 4)
  assert.ok(m.latencyMs.p50 > 0 && m.latencyMs.p99 >= m.latencyMs.p50)
  assert.equal(m.timeToFirstTokenMs.count, 1)
  assert.equal(m.completionTokens, 16)
  assert.ok(m.tokenUtilization > 0 && m.tokenUtilization < 1)
  assert.equal(m.breakerState, 'closed')
  assert.equal(m.keys.length, 1)
  assert.ok(!JSON.stringify(m).includes('sk-test-0123456789abcdef'))
  api.resetMetrics()
  assert.equal(api.metrics().callsStarted, 0)
  assert.equal(api.metrics().latencyMs.count, 0)
})

test('metricsText is valid Prometheus text exposition', async () => {
  const api = clientFor(sim)
  await api.sendMessage('prometheus')
  const text = api.metricsText()
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+$/
  const declared = new Set()
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# TYPE ')) {
      declared.add(line.split(' ')[2])
      continue
    }
    if (line.startsWith('#')) continue
    assert.match(line, sample)
    const name = line.split(/[{ ]/)[0]
    assert.ok([...declared].some((d) => name === d || name.startsWith(`${d}_`)), `${name} has a TYPE`)
  }
  assert.match(text, /chatgpt_native_calls_total\{outcome="succeeded"\} 1/)
  assert.match(text, /chatgpt_native_request_duration_seconds\{quantile="0.99"\}/)
})
