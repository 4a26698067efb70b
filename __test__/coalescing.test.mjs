// Coalesced calls (identical requests in flight share one upstream request, when the cache is
// on): every caller gets the reply or the failure, one reply accounts for the request and the
// others are cached, each caller keeps its own deadline and abort signal, and the shared request
// ends only when the last one leaves.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator } from '../index.js'
import { clientFor, rejection, whenInFlight, whenIdle } from './helpers.mjs'

let slow
before(async () => {
  // Answers only after 600 ms: long enough for the short deadlines below to pass first.
  slow = await ChatGPTSimulator.start({ ttftMs: 600 })
})
after(() => slow.close())

test('without the cache, identical concurrent calls each send their own request', async () => {
  const cases = [
    { api: clientFor(slow, { apiKey: 'any' }), options: {}, what: 'the default' },
    { api: clientFor(slow, { apiKey: 'any', cache: true }), options: { cache: false }, what: 'cache: false per call' },
  ]
  for (const { api, options, what } of cases) {
    slow.resetStats()
    const replies = await Promise.all([api.sendMessage('not shared', options), api.sendMessage('not shared', options)])
    assert.equal(slow.stats().chatRequests, 2, what)
    assert.deepEqual(
      replies.map((r) => r.cached),
      [false, false],
      what,
    )
    assert.equal(api.metrics().coalesced, 0, what)
  }
})

test('a joiner with a later deadline outlives the creator that timed out', async () => {
  slow.resetStats()
  const api = clientFor(slow, { apiKey: 'any', maxRetries: 0, cache: true })
  const short = api.sendMessage('deadline question', { timeoutMs: 200 })
  const long = api.sendMessage('deadline question', { timeoutMs: 10_000 })
  const err = await rejection(short)
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
  const reply = await long
  assert.equal(reply.cached, false)
  assert.ok(reply.text.length > 0)
  assert.equal(slow.stats().chatRequests, 1, 'one upstream request served both')
})

test('a creator with a later deadline outlives a joiner that timed out', async () => {
  slow.resetStats()
  const api = clientFor(slow, { apiKey: 'any', maxRetries: 0, cache: true })
  const long = api.sendMessage('second deadline question', { timeoutMs: 10_000 })
  const short = api.sendMessage('second deadline question', { timeoutMs: 200 })
  assert.equal((await rejection(short)).code, 'ERR_CHATGPT_TIMEOUT')
  assert.ok((await long).text.length > 0)
  assert.equal(slow.stats().chatRequests, 1)
})

test('the creator aborting leaves the shared request running for a joiner', async () => {
  slow.resetStats()
  const api = clientFor(slow, { apiKey: 'any', maxRetries: 0, cache: true })
  const controller = new AbortController()
  const creator = api.sendMessage('abort question', { abortSignal: controller.signal })
  const joiner = api.sendMessage('abort question')
  await whenInFlight(slow, 1)
  controller.abort()
  assert.equal((await rejection(creator)).code, 'ABORT_ERR')
  assert.ok((await joiner).text.length > 0)
  assert.equal(slow.stats().chatRequests, 1)
})

test('the shared request is cancelled when the last waiter leaves', async () => {
  slow.resetStats()
  const api = clientFor(slow, { apiKey: 'any', maxRetries: 0, cache: true })
  const controllers = [new AbortController(), new AbortController()]
  const calls = controllers.map((c) => api.sendMessage('abandoned question', { abortSignal: c.signal }))
  await whenInFlight(slow, 1)
  controllers[0].abort()
  assert.equal((await rejection(calls[0])).code, 'ABORT_ERR')
  assert.equal(slow.stats().inFlight, 1, 'still running for the second waiter')
  controllers[1].abort()
  assert.equal((await rejection(calls[1])).code, 'ABORT_ERR')
  await whenIdle(slow)
  assert.equal(api.metrics().inFlight, 0)
})

test('10 identical concurrent calls share one upstream request, and every streaming caller gets every delta', async () => {
  const sim = await ChatGPTSimulator.start({ ttftMs: 150, tokenDelayMs: 5, responseTokens: 6 })
  try {
    const api = clientFor(sim, { apiKey: 'any', cache: true })
    const deltas = Array.from({ length: 10 }, () => [])
    const replies = await Promise.all(
      deltas.map((list, i) => api.sendMessage('same question', i % 2 ? { onProgress: (p) => list.push(p.delta) } : { stream: true })),
    )
    assert.equal(sim.stats().chatRequests, 1)
    assert.equal(new Set(replies.map((r) => r.text)).size, 1)
    assert.equal(new Set(replies.map((r) => r.id)).size, 10, 'each caller has its own message id')
    for (let i = 1; i < 10; i += 2) assert.equal(deltas[i].join(''), replies[0].text)
    assert.equal(api.metrics().coalesced, 9)
    // One reply accounts for the request; the nine others cost nothing and saved its usage.
    const paid = replies.filter((r) => !r.cached)
    assert.equal(paid.length, 1)
    const { promptTokens, completionTokens, totalTokens } = paid[0].usage
    assert.ok(totalTokens > 0 && !('saved' in paid[0].usage))
    for (const r of replies.filter((r) => r.cached)) {
      assert.equal(r.usage.totalTokens, 0)
      assert.equal(r.usage.cached, true)
      assert.deepEqual(r.usage.saved, { promptTokens, completionTokens, totalTokens })
    }
    const m = api.metrics()
    assert.equal(m.promptTokens + m.completionTokens, promptTokens + completionTokens, 'the request is counted once')
    assert.equal(m.cacheTokensSaved, 9 * (promptTokens + completionTokens))
  } finally {
    await sim.close()
  }
})

test('a failure reaches every waiter and is not cached', async () => {
  const sim = await ChatGPTSimulator.start({ ttftMs: 100 })
  try {
    const api = clientFor(sim, { apiKey: 'any', maxRetries: 0, cache: true })
    // A malformed answer arrives after the 100 ms answer delay, so all five calls are waiting.
    sim.enqueueFault({ kind: 'malformed' })
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.sendMessage('shared failure')))
    assert.equal(sim.stats().chatRequests, 1)
    for (const r of results) {
      assert.equal(r.status, 'rejected')
      assert.equal(r.reason.code, 'ERR_CHATGPT_BAD_RESPONSE')
    }
    const again = await api.sendMessage('shared failure')
    assert.equal(again.cached, false)
    assert.equal(sim.stats().chatRequests, 2)
  } finally {
    await sim.close()
  }
})

test('aborting one waiter does not cancel the shared request for the others', async () => {
  const sim = await ChatGPTSimulator.start({ ttftMs: 200 })
  try {
    const api = clientFor(sim, { apiKey: 'any', cache: true })
    const controller = new AbortController()
    const aborted = api.sendMessage('shared', { abortSignal: controller.signal })
    const others = [api.sendMessage('shared'), api.sendMessage('shared')]
    await whenInFlight(sim, 1)
    controller.abort()
    assert.equal((await rejection(aborted)).code, 'ABORT_ERR')
    const replies = await Promise.all(others)
    assert.equal(replies.length, 2)
    assert.equal(sim.stats().chatRequests, 1)
  } finally {
    await sim.close()
  }
})
