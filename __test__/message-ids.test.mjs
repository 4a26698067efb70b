// Message ids are unique within a store: a server that reuses one completion id for different
// replies must not mix conversations. The server's id stays in `detail`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { ChatGPTAPI } from '../index.js'

/** Answers every chat request with the same completion id and a reply naming the last prompt. */
function sameIdServer() {
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      const request = JSON.parse(body)
      const last = request.messages[request.messages.length - 1].content
      const text = `reply to ${last}`
      if (request.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        const chunk = (delta, finish) =>
          `data: ${JSON.stringify({ id: 'chatcmpl-same', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
        res.end(chunk({ role: 'assistant', content: text }, null) + chunk({}, 'stop') + 'data: [DONE]\n\n')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({
          id: 'chatcmpl-same',
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
        }),
      )
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

let server
let url
before(async () => {
  server = await sameIdServer()
  url = `http://127.0.0.1:${server.address().port}/v1`
})
after(() => server.close())

const client = () => new ChatGPTAPI({ apiKey: 'sk-test', apiBaseUrl: url, systemMessage: '', cache: false })

test('replies get their own ids even when the server repeats one, and conversations stay apart', async () => {
  const api = client()
  const a = await api.sendMessage('alpha')
  const b = await api.sendMessage('beta')
  assert.notEqual(a.id, b.id)
  assert.match(a.id, /^chatcmpl-/)
  assert.equal(a.detail.id, 'chatcmpl-same', "the server's id stays in detail")
  const built = await api.buildMessages('next', { parentMessageId: a.id })
  assert.deepEqual(
    built.messages.map((m) => [m.role, m.content]),
    [
      ['user', 'alpha'],
      ['assistant', 'reply to alpha'],
      ['user', 'next'],
    ],
  )
  const followUp = await api.sendMessage('next', { parentMessageId: b.id })
  assert.equal(followUp.history.messages, 2)
  assert.equal(followUp.text, 'reply to next')
})

test('a streamed reply and its onProgress partials carry the same id of ours', async () => {
  const api = client()
  const ids = []
  const first = await api.sendMessage('one', { onProgress: (p) => ids.push(p.id) })
  const second = await api.sendMessage('two', { onProgress: (p) => ids.push(p.id) })
  assert.notEqual(first.id, second.id)
  assert.deepEqual(ids, [first.id, second.id])
  assert.equal(second.detail.id, 'chatcmpl-same')
  const built = await api.buildMessages('three', { parentMessageId: first.id })
  assert.deepEqual(
    built.messages.map((m) => m.content),
    ['one', 'reply to one', 'three'],
  )
})

test('a JavaScript store receives distinct ids for replies the server gave one id', async () => {
  const map = new Map()
  const api = new ChatGPTAPI({
    apiKey: 'sk-test',
    apiBaseUrl: url,
    systemMessage: '',
    cache: false,
    getMessageById: (id) => map.get(id),
    upsertMessage: (m) => void map.set(m.id, m),
  })
  await Promise.all(['x', 'y', 'z'].map((t) => api.sendMessage(t)))
  assert.equal(map.size, 6, 'three user messages and three replies, none overwritten')
})

test('sendMany refuses inputs that would share a user-message id', async () => {
  const api = client()
  const shared = await api.sendMany(['a', 'b'], { messageId: 'm-1' }).catch((err) => err)
  assert.equal(shared.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(shared.message, /messageId/)
  const items = await api
    .sendMany([{ text: 'a', messageId: 'm-2' }, 'b', { text: 'c', messageId: 'm-2' }])
    .catch((err) => err)
  assert.equal(items.code, 'ERR_CHATGPT_INVALID_ARG')
  // One string input may take options.messageId, and distinct ids are fine.
  const ok = await api.sendMany(['a', { text: 'b', messageId: 'm-4' }], { messageId: 'm-3' })
  assert.deepEqual(
    ok.map((r) => r.message.parentMessageId),
    ['m-3', 'm-4'],
  )
})
