// Every error code against the simulator's scripted faults, with the fields each carries.
// These clients do not retry (maxRetries: 0): retries are resilience.test.mjs's subject.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTError } from '../index.js'
import { startSimulator, clientFor, rejection, API_KEY } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 10 })
})
after(() => sim.close())

async function failWith(fault, options = {}, clientOptions = {}) {
  sim.enqueueFault(fault)
  const err = await rejection(clientFor(sim, { maxRetries: 0, ...clientOptions }).sendMessage('fail please', options))
  assert.ok(err instanceof ChatGPTError, `expected a ChatGPTError, got ${err}`)
  assert.ok(err instanceof Error)
  return err
}

test('rejects with ERR_CHATGPT_HTTP and the server error fields on a 500', async () => {
  const err = await failWith({ kind: 'status', status: 500, message: 'kaboom', type: 'server_error', code: 'oops', param: 'p' })
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assert.equal(err.statusCode, 500)
  assert.equal(err.statusText, 'Internal Server Error')
  assert.equal(err.type, 'server_error')
  assert.equal(err.errorCode, 'oops')
  assert.equal(err.param, 'p')
  assert.match(err.requestId, /^req_/)
  assert.equal(err.name, 'ChatGPTError')
})

test('rejects with ERR_CHATGPT_HTTP on a 400 and keeps the server message', async () => {
  const err = await failWith({ kind: 'status', status: 400, message: 'bad field', type: 'invalid_request_error' })
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assert.equal(err.statusCode, 400)
  assert.match(err.message, /bad field/)
})

test('rejects with ERR_CHATGPT_AUTH on a wrong key, without echoing the key', async () => {
  const secret = 'sk-wrong-key-never-echoed-123'
  const err = await rejection(clientFor(sim, { apiKey: secret }).sendMessage('hi'))
  assert.equal(err.attempts, 1, '401 is never retried')
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
  assert.equal(err.statusCode, 401)
  assert.equal(err.errorCode, 'invalid_api_key')
  assert.ok(!JSON.stringify({ ...err, message: err.message, stack: err.stack }).includes(secret))
})

test('rejects with ERR_CHATGPT_AUTH on a 403', async () => {
  const err = await failWith({ kind: 'status', status: 403, message: 'forbidden' })
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
  assert.equal(err.statusCode, 403)
})

test('rejects with ERR_CHATGPT_RATE_LIMITED on a 429 rate_limit_exceeded', async () => {
  const err = await failWith({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '10' })
  assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
  assert.equal(err.statusCode, 429)
  assert.equal(err.errorCode, 'rate_limit_exceeded')
})

test('rejects with ERR_CHATGPT_INSUFFICIENT_QUOTA on a 429 insufficient_quota', async () => {
  const err = await failWith({ kind: 'status', status: 429, code: 'insufficient_quota' })
  assert.equal(err.code, 'ERR_CHATGPT_INSUFFICIENT_QUOTA')
  assert.equal(err.type, 'insufficient_quota')
})

test('rejects with ERR_CHATGPT_NETWORK when the connection is reset before headers', async () => {
  const err = await failWith({ kind: 'reset' })
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
  assert.equal(err.statusCode, undefined)
})

test('rejects with ERR_CHATGPT_NETWORK when nothing listens', async () => {
  const err = await rejection(clientFor({ url: 'http://127.0.0.1:9/v1' }).sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
})

test('rejects with ERR_CHATGPT_NETWORK when a stream disconnects before any delta', async () => {
  const err = await failWith({ kind: 'disconnect', afterChunks: 0 }, { stream: true })
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
  assert.match(err.requestId, /^req_/)
})

test('rejects with ERR_CHATGPT_STREAM_INTERRUPTED and partialText when a stream disconnects after deltas', async () => {
  const deltas = []
  const err = await failWith({ kind: 'disconnect', afterChunks: 3 }, { onProgress: (p) => deltas.push(p.delta) })
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.match(err.message, /ERR_CHATGPT_NETWORK/)
  assert.equal(deltas.length, 3, 'deltas before the failure were delivered')
  assert.equal(err.partialText, deltas.join(''))
  assert.match(err.requestId, /^req_/)
})

test('rejects with ERR_CHATGPT_BAD_RESPONSE on a malformed chunk or body (the cause, once deltas were delivered)', async () => {
  const first = await failWith({ kind: 'malformed', afterChunks: 0 }, { stream: true })
  assert.equal(first.code, 'ERR_CHATGPT_BAD_RESPONSE')
  const streamed = await failWith({ kind: 'malformed', afterChunks: 2 }, { stream: true })
  assert.equal(streamed.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(streamed.cause.code, 'ERR_CHATGPT_BAD_RESPONSE')
  assert.ok(streamed.partialText.length > 0)
  const plain = await failWith({ kind: 'malformed' })
  assert.equal(plain.code, 'ERR_CHATGPT_BAD_RESPONSE')
})

test('rejects with ERR_CHATGPT_STREAM_INCOMPLETE when a stream ends without [DONE] or finish_reason', async () => {
  const err = await failWith({ kind: 'truncate', afterChunks: 0 }, { stream: true })
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INCOMPLETE')
})

test('a stream truncated after deltas is ERR_CHATGPT_STREAM_INTERRUPTED with the partial text', async () => {
  const deltas = []
  const err = await failWith({ kind: 'truncate', afterChunks: 4 }, { onProgress: (p) => deltas.push(p.delta) })
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.match(err.message, /ERR_CHATGPT_STREAM_INCOMPLETE/)
  assert.equal(deltas.length, 4)
  assert.equal(err.partialText, deltas.join(''))
})

test('accepts a stream that has a finish_reason but no [DONE]', async () => {
  sim.enqueueFault({ kind: 'noDone' })
  const reply = await clientFor(sim).sendMessage('no done', { stream: true })
  assert.equal(reply.finishReason, 'stop')
})

for (const sseEvent of [false, true]) {
  test(`rejects with the server's error from ${sseEvent ? 'an event: error' : 'a data: {"error"}'} after earlier deltas`, async () => {
    const deltas = []
    const err = await failWith(
      { kind: 'errorEvent', afterChunks: 2, sseEvent, message: 'model overloaded', type: 'server_error' },
      { onProgress: (p) => deltas.push(p.delta) },
    )
    // Deltas were delivered, so it cannot be retried: interrupted, with the server's error kept.
    assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
    assert.equal(err.type, 'server_error')
    assert.match(err.message, /model overloaded/)
    assert.equal(deltas.length, 2)
    assert.equal(err.partialText, deltas.join(''))
  })

  test(`rejects with ERR_CHATGPT_STREAM_ERROR from ${sseEvent ? 'an event: error' : 'a data: {"error"}'} before any delta`, async () => {
    const err = await failWith({ kind: 'errorEvent', sseEvent, message: 'model overloaded', type: 'server_error' }, { stream: true })
    assert.equal(err.code, 'ERR_CHATGPT_STREAM_ERROR')
    assert.equal(err.type, 'server_error')
  })
}

test('an error event saying rate_limit_exceeded is ERR_CHATGPT_RATE_LIMITED', async () => {
  const err = await failWith({ kind: 'errorEvent', code: 'rate_limit_exceeded', message: 'slow down' }, { stream: true })
  assert.equal(err.code, 'ERR_CHATGPT_RATE_LIMITED')
})

test('rejects with ERR_CHATGPT_TIMEOUT when the whole call exceeds timeoutMs', async () => {
  const started = Date.now()
  const err = await failWith({ kind: 'stall' }, { timeoutMs: 150 })
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
  assert.ok(Date.now() - started < 5000)
})

test('the instance timeoutMs applies when the call gives none', async () => {
  const err = await failWith({ kind: 'stall' }, {}, { timeoutMs: 150 })
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
})

test('timeoutMs: 0 means no timeout, per call over the instance bound and per instance', async () => {
  // Every answer takes 300 ms, past the instance's 100 ms bound, which the call's `timeoutMs: 0` lifts.
  const slow = await startSimulator({ ttftMs: 300 })
  try {
    const bounded = clientFor(slow, { maxRetries: 0, timeoutMs: 100 })
    assert.equal((await rejection(bounded.sendMessage('too slow'))).code, 'ERR_CHATGPT_TIMEOUT')
    assert.equal((await bounded.sendMessage('wait for me', { timeoutMs: 0 })).finishReason, 'stop')
    // Every place a deadline comes from a timeout: the call, an onProgress barrier, a batch's onItem.
    const unbounded = clientFor(slow, { maxRetries: 0, timeoutMs: 0 })
    assert.equal((await unbounded.sendMessage('wait again')).finishReason, 'stop')
    const deltas = []
    const streamed = await unbounded.sendMessage('stream it', { onProgress: async (p) => void deltas.push(p.delta) })
    assert.equal(deltas.join(''), streamed.text)
    const items = []
    const results = await unbounded.sendMany(['a', 'b'], { timeoutMs: 0, onItem: async (i) => void items.push(i) })
    assert.deepEqual(results.map((r) => r.ok), [true, true])
    assert.deepEqual(items.sort(), [0, 1])
  } finally {
    await slow.close()
  }
})

test('rejects with ERR_CHATGPT_STREAM_INTERRUPTED (cause ERR_CHATGPT_TIMEOUT) and partialText when a stream goes idle', async () => {
  const deltas = []
  const err = await failWith({ kind: 'stall', afterChunks: 2 }, { onProgress: (p) => deltas.push(p.delta) }, { idleTimeoutMs: 150 })
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.cause.code, 'ERR_CHATGPT_TIMEOUT')
  assert.match(err.cause.message, /idleTimeoutMs/)
  assert.match(err.message, /idleTimeoutMs/)
  assert.equal(deltas.length, 2)
  assert.equal(err.partialText, deltas.join(''))
})

test('rejects with ERR_CHATGPT_RESPONSE_TOO_LARGE past maxResponseBytes', async () => {
  const api = clientFor(sim, { maxResponseBytes: 2048, headers: { 'x-sim-response-tokens': '2000' } })
  const plain = await rejection(api.sendMessage('big', { completionParams: { max_tokens: 2000 } }))
  assert.equal(plain.code, 'ERR_CHATGPT_RESPONSE_TOO_LARGE')
  const streamed = await rejection(api.sendMessage('big', { stream: true, completionParams: { max_tokens: 2000 } }))
  assert.equal(streamed.code, 'ERR_CHATGPT_RESPONSE_TOO_LARGE')
})

test('no error message or field ever contains the API key', async () => {
  const faults = [
    { kind: 'status', status: 500 },
    { kind: 'status', status: 401 },
    { kind: 'reset' },
    { kind: 'malformed' },
    { kind: 'truncate', afterChunks: 1 },
  ]
  for (const fault of faults) {
    sim.enqueueFault(fault)
    const err = await rejection(clientFor(sim, { maxRetries: 0 }).sendMessage('x', { stream: fault.kind === 'truncate' }))
    const everything = JSON.stringify({ ...err }) + err.message + err.stack
    assert.ok(!everything.includes(API_KEY), `key leaked in ${fault.kind}`)
  }
})
