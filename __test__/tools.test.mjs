// Tool calling through the public API: `tools` / `toolChoice`, `reply.toolCalls` streamed and
// not, the partials `onProgress` gets while calls stream in, tool results sent in the chain and
// kept by the store, and `runTools`. Against the simulator, which answers a request offering
// tools with a call, and a raw server for shapes the simulator does not send.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'

import { startSimulator, clientFor, rejection, thrown, API_KEY, answeringServer } from './helpers.mjs'
import { ChatGPTAPI, countMessageTokens, countTokens } from '../index.js'

let sim
before(async () => {
  sim = await startSimulator()
})
after(async () => {
  await sim.close()
})

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' }, detailed: { type: 'boolean' } },
      required: ['city', 'days'],
    },
  },
}
const clock = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }

function checkCall(call) {
  assert.match(call.id, /^call_/)
  assert.equal(call.type, 'function')
  assert.equal(call.function.name, 'get_weather')
  const args = JSON.parse(call.function.arguments)
  assert.equal(typeof args.city, 'string')
  assert.equal(args.days, 1)
  assert.equal(args.detailed, undefined)
}

test('a reply that calls a tool has toolCalls, finishReason tool_calls and empty text', async () => {
  const api = clientFor(sim)
  const reply = await api.sendMessage('weather in Paris?', { tools: [weather, clock] })
  assert.equal(reply.finishReason, 'tool_calls')
  assert.equal(reply.text, '')
  assert.equal(reply.toolCalls.length, 1)
  checkCall(reply.toolCalls[0])
})

test('streamed tool calls are joined, and partials carry the calls assembled so far', async () => {
  const api = clientFor(sim)
  const partials = []
  const reply = await api.sendMessage('weather in Paris?', {
    tools: [weather],
    onProgress: (p) => partials.push({ delta: p.delta, toolCalls: structuredClone(p.toolCalls) }),
  })
  assert.equal(reply.finishReason, 'tool_calls')
  assert.equal(reply.text, '')
  checkCall(reply.toolCalls[0])
  assert.ok(partials.length >= 3, 'id and name first, then at least two pieces of arguments')
  assert.ok(partials.every((p) => p.delta === ''))
  assert.equal(partials[0].toolCalls[0].id, reply.toolCalls[0].id)
  assert.equal(partials[0].toolCalls[0].function.name, 'get_weather')
  assert.equal(partials[0].toolCalls[0].function.arguments, '')
  assert.deepEqual(partials.at(-1).toolCalls, reply.toolCalls)
  // Streamed or not, the same call.
  const plain = await api.sendMessage('weather in Paris?', { tools: [weather] })
  assert.deepEqual(plain.toolCalls, reply.toolCalls)
})

test('a reply without tool calls has no toolCalls, nor have its partials', async () => {
  const api = clientFor(sim)
  const partials = []
  const reply = await api.sendMessage('hello', { onProgress: (p) => partials.push(p) })
  assert.equal('toolCalls' in reply, false)
  assert.ok(partials.length > 0)
  assert.ok(partials.every((p) => !('toolCalls' in p) && p.delta !== ''))
  const none = await api.sendMessage('weather?', { tools: [weather], toolChoice: 'none' })
  assert.equal('toolCalls' in none, false)
  assert.equal(none.finishReason, 'stop')
})

test('toolChoice names the tool to call; completionParams.tools and the instance option work too', async () => {
  const api = clientFor(sim)
  const named = await api.sendMessage('time?', {
    tools: [weather, clock],
    toolChoice: { type: 'function', function: { name: 'get_time' } },
  })
  assert.equal(named.toolCalls[0].function.name, 'get_time')
  assert.equal(named.toolCalls[0].function.arguments, '{}')
  const viaParams = await api.sendMessage('weather?', { completionParams: { model: 'sim-gpt', tools: [weather] } })
  checkCall(viaParams.toolCalls[0])
  const instance = clientFor(sim, { tools: [clock, weather], toolChoice: 'required' })
  const reply = await instance.sendMessage('anything')
  assert.equal(reply.toolCalls[0].function.name, 'get_time')
  // A call's own tools replace the instance's.
  const own = await instance.sendMessage('anything', { tools: [weather] })
  assert.equal(own.toolCalls[0].function.name, 'get_weather')
})

test('bad tools, toolChoice and toolResults are rejected naming the option', async () => {
  const api = clientFor(sim)
  for (const [options, named] of [
    [{ tools: 'get_weather' }, '`tools`'],
    [{ tools: [{ type: 'function', function: {} }] }, '`tools[0].function.name`'],
    [{ tools: [{ type: 'retrieval' }] }, '`tools[0].type`'],
    [{ toolChoice: 'sometimes' }, '`toolChoice`'],
    [{ completionParams: { tools: [1] } }, '`completionParams.tools[0]`'],
    [{ toolResults: [] }, '`toolResults`'],
    [{ toolResults: [{ content: 'x' }] }, '`toolResults[0].toolCallId`'],
  ]) {
    const err = await rejection(api.sendMessage('x', options))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', JSON.stringify(options))
    assert.ok(err.message.includes(named), err.message)
  }
  const err = thrown(() => clientFor(sim, { toolChoice: 1 }))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.ok(err.message.includes('`toolChoice`'), err.message)
})

/** A server answering every chat request with the SSE `frames`; records the request bodies. */
const rawStreamServer = (frames) => answeringServer(frames)

const chunk = (delta, finish = null) => ({ id: 'c', choices: [{ index: 0, delta, finish_reason: finish }] })

test('parallel calls streamed interleaved are joined by index, text beside them kept', async () => {
  const server = await rawStreamServer([
    chunk({ role: 'assistant', content: 'Checking' }),
    chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'a', arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'b', arguments: '{"y"' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"x":1}' } }] }),
    chunk({ content: '.', tool_calls: [{ index: 1, function: { arguments: ':2}' } }] }),
    chunk({}, 'tool_calls'),
    '[DONE]',
  ])
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url, systemMessage: '' })
    const partials = []
    const reply = await api.sendMessage('go', {
      onProgress: (p) => partials.push({ delta: p.delta, text: p.text, calls: p.toolCalls?.length ?? 0 }),
    })
    assert.equal(reply.text, 'Checking.')
    assert.deepEqual(reply.toolCalls, [
      { id: 'call_a', type: 'function', function: { name: 'a', arguments: '{"x":1}' } },
      { id: 'call_b', type: 'function', function: { name: 'b', arguments: '{"y":2}' } },
    ])
    assert.deepEqual(
      partials.map((p) => [p.delta, p.calls]),
      [
        ['Checking', 0],
        ['', 1],
        ['', 2],
        ['', 2],
        ['.', 2],
      ],
    )
  } finally {
    server.close()
  }
})

test('tool results sent with parentMessageId continue the conversation, streamed or not', async () => {
  for (const stream of [false, true]) {
    const rows = new Map()
    const api = clientFor(sim, {
      getMessageById: (id) => rows.get(id),
      upsertMessage: (m) => void rows.set(m.id, structuredClone(m)),
    })
    const called = await api.sendMessage('weather in Paris?', { tools: [weather], stream })
    const [call] = called.toolCalls
    const toolResults = [{ toolCallId: call.id, content: { temperatureC: 21 } }]
    // What the follow-up sends: the call (content null), then its result.
    const built = await api.buildMessages('', { toolResults, parentMessageId: called.id })
    assert.deepEqual(
      built.messages.map((m) => m.role),
      ['user', 'assistant', 'tool'],
    )
    assert.equal(built.messages[1].content, '')
    assert.deepEqual(built.messages[1].toolCalls, [call])
    assert.equal(built.messages[2].toolCallId, call.id)
    assert.equal(built.messages[2].content, '{"temperatureC":21}')

    const answer = await api.sendMessage('', { tools: [weather], toolResults, parentMessageId: called.id, stream })
    assert.equal(answer.finishReason, 'stop', 'a tool result is answered with text')
    assert.ok(answer.text.length > 0)
    assert.equal('toolCalls' in answer, false)

    // The store: the reply with its calls, the result chained after it, the answer after that.
    assert.deepEqual(rows.get(called.id).toolCalls, [call])
    const result = rows.get(answer.parentMessageId)
    assert.deepEqual(
      { role: result.role, toolCallId: result.toolCallId, text: result.text, parentMessageId: result.parentMessageId },
      { role: 'tool', toolCallId: call.id, text: '{"temperatureC":21}', parentMessageId: called.id },
    )
    assert.equal(rows.size, 4, 'user, reply, tool result, answer: no empty user message')

    // A later turn sends the whole exchange as history, counted in the budget.
    const later = await api.buildMessages('thanks', { parentMessageId: answer.id })
    assert.deepEqual(
      later.messages.map((m) => m.role),
      ['user', 'assistant', 'tool', 'assistant', 'user'],
    )
    const plain = await api.buildMessages('thanks')
    assert.ok(later.numTokens > plain.numTokens)
  }
})

test('several results are chained in order; text beside them is sent after them', async () => {
  const api = clientFor(sim)
  const called = await api.sendMessage('weather?', { tools: [weather] })
  const results = [
    { toolCallId: called.toolCalls[0].id, content: 'sunny' },
    { toolCallId: 'call_other', content: 'cloudy' },
  ]
  const built = await api.buildMessages('and tomorrow?', { toolResults: results, parentMessageId: called.id })
  assert.deepEqual(
    built.messages.map((m) => [m.role, m.content]),
    [
      ['user', 'weather?'],
      ['assistant', ''],
      ['tool', 'sunny'],
      ['tool', 'cloudy'],
      ['user', 'and tomorrow?'],
    ],
  )
  const answer = await api.sendMessage('and tomorrow?', { toolResults: results, parentMessageId: called.id })
  const again = await api.buildMessages('', { parentMessageId: answer.id })
  assert.deepEqual(
    again.messages.map((m) => m.role),
    ['user', 'assistant', 'tool', 'tool', 'user', 'assistant'],
  )
})

test('runTools runs the called functions and resolves with the answer to their results', async () => {
  const api = clientFor(sim)
  const seen = []
  const partials = []
  const reply = await api.runTools('weather in Paris?', {
    tools: [
      {
        type: 'function',
        function: {
          ...weather.function,
          function: async (args, call) => {
            seen.push({ args, id: call.id })
            return { temperatureC: 21 }
          },
        },
      },
    ],
    onProgress: (p) => partials.push(p),
  })
  assert.equal(reply.rounds, 2)
  assert.equal(reply.finishReason, 'stop')
  assert.ok(reply.text.length > 0)
  assert.equal(seen.length, 1)
  assert.equal(seen[0].args.days, 1)
  assert.ok(partials.some((p) => p.toolCalls) && partials.some((p) => p.delta !== ''), 'both rounds streamed')
  // The exchange is in the store: a follow-up carries it as history.
  const built = await api.buildMessages('thanks', { parentMessageId: reply.id })
  assert.deepEqual(
    built.messages.map((m) => m.role),
    ['user', 'assistant', 'tool', 'assistant', 'user'],
  )
  assert.equal(built.messages[2].content, '{"temperatureC":21}')
})

test('runTools reports a throwing tool and bad arguments to the model as `Error: <message>`', async () => {
  // What is sent back is stored as the tool's row.
  const rows = new Map()
  const api = clientFor(sim, { upsertMessage: (m) => void rows.set(m.id, m), getMessageById: (id) => rows.get(id) })
  const reply = await api.runTools('weather?', {
    tools: [
      {
        type: 'function',
        function: {
          ...weather.function,
          function: () => {
            throw new Error('no network')
          },
        },
      },
    ],
  })
  assert.equal(reply.rounds, 2)
  assert.equal(rows.get(reply.parentMessageId).text, 'Error: no network')

  // A raw server calling a tool with arguments that are not JSON, then one not offered.
  const calls = [
    { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{oops' } },
    { id: 'call_2', type: 'function', function: { name: 'missing', arguments: '{}' } },
  ]
  const raw = await answeringServer((n) => {
    const first = n === 1
    const message = first ? { role: 'assistant', content: null, tool_calls: calls } : { role: 'assistant', content: 'done' }
    return { id: 'x', choices: [{ index: 0, message, finish_reason: first ? 'tool_calls' : 'stop' }] }
  })
  const bodies = raw.bodies
  try {
    const rawApi = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: raw.url, systemMessage: '' })
    let ran = 0
    const done = await rawApi.runTools('go', {
      tools: [{ type: 'function', function: { name: 'lookup', function: () => ran++ } }],
    })
    assert.equal(done.text, 'done')
    assert.equal(ran, 0)
    const sent = bodies[1].messages.filter((m) => m.role === 'tool')
    assert.deepEqual(
      sent.map((m) => m.tool_call_id),
      ['call_1', 'call_2'],
    )
    assert.match(sent[0].content, /^Error: /)
    assert.match(sent[1].content, /^Error: .*missing/)
    assert.deepEqual(bodies[1].tools, [{ type: 'function', function: { name: 'lookup' } }], 'the function is not sent')
  } finally {
    raw.close()
  }
})

test('runTools rejects with ERR_CHATGPT_TOOL_ROUNDS when the model keeps calling tools', async () => {
  // A server whose every answer is a tool call.
  let requests = 0
  const raw = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      requests++
      const call = { id: `call_${requests}`, type: 'function', function: { name: 'again', arguments: '{}' } }
      const message = { role: 'assistant', content: null, tool_calls: [call] }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ id: 'x', choices: [{ index: 0, message, finish_reason: 'tool_calls' }] }))
    })
  })
  await new Promise((resolve) => raw.listen(0, '127.0.0.1', resolve))
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: `http://127.0.0.1:${raw.address().port}/v1` })
    let ran = 0
    const tools = [{ type: 'function', function: { name: 'again', function: () => ran++ } }]
    const err = await rejection(api.runTools('loop', { tools, maxRounds: 3 }))
    assert.equal(err.code, 'ERR_CHATGPT_TOOL_ROUNDS')
    assert.equal(requests, 3)
    assert.equal(ran, 2, "the last reply's calls are not run")
  } finally {
    raw.close()
  }
})

test('runTools checks its tools and maxRounds, naming them', async () => {
  const api = clientFor(sim)
  for (const [options, named] of [
    [{ tools: [] }, '`tools`'],
    [{ tools: [weather] }, '`tools[0].function.function`'],
    [{ tools: [{ type: 'function', function: { name: 'f', function: () => 1 } }], maxRounds: 0 }, '`maxRounds`'],
    [{ tools: [{ type: 'function', function: { name: 'f', function: () => 1 } }], toolResults: [] }, '`toolResults`'],
  ]) {
    const err = await rejection(api.runTools('x', options))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.ok(err.message.includes(named), err.message)
  }
})

test('identical calls in flight share one request, and each gets the tool calls and a partial with them', async () => {
  // The answer takes 150 ms to start, so the second call finds the first one's request in flight.
  const slow = await startSimulator({ ttftMs: 150 })
  try {
    const api = clientFor(slow, { cache: true })
    const partials = [[], []]
    const replies = await Promise.all(
      partials.map((seen) => api.sendMessage('shared weather', { tools: [weather], onProgress: (p) => seen.push(p) })),
    )
    assert.equal(slow.stats().chatRequests, 1, 'one request served both')
    assert.equal(replies.filter((r) => r.cached).length, 1)
    assert.deepEqual(replies[0].toolCalls, replies[1].toolCalls)
    for (const seen of partials) assert.deepEqual(seen.at(-1).toolCalls, replies[0].toolCalls)
    // A tool-call answer is not cached: the same call later sends a request of its own.
    const later = await api.sendMessage('shared weather', { tools: [weather], stream: true })
    assert.equal(later.cached, false)
    checkCall(later.toolCalls[0])
  } finally {
    await slow.close()
  }
})

/** A server answering its first chat request with a call of `get_weather` and later ones with text; records the bodies. */
async function callThenAnswerServer() {
  const call = { id: 'call_img', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":1}' } }
  const server = await answeringServer((n) => {
    const first = n === 1
    const message = first ? { role: 'assistant', content: null, tool_calls: [call] } : { role: 'assistant', content: 'sunny' }
    return { id: 'x', choices: [{ index: 0, message, finish_reason: first ? 'tool_calls' : 'stop' }] }
  })
  return { ...server, call }
}

const photo = { type: 'image_url', image_url: { url: 'https://example.com/paris.png', detail: 'low' } }

test('a turn sent as content parts whose reply calls a tool keeps both, and the toolResults follow-up sends them', async () => {
  const raw = await callThenAnswerServer()
  try {
    const rows = new Map()
    const api = new ChatGPTAPI({
      apiKey: API_KEY,
      apiBaseUrl: raw.url,
      systemMessage: '',
      getMessageById: (id) => rows.get(id),
      upsertMessage: (m) => void rows.set(m.id, structuredClone(m)),
    })
    const parts = [{ type: 'text', text: 'Weather where this was taken?' }, photo]
    const called = await api.sendMessage(parts, { tools: [weather] })
    assert.deepEqual(called.toolCalls, [raw.call])
    assert.deepEqual(raw.bodies[0].messages, [{ role: 'user', content: parts }])

    // The store keeps the parts on the user row and the calls on the reply.
    const user = rows.get(called.parentMessageId)
    assert.deepEqual(user.content, parts)
    assert.equal(user.text, 'Weather where this was taken?')
    assert.deepEqual(rows.get(called.id).toolCalls, [raw.call])

    const toolResults = [{ toolCallId: raw.call.id, content: 'sunny, 21C' }]
    const answer = await api.sendMessage('', { tools: [weather], toolResults, parentMessageId: called.id })
    assert.equal(answer.text, 'sunny')
    // On the wire: the parts again, the call with `content: null`, then its result.
    assert.deepEqual(raw.bodies[1].messages, [
      { role: 'user', content: parts },
      { role: 'assistant', content: null, tool_calls: [raw.call] },
      { role: 'tool', content: 'sunny, 21C', tool_call_id: raw.call.id },
    ])
    assert.equal(rows.size, 4, 'user, reply, tool result, answer')

    // A result sent beside an image-only user message keeps that message (its text is '').
    await api.sendMessage([photo], { toolResults, parentMessageId: called.id })
    assert.deepEqual(raw.bodies[2].messages.slice(-2), [
      { role: 'tool', content: 'sunny, 21C', tool_call_id: raw.call.id },
      { role: 'user', content: [photo] },
    ])
    assert.equal(rows.size, 4 + 3, 'tool result, image-only user message, answer')
  } finally {
    raw.close()
  }
})

test('sendMessages takes tools and toolChoice, and sends a tool exchange with content parts as given', async () => {
  const raw = await callThenAnswerServer()
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: raw.url })
    const first = [{ role: 'user', content: [{ type: 'text', text: 'Weather here?' }, photo] }]
    const called = await api.sendMessages(first, { tools: [weather], toolChoice: 'required' })
    assert.deepEqual(called.toolCalls, [raw.call])
    assert.deepEqual(raw.bodies[0].tools, [weather])
    assert.equal(raw.bodies[0].tool_choice, 'required')
    const next = [
      ...first,
      { role: 'assistant', content: called.text || null, tool_calls: called.toolCalls },
      { role: 'tool', tool_call_id: raw.call.id, content: 'sunny' },
    ]
    const answer = await api.sendMessages(next, { tools: [weather] })
    assert.equal(answer.text, 'sunny')
    assert.deepEqual(raw.bodies[1].messages, next)

    const err = await rejection(api.sendMessages(first, { toolChoice: 'sometimes' }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.ok(err.message.includes('`toolChoice`'), err.message)
  } finally {
    raw.close()
  }
})

/** The rows of a store with their ids replaced by their order of first appearance, so two stores compare. */
function normalizedRows(rows) {
  const ids = new Map()
  const id = (value) => {
    if (value === undefined) return undefined
    if (!ids.has(value)) ids.set(value, `#${ids.size}`)
    return ids.get(value)
  }
  return [...rows.values()].map((row) => ({ ...row, id: id(row.id), parentMessageId: id(row.parentMessageId) }))
}

/** A client of `url` whose store is the Map it returns. */
function storedClient(url) {
  const rows = new Map()
  const api = new ChatGPTAPI({
    apiKey: API_KEY,
    apiBaseUrl: url,
    systemMessage: '',
    getMessageById: (id) => rows.get(id),
    upsertMessage: (m) => void rows.set(m.id, structuredClone(m)),
  })
  return { api, rows }
}

test('tool messages as the input are sent, stored and chained exactly as toolResults are', async () => {
  const servers = [await callThenAnswerServer(), await callThenAnswerServer()]
  try {
    const [viaOption, viaInput] = servers.map((s) => storedClient(s.url))
    const content = { temperatureC: 21 }
    const calledA = await viaOption.api.sendMessage('weather?', { tools: [weather], messageId: 'u1' })
    const calledB = await viaInput.api.sendMessage('weather?', { tools: [weather], messageId: 'u1' })
    const toolCallId = calledA.toolCalls[0].id
    const answerA = await viaOption.api.sendMessage('', {
      toolResults: [{ toolCallId, content }],
      parentMessageId: calledA.id,
      messageId: 'u2',
      tools: [weather],
    })
    const answerB = await viaInput.api.sendMessage(
      { role: 'tool', toolCallId, content },
      { parentMessageId: calledB.id, messageId: 'u2', tools: [weather] },
    )
    assert.equal(answerB.text, answerA.text)
    assert.equal(answerB.parentMessageId, 'u2', 'the result takes the user message id, as with toolResults')
    // The same request body, with the result after the call.
    assert.deepEqual(servers[1].bodies[1], servers[0].bodies[1])
    assert.deepEqual(servers[1].bodies[1].messages.at(-1), { role: 'tool', content: '{"temperatureC":21}', tool_call_id: toolCallId })
    // The same rows, chained the same: user, reply, tool result, answer.
    assert.deepEqual(normalizedRows(viaInput.rows), normalizedRows(viaOption.rows))
    assert.equal(viaInput.rows.size, 4)
    assert.equal(viaInput.rows.get('u2').role, 'tool')
    assert.equal(viaInput.rows.get('u2').parentMessageId, calledB.id)
    // A later turn continues from the answer the same way.
    const laterA = await viaOption.api.buildMessages('thanks', { parentMessageId: answerA.id })
    const laterB = await viaInput.api.buildMessages('thanks', { parentMessageId: answerB.id })
    assert.deepEqual(laterB, laterA)
  } finally {
    for (const s of servers) s.close()
  }
})

test('an array of tool messages is the toolResults array, against the simulator too', async () => {
  const api = clientFor(sim)
  const called = await api.sendMessage('weather in Paris?', { tools: [weather, clock] })
  const results = [
    { toolCallId: called.toolCalls[0].id, content: 'sunny' },
    { toolCallId: 'call_other', content: [1, 2] },
  ]
  const messages = results.map((r) => ({ role: 'tool', ...r }))
  const options = { parentMessageId: called.id }
  assert.deepEqual(await api.buildMessages(messages, options), await api.buildMessages('', { ...options, toolResults: results }))
  const answer = await api.sendMessage(messages, { ...options, tools: [weather], stream: true })
  assert.equal(answer.finishReason, 'stop')
  const next = await api.buildMessages('', { parentMessageId: answer.id })
  assert.deepEqual(
    next.messages.map((m) => [m.role, m.content]),
    [
      ['user', 'weather in Paris?'],
      ['assistant', ''],
      ['tool', 'sunny'],
      ['tool', '[1,2]'],
      ['assistant', answer.text],
    ],
  )
  // sendMany items take them too.
  const [item] = await api.sendMany([{ text: messages[0], parentMessageId: called.id, tools: [weather] }])
  assert.equal(item.ok, true, item.error?.message)
  assert.equal(item.message.finishReason, 'stop')
})

test('bad tool-message inputs are rejected naming the argument', async () => {
  const api = clientFor(sim)
  const ok = { role: 'tool', toolCallId: 'call_1', content: 'x' }
  for (const [input, options, named] of [
    [{ role: 'tool', content: 'x' }, {}, '`text.toolCallId`'],
    [{ role: 'tool', tool_call_id: 'call_1', content: 'x' }, {}, '`text.toolCallId`'],
    [{ role: 'tool', toolCallId: 'call_1' }, {}, '`text.content`'],
    [{ role: 'user', content: 'x' }, {}, '`text.role`'],
    [{ ...ok, name: 'n' }, {}, '`text.name`'],
    [[ok, { type: 'text', text: 'x' }], {}, '`text[1]`'],
    [[{ type: 'text', text: 'x' }, ok], {}, '`text[0]`'],
    [[ok, { role: 'tool', content: 'y' }], {}, '`text[1].toolCallId`'],
    [ok, { toolResults: [{ toolCallId: 'call_1', content: 'x' }] }, '`toolResults`'],
  ]) {
    for (const method of ['sendMessage', 'buildMessages']) {
      const err = await rejection(api[method](input, options))
      assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', `${method} ${JSON.stringify(input)}`)
      assert.ok(err.message.includes(named), err.message)
    }
  }
  const wire = await rejection(api.sendMessage({ role: 'tool', tool_call_id: 'call_1', content: 'x' }))
  assert.ok(wire.message.includes('`text.tool_call_id`'), `says which spelling it read: ${wire.message}`)
  const err = await rejection(api.sendMany([{ text: { role: 'tool', content: 'x' } }]))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.ok(err.message.includes('`inputs[0].text.toolCallId`'), err.message)
  // An object that is no message is still named as the text.
  const plain = await rejection(api.sendMessage({}))
  assert.ok(plain.message.includes('`text`'), plain.message)
})

test('countMessageTokens counts tool calls and results as the budget does', async () => {
  const api = clientFor(sim, { systemMessage: '' })
  const called = await api.sendMessage('weather in Paris?', { tools: [weather] })
  const [call] = called.toolCalls
  const built = await api.buildMessages({ role: 'tool', toolCallId: call.id, content: '21C' }, { parentMessageId: called.id })
  // buildMessages' messages (toolCalls, toolCallId): the count the history budget made.
  assert.equal(countMessageTokens(built.messages), built.numTokens)
  // The same messages as the request body has them.
  const wire = [
    { role: 'user', content: 'weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [call] },
    { role: 'tool', tool_call_id: call.id, content: '21C' },
  ]
  const counted = countMessageTokens(wire)
  assert.equal(counted, built.numTokens)
  const toolText = countTokens(call.id) + countTokens(call.function.name) + countTokens(call.function.arguments) + countTokens(call.id)
  assert.ok(toolText > 0)
  assert.equal(counted, countMessageTokens(wire.map(({ role, content }) => ({ role, content }))) + toolText)
  // sendMessages budgets them the same: the prompt it refuses needs exactly `counted` tokens.
  const small = clientFor(sim, { maxModelTokens: counted + 10, maxResponseTokens: 11 })
  const err = await rejection(small.sendMessages(wire))
  assert.equal(err.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
  assert.equal(err.promptTokens, counted)
  const fits = clientFor(sim, { maxModelTokens: counted + 10, maxResponseTokens: 10 })
  const reply = await fits.sendMessages(wire)
  // The simulator bills role, content and name only: the tool fields are this package's estimate.
  assert.equal(reply.usage.promptTokens, counted - toolText)
})

test('countMessageTokens rejects bad tool fields naming them', () => {
  const call = { id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }
  for (const [messages, named] of [
    [[{ role: 'assistant', tool_calls: 'x' }], '`messages[0].tool_calls`'],
    [[{ role: 'assistant', tool_calls: [{ id: 'c1', type: 'function' }] }], '`messages[0].tool_calls[0].function`'],
    [[{ role: 'assistant', toolCalls: [{ ...call, id: 1 }] }], '`messages[0].toolCalls[0].id`'],
    [[{ role: 'assistant', tool_calls: [call], toolCalls: [call] }], '`messages[0].toolCalls`'],
    [[{ role: 'tool', content: 'x', tool_call_id: 1 }], '`messages[0].tool_call_id`'],
    [[{ role: 'tool', content: 'x', tool_call_id: 'c1', toolCallId: 'c1' }], '`messages[0].toolCallId`'],
    [[{ role: 'user', tool_calls: [call] }], '`messages[0].content`'],
  ]) {
    const err = thrown(() => countMessageTokens(messages))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', JSON.stringify(messages))
    assert.ok(err.message.includes(named), err.message)
  }
  assert.equal(countMessageTokens([{ role: 'assistant', content: null, tool_calls: [call] }]), countMessageTokens([{ role: 'assistant', toolCalls: [call] }]))
})
