// Content parts (text and images) in sendMessage: sent as given, stored with the conversation,
// budgeted by OpenAI's image formula, and checked like every other argument.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { ChatGPTAPI, countMessageTokens } from '../index.js'
import { startSimulator, clientFor, rejection, API_KEY } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 5 })
})
after(() => sim.close())

/** A data URL of a PNG header claiming `width` x `height` pixels. */
function pngDataUrl(width, height) {
  const header = Buffer.alloc(33)
  Buffer.from('\x89PNG\r\n\x1a\n', 'latin1').copy(header, 0)
  header.writeUInt32BE(13, 8)
  header.write('IHDR', 12, 'latin1')
  header.writeUInt32BE(width, 16)
  header.writeUInt32BE(height, 20)
  return `data:image/png;base64,${header.toString('base64')}`
}

const PARTS = [
  { type: 'text', text: 'What is in these pictures?' },
  { type: 'image_url', image_url: { url: pngDataUrl(2048, 4096) } },
  { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'low' } },
  { type: 'image_url', image_url: { url: 'https://example.com/dog.png', detail: 'high' } },
  { type: 'text', text: 'Answer briefly.' },
]

/** A loopback server answering every chat request with "ok", keeping the bodies it got. */
async function recordingServer() {
  const bodies = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      bodies.push(JSON.parse(body))
      res.setHeader('content-type', 'application/json')
      res.end(
        JSON.stringify({
          id: 'c1',
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      )
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}/v1`
  return { bodies, url, close: () => new Promise((resolve) => server.close(resolve)) }
}

test('content parts are sent as given, and a follow-up sends them again from the store', async () => {
  const server = await recordingServer()
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url, systemMessage: '' })
    const first = await api.sendMessage(PARTS)
    assert.deepEqual(server.bodies[0].messages, [{ role: 'user', content: PARTS }])
    await api.sendMessage('And the second?', { parentMessageId: first.id })
    assert.deepEqual(server.bodies[1].messages, [
      { role: 'user', content: PARTS },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'And the second?' },
    ])
  } finally {
    await server.close()
  }
})

test('the simulator bills images by the formula the client budgets with', async () => {
  const api = clientFor(sim)
  const built = await api.buildMessages(PARTS)
  assert.deepEqual(built.messages, [{ role: 'user', content: PARTS }])
  const reply = await api.sendMessage(PARTS)
  assert.equal(reply.usage.estimated, false)
  assert.equal(reply.usage.promptTokens, built.numTokens)
  // 2048x4096 at high detail: 1105; low: 85; an http(s) URL at high detail: the 765 estimate.
  const textOnly = countMessageTokens([{ role: 'user', content: [PARTS[0], PARTS[4]] }])
  assert.equal(built.numTokens, textOnly + 1105 + 85 + 765)
  assert.equal(countMessageTokens([{ role: 'user', content: PARTS }]), built.numTokens)
})

test('text parts answer as the same text would', async () => {
  const api = clientFor(sim)
  const asParts = await api.sendMessage([
    { type: 'text', text: 'Hello' },
    { type: 'text', text: 'there' },
  ])
  const asText = await api.sendMessage('Hello\nthere')
  assert.equal(asParts.text, asText.text)
})

test('a JavaScript store keeps the text parts as text and the parts as content', async () => {
  const rows = new Map()
  const api = clientFor(sim, {
    getMessageById: async (id) => rows.get(id),
    upsertMessage: async (m) => void rows.set(m.id, structuredClone(m)),
  })
  const reply = await api.sendMessage(PARTS)
  const user = rows.get(reply.parentMessageId)
  assert.equal(user.text, 'What is in these pictures?\nAnswer briefly.')
  assert.deepEqual(user.content, PARTS)
  assert.equal(rows.get(reply.id).content, undefined)
  const built = await api.buildMessages('next', { parentMessageId: reply.id })
  assert.deepEqual(built.messages[0], { role: 'user', content: PARTS })
  // A row some other code wrote with a string `content` is read by its `text`.
  rows.set('legacy', { id: 'legacy', role: 'user', text: 'old text', content: 'ignored' })
  const legacy = await api.buildMessages('next', { parentMessageId: 'legacy' })
  assert.deepEqual(legacy.messages[0], { role: 'user', content: 'old text' })
})

test('bad content parts reject with ERR_CHATGPT_INVALID_ARG naming the field', async () => {
  const api = clientFor(sim)
  const cases = [
    [[], /`text`/],
    [[{ type: 'video', url: 'x' }], /`text\[0\]\.type`/],
    [[{ type: 'text' }], /`text\[0\]\.text`/],
    [[{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }], /`text\[0\]\.image_url\.url`/],
    [[{ type: 'image_url', image_url: { url: 'https://x.test/a.png', detail: 'max' } }], /`text\[0\]\.image_url\.detail`/],
    [[{ type: 'text', text: 'a', extra: true }], /`text\[0\]\.extra`/],
    [new Array(1001).fill({ type: 'text', text: 'a' }), /at most 1000/],
  ]
  for (const [content, named] of cases) {
    const err = await rejection(api.sendMessage(content))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, named)
  }
  const err = await rejection(api.sendMany([{ text: [{ type: 'nope' }] }]))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(err.message, /`inputs\[0\]\.text\[0\]\.type`/)
})

test('sendMessages sends the messages as given, with no system message, history or store', async () => {
  const server = await recordingServer()
  try {
    const rows = new Map()
    const api = new ChatGPTAPI({
      apiKey: API_KEY,
      apiBaseUrl: server.url,
      systemMessage: 'never sent by sendMessages',
      upsertMessage: (m) => void rows.set(m.id, m),
    })
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: PARTS },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '42' },
    ]
    const reply = await api.sendMessages(messages)
    assert.deepEqual(server.bodies[0].messages, messages)
    assert.equal(reply.text, 'ok')
    assert.equal(reply.parentMessageId, undefined)
    assert.ok(!('parentMessageId' in reply))
    assert.equal(rows.size, 0, 'nothing stored')
    assert.deepEqual(reply.history, { messages: 0, truncated: false })
  } finally {
    await server.close()
  }
})

test('sendMessages streams, is billed as counted, and bounds the prompt by the window', async () => {
  const api = clientFor(sim, { maxModelTokens: 2500, maxResponseTokens: 100 })
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: PARTS },
  ]
  const partials = []
  const reply = await api.sendMessages(messages, { onProgress: (p) => partials.push(p) })
  assert.ok(partials.length > 0)
  assert.equal(partials[0].parentMessageId, undefined)
  assert.equal(partials.at(-1).text, reply.text)
  assert.equal(reply.usage.promptTokens, countMessageTokens(messages))
  // Four images of unknown size (765 each) do not fit 2500 - 100 tokens.
  const err = await rejection(api.sendMessages([{ role: 'user', content: new Array(4).fill(PARTS[3]) }]))
  assert.equal(err.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
})

test('sendMessages rejects the conversation options and bad messages, naming them', async () => {
  const api = clientFor(sim)
  const hi = [{ role: 'user', content: 'hi' }]
  for (const name of ['parentMessageId', 'messageId', 'conversationId', 'systemMessage', 'name']) {
    const err = await rejection(api.sendMessages(hi, { [name]: 'x' }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.ok(err.message.includes(`\`${name}\``), err.message)
  }
  const cases = [
    ['hi', /`messages`/],
    [[], /`messages`/],
    [[{ role: 'robot', content: 'x' }], /`messages\[0\]\.role`/],
    [[{ role: 'user' }], /`messages\[0\]\.content`/],
    [[{ role: 'tool', content: '1' }], /`messages\[0\]\.tool_call_id`/],
    [[{ role: 'user', content: [{ type: 'text', text: 1 }] }], /`messages\[0\]\.content\[0\]\.text`/],
  ]
  for (const [messages, named] of cases) {
    const err = await rejection(api.sendMessages(messages))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, named)
  }
})

test('the response cache tells images and tool call ids apart', async () => {
  const api = clientFor(sim, { cache: true })
  const image = (url) => [{ type: 'text', text: 'Which animal?' }, { type: 'image_url', image_url: { url } }]
  assert.equal((await api.sendMessage(image('https://example.com/cat.png'))).cached, false)
  assert.equal((await api.sendMessage(image('https://example.com/cat.png'))).cached, true)
  assert.equal((await api.sendMessage(image('https://example.com/dog.png'))).cached, false)
  const answer = (id) => [
    { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: id, content: '42' },
  ]
  assert.equal((await api.sendMessages(answer('c1'))).cached, false)
  assert.equal((await api.sendMessages(answer('c1'))).cached, true)
  assert.equal((await api.sendMessages(answer('c2'))).cached, false)
})
