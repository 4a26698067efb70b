// sendMessage end to end against the simulator: results, usage, ids, streaming and non-streaming.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { ChatGPTAPI } from '../index.js'
import { startSimulator, clientFor, API_KEY } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 12 })
})
after(() => sim.close())

test('resolves with a chatgpt-compatible ChatMessage', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('Hello there', { conversationId: 'conv-1', messageId: 'user-1' })
  assert.equal(reply.role, 'assistant')
  assert.match(reply.id, /^chatcmpl-/)
  assert.equal(typeof reply.text, 'string')
  assert.ok(reply.text.length > 0)
  assert.equal(reply.parentMessageId, 'user-1')
  assert.equal(reply.conversationId, 'conv-1')
  assert.equal(reply.finishReason, 'stop')
  assert.match(reply.requestId, /^req_/)
  assert.equal(reply.detail.object, 'chat.completion')
  assert.equal(reply.detail.choices[0].message.content, reply.text)
})

test('reports the server usage, not an estimate', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('Count my tokens')
  assert.equal(reply.usage.completionTokens, 12)
  assert.equal(reply.usage.estimated, false)
  assert.equal(reply.usage.totalTokens, reply.usage.promptTokens + reply.usage.completionTokens)
  assert.deepEqual(
    { prompt_tokens: reply.usage.promptTokens, completion_tokens: 12, total_tokens: reply.usage.totalTokens },
    reply.detail.usage,
  )
})

test('generates a fresh user message id when none is given', async () => {
  const api = clientFor(sim)
  const a = await api.sendMessage('one')
  const b = await api.sendMessage('one')
  assert.match(a.parentMessageId, /^[0-9a-f-]{36}$/)
  assert.notEqual(a.parentMessageId, b.parentMessageId)
})

test('streams and non-streams the same answer for the same prompt', async () => {
  const api = clientFor(sim)
  const plain = await api.sendMessage('same prompt')
  const streamed = await api.sendMessage('same prompt', { stream: true })
  assert.equal(streamed.text, plain.text)
  assert.equal(streamed.id.startsWith('chatcmpl-'), true)
  assert.equal(streamed.usage.estimated, false, 'stream_options.include_usage is requested')
  assert.equal(streamed.usage.completionTokens, 12)
})

test('finishReason is length when max_tokens cuts the answer', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('long please', { completionParams: { max_tokens: 5 } })
  assert.equal(reply.finishReason, 'length')
  assert.equal(reply.usage.completionTokens, 5)
})

test('sends extra headers with every request', async () => {
  // The simulator reads `x-sim-response-tokens`, so a custom header visibly changes the answer.
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '3' } })
  const reply = await api.sendMessage('short please')
  assert.equal(reply.usage.completionTokens, 3)
})

test('every request carries the key, the organization, the JSON content type and extra headers', async () => {
  // A bare HTTP server that records the request's headers and answers a minimal completion.
  const seen = []
  const server = http.createServer((req, res) => {
    seen.push(req.headers)
    req.resume()
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id: 'c1', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const api = new ChatGPTAPI({
      apiKey: 'sk-wire-1',
      apiOrg: 'org-wire',
      apiBaseUrl: `http://127.0.0.1:${server.address().port}/v1`,
      headers: { 'x-extra': 'yes' },
      cache: false,
    })
    await api.sendMessage('one')
    await api.sendMessage('two')
    assert.equal(seen.length, 2)
    for (const h of seen) {
      assert.equal(h.authorization, 'Bearer sk-wire-1')
      assert.equal(h['openai-organization'], 'org-wire')
      assert.equal(h['content-type'], 'application/json')
      assert.equal(h['x-extra'], 'yes')
      assert.match(h['user-agent'], /^chatgpt-native\//)
    }
  } finally {
    server.close()
  }
})

test('replies in any script arrive intact, in text and in detail', async () => {
  const texts = ['plain ASCII reply', 'héllo wörld', '你好，世界', 'emoji 🎉 and \u2028 separators', 'quote " and \\ backslash']
  let i = 0
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.setHeader('content-type', 'application/json; charset=utf-8')
      res.end(JSON.stringify({ id: `c${i}`, choices: [{ index: 0, message: { role: 'assistant', content: texts[i++] }, finish_reason: 'stop' }] }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const api = new ChatGPTAPI({ apiKey: 'sk-x', apiBaseUrl: `http://127.0.0.1:${server.address().port}/v1`, cache: false })
    for (const expected of texts) {
      const reply = await api.sendMessage('say something')
      assert.equal(reply.text, expected)
      assert.equal(reply.detail.choices[0].message.content, expected)
    }
  } finally {
    server.close()
  }
})

test('falls back to OPENAI_API_KEY and OPENAI_BASE_URL', async () => {
  const saved = { key: process.env.OPENAI_API_KEY, url: process.env.OPENAI_BASE_URL }
  process.env.OPENAI_API_KEY = API_KEY
  process.env.OPENAI_BASE_URL = sim.url
  try {
    const api = new ChatGPTAPI({ completionParams: { model: 'sim-gpt' } })
    assert.equal(api.apiBaseUrl, sim.url)
    const reply = await api.sendMessage('from the environment')
    assert.equal(reply.finishReason, 'stop')
  } finally {
    for (const [k, v] of [['OPENAI_API_KEY', saved.key], ['OPENAI_BASE_URL', saved.url]]) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
})

test('defaults to the documented model and base URL', () => {
  const api = new ChatGPTAPI({ apiKey: 'sk-x', apiBaseUrl: 'https://api.openai.com/v1/' })
  assert.equal(api.model, 'gpt-4.1-mini')
  assert.equal(api.apiBaseUrl, 'https://api.openai.com/v1')
})

test('runs many calls concurrently over one client, each settling with its own reply', async () => {
  const api = clientFor(sim)
  // Results are settled in batches on the JavaScript thread: each must still reach its own call.
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => api.sendMessage(`prompt ${i}`, { messageId: `m${i}` })))
  assert.equal(replies.length, 200)
  assert.equal(new Set(replies.map((r) => r.id)).size, 200)
  replies.forEach((r, i) => assert.equal(r.parentMessageId, `m${i}`))
})

test('a call in flight keeps Node running until it settles, and an idle client lets Node exit', async () => {
  const slow = await startSimulator({ ttftMs: 300 })
  try {
    // Nothing but the call keeps the child's event loop alive (the simulator is in this process).
    const script = `
      const { ChatGPTAPI } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))})
      const api = new ChatGPTAPI({ apiKey: ${JSON.stringify(API_KEY)}, apiBaseUrl: process.argv[1], systemMessage: '' })
      api.sendMessage('hello').then((m) => console.log('settled', m.role))
    `
    const child = spawn(process.execPath, ['-e', script, slow.url], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const [code, signal] = await once(child, 'exit')
    clearTimeout(killer)
    assert.equal(out.trim(), 'settled assistant')
    assert.equal(signal, null, 'the child exited on its own once the call settled')
    assert.equal(code, 0)
  } finally {
    slow.close()
  }
})

test('sends the user name and the system message in the prompt', async () => {
  const api = clientFor(sim)
  const plain = await api.sendMessage('who am I')
  const named = await api.sendMessage('who am I', { name: 'alice' })
  // OpenAI's formula: a name costs one token plus its own tokens.
  assert.equal(named.usage.promptTokens, plain.usage.promptTokens + 2)
  const withSystem = await api.sendMessage('who am I', { systemMessage: 'Be brief.' })
  assert.ok(withSystem.usage.promptTokens > plain.usage.promptTokens + 3)
  const defaultSystem = await clientFor(sim, { systemMessage: undefined }).sendMessage('who am I')
  assert.ok(defaultSystem.usage.promptTokens > withSystem.usage.promptTokens, 'the dated default system message is sent')
})
