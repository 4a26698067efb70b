// The bundled simulator as users drive it from JavaScript: endpoints, faults, counters, lifecycle.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator, ChatGPTError } from '../index.js'
import { API_KEY, startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ model: 'sim-test-model', responseTokens: 8 })
})
after(() => sim.close())

const chat = (body, headers = {}) =>
  fetch(`${sim.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, ...headers },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }),
  })

test('listens on 127.0.0.1 and reports its url and port', () => {
  assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/)
  assert.equal(sim.url, `http://127.0.0.1:${sim.port}/v1`)
})

test('lists its model at GET /v1/models', async () => {
  const res = await fetch(`${sim.url}/models`, { headers: { authorization: `Bearer ${API_KEY}` } })
  assert.equal(res.status, 200)
  const body = await res.json()
  assert.equal(body.object, 'list')
  assert.equal(body.data[0].id, 'sim-test-model')
})

test('answers 401 with an OpenAI error body when the key is wrong', async () => {
  const res = await chat({}, { authorization: 'Bearer sk-nope' })
  assert.equal(res.status, 401)
  const body = await res.json()
  assert.equal(body.error.code, 'invalid_api_key')
  assert.ok(!JSON.stringify(body).includes('sk-nope'))
  assert.match(res.headers.get('x-request-id'), /^req_/)
})

test('applies a fault sent per request in the x-sim-fault header', async () => {
  const res = await chat({}, { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 503, retryAfter: '2' }) })
  assert.equal(res.status, 503)
  assert.equal(res.headers.get('retry-after'), '2')
})

test('queued faults are applied once each, in order', async () => {
  sim.enqueueFault({ kind: 'status', status: 500 })
  sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '25' })
  assert.equal(sim.pendingFaults, 2)
  assert.equal((await chat({})).status, 500)
  const limited = await chat({})
  assert.equal(limited.status, 429)
  assert.equal(limited.headers.get('retry-after-ms'), '25')
  assert.equal((await chat({})).status, 200)
  sim.enqueueFault({ kind: 'status' })
  sim.clearFaults()
  assert.equal(sim.pendingFaults, 0)
})

test('rejects a malformed fault with ERR_CHATGPT_INVALID_ARG', () => {
  assert.throws(() => sim.enqueueFault({ kind: 'explode' }), (err) => err instanceof ChatGPTError && err.code === 'ERR_CHATGPT_INVALID_ARG')
})

test('counts requests and the most requests in flight at once', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 150 })
  try {
    const api = clientFor(slow, { apiKey: 'any' })
    await Promise.all(Array.from({ length: 6 }, (_, i) => api.sendMessage(`parallel ${i}`)))
    const stats = slow.stats()
    assert.equal(stats.chatRequests, 6)
    assert.equal(stats.maxInFlight, 6)
    assert.equal(stats.inFlight, 0)
    assert.ok(stats.completionTokens > 0)
    slow.resetStats()
    assert.equal(slow.stats().chatRequests, 0)
  } finally {
    await slow.close()
  }
})

test('generates deterministic text: same prompt, same answer', async () => {
  const a = await (await chat({ messages: [{ role: 'user', content: 'determinism' }] })).json()
  const b = await (await chat({ messages: [{ role: 'user', content: 'determinism' }] })).json()
  const c = await (await chat({ messages: [{ role: 'user', content: 'something else' }] })).json()
  assert.equal(a.choices[0].message.content, b.choices[0].message.content)
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content)
})

test('paces streams with ttftMs and tokenDelayMs', async () => {
  const paced = await ChatGPTSimulator.start({ ttftMs: 100, tokenDelayMs: 20, responseTokens: 5 })
  try {
    const started = performance.now()
    const times = []
    await clientFor(paced, { apiKey: 'any' }).sendMessage('pace', { onProgress: () => times.push(performance.now() - started) })
    assert.equal(times.length, 5)
    assert.ok(times[0] >= 90, `first token after ttft, got ${times[0]}`)
    assert.ok(times[4] - times[0] >= 70, `tokens spaced by tokenDelayMs, got ${times[4] - times[0]}`)
  } finally {
    await paced.close()
  }
})

test('close() stops it listening and is idempotent', async () => {
  const temp = await ChatGPTSimulator.start()
  const url = temp.url
  await temp.close()
  await temp.close()
  const err = await rejection(clientFor({ url }, { apiKey: 'any' }).sendMessage('closed'))
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
})

test('rejects invalid options naming the option', async () => {
  await assert.rejects(ChatGPTSimulator.start({ port: 70000 }), /`port`/)
  await assert.rejects(ChatGPTSimulator.start({ ttftMs: -1 }), /`ttftMs`.*-1/)
})
