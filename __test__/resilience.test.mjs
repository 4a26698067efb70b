// Retries, concurrency and queueing, rate limits, the circuit breaker and the key pool, against
// the simulator's scripted faults and counters.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator } from '../index.js'
import { startSimulator, clientFor, rejection, until, API_KEY } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 4 })
})
after(() => sim.close())

const fast = { retryBaseMs: 5, retryMaxMs: 20 }

async function requestsDuring(fn, server = sim) {
  server.resetStats()
  const result = await fn()
  return { result, requests: server.stats().chatRequests }
}

test('500, 500, 200 succeeds after 2 retries', async () => {
  sim.enqueueFault({ kind: 'status', status: 500 })
  sim.enqueueFault({ kind: 'status', status: 503 })
  const { result, requests } = await requestsDuring(() => clientFor(sim, fast).sendMessage('retry me'))
  assert.equal(result.finishReason, 'stop')
  assert.equal(requests, 3)
})

test('rejects with the last status and the attempt count after maxRetries', async () => {
  for (let i = 0; i < 3; i++) sim.enqueueFault({ kind: 'status', status: 502 })
  const { result: err, requests } = await requestsDuring(() => rejection(clientFor(sim, fast).sendMessage('x')))
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assert.equal(err.statusCode, 502)
  assert.equal(err.attempts, 3)
  assert.match(err.message, /after 3 attempts/)
  assert.equal(requests, 3)
})

test('rejects with ERR_CHATGPT_RATE_LIMITED after maxRetries', async () => {
  for (let i = 0; i < 2; i++) sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5' })
  const err = await rejection(clientFor(sim, { ...fast, maxRetries: 1 }).sendMessage('x'))
  assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
  assert.equal(err.attempts, 2)
})

for (const [name, fault, code] of [
  ['401', { kind: 'status', status: 401 }, 'ERR_CHATGPT_AUTH'],
  ['400', { kind: 'status', status: 400 }, 'ERR_CHATGPT_HTTP'],
  ['404', { kind: 'status', status: 404 }, 'ERR_CHATGPT_HTTP'],
  ['429 insufficient_quota', { kind: 'status', status: 429, code: 'insufficient_quota' }, 'ERR_CHATGPT_INSUFFICIENT_QUOTA'],
  ['malformed body', { kind: 'malformed' }, 'ERR_CHATGPT_BAD_RESPONSE'],
]) {
  test(`does not retry a ${name}`, async () => {
    sim.enqueueFault(fault)
    const { result: err, requests } = await requestsDuring(() => rejection(clientFor(sim, fast).sendMessage('x')))
    assert.equal(err.code, code)
    assert.equal(requests, 1)
    assert.equal(err.attempts, 1)
  })
}

test('x-should-retry: false forbids a retry and true forces one', async () => {
  sim.enqueueFault({ kind: 'status', status: 503, shouldRetry: false })
  const { requests } = await requestsDuring(() => rejection(clientFor(sim, fast).sendMessage('x')))
  assert.equal(requests, 1)
  sim.enqueueFault({ kind: 'status', status: 400, shouldRetry: true })
  const { result } = await requestsDuring(() => clientFor(sim, fast).sendMessage('x'))
  assert.equal(result.finishReason, 'stop')
})

test('waits for retry-after-ms on a 429 before retrying', async () => {
  sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '300' })
  const started = performance.now()
  const reply = await clientFor(sim, fast).sendMessage('x')
  assert.equal(reply.finishReason, 'stop')
  assert.ok(performance.now() - started >= 290, 'the server-requested wait was honoured')
})

test('a retry that cannot finish within timeoutMs is not started', async () => {
  sim.enqueueFault({ kind: 'status', status: 503, retryAfter: '5' })
  const { result: err, requests } = await requestsDuring(() => rejection(clientFor(sim, { timeoutMs: 1000 }).sendMessage('x')))
  assert.equal(err.code, 'ERR_CHATGPT_HTTP', 'fails with the real error, not a timeout')
  assert.equal(requests, 1)
})

test('attemptTimeoutMs bounds one attempt and the call retries', async () => {
  sim.enqueueFault({ kind: 'stall' })
  const { result, requests } = await requestsDuring(() => clientFor(sim, { ...fast, attemptTimeoutMs: 100 }).sendMessage('x'))
  assert.equal(result.finishReason, 'stop')
  assert.equal(requests, 2)
})

test('a connection reset is retried', async () => {
  sim.enqueueFault({ kind: 'reset' })
  const { result, requests } = await requestsDuring(() => clientFor(sim, fast).sendMessage('x'))
  assert.equal(result.finishReason, 'stop')
  assert.equal(requests, 2)
})

test('a stream that fails before the first delta is retried; after it, it is not', async () => {
  sim.enqueueFault({ kind: 'disconnect', afterChunks: 0 })
  const first = await requestsDuring(() => clientFor(sim, fast).sendMessage('x', { onProgress: () => {} }))
  assert.equal(first.result.finishReason, 'stop')
  assert.equal(first.requests, 2)

  sim.enqueueFault({ kind: 'errorEvent', message: 'overloaded', code: 'rate_limit_exceeded' })
  const event = await requestsDuring(() => clientFor(sim, fast).sendMessage('x', { onProgress: () => {} }))
  assert.equal(event.result.finishReason, 'stop', 'a 429 arriving as the first stream event is retried')
  assert.equal(event.requests, 2)

  sim.enqueueFault({ kind: 'disconnect', afterChunks: 2 })
  const deltas = []
  const late = await requestsDuring(() => rejection(clientFor(sim, fast).sendMessage('x', { onProgress: (p) => deltas.push(p.delta) })))
  assert.equal(late.result.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(late.result.partialText, deltas.join(''))
  assert.equal(late.requests, 1)
})

test('never has more than maxConcurrency requests in flight', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 40 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxConcurrency: 3 })
    await Promise.all(Array.from({ length: 15 }, (_, i) => api.sendMessage(`c${i}`)))
    assert.equal(slow.stats().maxInFlight, 3)
    assert.equal(slow.stats().chatRequests, 15)
  } finally {
    await slow.close()
  }
})

test('rejects with ERR_CHATGPT_QUEUE_FULL at once when maxQueue calls already wait', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 100 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxConcurrency: 1, maxQueue: 2 })
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => api.sendMessage(`q${i}`)))
    const rejected = results.filter((r) => r.status === 'rejected')
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3)
    assert.equal(rejected.length, 2)
    for (const r of rejected) assert.equal(r.reason.code, 'ERR_CHATGPT_QUEUE_FULL')
    assert.equal(slow.stats().chatRequests, 3)
  } finally {
    await slow.close()
  }
})

test('aborting a queued call removes it from the queue', async () => {
  // The running call holds the only slot for 500 ms, so the second one surely waits in the queue.
  const slow = await ChatGPTSimulator.start({ ttftMs: 500 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxConcurrency: 1, maxQueue: 1 })
    const running = api.sendMessage('running')
    const controller = new AbortController()
    const queued = api.sendMessage('queued', { abortSignal: controller.signal })
    await until(() => api.metrics().queued === 1, 'the second call to wait in the queue')
    controller.abort()
    assert.equal((await rejection(queued)).code, 'ABORT_ERR')
    // The queue has room again: this call waits instead of being rejected.
    const next = api.sendMessage('next')
    await Promise.all([running, next])
    assert.equal(slow.stats().chatRequests, 2)
  } finally {
    await slow.close()
  }
})

test('a request whose estimate exceeds tokensPerMinute fails at once with ERR_CHATGPT_REQUEST_TOO_LARGE', async () => {
  const api = clientFor(sim, { rateLimit: { tokensPerMinute: 100 }, maxResponseTokens: 200 })
  const { result: err, requests } = await requestsDuring(() => rejection(api.sendMessage('hello')))
  assert.equal(err.code, 'ERR_CHATGPT_REQUEST_TOO_LARGE')
  assert.equal(requests, 0)
})

test('a request that fits tokensPerMinute by its exact count is sent, even if its byte length would not fit', async () => {
  // 40 words: about 47 prompt tokens but 210 bytes. With 1,000 reply tokens the exact estimate
  // (~1,047) fits 1,100 tokens per minute; a byte-based upper bound (~1,210) would not.
  const api = clientFor(sim, { rateLimit: { tokensPerMinute: 1100 }, maxModelTokens: 4000, maxResponseTokens: 1000 })
  const reply = await api.sendMessage('word '.repeat(40).trim())
  assert.equal(reply.role, 'assistant')
})

test('paces sends to requestsPerMinute', async () => {
  // The bucket starts full (120); three more requests need 1.5 s of refill at 2 per second.
  const api = clientFor(sim, { rateLimit: { requestsPerMinute: 120 } })
  sim.resetStats()
  const started = performance.now()
  await Promise.all(Array.from({ length: 123 }, (_, i) => api.sendMessage(`paced ${i}`)))
  assert.ok(performance.now() - started >= 1200, 'the last three waited for the refill')
  assert.equal(sim.stats().chatRequests, 123)
})

test('learns the server limit from 429s and x-ratelimit headers, so a burst succeeds without a 429 storm', async () => {
  const limited = await ChatGPTSimulator.start({ rateLimitRpm: 120 })
  try {
    // Retries absorb the few 429s of requests already in flight when the limit was learned; the
    // assertion below is about their number, not about retries running out.
    const api = clientFor(limited, { apiKey: 'any', maxRetries: 8 })
    const started = performance.now()
    const results = await Promise.all(Array.from({ length: 130 }, (_, i) => api.sendMessage(`b${i}`)))
    assert.equal(results.length, 130)
    // 130 requests against 120/min: the last 10 had to wait for the server's refill (2 per
    // second), whether the limit was learned from a 429 or from x-ratelimit headers first.
    assert.ok(performance.now() - started >= 4000, 'the excess was paced, not rejected')
    // A storm would be hundreds: every waiting request retrying blindly every few hundred ms.
    const { rateLimited } = limited.stats()
    assert.ok(rateLimited <= 30, `few 429s, got ${rateLimited}`)
  } finally {
    await limited.close()
  }
})

test('the circuit breaker opens after repeated 5xx, fails fast, then half-opens after resetTimeoutMs', async () => {
  const api = clientFor(sim, {
    maxRetries: 0,
    circuitBreaker: { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeoutMs: 300 },
  })
  for (let i = 0; i < 4; i++) {
    sim.enqueueFault({ kind: 'status', status: 500 })
    assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_HTTP')
  }
  const open = await requestsDuring(() => rejection(api.sendMessage('x')))
  assert.equal(open.result.code, 'ERR_CHATGPT_CIRCUIT_OPEN')
  assert.equal(open.requests, 0, 'fails without calling the upstream')
  // Time is what is tested: the circuit half-opens once resetTimeoutMs (300) has passed.
  await new Promise((r) => setTimeout(r, 350))
  // Half-open: one probe; its failure reopens the circuit.
  sim.enqueueFault({ kind: 'status', status: 500 })
  assert.equal((await rejection(api.sendMessage('probe'))).code, 'ERR_CHATGPT_HTTP')
  assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_CIRCUIT_OPEN')
  await new Promise((r) => setTimeout(r, 350))
  // A successful probe closes it again.
  assert.equal((await api.sendMessage('probe')).finishReason, 'stop')
  assert.equal((await api.sendMessage('closed')).finishReason, 'stop')
})

test('the circuit breaker is on by default: 20 upstream failures in 10 s open it', async () => {
  const api = clientFor(sim, { maxRetries: 0 })
  for (let i = 0; i < 20; i++) {
    sim.enqueueFault({ kind: 'status', status: 503 })
    assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_HTTP')
  }
  assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_CIRCUIT_OPEN')
  const off = clientFor(sim, { maxRetries: 0, circuitBreaker: false })
  for (let i = 0; i < 25; i++) {
    sim.enqueueFault({ kind: 'status', status: 503 })
    assert.equal((await rejection(off.sendMessage('x'))).code, 'ERR_CHATGPT_HTTP')
  }
})

test('a burst to a healthy upstream with slow replies and some fast 5xx does not open the circuit', async () => {
  // The 5xx come back at once, the replies after 400 ms: the first outcomes are all failures.
  const slow = await startSimulator({ responseTokens: 4, ttftMs: 400, failureRate: 0.2, seed: 11 })
  try {
    const api = clientFor(slow, { maxRetries: 0 })
    const settled = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => api.sendMessage(`q${i}`)))
    const codes = new Map()
    for (const s of settled) {
      const code = s.status === 'fulfilled' ? 'ok' : s.reason.code
      codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    assert.equal(codes.get('ERR_CHATGPT_CIRCUIT_OPEN'), undefined, JSON.stringify([...codes]))
    assert.ok(codes.get('ERR_CHATGPT_HTTP') >= 20, `enough fast failures to have opened it: ${JSON.stringify([...codes])}`)
    assert.equal(api.metrics().breakerOpened, 0)
  } finally {
    await slow.close()
  }
})

test('4xx answers never open the circuit', async () => {
  const api = clientFor(sim, { maxRetries: 0, circuitBreaker: { volumeThreshold: 2, resetTimeoutMs: 10000 } })
  for (let i = 0; i < 5; i++) {
    sim.enqueueFault({ kind: 'status', status: 400 })
    assert.equal((await rejection(api.sendMessage('x'))).code, 'ERR_CHATGPT_HTTP')
  }
  assert.equal((await api.sendMessage('still closed')).finishReason, 'stop')
})

test('a 429 cools that key down and the retry moves to another key at once', async () => {
  const open = await ChatGPTSimulator.start()
  try {
    const api = clientFor(open, { apiKey: undefined, apiKeys: ['sk-key-one-0001', 'sk-key-two-0002'], ...fast })
    open.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5000' })
    const started = performance.now()
    const reply = await api.sendMessage('failover')
    assert.equal(reply.finishReason, 'stop')
    assert.ok(performance.now() - started < 2000, 'did not wait out the 5 s retry-after')
    assert.equal(open.stats().chatRequests, 2)
  } finally {
    await open.close()
  }
})

test('a 401 disables that key and the call fails over to the next', async () => {
  const picky = await ChatGPTSimulator.start({ apiKey: 'sk-good-key-0002' })
  try {
    const api = clientFor(picky, { apiKey: undefined, apiKeys: ['sk-revoked-key-01', 'sk-good-key-0002'] })
    const replies = []
    for (let i = 0; i < 4; i++) replies.push(await api.sendMessage(`k${i}`))
    assert.equal(replies.length, 4)
    // At most one request went to the revoked key, then never again.
    assert.ok(picky.stats().chatRequests <= 5)
  } finally {
    await picky.close()
  }
})

test('when every key is rejected the call fails with the 401, and later calls with ERR_CHATGPT_NO_KEY_AVAILABLE', async () => {
  const api = clientFor(sim, { apiKey: undefined, apiKeys: ['sk-bad-key-0001', 'sk-bad-key-0002'] })
  const err = await rejection(api.sendMessage('x'))
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
  assert.equal(err.statusCode, 401)
  assert.equal(err.attempts, 2, 'each key was tried once')
  const later = await requestsDuring(() => rejection(api.sendMessage('y')))
  assert.equal(later.result.code, 'ERR_CHATGPT_NO_KEY_AVAILABLE')
  assert.equal(later.requests, 0)
})

test('validates the resilience options', async () => {
  const { ChatGPTAPI, ChatGPTError } = await import('../index.js')
  const base = { apiKey: API_KEY, apiBaseUrl: sim.url }
  const cases = [
    [{ maxRetries: -1 }, /`maxRetries` to be a non-negative integer, got -1/],
    [{ maxConcurrency: 0 }, /`maxConcurrency`/],
    [{ retryBaseMs: 1000, retryMaxMs: 10 }, /`retryBaseMs`/],
    [{ rateLimit: { requestsPerMinute: -5 } }, /`rateLimit.requestsPerMinute`.*-5/],
    [{ circuitBreaker: 'on' }, /`circuitBreaker`/],
    [{ circuitBreaker: { errorThresholdPercentage: 150 } }, /errorThresholdPercentage/],
    [{ apiKey: undefined, apiKeys: [] }, /`apiKeys`/],
    [{ apiKeys: ['sk-a-0000000001'] }, /either `apiKey` or `apiKeys`/],
  ]
  for (const [options, pattern] of cases) {
    assert.throws(() => new ChatGPTAPI({ ...base, ...options }), (err) => err instanceof ChatGPTError && err.code === 'ERR_CHATGPT_INVALID_ARG' && pattern.test(err.message))
  }
})
