// Several choices (`completionParams.n`), refusals and logprobs through the public API, against a
// raw node:http server in the test that answers with crafted JSON or SSE: `reply.choices`,
// `onProgress`'s `choiceIndex`, `reply.refusal`, `reply.logprobs`, and the bounds on `n`; and the same
// end to end against the simulator, which answers `n`, `[refuse]` and `logprobs` itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import { API_KEY, answeringServer, rejection, thrown } from './helpers.mjs'

/**
 * A server answering every request with `answer` (an array of SSE frames, objects or strings, or
 * an object sent as JSON); records the request bodies. `options` are the client's.
 */
async function rawServer(answer, options = {}) {
  const server = await answeringServer(answer)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: server.url, systemMessage: '', ...options })
  return { api, bodies: server.bodies, close: server.close }
}

/** A stream chunk of choice `index`. */
const chunk = (index, delta, finish = null, extra = {}) => ({
  id: 'c',
  object: 'chat.completion.chunk',
  choices: [{ index, delta, finish_reason: finish, ...extra }],
})

const logprob = (token) => ({ token, logprob: -0.25, bytes: [...Buffer.from(token)], top_logprobs: [] })

test('n = 3 streamed interleaved: reply.choices, partials per choice in order, tool calls on choice 1', async () => {
  const server = await rawServer([
    chunk(0, { role: 'assistant', content: 'Red' }),
    chunk(1, { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'pick', arguments: '' } }] }),
    chunk(2, { role: 'assistant', content: 'Gre' }),
    chunk(0, { content: ' wine' }),
    chunk(1, { tool_calls: [{ index: 0, function: { arguments: '{"c":1}' } }] }),
    chunk(2, { content: 'en' }),
    chunk(0, {}, 'stop'),
    chunk(1, {}, 'tool_calls'),
    chunk(2, {}, 'length'),
    { id: 'c', choices: [], usage: { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 } },
    '[DONE]',
  ])
  try {
    const partials = []
    const reply = await server.api.sendMessage('Name a colour', {
      completionParams: { n: 3 },
      onProgress: (p) => partials.push({ choiceIndex: p.choiceIndex, text: p.text, delta: p.delta, toolCalls: p.toolCalls }),
    })
    assert.equal(server.bodies[0].n, 3, 'n is sent')
    assert.deepEqual(
      partials.map((p) => [p.choiceIndex, p.text, p.delta]),
      [
        [0, 'Red', 'Red'],
        [1, '', ''],
        [2, 'Gre', 'Gre'],
        [0, 'Red wine', ' wine'],
        [1, '', ''],
        [2, 'Green', 'en'],
      ],
    )
    assert.equal(partials[4].toolCalls[0].function.arguments, '{"c":1}')
    assert.equal(partials[0].toolCalls, undefined, 'choice 0 called nothing')
    // The reply's own fields are choice 0's.
    assert.equal(reply.text, 'Red wine')
    assert.equal(reply.finishReason, 'stop')
    assert.equal(reply.toolCalls, undefined)
    assert.deepEqual(
      reply.choices.map((c) => [c.index, c.text, c.finishReason]),
      [
        [0, 'Red wine', 'stop'],
        [1, '', 'tool_calls'],
        [2, 'Green', 'length'],
      ],
    )
    assert.deepEqual(reply.choices[1].toolCalls, [
      { id: 'call_1', type: 'function', function: { name: 'pick', arguments: '{"c":1}' } },
    ])
    assert.equal(reply.choices[0].toolCalls, undefined)
    assert.equal(reply.usage.totalTokens, 11)
    // The store keeps choice 0 as the assistant turn.
    const built = await server.api.buildMessages('next', { parentMessageId: reply.id })
    assert.deepEqual(
      built.messages.map((m) => [m.role, m.content]),
      [
        ['user', 'Name a colour'],
        ['assistant', 'Red wine'],
        ['user', 'next'],
      ],
    )
  } finally {
    server.close()
  }
})

test('n = 2 not streamed: every choice of the response is in reply.choices, tool calls included', async () => {
  const server = await rawServer({
    id: 'x',
    object: 'chat.completion',
    choices: [
      { index: 0, message: { role: 'assistant', content: 'Teal' }, finish_reason: 'stop', logprobs: null },
      {
        index: 1,
        message: {
          role: 'assistant',
          content: 'Let me pick one for you',
          tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'pick', arguments: '{}' } }],
        },
        finish_reason: 'tool_calls',
      },
    ],
  })
  try {
    const reply = await server.api.sendMessage('Name a colour', { completionParams: { n: 2 } })
    assert.equal(reply.text, 'Teal')
    assert.equal(reply.choices.length, 2)
    assert.equal(reply.choices[1].toolCalls[0].id, 'call_9')
    assert.equal(reply.choices[1].finishReason, 'tool_calls')
    // Without usage from the server, the estimate counts every choice's completion.
    const single = await server.api.sendMessage('Name a colour')
    assert.equal(reply.usage.estimated, true)
    assert.equal(single.text, 'Teal')
    assert.ok(
      reply.usage.completionTokens > single.usage.completionTokens,
      `${reply.usage.completionTokens} > ${single.usage.completionTokens}`,
    )
  } finally {
    server.close()
  }
})

test('a reply to n = 1 has no choices key, even when the server sends more choices', async () => {
  const server = await rawServer({
    id: 'x',
    choices: [
      { index: 0, message: { role: 'assistant', content: 'one' }, finish_reason: 'stop' },
      { index: 1, message: { role: 'assistant', content: 'two' }, finish_reason: 'stop' },
    ],
  })
  try {
    for (const completionParams of [undefined, { n: 1 }]) {
      const reply = await server.api.sendMessage('hi', { completionParams })
      assert.equal(reply.text, 'one')
      assert.equal('choices' in reply, false)
      assert.equal('refusal' in reply, false)
      assert.equal('logprobs' in reply, false)
    }
  } finally {
    server.close()
  }
})

test('a streamed refusal sets reply.refusal; its partials carry it with an empty delta and text', async () => {
  const server = await rawServer([
    chunk(0, { role: 'assistant', refusal: "I can't " }),
    chunk(0, { refusal: 'help with that.' }),
    chunk(0, {}, 'stop'),
    '[DONE]',
  ])
  try {
    const partials = []
    const reply = await server.api.sendMessage('Do something', {
      onProgress: (p) => partials.push({ text: p.text, delta: p.delta, refusal: p.refusal, choiceIndex: p.choiceIndex }),
    })
    assert.equal(reply.text, '')
    assert.equal(reply.finishReason, 'stop')
    assert.equal(reply.refusal, "I can't help with that.")
    assert.deepEqual(partials, [
      { text: '', delta: '', refusal: "I can't ", choiceIndex: undefined },
      { text: '', delta: '', refusal: "I can't help with that.", choiceIndex: undefined },
    ])
  } finally {
    server.close()
  }
})

test('with several choices, a streamed refusal belongs to its choice', async () => {
  const server = await rawServer([
    chunk(0, { role: 'assistant', content: 'Sure' }),
    chunk(1, { role: 'assistant', refusal: 'No' }),
    chunk(1, { refusal: ' way.' }),
    chunk(0, {}, 'stop'),
    chunk(1, {}, 'stop'),
    '[DONE]',
  ])
  try {
    const partials = []
    const reply = await server.api.sendMessage('Do something', {
      completionParams: { n: 2 },
      onProgress: (p) => partials.push([p.choiceIndex, p.text, p.delta, p.refusal]),
    })
    assert.deepEqual(partials, [
      [0, 'Sure', 'Sure', undefined],
      [1, '', '', 'No'],
      [1, '', '', 'No way.'],
    ])
    assert.equal(reply.refusal, undefined, 'choice 0 did not refuse')
    assert.equal('refusal' in reply, false)
    assert.equal(reply.choices[1].refusal, 'No way.')
    assert.equal(reply.choices[1].text, '')
  } finally {
    server.close()
  }
})

test('a refusal in a complete response sets reply.refusal', async () => {
  const server = await rawServer({
    id: 'x',
    choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: 'No.' }, finish_reason: 'stop' }],
  })
  try {
    const reply = await server.api.sendMessage('Do something')
    assert.equal(reply.text, '')
    assert.equal(reply.refusal, 'No.')
  } finally {
    server.close()
  }
})

test('streamed logprobs are accumulated into reply.logprobs, per choice', async () => {
  const server = await rawServer([
    chunk(0, { role: 'assistant', content: 'Hel' }, null, { logprobs: { content: [logprob('Hel')], refusal: null } }),
    chunk(1, { role: 'assistant', content: 'Yo' }, null, { logprobs: { content: [logprob('Yo')], refusal: null } }),
    chunk(0, { content: 'lo' }, null, { logprobs: { content: [logprob('lo')], refusal: null } }),
    chunk(0, {}, 'stop'),
    chunk(1, {}, 'stop'),
    '[DONE]',
  ])
  try {
    const reply = await server.api.sendMessage('hi', { completionParams: { n: 2, logprobs: true }, onProgress: () => {} })
    assert.equal(server.bodies[0].logprobs, true)
    assert.deepEqual(reply.logprobs, { content: [logprob('Hel'), logprob('lo')], refusal: null })
    assert.deepEqual(reply.choices[0].logprobs, reply.logprobs)
    assert.deepEqual(reply.choices[1].logprobs, { content: [logprob('Yo')], refusal: null })
  } finally {
    server.close()
  }
})

test('logprobs of a complete response are reply.logprobs as sent', async () => {
  const logprobs = { content: [logprob('Hi')], refusal: null }
  const server = await rawServer({
    id: 'x',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop', logprobs }],
  })
  try {
    const reply = await server.api.sendMessage('hi', { completionParams: { logprobs: true } })
    assert.deepEqual(reply.logprobs, logprobs)
  } finally {
    server.close()
  }
})

test('n outside 1..128, or not an integer, is ERR_CHATGPT_INVALID_ARG naming completionParams.n', async () => {
  const server = await rawServer({ id: 'x', choices: [{ index: 0, message: { content: 'x' }, finish_reason: 'stop' }] })
  try {
    for (const n of [0, 129, -1, 1.5, '2', null]) {
      const err = await rejection(server.api.sendMessage('hi', { completionParams: { n } }))
      assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG', String(n))
      assert.match(err.message, /`completionParams\.n`/)
      assert.ok(err.message.includes(JSON.stringify(n)), err.message)
      const ctor = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, completionParams: { n } }))
      assert.equal(ctor.code, 'ERR_CHATGPT_INVALID_ARG')
    }
    assert.equal(server.bodies.length, 0, 'nothing was sent')
  } finally {
    server.close()
  }
})

test('a cached reply of several choices replays whole: every choice, each in its own partial', async () => {
  const server = await rawServer(
    [
      chunk(0, { role: 'assistant', content: 'A' }),
      chunk(1, { role: 'assistant', content: 'B' }),
      chunk(0, { content: 'a' }),
      chunk(1, { content: 'b' }),
      chunk(0, {}, 'stop'),
      chunk(1, {}, 'stop'),
      '[DONE]',
    ],
    { cache: true },
  )
  try {
    const send = async () => {
      const partials = []
      const reply = await server.api.sendMessage('hi', {
        completionParams: { n: 2 },
        onProgress: (p) => partials.push([p.choiceIndex, p.text, p.delta]),
      })
      return { reply, partials }
    }
    const first = await send()
    const again = await send()
    assert.equal(server.bodies.length, 1, 'the second call is a cache hit')
    assert.equal(again.reply.cached, true)
    assert.deepEqual(
      again.reply.choices.map((c) => c.text),
      ['Aa', 'Bb'],
    )
    assert.deepEqual(
      first.reply.choices.map((c) => c.text),
      ['Aa', 'Bb'],
    )
    // Live (through the shared call the cache runs), every choice's deltas as they came.
    assert.deepEqual(first.partials, [
      [0, 'A', 'A'],
      [1, 'B', 'B'],
      [0, 'Aa', 'a'],
      [1, 'Bb', 'b'],
    ])
    // Replayed: choice 0's deltas as they streamed, then each other choice whole.
    assert.deepEqual(again.partials, [
      [0, 'A', 'A'],
      [0, 'Aa', 'a'],
      [1, 'Bb', 'Bb'],
    ])
  } finally {
    server.close()
  }
})

test('the rate limiter reserves the reply budget once per choice', async () => {
  const server = await rawServer(
    { id: 'x', choices: [{ index: 0, message: { content: 'x' }, finish_reason: 'stop' }] },
    { rateLimit: { tokensPerMinute: 1000 }, completionParams: { max_tokens: 400 } },
  )
  try {
    // One choice fits the minute's tokens; three replies of up to 400 tokens each cannot.
    await server.api.sendMessage('hi')
    const err = await rejection(server.api.sendMessage('hi', { completionParams: { n: 3 } }))
    assert.equal(err.code, 'ERR_CHATGPT_REQUEST_TOO_LARGE')
    assert.equal(server.bodies.length, 1, 'the second request was not sent')
  } finally {
    server.close()
  }
})

test('against the simulator: n choices, logprobs and refusals arrive the same streamed or not', async () => {
  const sim = await ChatGPTSimulator.start()
  try {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: sim.url })
    const completionParams = { n: 3, logprobs: true, top_logprobs: 2 }
    const plain = await api.sendMessage('Name a colour', { completionParams })
    const byIndex = new Map()
    const streamed = await api.sendMessage('Name a colour', {
      completionParams,
      onProgress: (p) => byIndex.set(p.choiceIndex, p.text),
    })
    for (const reply of [plain, streamed]) {
      assert.equal(reply.choices.length, 3)
      assert.deepEqual(reply.choices.map((c) => c.index), [0, 1, 2])
      for (const choice of reply.choices) {
        assert.equal(choice.finishReason, 'stop')
        // One logprobs entry per answer token, each with its two alternatives.
        const tokens = choice.logprobs.content.map((e) => e.token).join('')
        assert.equal(tokens.trim(), choice.text)
        for (const entry of choice.logprobs.content) {
          assert.ok(entry.logprob <= 0)
          assert.equal(entry.top_logprobs.length, 2)
        }
      }
      assert.equal(reply.text, reply.choices[0].text)
    }
    // The simulator's answers are deterministic: the same request gives the same choices.
    assert.deepEqual(streamed.choices.map((c) => c.text), plain.choices.map((c) => c.text))
    assert.deepEqual([...byIndex.keys()].sort(), [0, 1, 2])
    for (const [index, text] of byIndex) assert.equal(text.trim(), streamed.choices[index].text)
    // The usage counts every choice.
    const one = await api.sendMessage('Name a colour')
    assert.ok(plain.usage.completionTokens > one.usage.completionTokens)

    for (const stream of [false, true]) {
      const refused = await api.sendMessage('[refuse] Name a colour', { stream })
      assert.equal(refused.text, '')
      assert.equal(typeof refused.refusal, 'string')
      assert.ok(refused.refusal.length > 0)
      assert.equal(refused.choices, undefined)
    }
  } finally {
    await sim.close()
  }
})
