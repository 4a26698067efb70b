// The response cache: off unless asked for; hits replay the original reply under a fresh id and
// report zero usage with the original counts saved; keys cover every parameter, entries expire
// and stay within their bounds, and errors are never stored.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
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

test('the cache is off by default: a repeated request is sent again and neither reply is cached', async () => {
  const api = clientFor(sim)
  const first = await counted(() => api.sendMessage('sample me twice'))
  const second = await counted(() => api.sendMessage('sample me twice'))
  assert.deepEqual([first.requests, second.requests], [1, 1])
  assert.deepEqual([first.result.cached, second.result.cached], [false, false])
  for (const { result } of [first, second]) {
    assert.ok(result.usage.totalTokens > 0)
    assert.ok(!('cached' in result.usage) && !('saved' in result.usage), 'usage has no cached/saved')
  }
  const m = api.metrics()
  assert.deepEqual([m.cacheHits, m.cacheMisses, m.cacheEntries, m.cacheTokensSaved], [0, 0, 0, 0])
})

test('per call cache: true on an instance without a cache does nothing', async () => {
  const api = clientFor(sim)
  await api.sendMessage('no cache to use', { cache: true })
  const again = await counted(() => api.sendMessage('no cache to use', { cache: true }))
  assert.equal(again.requests, 1)
  assert.equal(again.result.cached, false)
  assert.equal(api.metrics().cacheEntries, 0)
})

test('cache: true serves a repeated request from the cache with a fresh id and the same text', async () => {
  const api = clientFor(sim, { cache: true })
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

test('a hit costs nothing: zero usage, cached, the original counts saved, the same detail', async () => {
  const api = clientFor(sim, { cache: true })
  const first = await api.sendMessage('what does it cost')
  const second = await api.sendMessage('what does it cost')
  const { promptTokens, completionTokens, totalTokens } = first.usage
  assert.ok(totalTokens > 0 && first.usage.estimated === false)
  assert.deepEqual(second.usage, {
    promptTokens: 0,
    completionTokens: 0,
    totalTokens: 0,
    estimated: false,
    cached: true,
    saved: { promptTokens, completionTokens, totalTokens },
  })
  assert.deepEqual(second.detail, first.detail)
  const m = api.metrics()
  assert.equal(m.cacheTokensSaved, promptTokens + completionTokens)
  assert.equal(m.promptTokens, promptTokens, 'the hit adds no usage')
  assert.equal(m.completionTokens, completionTokens)
  assert.match(api.metricsText(), new RegExp(`^chatgpt_native_cache_tokens_saved_total ${promptTokens + completionTokens}$`, 'm'))
  api.resetMetrics()
  assert.equal(api.metrics().cacheTokensSaved, 0)
})

test('a streamed hit reports the same usage shape', async () => {
  const api = clientFor(sim, { cache: true })
  const first = await api.sendMessage('stream what it costs', { stream: true })
  const second = await api.sendMessage('stream what it costs', { onProgress: () => {} })
  assert.equal(second.cached, true)
  assert.equal(second.usage.totalTokens, 0)
  assert.equal(second.usage.cached, true)
  assert.deepEqual(second.usage.saved, {
    promptTokens: first.usage.promptTokens,
    completionTokens: first.usage.completionTokens,
    totalTokens: first.usage.totalTokens,
  })
})

test('an options object turns the cache on', async () => {
  for (const cache of [{}, { maxEntries: 8 }]) {
    const api = clientFor(sim, { cache })
    await api.sendMessage('configured')
    const again = await counted(() => api.sendMessage('configured'))
    assert.equal(again.requests, 0, JSON.stringify(cache))
    assert.equal(again.result.cached, true)
  }
})

test('different parameters or messages miss', async () => {
  const api = clientFor(sim, { cache: true })
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
  // Time is what is tested: the entry outlives its 100 ms.
  await new Promise((r) => setTimeout(r, 150))
  const { result, requests } = await counted(() => api.sendMessage('expire me'))
  assert.equal(requests, 1)
  assert.equal(result.cached, false)
})

test('cache: false per call neither reads nor writes the cache', async () => {
  const api = clientFor(sim, { cache: true })
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
  const api = clientFor(sim, { cache: true })
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
  const api = clientFor(sim, { maxRetries: 0, cache: true })
  sim.enqueueFault({ kind: 'status', status: 500 })
  await rejection(api.sendMessage('fail then succeed'))
  const { result, requests } = await counted(() => api.sendMessage('fail then succeed'))
  assert.equal(requests, 1)
  assert.equal(result.cached, false)
})
