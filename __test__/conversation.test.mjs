// Conversations: parentMessageId history within the token budget, the too-long error, missing
// ancestors, JavaScript stores, and usage.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { countMessageTokens } from '../index.js'
import { startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 6 })
})
after(() => sim.close())

/** Three exchanges; returns the replies. */
async function converse(api, texts = ['first question', 'second question', 'third question']) {
  const replies = []
  let parentMessageId
  for (const text of texts) {
    const reply = await api.sendMessage(text, { parentMessageId })
    replies.push(reply)
    parentMessageId = reply.id
  }
  return replies
}

test('parentMessageId rebuilds the history, oldest first, and the server bills what we counted', async () => {
  const api = clientFor(sim, { systemMessage: 'Be brief.' })
  const replies = await converse(api)
  const built = await api.buildMessages('fourth question', { parentMessageId: replies[2].id })
  assert.deepEqual(
    built.messages.map((m) => [m.role, m.content]),
    [
      ['system', 'Be brief.'],
      ['user', 'first question'],
      ['assistant', replies[0].text],
      ['user', 'second question'],
      ['assistant', replies[1].text],
      ['user', 'third question'],
      ['assistant', replies[2].text],
      ['user', 'fourth question'],
    ],
  )
  assert.deepEqual(built.history, { messages: 6, truncated: false })
  assert.equal(built.numTokens, countMessageTokens(built.messages, { model: 'sim-gpt' }))
  // The simulator counts prompt tokens independently: our budget arithmetic matches its bill.
  const reply = await api.sendMessage('fourth question', { parentMessageId: replies[2].id })
  assert.equal(reply.usage.promptTokens, built.numTokens)
  assert.equal(reply.history.messages, 6)
})

test('keeps exactly as many ancestors as fit maxModelTokens - maxResponseTokens', async () => {
  // Two clients share one conversation through a JS store (each in-memory store is private).
  const maxResponseTokens = 50
  const map = new Map()
  const store = { getMessageById: (id) => map.get(id), upsertMessage: (m) => void map.set(m.id, m) }
  const seeded = clientFor(sim, store)
  const r = await converse(seeded)
  const all = await seeded.buildMessages('next', { parentMessageId: r[2].id })
  const budget = countMessageTokens(all.messages.slice(2))
  const edge = clientFor(sim, { ...store, maxModelTokens: budget + maxResponseTokens, maxResponseTokens })
  const atEdge = await edge.buildMessages('next', { parentMessageId: r[2].id })
  assert.equal(atEdge.history.messages, 4)
  assert.deepEqual([atEdge.history.truncated, atEdge.history.truncatedBy], [true, 'budget'])
  assert.equal(atEdge.numTokens, budget)
  assert.equal(atEdge.maxTokens, maxResponseTokens)
  const below = clientFor(sim, { ...store, maxModelTokens: budget + maxResponseTokens - 1, maxResponseTokens })
  assert.equal((await below.buildMessages('next', { parentMessageId: r[2].id })).history.messages, 3)
})

test('max_tokens is maxResponseTokens and prompt plus reply fit the window', async () => {
  const api = clientFor(sim, { maxModelTokens: 100, maxResponseTokens: 90 })
  const built = await api.buildMessages('hi')
  assert.equal(built.maxTokens, 90)
  assert.ok(built.numTokens + built.maxTokens <= 100)
  sim.resetStats()
  const reply = await api.sendMessage('hi', { completionParams: { max_tokens: 3 } })
  assert.equal(reply.usage.completionTokens, 3, "the caller's own max_tokens wins")
})

test('rejects with ERR_CHATGPT_CONTEXT_TOO_LONG, with the counts, before sending anything', async () => {
  sim.resetStats()
  const api = clientFor(sim, { maxModelTokens: 200, maxResponseTokens: 100 })
  const long = 'lorem ipsum '.repeat(100)
  const err = await rejection(api.sendMessage(long))
  assert.equal(err.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
  assert.equal(err.maxPromptTokens, 100)
  assert.equal(err.promptTokens, countMessageTokens([{ role: 'user', content: long }]))
  assert.equal(sim.stats().chatRequests, 0)
  const built = await rejection(api.buildMessages(long))
  assert.equal(built.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
})

test('a missing ancestor stops the walk and the reply says the history was cut', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('orphan', { parentMessageId: 'no-such-message' })
  assert.deepEqual(reply.history, { messages: 0, truncated: true, truncatedBy: 'missing-parent' })
})

test('a JS store receives every message and serves the history', async () => {
  const map = new Map()
  const upserts = []
  const api = clientFor(sim, {
    getMessageById: async (id) => map.get(id),
    upsertMessage: async (message) => {
      upserts.push(message)
      map.set(message.id, message)
    },
  })
  const replies = await converse(api)
  assert.equal(upserts.length, 6)
  assert.deepEqual(
    upserts.map((m) => m.role),
    ['user', 'assistant', 'user', 'assistant', 'user', 'assistant'],
  )
  assert.equal(upserts[1].id, replies[0].id)
  assert.equal(upserts[1].parentMessageId, upserts[0].id)
  assert.equal(upserts[2].parentMessageId, replies[0].id)
  const built = await api.buildMessages('more', { parentMessageId: replies[2].id })
  assert.equal(built.history.messages, 6)
})

test('a Keyv-style messageStore works', async () => {
  const map = new Map()
  const keyv = { get: async (k) => map.get(k), set: async (k, v) => { map.set(k, v); return true } }
  const api = clientFor(sim, { messageStore: keyv })
  const replies = await converse(api)
  assert.equal(map.size, 6)
  const built = await api.buildMessages('more', { parentMessageId: replies[2].id })
  assert.equal(built.history.messages, 6)
})

test('a failing store rejects with ERR_CHATGPT_STORE', async () => {
  const failingGet = clientFor(sim, {
    getMessageById: async () => {
      throw new Error('database down')
    },
    upsertMessage: async () => {},
  })
  const err = await rejection(failingGet.sendMessage('x', { parentMessageId: 'abc' }))
  assert.equal(err.code, 'ERR_CHATGPT_STORE')
  assert.match(err.message, /database down/)

  const failingSet = clientFor(sim, { getMessageById: () => undefined, upsertMessage: () => { throw new Error('disk full') } })
  const err2 = await rejection(failingSet.sendMessage('x'))
  assert.equal(err2.code, 'ERR_CHATGPT_STORE')
  assert.match(err2.message, /disk full/)

  const malformed = clientFor(sim, { getMessageById: () => ({ id: 1 }), upsertMessage: () => {} })
  assert.equal((await rejection(malformed.sendMessage('x', { parentMessageId: 'p' }))).code, 'ERR_CHATGPT_STORE')
})

test('store options are validated', async () => {
  const { ChatGPTAPI } = await import('../index.js')
  const base = { apiKey: 'k', apiBaseUrl: sim.url }
  assert.throws(() => new ChatGPTAPI({ ...base, messageStore: { get() {} } }), /messageStore.set/)
  assert.throws(() => new ChatGPTAPI({ ...base, getMessageById: 'x' }), /`getMessageById`/)
})

test('a getMessageById alone serves the reads; the writes go to the in-memory store', async () => {
  const rows = new Map([['u0', { id: 'u0', role: 'user', text: 'stored earlier' }]])
  const reads = []
  const api = clientFor(sim, { getMessageById: async (id) => (reads.push(id), rows.get(id)) })
  const reply = await api.sendMessage('follow-up', { parentMessageId: 'u0' })
  assert.equal(reply.history.messages, 1)
  assert.deepEqual(reads, ['u0'])
  assert.equal(rows.size, 1, 'nothing was written to the rows getMessageById reads')
})

test('an upsertMessage alone receives every message; reads go to the in-memory store', async () => {
  const written = []
  const api = clientFor(sim, { upsertMessage: async (m) => void written.push(m) })
  const reply = await api.sendMessage('hello', { messageId: 'mine' })
  assert.deepEqual(written.map((m) => [m.id, m.role]), [['mine', 'user'], [reply.id, 'assistant']])
  // The in-memory store holds nothing (the writes went to upsertMessage), as in the chatgpt package.
  const next = await api.sendMessage('again', { parentMessageId: reply.id })
  assert.deepEqual(next.history, { messages: 0, truncated: true, truncatedBy: 'missing-parent' })
})

test('a hook given with a messageStore replaces that operation only', async () => {
  const map = new Map()
  const keyv = { get: async (k) => map.get(k), set: async (k, v) => void map.set(k, v) }
  const served = []
  const api = clientFor(sim, { messageStore: keyv, getMessageById: async (id) => (served.push(id), map.get(id)) })
  const first = await api.sendMessage('one')
  assert.equal(map.size, 2, 'writes go to messageStore.set')
  const second = await api.sendMessage('two', { parentMessageId: first.id })
  assert.deepEqual(served, [first.id, map.get(first.id).parentMessageId])
  assert.equal(second.history.messages, 2)
})

test('a stored row without a role is a user message', async () => {
  const rows = new Map([
    ['r1', { id: 'r1', text: 'no role here' }],
    ['r2', { id: 'r2', text: 'an answer', role: 'assistant', parentMessageId: 'r1' }],
  ])
  const api = clientFor(sim, { getMessageById: async (id) => rows.get(id), upsertMessage: async () => {} })
  const built = await api.buildMessages('next', { parentMessageId: 'r2' })
  assert.deepEqual(built.messages.map((m) => [m.role, m.content]), [['user', 'no role here'], ['assistant', 'an answer'], ['user', 'next']])
  assert.equal((await api.sendMessage('next', { parentMessageId: 'r2' })).history.messages, 2)
})

test("ERR_CHATGPT_STORE's cause is the value the hook threw or rejected with", async () => {
  const thrown = new RangeError('database down')
  const failingGet = clientFor(sim, { getMessageById: () => { throw thrown } })
  const err = await rejection(failingGet.sendMessage('x', { parentMessageId: 'p' }))
  assert.equal(err.code, 'ERR_CHATGPT_STORE')
  assert.equal(err.cause, thrown)
  const failingSet = clientFor(sim, { upsertMessage: () => Promise.reject('disk full, as a string') })
  const err2 = await rejection(failingSet.sendMessage('x'))
  assert.equal(err2.code, 'ERR_CHATGPT_STORE')
  assert.equal(err2.cause, 'disk full, as a string')
  const keyv = { get: async () => undefined, set: async () => { throw thrown } }
  assert.equal((await rejection(clientFor(sim, { messageStore: keyv }).sendMessage('x'))).cause, thrown)
})

test("sendMessage('') sends the system message and the history only, and stores the empty message", async () => {
  const map = new Map()
  const store = { getMessageById: async (id) => map.get(id), upsertMessage: async (m) => void map.set(m.id, m) }
  const api = clientFor(sim, { ...store, systemMessage: 'Be brief.' })
  const first = await api.sendMessage('first question')
  const expected = [['system', 'Be brief.'], ['user', 'first question'], ['assistant', first.text]]
  const built = await api.buildMessages('', { parentMessageId: first.id })
  assert.deepEqual(built.messages.map((m) => [m.role, m.content]), expected)
  const reply = await api.sendMessage('', { parentMessageId: first.id, messageId: 'empty' })
  // The simulator bills what it received: the prompt without a user message.
  assert.equal(reply.usage.promptTokens, countMessageTokens(expected.map(([role, content]) => ({ role, content })), { model: 'sim-gpt' }))
  assert.deepEqual(map.get('empty'), { id: 'empty', role: 'user', text: '', parentMessageId: first.id })
  assert.equal(map.get(reply.id).parentMessageId, 'empty')
})

test('usage is estimated with the tokenizer when the server sends none', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('estimate me', {
    onProgress: () => {},
    completionParams: { stream_options: { include_usage: false } },
  })
  assert.equal(reply.usage.estimated, true)
  assert.equal(reply.usage.completionTokens, 6)
  assert.equal(reply.usage.promptTokens, countMessageTokens([{ role: 'user', content: 'estimate me' }]))
})
