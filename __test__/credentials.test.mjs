// The `apiKey` and `apiOrg` properties of the `chatgpt` package's ChatGPTAPI: set, used by the
// calls that start afterwards while calls in flight and conversations continue, and read back
// (the key as its fingerprint only).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { once } from 'node:events'
import { ChatGPTAPI } from '../index.js'
import { thrown } from './helpers.mjs'

/** A server answering every chat request, recording its headers and messages; `hold` delays answers. */
async function recordingServer() {
  const seen = []
  let release = null
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString())
      seen.push({ headers: req.headers, messages: body.messages })
      const answer = () => {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ id: `c${seen.length}`, choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }))
      }
      if (release) release.push(answer)
      else answer()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    seen,
    url: `http://127.0.0.1:${server.address().port}/v1`,
    hold: () => (release = []),
    let: () => {
      const pending = release
      release = null
      for (const answer of pending) answer()
    },
    close: () => server.close(),
  }
}

test('setting apiKey and apiOrg changes the headers of later calls; they read back, the key as its fingerprint', async () => {
  const server = await recordingServer()
  try {
    const api = new ChatGPTAPI({ apiKey: 'sk-first-0001', apiOrg: 'org-1', apiBaseUrl: server.url, systemMessage: '', cache: false })
    assert.equal(api.apiKey, 'sk-…0001')
    assert.equal(api.apiOrg, 'org-1')
    await api.sendMessage('one')
    api.apiKey = 'sk-second-0002'
    api.apiOrg = 'org-2'
    assert.equal(api.apiKey, 'sk-…0002')
    assert.equal(api.apiOrg, 'org-2')
    await api.sendMessage('two')
    api.apiOrg = undefined
    assert.equal(api.apiOrg, undefined)
    await api.sendMessage('three')
    assert.deepEqual(
      server.seen.map((r) => [r.headers.authorization, r.headers['openai-organization']]),
      [
        ['Bearer sk-first-0001', 'org-1'],
        ['Bearer sk-second-0002', 'org-2'],
        ['Bearer sk-second-0002', undefined],
      ],
    )
  } finally {
    server.close()
  }
})

test('a call in flight finishes when the key changes, and the conversation continues', async () => {
  const server = await recordingServer()
  try {
    const api = new ChatGPTAPI({ apiKey: 'sk-first-1', apiBaseUrl: server.url, systemMessage: '', cache: false })
    const first = await api.sendMessage('remember me')
    server.hold()
    const inFlight = api.sendMessage('still going')
    while (server.seen.length < 2) await new Promise((resolve) => setImmediate(resolve))
    api.apiKey = 'sk-second-2'
    server.let()
    assert.equal((await inFlight).text, 'ok')
    await api.sendMessage('follow-up', { parentMessageId: first.id })
    const last = server.seen.at(-1)
    assert.equal(last.headers.authorization, 'Bearer sk-second-2')
    assert.deepEqual(
      last.messages.map((m) => m.content),
      ['remember me', 'ok', 'follow-up'],
    )
  } finally {
    server.close()
  }
})

test('setting apiKey replaces an apiKeys pool with that one key', async () => {
  const server = await recordingServer()
  try {
    const api = new ChatGPTAPI({ apiKeys: ['sk-pool-0001', 'sk-pool-0002'], apiBaseUrl: server.url, cache: false })
    assert.equal(api.apiKey, 'sk-…0001')
    api.apiKey = 'sk-only-3'
    await api.sendMessage('a')
    await api.sendMessage('b')
    assert.deepEqual(server.seen.map((r) => r.headers.authorization), ['Bearer sk-only-3', 'Bearer sk-only-3'])
    assert.equal(api.metrics().keys.length, 1)
  } finally {
    server.close()
  }
})

test('a bad apiKey or apiOrg throws ERR_CHATGPT_INVALID_ARG naming it, without echoing the key', () => {
  const api = new ChatGPTAPI({ apiKey: 'sk-kept-0001', apiBaseUrl: 'http://127.0.0.1:9/v1' })
  for (const bad of [42, '', 'sk-with space-SECRET', undefined, null, {}]) {
    const err = thrown(() => {
      api.apiKey = bad
    })
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /`apiKey`/)
    assert.ok(!err.message.includes('SECRET'))
  }
  const err = thrown(() => {
    api.apiOrg = 7
  })
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(err.message, /`apiOrg`/)
  assert.equal(api.apiKey, 'sk-…0001', 'a rejected value changes nothing')
})
