// The response cache: hits replay the original reply under a fresh id, keys cover every
// parameter, entries expire and stay within their bounds, and errors are never stored.
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
  // Time is what is tested: the entry outlives its 100 ms.
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
