// Structured outputs and reasoning models, against raw node:http servers scripted per test:
// `responseFormat` reaches the request and a JSON reply is parsed into `reply.parsed` (streamed or
// not); a reply that is not JSON, cut by `length` or refused rejects with its own code, is neither
// retried, cached nor stored; `reasoningEffort` is sent; usage details survive onto the reply.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'

import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import { API_KEY, rejection, thrown } from './helpers.mjs'

/** A complete response whose choice 0 is `message`, finished by `finish`, with `usage`. */
function completion(message, { finish = 'stop', usage } = {}) {
  return {
    id: 'chatcmpl-s',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }],
    usage: usage ?? { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  }
}

const chunk = (delta, finish = null) => ({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })

/** The SSE frames of a stream answering `pieces` of content, then `finish` and `usage`. */
function frames(pieces, { finish = 'stop', usage } = {}) {
  return [
    chunk({ role: 'assistant', content: '' }),
    ...pieces.map((content) => chunk({ content })),
    chunk({}, finish),
    { id: 'c', object: 'chat.completion.chunk', choices: [], usage: usage ?? { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    '[DONE]',
  ]
}

/**
 * A server answering every request with `answer(body)`: `{ json }` (a complete response) or
 * `{ sse }` (stream frames). Keeps the parsed request bodies.
 */
async function server(answer) {
  const bodies = []
  const raw = http.createServer((req, res) => {
    let text = ''
    req.on('data', (c) => (text += c))
    req.on('end', () => {
      const body = JSON.parse(text)
      bodies.push(body)
      const reply = answer(body)
      if (reply.sse) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        for (const frame of reply.sse) res.write(`data: ${typeof frame === 'string' ? frame : JSON.stringify(frame)}\n\n`)
        res.end()
      } else {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(reply.json))
      }
    })
  })
  await new Promise((resolve) => raw.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${raw.address().port}/v1`, bodies, close: () => raw.close() }
}

/** A server answering `content` (a string, or a message object), streamed when the request asks. */
function answering(content, options = {}) {
  const message = typeof content === 'string' ? { content } : content
  return server((body) =>
    body.stream ? { sse: frames(message.content == null ? [] : [...chunksOf(message.content)], options) } : { json: completion(message, options) },
  )
}

/** `text` in pieces of 3 characters, as a stream would split it. */
function* chunksOf(text) {
  for (let i = 0; i < text.length; i += 3) yield text.slice(i, i + 3)
}

function api(url, options = {}) {
  return new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: url, systemMessage: '', completionParams: { model: 'gpt-4.1-mini' }, ...options })
}

const SCHEMA = {
  type: 'json_schema',
  json_schema: {
    name: 'weather',
    strict: true,
    schema: { type: 'object', properties: { city: { type: 'string' }, c: { type: 'number' } }, required: ['city', 'c'] },
  },
}

test('a json_object reply is parsed into reply.parsed, and response_format is sent', async () => {
  const s = await answering('{"a": [1, 2], "b": {"c": null}}')
  try {
    const reply = await api(s.url).sendMessage('json please', { responseFormat: { type: 'json_object' } })
    assert.deepEqual(reply.parsed, { a: [1, 2], b: { c: null } })
    assert.equal(reply.text, '{"a": [1, 2], "b": {"c": null}}')
    assert.deepEqual(s.bodies[0].response_format, { type: 'json_object' })
  } finally {
    s.close()
  }
})

test('a streamed json_object reply is parsed once complete, and the deltas arrive as text', async () => {
  const s = await answering('{"answer": 42, "why": "because"}')
  try {
    const deltas = []
    const reply = await api(s.url).sendMessage('json please', {
      responseFormat: { type: 'json_object' },
      onProgress: (p) => {
        deltas.push(p.delta)
        assert.equal(p.parsed, undefined, 'partials are not parsed')
      },
    })
    assert.ok(deltas.length > 3, `several deltas: ${deltas.length}`)
    assert.deepEqual(reply.parsed, { answer: 42, why: 'because' })
    assert.equal(s.bodies[0].stream, true)
    assert.deepEqual(s.bodies[0].response_format, { type: 'json_object' })
  } finally {
    s.close()
  }
})

test('an instance json_schema format applies to every call and is sent as given', async () => {
  const s = await answering('{"city": "Oslo", "c": -3.5}')
  try {
    const client = api(s.url, { responseFormat: SCHEMA })
    const reply = await client.sendMessage('weather?')
    assert.deepEqual(reply.parsed, { city: 'Oslo', c: -3.5 })
    assert.deepEqual(s.bodies[0].response_format, SCHEMA)
    // A call's own format replaces it: `text` is not parsed.
    const plain = await client.sendMessage('again', { responseFormat: { type: 'text' } })
    assert.ok(!('parsed' in plain))
    assert.deepEqual(s.bodies[1].response_format, { type: 'text' })
  } finally {
    s.close()
  }
})

test('completionParams.response_format is honoured like responseFormat', async () => {
  const s = await answering('[1, "two"]')
  try {
    const reply = await api(s.url).sendMessage('list', { completionParams: { response_format: { type: 'json_object' } } })
    assert.deepEqual(reply.parsed, [1, 'two'])
    const own = await api(s.url, { completionParams: { model: 'm', response_format: SCHEMA } }).sendMessage('list')
    assert.deepEqual(own.parsed, [1, 'two'])
  } finally {
    s.close()
  }
})

test('sendMessages takes responseFormat and reasoningEffort too', async () => {
  const s = await answering('{"ok": true}')
  try {
    const reply = await api(s.url).sendMessages([{ role: 'user', content: 'hi' }], {
      responseFormat: { type: 'json_object' },
      reasoningEffort: 'low',
    })
    assert.deepEqual(reply.parsed, { ok: true })
    assert.equal(s.bodies[0].reasoning_effort, 'low')
  } finally {
    s.close()
  }
})

test('sendMany items take responseFormat: a JSON item is parsed, one that is not fails alone', async () => {
  const s = await server((body) => ({ json: completion({ content: body.messages.at(-1).content === 'good' ? '{"n": 1}' : 'nope' }) }))
  try {
    const results = await api(s.url).sendMany(['good', { text: 'bad', responseFormat: { type: 'json_object' } }], { responseFormat: { type: 'json_object' } })
    assert.equal(results[0].ok, true)
    assert.deepEqual(results[0].message.parsed, { n: 1 })
    assert.equal(results[1].ok, false)
    assert.equal(results[1].error.code, 'ERR_CHATGPT_OUTPUT_PARSE')
    assert.equal(results[1].error.text, 'nope')
  } finally {
    s.close()
  }
})

test('without responseFormat a JSON-looking reply has no parsed key', async () => {
  const s = await answering('{"a": 1}')
  try {
    const reply = await api(s.url).sendMessage('hi')
    assert.ok(!('parsed' in reply))
    assert.ok(!('response_format' in s.bodies[0]))
    assert.ok(!('reasoning_effort' in s.bodies[0]))
  } finally {
    s.close()
  }
})

for (const stream of [false, true]) {
  const how = stream ? 'streamed' : 'complete'

  test(`a ${how} reply that is not JSON rejects with ERR_CHATGPT_OUTPUT_PARSE carrying the text, once`, async () => {
    const s = await answering('Sure! Here is {"a": 1}')
    try {
      const err = await rejection(api(s.url, { maxRetries: 2 }).sendMessage('x', { stream, responseFormat: { type: 'json_object' } }))
      assert.equal(err.code, 'ERR_CHATGPT_OUTPUT_PARSE')
      assert.equal(err.text, 'Sure! Here is {"a": 1}')
      assert.equal(err.attempts, 1)
      assert.equal(s.bodies.length, 1, 'the model answered: not retried')
    } finally {
      s.close()
    }
  })

  test(`a ${how} reply cut by the token limit rejects with ERR_CHATGPT_OUTPUT_LENGTH carrying the text`, async () => {
    const s = await answering('{"items": [1, 2', { finish: 'length' })
    try {
      const err = await rejection(api(s.url).sendMessage('x', { stream, responseFormat: SCHEMA }))
      assert.equal(err.code, 'ERR_CHATGPT_OUTPUT_LENGTH')
      assert.equal(err.text, '{"items": [1, 2')
      assert.equal(s.bodies.length, 1)
    } finally {
      s.close()
    }
  })

  test(`${how} usage details reach reply.usage and reply.detail.usage`, async () => {
    const usage = {
      prompt_tokens: 30,
      completion_tokens: 200,
      total_tokens: 230,
      prompt_tokens_details: { cached_tokens: 16, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 192, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    }
    const s = await answering('ok', { usage })
    try {
      const reply = await api(s.url).sendMessage('x', { stream })
      assert.deepEqual(reply.usage.promptTokensDetails, { cachedTokens: 16, audioTokens: 0 })
      assert.deepEqual(reply.usage.completionTokensDetails, {
        reasoningTokens: 192,
        acceptedPredictionTokens: 0,
        rejectedPredictionTokens: 0,
      })
      assert.equal(reply.usage.completionTokens, 200)
      assert.deepEqual(reply.detail.usage.completion_tokens_details, usage.completion_tokens_details)
      assert.deepEqual(reply.detail.usage.prompt_tokens_details, usage.prompt_tokens_details)
    } finally {
      s.close()
    }
  })
}

test('a refusal rejects with ERR_CHATGPT_REFUSAL carrying it; without responseFormat it resolves', async () => {
  const s = await answering({ content: null, refusal: "I'm sorry, I can't help with that." })
  try {
    const err = await rejection(api(s.url).sendMessage('x', { responseFormat: SCHEMA }))
    assert.equal(err.code, 'ERR_CHATGPT_REFUSAL')
    assert.equal(err.refusal, "I'm sorry, I can't help with that.")
    assert.equal(s.bodies.length, 1)
    const plain = await api(s.url).sendMessage('x')
    assert.equal(plain.text, '')
  } finally {
    s.close()
  }
})

test('a streamed refusal rejects with ERR_CHATGPT_REFUSAL carrying it', async () => {
  const s = await server(() => ({
    sse: [chunk({ role: 'assistant', refusal: '' }), chunk({ refusal: "I can't" }), chunk({ refusal: ' help.' }), chunk({}, 'stop'), '[DONE]'],
  }))
  try {
    const err = await rejection(api(s.url).sendMessage('x', { stream: true, responseFormat: SCHEMA }))
    assert.equal(err.code, 'ERR_CHATGPT_REFUSAL')
    assert.equal(err.refusal, "I can't help.")
  } finally {
    s.close()
  }
})

test('a rejected JSON reply is not cached and not stored; an accepted one is both', async () => {
  let content = 'not json'
  const s = await server(() => ({ json: completion({ content }) }))
  try {
    const stored = []
    const client = api(s.url, { cache: true, upsertMessage: (m) => void stored.push(m) })
    const options = { responseFormat: { type: 'json_object' } }
    for (let i = 0; i < 2; i++) {
      const err = await rejection(client.sendMessage('same', { ...options, messageId: `bad-${i}` }))
      assert.equal(err.code, 'ERR_CHATGPT_OUTPUT_PARSE')
    }
    assert.equal(s.bodies.length, 2, 'the second call asked again: nothing was cached')
    assert.deepEqual(stored, [], 'neither message of a rejected call is stored')

    content = '{"fine": true}'
    const first = await client.sendMessage('same', options)
    const again = await client.sendMessage('same', options)
    assert.equal(s.bodies.length, 3, 'an accepted JSON reply is cached')
    assert.equal(again.cached, true)
    assert.deepEqual(again.parsed, { fine: true })
    assert.deepEqual(first.parsed, { fine: true })
    assert.equal(stored.length, 4, 'both calls stored the user message and the reply')
  } finally {
    s.close()
  }
})

test('identical JSON calls sharing one request each reject with the refusal', async () => {
  let release
  const gate = new Promise((resolve) => (release = resolve))
  const bodies = []
  const raw = http.createServer((req, res) => {
    req.resume()
    req.on('end', async () => {
      bodies.push(1)
      await gate
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(completion({ content: null, refusal: 'no' })))
    })
  })
  await new Promise((resolve) => raw.listen(0, '127.0.0.1', resolve))
  try {
    const client = api(`http://127.0.0.1:${raw.address().port}/v1`, { cache: true })
    const calls = [0, 1, 2].map(() => rejection(client.sendMessage('same', { responseFormat: { type: 'json_object' } })))
    // Event-driven: the shared request has reached the server and the two other calls have
    // joined it (counted as coalesced when they join) before it answers; on a loaded machine a
    // call still being prepared when the answer came would start a request of its own.
    while (bodies.length === 0 || client.metrics().coalesced < 2) await new Promise((resolve) => setImmediate(resolve))
    release()
    for (const err of await Promise.all(calls)) {
      assert.equal(err.code, 'ERR_CHATGPT_REFUSAL')
      assert.equal(err.refusal, 'no')
    }
    assert.equal(bodies.length, 1)
  } finally {
    raw.close()
  }
})

test('a reply that only calls tools resolves without parsed; runTools then gets the JSON answer', async () => {
  const call = { id: 'call_1', type: 'function', function: { name: 'now', arguments: '{}' } }
  const s = await server((body) =>
    body.messages.some((m) => m.role === 'tool')
      ? { json: completion({ content: '{"time": "noon"}' }) }
      : { json: completion({ content: null, tool_calls: [call] }, { finish: 'tool_calls' }) },
  )
  try {
    const tool = { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } }
    const client = api(s.url)
    const called = await client.sendMessage('time?', { tools: [tool], responseFormat: { type: 'json_object' } })
    assert.equal(called.finishReason, 'tool_calls')
    assert.ok(!('parsed' in called))
    const reply = await client.runTools('time?', {
      tools: [{ ...tool, function: { ...tool.function, function: () => 'noon' } }],
      responseFormat: { type: 'json_object' },
    })
    assert.equal(reply.rounds, 2)
    assert.deepEqual(reply.parsed, { time: 'noon' })
  } finally {
    s.close()
  }
})

test('reasoningEffort is sent as reasoning_effort, per call over the instance; completionParams passes it through', async () => {
  const s = await answering('ok')
  try {
    const client = api(s.url, { reasoningEffort: 'high', completionParams: { model: 'o3-mini' } })
    await client.sendMessage('a')
    await client.sendMessage('b', { reasoningEffort: 'minimal' })
    await api(s.url).sendMessage('c', { completionParams: { reasoning_effort: 'medium' } })
    assert.deepEqual(
      s.bodies.map((b) => b.reasoning_effort),
      ['high', 'minimal', 'medium'],
    )
    // A reasoning model's reply cap is `max_completion_tokens`.
    assert.ok('max_completion_tokens' in s.bodies[0] && !('max_tokens' in s.bodies[0]))
  } finally {
    s.close()
  }
})

test('bad responseFormat and reasoningEffort values are refused naming the option and the value', async () => {
  const url = 'http://127.0.0.1:9/v1'
  const cases = [
    [{ responseFormat: { type: 'yaml' } }, /`responseFormat\.type`.*"yaml"/],
    [{ responseFormat: 'json_object' }, /`responseFormat`.*"json_object"/],
    [{ responseFormat: { type: 'json_schema', json_schema: { name: 'has space' } } }, /`responseFormat\.json_schema\.name`.*"has space"/],
    [{ responseFormat: { type: 'json_schema', json_schema: { name: 'n', schema: 'object' } } }, /`responseFormat\.json_schema\.schema`/],
    [{ responseFormat: { type: 'json_schema' } }, /`responseFormat\.json_schema`/],
    [{ reasoningEffort: 'max' }, /`reasoningEffort`.*"max"/],
    [{ reasoningEffort: 2 }, /`reasoningEffort`/],
    [{ completionParams: { response_format: { type: 'xml' } } }, /`completionParams\.response_format\.type`.*"xml"/],
  ]
  for (const [options, message] of cases) {
    const err = await rejection(api(url).sendMessage('x', options))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', JSON.stringify(options))
    assert.match(err.message, message)
    const own = await rejection(api(url).sendMessages([{ role: 'user', content: 'x' }], options))
    assert.equal(own.code, 'ERR_CHATGPT_INVALID_ARG')
    const ctor = thrown(() => api(url, options))
    assert.equal(ctor.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(ctor.message, message)
  }
})

test('with several choices every choice is parsed, streamed or not, and one cut choice rejects the call', async () => {
  const sim = await ChatGPTSimulator.start()
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: sim.url })
    const responseFormat = {
      type: 'json_schema',
      json_schema: {
        name: 'pick',
        schema: { type: 'object', properties: { colour: { type: 'string' } }, required: ['colour'], additionalProperties: false },
      },
    }
    for (const stream of [false, true]) {
      const reply = await api.sendMessage(`Pick a colour (stream ${stream})`, { responseFormat, stream, completionParams: { n: 3 } })
      assert.equal(reply.choices.length, 3)
      for (const choice of reply.choices) {
        assert.deepEqual(choice.parsed, JSON.parse(choice.text))
        assert.deepEqual(Object.keys(choice.parsed), ['colour'])
      }
      assert.deepEqual(reply.parsed, reply.choices[0].parsed)
    }
    const cut = await rejection(api.sendMessage('Pick a colour', { responseFormat, completionParams: { n: 2, max_tokens: 2 } }))
    assert.equal(cut.code, 'ERR_CHATGPT_OUTPUT_LENGTH')
    const refused = await rejection(api.sendMessage('[refuse] Pick a colour', { responseFormat, stream: true, completionParams: { n: 2 } }))
    assert.equal(refused.code, 'ERR_CHATGPT_REFUSAL')
    assert.equal(typeof refused.refusal, 'string')
  } finally {
    await sim.close()
  }
})
