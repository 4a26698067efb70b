// Lone UTF-16 surrogates from the server: a pair split across stream chunks arrives as one
// character, an unpaired surrogate becomes U+FFFD, and no reply fails for either.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { once } from 'node:events'
import { ChatGPTAPI } from '../index.js'

/** A raw server answering every request with `respond(req, res)`; returns a client for it. */
async function serve(respond, t) {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => respond(req, res))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  return new ChatGPTAPI({
    apiKey: 'sk-surrogates',
    apiBaseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    systemMessage: '',
    cache: false,
    maxRetries: 0,
  })
}

/**
 * Streams `units` as one delta each, as servers that split every emoji do: JSON.stringify
 * writes a lone surrogate as a `\udxxx` escape. Each event is its own write.
 */
function streamUnits(units, { finish = true } = {}) {
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    for (const content of units) {
      res.write(`data: ${JSON.stringify({ id: 'c1', choices: [{ index: 0, delta: { content } }] })}\n\n`)
    }
    if (finish) {
      res.write(`data: ${JSON.stringify({ id: 'c1', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`)
    }
    res.end('data: [DONE]\n\n')
  }
}

/** The UTF-16 code units of `text`, each as a (possibly lone-surrogate) string. */
const codeUnits = (text) => Array.from({ length: text.length }, (_, i) => text[i])

test('a surrogate pair split across stream chunks arrives whole in onProgress and text', async (t) => {
  const expected = 'Party 🎉 time 😀👍🏽 done'
  const api = await serve(streamUnits(codeUnits(expected)), t)
  const deltas = []
  const reply = await api.sendMessage('celebrate', { onProgress: (p) => deltas.push(p.delta) })
  assert.equal(reply.text, expected)
  assert.equal(deltas.join(''), expected)
  for (const d of deltas) {
    assert.equal(d.isWellFormed(), true, `delta ${JSON.stringify(d)} holds half a character`)
  }
})

test('unpaired surrogates become U+FFFD and the stream completes', async (t) => {
  const units = ['a', '\ud83c', 'b', '\udf89', 'c', '\ud83c']
  const api = await serve(streamUnits(units), t)
  const deltas = []
  const reply = await api.sendMessage('odd', { onProgress: (p) => deltas.push(p.delta) })
  assert.equal(reply.text, 'a\ufffdb\ufffdc\ufffd')
  assert.equal(deltas.join(''), reply.text)
  assert.equal(reply.finishReason, 'stop')
})

test('a complete reply with lone surrogates resolves, and its detail keeps them', async (t) => {
  const content = 'x\ud83cy 🎉 \udf89'
  const api = await serve((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ id: 'c2', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }))
  }, t)
  const reply = await api.sendMessage('complete')
  assert.equal(reply.text, 'x\ufffdy 🎉 \ufffd')
  assert.equal(reply.detail.choices[0].message.content, content)
})

test('an error body with a lone surrogate still reports the server error', async (t) => {
  const api = await serve((req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { message: 'bad \ud83c input', type: 'invalid_request_error', code: 'bad_input' } }))
  }, t)
  const err = await api.sendMessage('bad').then(
    () => assert.fail('expected a rejection'),
    (e) => e,
  )
  assert.equal(err.statusCode, 400)
  assert.equal(err.type, 'invalid_request_error')
  assert.equal(err.errorCode, 'bad_input')
})
