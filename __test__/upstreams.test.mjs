// Upstream fallbacks (`upstreams`): which failures move a call to the next server and which end
// it, the model each server is asked for, `reply.upstream`, the errors of a call that failed
// everywhere, metrics by upstream, the deadline over the whole chain, and the option's checks.
// Three simulators stand in for three providers; faults are scripted per request.
import { test, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import { startSimulator, rejection, thrown, whenInFlight, API_KEY } from './helpers.mjs'

let a, b, c
before(async () => {
  ;[a, b, c] = await Promise.all([1, 2, 3].map(() => startSimulator({ responseTokens: 4 })))
})
after(() => Promise.all([a, b, c].map((sim) => sim.close())))
beforeEach(() => {
  for (const sim of [a, b, c]) {
    sim.clearFaults()
    sim.resetStats()
  }
})

const fast = { retryBaseMs: 1, retryMaxMs: 5 }

/** An upstream entry for the simulator `sim`. */
function upstream(sim, name, extra = {}) {
  return { name, apiBaseUrl: sim.url, apiKey: API_KEY, ...extra }
}

/** A client falling back from `a` to `b` (to `c` when asked), with no system message. */
function fallbackClient(options = {}, entries = [upstream(a, 'a'), upstream(b, 'b')]) {
  return new ChatGPTAPI({
    upstreams: entries,
    systemMessage: '',
    completionParams: { model: 'sim-gpt' },
    ...fast,
    ...options,
  })
}

const chats = (sim) => sim.stats().chatRequests

/** A port on 127.0.0.1 nothing listens on (bound, then released). */
async function closedPort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

test('retries spent on 5xx move the call to the next upstream, which answers and is named', async () => {
  for (let i = 0; i < 3; i++) a.enqueueFault({ kind: 'status', status: 503 })
  const api = fallbackClient()
  const reply = await api.sendMessage('hello')
  assert.equal(reply.upstream, 'b')
  assert.equal(reply.finishReason, 'stop')
  assert.equal(chats(a), 3, 'maxRetries 2: three attempts at a first')
  assert.equal(chats(b), 1)
  const [ma, mb] = api.metrics().upstreams
  assert.deepEqual(
    [ma.name, ma.requests, ma.failures, ma.fallbacks, ma.successes],
    ['a', 3, 1, 1, 0],
  )
  assert.deepEqual([mb.name, mb.requests, mb.failures, mb.fallbacks, mb.successes], ['b', 1, 0, 0, 1])
})

test('a healthy first upstream answers alone', async () => {
  const reply = await fallbackClient().sendMessage('hello')
  assert.equal(reply.upstream, 'a')
  assert.equal(chats(b), 0)
})

test('a refused connection falls back; an unnamed upstream is named by its index', async () => {
  const port = await closedPort()
  const api = fallbackClient({ maxRetries: 0 }, [
    { apiBaseUrl: `http://127.0.0.1:${port}/v1`, apiKey: API_KEY },
    { apiBaseUrl: b.url, apiKey: API_KEY },
  ])
  const reply = await api.sendMessage('hello')
  assert.equal(reply.upstream, '1')
  assert.deepEqual(
    api.metrics().upstreams.map((u) => u.name),
    ['0', '1'],
  )
})

test('a connection closed before any byte falls back after its retries', async () => {
  for (let i = 0; i < 2; i++) a.enqueueFault({ kind: 'reset' })
  const reply = await fallbackClient({ maxRetries: 1 }).sendMessage('hello')
  assert.equal(reply.upstream, 'b')
  assert.equal(chats(a), 2)
})

test('an open breaker sends calls straight to the next upstream', async () => {
  const api = fallbackClient({
    maxRetries: 0,
    circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeoutMs: 60000 },
  })
  a.enqueueFault({ kind: 'status', status: 500 })
  assert.equal((await api.sendMessage('first')).upstream, 'b')
  assert.equal(api.metrics().upstreams[0].breakerState, 'open')
  const reply = await api.sendMessage('second')
  assert.equal(reply.upstream, 'b')
  assert.equal(chats(a), 1, 'the open breaker kept the second call from a')
  assert.equal(api.metrics().upstreams[0].fallbacks, 2)
})

test('an upstream whose keys all cool down after 429s is skipped until they are back', async () => {
  // `a` accepts any key here, so its pool can have two.
  const open = await ChatGPTSimulator.start({ responseTokens: 4 })
  try {
    for (let i = 0; i < 2; i++) {
      open.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfter: '30' })
    }
    const api = fallbackClient({}, [
      { name: 'pool', apiBaseUrl: open.url, apiKeys: ['sk-one-0000', 'sk-two-0000'] },
      upstream(b, 'b'),
    ])
    const started = Date.now()
    assert.equal((await api.sendMessage('first')).upstream, 'b')
    assert.ok(Date.now() - started < 5000, 'no 30 s wait for a cooling key')
    assert.equal(open.stats().chatRequests, 2, 'each key was tried once')
    assert.equal((await api.sendMessage('second')).upstream, 'b')
    assert.equal(open.stats().chatRequests, 2, 'both keys still cooling: not asked again')
    const [pool] = api.metrics().upstreams
    assert.deepEqual(
      pool.keys.map((k) => k.cooling),
      [true, true],
    )
  } finally {
    await open.close()
  }
})

test('429 rate_limit_exceeded on a single key falls back once its retries are spent', async () => {
  for (let i = 0; i < 2; i++) {
    a.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5' })
  }
  const reply = await fallbackClient({ maxRetries: 1 }).sendMessage('hello')
  assert.equal(reply.upstream, 'b')
  assert.equal(chats(a), 2)
})

for (const [name, fault] of [
  ['401', { kind: 'status', status: 401 }],
  ['429 insufficient_quota', { kind: 'status', status: 429, code: 'insufficient_quota' }],
]) {
  test(`a ${name}, about the upstream's account rather than the request, falls back at once`, async () => {
    a.enqueueFault(fault)
    const reply = await fallbackClient().sendMessage('hello')
    assert.equal(reply.upstream, 'b')
    assert.equal(chats(a), 1, 'not retried there')
  })
}

for (const [name, fault] of [
  ['400', { kind: 'status', status: 400, type: 'invalid_request_error' }],
  ['404', { kind: 'status', status: 404, code: 'model_not_found' }],
  ['422', { kind: 'status', status: 422 }],
]) {
  test(`a ${name} caused by the request never falls back`, async () => {
    a.enqueueFault(fault)
    const err = await rejection(fallbackClient().sendMessage('hello'))
    assert.equal(err.code, 'ERR_CHATGPT_HTTP')
    assert.equal(err.statusCode, Number(name))
    assert.equal(err.upstream, 'a')
    assert.equal(err.cause, undefined)
    assert.equal(chats(b), 0)
  })
}

test('an abort never falls back', async () => {
  a.enqueueFault({ kind: 'delay', delayMs: 5000 })
  const controller = new AbortController()
  const call = fallbackClient().sendMessage('hello', { abortSignal: controller.signal })
  await whenInFlight(a, 1)
  controller.abort()
  const err = await rejection(call)
  assert.equal(err.code, 'ABORT_ERR')
  assert.equal(chats(b), 0)
})

test('a stream that fails after a delta is interrupted, never finished by another upstream', async () => {
  a.enqueueFault({ kind: 'disconnect', afterChunks: 2 })
  const deltas = []
  const err = await rejection(fallbackClient().sendMessage('hello', { onProgress: (p) => deltas.push(p.delta) }))
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.upstream, 'a')
  assert.equal(deltas.length, 2)
  assert.equal(chats(b), 0)
})

test('a stream that fails before its first delta falls back and streams from the next upstream', async () => {
  a.enqueueFault({ kind: 'disconnect', afterChunks: 0 })
  const deltas = []
  const reply = await fallbackClient({ maxRetries: 0 }).sendMessage('hello', {
    onProgress: (p) => deltas.push(p.delta),
  })
  assert.equal(reply.upstream, 'b')
  assert.equal(deltas.join(''), reply.text)
})

test("an upstream's model replaces the request's for that upstream only", async () => {
  a.enqueueFault({ kind: 'status', status: 500 })
  const api = fallbackClient({ maxRetries: 0 }, [upstream(a, 'a'), upstream(b, 'b', { model: 'backup-model' })])
  const reply = await api.sendMessage('hello')
  assert.equal(reply.upstream, 'b')
  assert.equal(reply.detail.model, 'backup-model', 'the simulator echoes the model it was asked for')
  a.enqueueFault({ kind: 'status', status: 400 })
  await rejection(api.sendMessage('again'))
  const healthy = await api.sendMessage('once more')
  assert.equal(healthy.upstream, 'a')
  assert.equal(healthy.detail.model, 'sim-gpt')
})

test('when every upstream fails, the error is the last one and the others are its causes', async () => {
  a.enqueueFault({ kind: 'status', status: 500 })
  b.enqueueFault({ kind: 'reset' })
  c.enqueueFault({ kind: 'status', status: 503 })
  const api = fallbackClient({ maxRetries: 0 }, [upstream(a, 'a'), upstream(b, 'b'), upstream(c, 'c')])
  const err = await rejection(api.sendMessage('hello'))
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assert.equal(err.statusCode, 503)
  assert.equal(err.upstream, 'c')
  assert.equal(err.attempts, 3)
  assert.equal(err.cause.code, 'ERR_CHATGPT_NETWORK')
  assert.equal(err.cause.upstream, 'b')
  assert.equal(err.cause.cause.statusCode, 500)
  assert.equal(err.cause.cause.upstream, 'a')
  assert.equal(err.cause.cause.cause, undefined)
  assert.deepEqual(
    api.metrics().upstreams.map((u) => [u.failures, u.fallbacks]),
    [
      [1, 1],
      [1, 1],
      [1, 0],
    ],
  )
})

test('a timed-out attempt falls back while the call has time left', async () => {
  a.enqueueFault({ kind: 'delay', delayMs: 5000 })
  const reply = await fallbackClient({ maxRetries: 0, attemptTimeoutMs: 100 }).sendMessage('hello')
  assert.equal(reply.upstream, 'b')
})

test("the call's timeoutMs covers the whole chain: it rejects on time, and nothing is left waiting", async () => {
  for (const sim of [a, b]) sim.enqueueFault({ kind: 'delay', delayMs: 5000 })
  const started = Date.now()
  const err = await rejection(
    fallbackClient({ maxRetries: 0, attemptTimeoutMs: 150, timeoutMs: 400 }).sendMessage('hello'),
  )
  const elapsed = Date.now() - started
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
  assert.ok(elapsed < 2000, `rejected after ${elapsed} ms`)
  assert.equal(chats(a), 1)
  assert.equal(chats(b), 1)
})

test('past the deadline a call does not move on to the next upstream', async () => {
  a.enqueueFault({ kind: 'delay', delayMs: 5000 })
  const err = await rejection(fallbackClient({ timeoutMs: 200 }).sendMessage('hello'))
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
  assert.equal(chats(b), 0)
})

test('a cached answer names the upstream that produced it', async () => {
  a.enqueueFault({ kind: 'status', status: 500 })
  const api = fallbackClient({ maxRetries: 0, cache: true })
  const first = await api.sendMessage('cache me')
  const again = await api.sendMessage('cache me')
  assert.equal(first.upstream, 'b')
  assert.equal(again.cached, true)
  assert.equal(again.upstream, 'b')
  assert.equal(chats(a) + chats(b), 2)
})

test('Prometheus text has one series per upstream; a plain instance has none and no reply.upstream', async () => {
  a.enqueueFault({ kind: 'status', status: 500 })
  const api = fallbackClient({ maxRetries: 0 })
  await api.sendMessage('hello')
  const text = api.metricsText()
  assert.match(text, /^chatgpt_native_upstream_fallbacks_total\{upstream="a"\} 1$/m)
  assert.match(text, /^chatgpt_native_upstream_fallbacks_total\{upstream="b"\} 0$/m)
  assert.match(text, /^chatgpt_native_upstream_requests_total\{upstream="b"\} 1$/m)
  assert.match(text, /^chatgpt_native_upstream_circuit_open\{upstream="a"\} 0$/m)
  api.resetMetrics()
  assert.equal(api.metrics().upstreams[0].requests, 0)

  const plain = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: a.url, systemMessage: '' })
  const reply = await plain.sendMessage('hello')
  assert.equal('upstream' in reply, false)
  assert.equal(plain.metrics().upstreams, undefined)
  assert.doesNotMatch(plain.metricsText(), /upstream/)
})

test('bad upstreams options are rejected naming the option and the value, never a key', () => {
  const good = upstream(a, 'a')
  const cases = [
    [{ upstreams: [good, { apiBaseUrl: 'ftp://x.example', apiKey: API_KEY }] }, '`upstreams[1].apiBaseUrl`', 'ftp://x.example'],
    [{ upstreams: [good, { apiKey: API_KEY }] }, '`upstreams[1].apiBaseUrl`'],
    [{ upstreams: [{ apiBaseUrl: a.url }] }, '`upstreams[0].apiKey`'],
    [{ upstreams: [{ ...good, apiKeys: [API_KEY] }] }, '`upstreams[0].apiKeys`'],
    [{ upstreams: [good], apiKey: API_KEY }, '`apiKey`'],
    [{ upstreams: [good], apiBaseUrl: a.url }, '`apiBaseUrl`'],
    [{ upstreams: [] }, '`upstreams`'],
    [{ upstreams: Array.from({ length: 17 }, (_, i) => upstream(a, `u${i}`)) }, '`upstreams`', '17'],
    [{ upstreams: 'http://x' }, '`upstreams`'],
    [{ upstreams: [good, 'http://x'] }, '`upstreams[1]`'],
    [{ upstreams: [good, upstream(b, 'a')] }, '`upstreams[1].name`', '"a"'],
    [{ upstreams: [{ ...good, name: '' }] }, '`upstreams[0].name`'],
    [{ upstreams: [{ ...good, model: '' }] }, '`upstreams[0].model`'],
    [{ upstreams: [{ ...good, modle: 'x' }] }, '`upstreams[0].modle`', '`upstreams[0].model`'],
    [{ upstreams: [{ ...good, rateLimit: { requestsPerMinute: -1 } }] }, '`upstreams[0].rateLimit.requestsPerMinute`'],
    [{ upstreams: [{ ...good, circuitBreaker: { errorThresholdPercentage: 101 } }] }, '`upstreams[0].circuitBreaker.errorThresholdPercentage`'],
    [{ upstreams: [{ ...good, azure: { resource: 'r' } }] }, '`upstreams[0].azure.deployment`'],
    [{ upstreams: [{ ...good, headers: { 'bad header': 'x' } }] }, '`upstreams[0].headers`'],
  ]
  for (const [options, ...expected] of cases) {
    const err = thrown(() => new ChatGPTAPI(options))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', err.message)
    for (const part of expected) assert.ok(err.message.includes(part), `${part} not in: ${err.message}`)
  }
  const secret = 'sk-secret with a space'
  for (const entry of [
    { apiBaseUrl: a.url, apiKey: secret },
    { apiBaseUrl: a.url, apiKeys: ['sk-fine-0000', secret] },
  ]) {
    const err = thrown(() => new ChatGPTAPI({ upstreams: [entry] }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.ok(!err.message.includes('sk-secret'), err.message)
    assert.match(err.message, /`upstreams\[0\]\.apiKeys?(\[1\])?`/)
  }
  const api = fallbackClient()
  assert.equal(thrown(() => (api.apiKey = 'sk-other-0000')).code, 'ERR_CHATGPT_INVALID_ARG')
})

test("keys of every upstream are scrubbed from a server's echo", async () => {
  const echo = 'sk-upstream-b-secret-0123'
  a.enqueueFault({ kind: 'status', status: 500 })
  const open = await ChatGPTSimulator.start({})
  try {
    open.enqueueFault({ kind: 'status', status: 500, message: `bad key ${echo}` })
    const api = fallbackClient({ maxRetries: 0 }, [upstream(a, 'a'), { name: 'b', apiBaseUrl: open.url, apiKey: echo }])
    const err = await rejection(api.sendMessage('hello'))
    assert.equal(err.upstream, 'b')
    assert.ok(!err.message.includes(echo), err.message)
  } finally {
    await open.close()
  }
})
