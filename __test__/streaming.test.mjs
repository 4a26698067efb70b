// onProgress: once per delta, in order, complete before the Promise settles; throwing callbacks;
// the shape of streamed replies and partials (as `chatgpt` v5's); the wait for the first token.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { ChatGPTError } from '../index.js'
import { API_KEY, startSimulator, clientFor, rejection, whenIdle } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 20 })
})
after(() => sim.close())

test('calls onProgress once per delta, in order, with the accumulated text', async () => {
  const api = clientFor(sim)
  const partials = []
  const reply = await api.sendMessage('stream me', { onProgress: (p) => partials.push({ ...p }) })
  assert.equal(partials.length, 20)
  let text = ''
  for (const p of partials) {
    text += p.delta
    assert.equal(p.text, text)
    assert.equal(p.role, 'assistant')
    assert.equal(p.id, reply.id)
    assert.equal(p.parentMessageId, reply.parentMessageId)
  }
  assert.equal(text, reply.text)
})

test('every onProgress call has run before the Promise resolves, even for long streams', async () => {
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '3000' } })
  for (let round = 0; round < 3; round++) {
    let calls = 0
    const reply = await api.sendMessage(`long stream ${round}`, {
      completionParams: { max_tokens: 3000 },
      onProgress: () => {
        calls++
      },
    })
    assert.equal(calls, 3000, 'no delta may arrive after the Promise settled')
    assert.equal(reply.usage.completionTokens, 3000)
  }
})

test('stream defaults to !!onProgress and stream:false never calls onProgress', async () => {
  const api = clientFor(sim)
  let calls = 0
  const reply = await api.sendMessage('not streamed', { stream: false, onProgress: () => calls++ })
  assert.equal(calls, 0)
  assert.equal(reply.detail.object, 'chat.completion')
  const streamed = await api.sendMessage('streamed', { onProgress: () => calls++ })
  assert.equal(streamed.detail.object, 'chat.completion.chunk')
  assert.ok(calls > 0)
})

test('a throwing onProgress rejects with the thrown error and stops the request', async () => {
  // Read to its end, the answer would take 2 s (400 tokens, 5 ms apart).
  const slow = await startSimulator({ responseTokens: 400, tokenDelayMs: 5 })
  try {
    const api = clientFor(slow)
    const boom = new Error('callback failed')
    let calls = 0
    const err = await rejection(
      api.sendMessage('throw please', {
        onProgress: () => {
          calls++
          if (calls === 3) throw boom
        },
      }),
    )
    assert.equal(err, boom, 'rejects with the very value thrown')
    assert.equal(calls, 3, 'no callback runs after the throw')
    // The upstream request is cancelled rather than read to the end.
    await whenIdle(slow, 1000)
  } finally {
    await slow.close()
  }
})

test('a callback throwing a non-Error value rejects with that value', async () => {
  const api = clientFor(sim)
  const err = await rejection(
    api.sendMessage('throw a string', {
      onProgress: () => {
        throw 'plain string'
      },
    }),
  )
  assert.equal(err, 'plain string')
})

test('a callback throwing on the last delta still rejects', async () => {
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '1' } })
  const err = await rejection(
    api.sendMessage('one token', {
      onProgress: () => {
        throw new RangeError('last one')
      },
    }),
  )
  assert.ok(err instanceof RangeError)
})

test('the process survives a throwing callback and keeps serving calls', async () => {
  const api = clientFor(sim)
  await rejection(api.sendMessage('x', { onProgress: () => { throw new Error('x') } }))
  const reply = await api.sendMessage('still alive', { onProgress: () => {} })
  assert.equal(reply.finishReason, 'stop')
})

// --- The shape of streamed replies and partials -------------------------------------------------

/** A node:http server answering every chat request with `respond(res, body)`; counts requests. */
async function startRaw(respond) {
  let requests = 0
  const server = http.createServer(async (req, res) => {
    requests++
    let text = ''
    for await (const part of req) text += part
    respond(res, JSON.parse(text))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    requests: () => requests,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

const chunk = (choice, extra = {}) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-raw', object: 'chat.completion.chunk', created: 0, model: 'raw', choices: [{ index: 0, finish_reason: null, ...choice }], ...extra })}\n\n`

/** Streams `contents` as content deltas, then a finish chunk (with `finishReason`) and [DONE];
 * answers `stream: false` with one completion whose content is the contents joined. */
const answer = (contents, { finishReason = 'stop', message } = {}) => (res, body) => {
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({
      id: 'chatcmpl-raw',
      object: 'chat.completion',
      choices: [{ index: 0, message: message ?? { role: 'assistant', content: contents.join('') }, finish_reason: finishReason }],
      usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    }))
    return
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.write(chunk({ delta: { role: 'assistant', content: '' } }))
  for (const content of contents) res.write(chunk({ delta: { content } }))
  res.end(chunk({ delta: {}, finish_reason: finishReason }) + 'data: [DONE]\n\n')
}

test("a streamed reply's detail is the finish chunk, with the server's usage", async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('detail please', { onProgress: () => {} })
  assert.equal(reply.detail.object, 'chat.completion.chunk')
  assert.equal(reply.detail.choices[0].finish_reason, 'stop')
  assert.deepEqual(reply.detail.choices[0].delta, {})
  assert.deepEqual(reply.detail.usage, {
    prompt_tokens: reply.usage.promptTokens,
    completion_tokens: reply.usage.completionTokens,
    total_tokens: reply.usage.totalTokens,
  })
  assert.equal(reply.usage.estimated, false)
})

test("without the server's usage, a streamed detail carries the estimate, flagged", async () => {
  // The simulator sends a usage chunk only when asked to (`stream_options.include_usage`).
  const api = clientFor(sim, { completionParams: { model: 'sim-gpt', stream_options: { include_usage: false } } })
  const reply = await api.sendMessage('no usage from the server', { onProgress: () => {} })
  assert.equal(reply.usage.estimated, true)
  assert.equal(reply.detail.choices[0].finish_reason, 'stop')
  assert.deepEqual(reply.detail.usage, {
    prompt_tokens: reply.usage.promptTokens,
    completion_tokens: reply.usage.completionTokens,
    total_tokens: reply.usage.totalTokens,
    estimated: true,
  })
})

test("each partial's detail is the chunk that carried its delta", async () => {
  const api = clientFor(sim, { cache: false })
  const partials = []
  const reply = await api.sendMessage('chunks please', { onProgress: (p) => partials.push(p) })
  assert.equal(partials.length, 20)
  for (const p of partials) {
    assert.equal(p.detail.object, 'chat.completion.chunk')
    assert.equal(p.detail.choices[0].delta.content, p.delta)
    assert.equal(p.detail.id, reply.detail.id, "the server's completion id")
    assert.equal(p.detail, p.detail, 'parsed once')
  }
})

test('a replayed delta (a cache hit) has a chunk-shaped detail built from it', async () => {
  // A shared call's deltas are replayed to its callers the same way.
  const api = clientFor(sim, { cache: true })
  await api.sendMessage('replayed from the cache', { onProgress: () => {} })
  const partials = []
  const reply = await api.sendMessage('replayed from the cache', { onProgress: (p) => partials.push(p) })
  assert.equal(reply.cached, true)
  assert.ok(partials.length > 0)
  for (const p of partials) assert.equal(p.detail.choices[0].delta.content, p.delta)
})

test('a streamed reply text is trimmed as v5 trims it; partials and a non-streamed text are not', async () => {
  const server = await startRaw(answer([' \n hi', ' there ', '\n']))
  try {
    const api = clientFor(server)
    const texts = []
    const streamed = await api.sendMessage('whitespace around', { onProgress: (p) => texts.push(p.text) })
    assert.equal(streamed.text, 'hi there')
    assert.equal(texts.at(-1), ' \n hi there \n')
    const plain = await api.sendMessage('whitespace around', { stream: false })
    assert.equal(plain.text, ' \n hi there \n')
  } finally {
    await server.close()
  }
})

test('a tool-call reply has text "", streamed or not', async () => {
  const call = { index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }
  const server = await startRaw((res, body) => {
    if (!body.stream) {
      return answer([], { finishReason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [call] } })(res, body)
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(chunk({ delta: { role: 'assistant', content: null, tool_calls: [call] } }))
    res.end(chunk({ delta: {}, finish_reason: 'tool_calls' }) + 'data: [DONE]\n\n')
  })
  try {
    const api = clientFor(server)
    const partials = []
    const streamed = await api.sendMessage('call a tool', { onProgress: (p) => partials.push(p) })
    assert.equal(streamed.text, '')
    assert.equal(streamed.finishReason, 'tool_calls')
    // One partial for the one tool-call fragment: no text, the call so far.
    assert.deepEqual(
      partials.map((p) => [p.delta, p.text, p.toolCalls.length]),
      [['', '', 1]],
    )
    const plain = await api.sendMessage('call a tool', { stream: false })
    assert.equal(plain.text, '')
    assert.deepEqual(plain.detail.choices[0].message.tool_calls, [call])
  } finally {
    await server.close()
  }
})

test('a failure after deltas is STREAM_INTERRUPTED, naming its cause, which keeps its own code', async () => {
  sim.enqueueFault({ kind: 'malformed', afterChunks: 2 })
  const deltas = []
  const err = await rejection(clientFor(sim).sendMessage('broken after two', { onProgress: (p) => deltas.push(p.delta) }))
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.partialText, deltas.join(''))
  assert.equal(err.attempts, 1)
  assert.ok(err.cause instanceof ChatGPTError)
  assert.equal(err.cause.code, 'ERR_CHATGPT_BAD_RESPONSE')
  assert.ok(err.message.includes('ERR_CHATGPT_BAD_RESPONSE'), 'the message names the cause')
  assert.ok(err.message.includes(err.cause.message), "and carries the cause's message")
})

test("an interrupted stream's cause is scrubbed of the key like the error itself", async () => {
  sim.enqueueFault({ kind: 'errorEvent', afterChunks: 2, type: 'server_error', message: `upstream echoed ${API_KEY}` })
  const err = await rejection(clientFor(sim, { cache: false }).sendMessage('echoes the key', { onProgress: () => {} }))
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.cause.code, 'ERR_CHATGPT_STREAM_ERROR')
  assert.ok(err.cause.message.includes('upstream echoed'), 'the server message is kept')
  for (const text of [err.message, err.cause.message, err.cause.stack]) assert.ok(!text.includes(API_KEY), text)
})

// --- The wait for the first token -------------------------------------------------------------

test('a first token slower than idleTimeoutMs is waited for, with one request', async () => {
  // The role chunk comes at once, the first token after 1.5 s (a model thinking first).
  const slow = await startSimulator({ responseTokens: 3, ttftMs: 1500 })
  try {
    const api = clientFor(slow, { idleTimeoutMs: 500 })
    const started = performance.now()
    const reply = await api.sendMessage('think first', { onProgress: () => {} })
    assert.ok(performance.now() - started >= 1400)
    assert.equal(reply.finishReason, 'stop')
    assert.equal(slow.stats().chatRequests, 1, 'not retried, not paid for twice')
  } finally {
    await slow.close()
  }
})

test('a first token slower than attemptTimeoutMs times that attempt out', async () => {
  const slow = await startSimulator({ responseTokens: 3, ttftMs: 1500 })
  try {
    const api = clientFor(slow, { attemptTimeoutMs: 300, maxRetries: 0 })
    const err = await rejection(api.sendMessage('too slow to start', { onProgress: () => {} }))
    assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
    assert.equal(err.attempts, 1)
    assert.equal(slow.stats().chatRequests, 1)
  } finally {
    await slow.close()
  }
})

test('a stall after the first delta still ends at idleTimeoutMs', async () => {
  sim.enqueueFault({ kind: 'stall', afterChunks: 1 })
  const started = performance.now()
  const err = await rejection(clientFor(sim, { idleTimeoutMs: 300 }).sendMessage('stalls after one', { onProgress: () => {} }))
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.cause.code, 'ERR_CHATGPT_TIMEOUT')
  assert.ok(performance.now() - started < 3000, 'ended by the idle timeout, not timeoutMs')
  await whenIdle(sim)
})
