// Per-call `headers` and `idempotencyKey`: what each attempt of a call sends, seen by a raw
// node:http server on 127.0.0.1 that records every request's headers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'

import { ChatGPTAPI } from '../index.js'
import { API_KEY, rejection } from './helpers.mjs'

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})

/** A server answering `statuses` in turn (then 200s), recording each request's headers. */
async function startServer(statuses = []) {
  const seen = []
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      seen.push({ headers: req.headers, url: req.url })
      const status = statuses.shift() ?? 200
      res.writeHead(status, { 'content-type': 'application/json', 'retry-after-ms': '1' })
      res.end(status === 200 ? COMPLETION : JSON.stringify({ error: { message: 'boom', type: 'server_error' } }))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}/v1`, seen, close: () => server.close() }
}

test('call headers are merged over the instance headers, the call winning whatever the case', async (t) => {
  const server = await startServer()
  t.after(server.close)
  const api = new ChatGPTAPI({
    apiKey: API_KEY,
    apiBaseUrl: server.url,
    headers: { 'X-Team': 'instance', 'X-Kept': 'instance' },
  })
  await api.sendMessage('hi', { headers: { 'x-team': 'call', 'X-Call-Only': '1' } })
  await api.sendMessage('hi again')
  const [first, second] = server.seen.map((s) => s.headers)
  assert.equal(first['x-team'], 'call')
  assert.equal(first['x-kept'], 'instance')
  assert.equal(first['x-call-only'], '1')
  assert.equal(first.authorization, `Bearer ${API_KEY}`)
  assert.equal(second['x-team'], 'instance', 'a call header does not outlive its call')
  assert.equal(second['x-call-only'], undefined)
})

test('the idempotency key is the same on every retry of a call, and only on that call', async (t) => {
  const server = await startServer([500])
  t.after(server.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url, retryBaseMs: 1, retryMaxMs: 1 })
  const reply = await api.sendMessage('hi', { idempotencyKey: 'call-42' })
  assert.equal(reply.text, 'hello')
  assert.equal(server.seen.length, 2, 'a 500 then the retry')
  assert.deepEqual(
    server.seen.map((s) => s.headers['idempotency-key']),
    ['call-42', 'call-42'],
  )
  await api.sendMessage('hi')
  assert.equal(server.seen[2].headers['idempotency-key'], undefined)
})

test('sendMany items take their own headers and idempotency keys', async (t) => {
  const server = await startServer()
  t.after(server.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url, maxConcurrency: 1 })
  await api.sendMany(
    [
      { text: 'a', idempotencyKey: 'k-a', headers: { 'x-item': 'a' } },
      { text: 'b', idempotencyKey: 'k-b' },
    ],
    { headers: { 'x-item': 'shared' } },
  )
  const byKey = Object.fromEntries(server.seen.map((s) => [s.headers['idempotency-key'], s.headers['x-item']]))
  assert.deepEqual(byKey, { 'k-a': 'a', 'k-b': undefined })
})

test('a call cannot set the key headers, and bad headers or keys name the option', async (t) => {
  const server = await startServer()
  t.after(server.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url })
  for (const headers of [{ Authorization: 'Bearer sk-other' }, { 'API-Key': 'sk-other' }, { 'bad name': 'x' }]) {
    const err = await rejection(api.sendMessage('hi', { headers }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /headers/)
    assert.doesNotMatch(err.message, /sk-other/)
  }
  for (const idempotencyKey of ['', 'a\nb', 'k'.repeat(257), 42]) {
    const err = await rejection(api.sendMessage('hi', { idempotencyKey }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /idempotencyKey/)
  }
  assert.equal(server.seen.length, 0, 'nothing was sent')
})

test('two items of a batch cannot share an idempotency key', async (t) => {
  const server = await startServer()
  t.after(server.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url })
  const err = await rejection(api.sendMany(['a', 'b'], { idempotencyKey: 'same' }))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(err.message, /idempotencyKey/)
  assert.equal(server.seen.length, 0)
})
