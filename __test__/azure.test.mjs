// Azure OpenAI: the `azure` option and `apiBaseUrl` with a query, against the simulator (which
// serves Azure's deployment paths and accepts the `api-key` header) and a raw node:http server
// that records what the client sent.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'

import { ChatGPTAPI } from '../index.js'
import { API_KEY, rejection, startSimulator, thrown } from './helpers.mjs'

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})

/** A server answering every request with one completion, recording URLs and headers. */
async function startRecorder() {
  const seen = []
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      seen.push({ url: req.url, headers: req.headers })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(COMPLETION)
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { origin: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() }
}

test('azure sends to the deployment path with api-version and the key in api-key, never Authorization', async (t) => {
  const server = await startRecorder()
  t.after(server.close)
  const api = new ChatGPTAPI({
    apiKey: API_KEY,
    azure: { baseUrl: server.origin, deployment: 'gpt-4o-mini', apiVersion: '2024-10-21' },
  })
  assert.equal(api.apiBaseUrl, `${server.origin}/openai/deployments/gpt-4o-mini?api-version=2024-10-21`)
  assert.equal((await api.sendMessage('hi')).text, 'hello')
  await api.warmup()
  const [chat, models] = server.seen
  assert.equal(chat.url, '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21')
  assert.equal(chat.headers['api-key'], API_KEY)
  assert.equal(chat.headers.authorization, undefined)
  assert.equal(models.url, '/openai/deployments/gpt-4o-mini/models?api-version=2024-10-21')
  assert.equal(models.headers['api-key'], API_KEY)
})

test('an apiBaseUrl query is kept after /chat/completions', async (t) => {
  const server = await startRecorder()
  t.after(server.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: `${server.origin}/openai/deployments/d/?api-version=2024-10-21` })
  await api.sendMessage('hi', { stream: false })
  assert.equal(server.seen[0].url, '/openai/deployments/d/chat/completions?api-version=2024-10-21')
  assert.equal(server.seen[0].headers.authorization, `Bearer ${API_KEY}`)
})

test('the simulator answers an azure client, streamed and not, and refuses a wrong api-key', async (t) => {
  const sim = await startSimulator()
  t.after(() => sim.close())
  const azure = { baseUrl: sim.url.replace(/\/v1$/, ''), deployment: 'dep', apiVersion: '2024-10-21' }
  const api = new ChatGPTAPI({ apiKey: API_KEY, azure, systemMessage: '' })
  const plain = await api.sendMessage('hello there')
  assert.ok(plain.text.length > 0)
  const deltas = []
  const streamed = await api.sendMessage('hello there', { onProgress: (p) => deltas.push(p.delta) })
  assert.equal(streamed.text, plain.text)
  assert.ok(deltas.length > 1)
  const wrong = new ChatGPTAPI({ apiKey: 'sk-wrong-key', azure, maxRetries: 0 })
  const err = await rejection(wrong.sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
})

test('bad azure options throw naming the option', () => {
  const base = { deployment: 'd', apiVersion: '2024-10-21' }
  for (const [azure, named] of [
    [{ ...base }, /azure\.resource/],
    [{ ...base, resource: 'a', baseUrl: 'http://127.0.0.1:1' }, /azure\.resource/],
    [{ ...base, resource: 'a/b' }, /azure\.resource/],
    [{ ...base, resource: 'a', deployment: '../x' }, /azure\.deployment/],
    [{ resource: 'a', apiVersion: '2024-10-21' }, /azure\.deployment/],
    [{ ...base, resource: 'a', apiVersion: 'x&y=1' }, /azure\.apiVersion/],
    [{ ...base, baseUrl: 'ftp://x' }, /azure\.baseUrl/],
    [{ ...base, resource: 'a', region: 'x' }, /region/],
  ]) {
    const err = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, azure }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, named)
  }
  const both = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: 'http://127.0.0.1:1', azure: { ...base, resource: 'a' } }))
  assert.equal(both.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(both.message, /apiBaseUrl/)
})
