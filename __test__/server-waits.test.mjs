// Waits a server imposes: absurd `retry-after` values saturate instead of crashing or hanging,
// pauses are capped and fail a call at once when they outlast its deadline, and a reported
// `x-ratelimit-remaining-*: 0` is waited out until its reset even under a faster `rateLimit`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { ChatGPTSimulator } from '../index.js'
import { clientFor, completionJson, rejection, until } from './helpers.mjs'

let sim
before(async () => {
  // No key check: the key-pool rows use keys of their own.
  sim = await ChatGPTSimulator.start({ responseTokens: 4 })
})
after(() => sim.close())

const KEY_POOL = { apiKey: undefined, apiKeys: ['sk-pool-key-one-0001', 'sk-pool-key-two-0002'] }
const rateLimited = { kind: 'status', status: 429, code: 'rate_limit_exceeded' }

for (const [name, headers, options] of [
  ['retry-after: 1e20', { 'retry-after': '1e20' }, {}],
  ['retry-after-ms: 1e300', { 'retry-after-ms': '1e300' }, {}],
  ['retry-after: 1e19 with a key pool', { 'retry-after': '1e19' }, KEY_POOL],
  ['retry-after: the last HTTP date there is', { 'retry-after': 'Fri, 31 Dec 9999 23:59:59 GMT' }, {}],
]) {
  test(`a 429 with ${name} rejects at once with ERR_CHATGPT_RATE_LIMITED`, async () => {
    const api = clientFor(sim, { timeoutMs: 5000, cache: false, ...options })
    sim.enqueueFault({ ...rateLimited, retryAfter: headers['retry-after'], retryAfterMs: headers['retry-after-ms'] })
    sim.resetStats()
    const started = performance.now()
    const err = await rejection(api.sendMessage('absurd wait'))
    assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
    assert.equal(err.statusCode, 429)
    assert.ok(performance.now() - started < 2000, 'no wait for the absurd retry-after')
    assert.equal(sim.stats().chatRequests, 1)
  })

  test(`a 429 with ${name} rejects every caller sharing the request at once`, async () => {
    // The answer is held back until all three calls have joined the one request.
    const raw = await rawServer({ status: 429, body: RATE_LIMITED_BODY, headers, held: true })
    try {
      const api = clientFor({ url: raw.url }, { timeoutMs: 5000, cache: true, ...options })
      const started = performance.now()
      const pending = [1, 2, 3].map(() => rejection(api.sendMessage('shared absurd wait')))
      await until(() => api.metrics().coalesced === 2, 'the second and third calls to join the first')
      raw.release()
      const errors = await Promise.all(pending)
      for (const err of errors) assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
      assert.ok(performance.now() - started < 2000, 'no waiter was left to its timeout')
      assert.equal(raw.arrivals.length, 1, 'the three calls shared one request')
    } finally {
      await raw.close()
    }
  })
}

test('after a 429 asking for an hour, a call whose timeoutMs ends first fails at once, sending nothing', async () => {
  const api = clientFor(sim, { maxRetries: 0, cache: false })
  sim.enqueueFault({ ...rateLimited, retryAfter: '3600' })
  assert.equal((await rejection(api.sendMessage('first'))).code, 'ERR_CHATGPT_RATE_LIMITED')
  sim.resetStats()
  const started = performance.now()
  const err = await rejection(api.sendMessage('second', { timeoutMs: 2000 }))
  assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED', 'not ERR_CHATGPT_TIMEOUT after 2 s')
  assert.ok(performance.now() - started < 1000)
  assert.equal(sim.stats().chatRequests, 0)
})

const RATE_LIMITED_BODY = JSON.stringify({
  error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' },
})

const COMPLETION = completionJson('ok', { id: 'chatcmpl-raw' })

/** A loopback server answering every request with `status`, `headers` and `body` (a completion
 * by default); with `held`, only once `release()` is called. Records when each request arrived
 * and when each answer was sent. */
async function rawServer({ status = 200, headers = {}, body = COMPLETION, held = false }) {
  const arrivals = []
  const answers = []
  let released = !held
  const waiting = []
  const answer = (res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(body)
    answers.push(performance.now())
  }
  const server = http.createServer((req, res) => {
    arrivals.push(performance.now())
    req.resume()
    req.on('end', () => (released ? answer(res) : waiting.push(res)))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}/v1`
  const release = () => {
    released = true
    for (const res of waiting.splice(0)) answer(res)
  }
  const close = () => new Promise((resolve) => server.close(resolve))
  return { url, arrivals, answers, release, close }
}

test('a 200 with a request limit of 0 and an hour to reset: a call whose timeoutMs ends first fails at once', async () => {
  const raw = await rawServer({
    headers: {
      'x-ratelimit-limit-requests': '0',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '3600s',
    },
  })
  try {
    const api = clientFor({ url: raw.url })
    await api.sendMessage('first')
    const started = performance.now()
    const err = await rejection(api.sendMessage('second', { timeoutMs: 2000 }))
    assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
    assert.ok(performance.now() - started < 1000)
    assert.equal(raw.arrivals.length, 1)
  } finally {
    await raw.close()
  }
})

for (const [kind, rateLimit] of [
  ['requests', { requestsPerMinute: 6000 }],
  ['tokens', { tokensPerMinute: 1_000_000 }],
]) {
  test(`remaining ${kind} 0 with a 1 s reset holds the next send for the reset, even under a faster rateLimit`, async () => {
    const raw = await rawServer({
      headers: {
        [`x-ratelimit-remaining-${kind}`]: '0',
        [`x-ratelimit-reset-${kind}`]: '1s',
      },
    })
    try {
      const api = clientFor({ url: raw.url }, { rateLimit })
      await api.sendMessage('first')
      await api.sendMessage('second')
      assert.equal(raw.arrivals.length, 2)
      const held = raw.arrivals[1] - raw.answers[0]
      assert.ok(held >= 900, `the second request was sent ${held.toFixed(0)} ms after the reset was announced`)
    } finally {
      await raw.close()
    }
  })
}
