// The bundled simulator as users drive it from JavaScript: endpoints, faults, counters, lifecycle.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator, ChatGPTError } from '../index.js'
import { API_KEY, startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ model: 'sim-test-model', responseTokens: 8 })
})
after(() => sim.close())

const chat = (body, headers = {}) =>
  fetch(`${sim.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, ...headers },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }),
  })

test('listens on 127.0.0.1 and reports its url and port', () => {
  assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/)
  assert.equal(sim.url, `http://127.0.0.1:${sim.port}/v1`)
})

test('lists its model at GET /v1/models', async () => {
  const res = await fetch(`${sim.url}/models`, { headers: { authorization: `Bearer ${API_KEY}` } })
  assert.equal(res.status, 200)
  const body = await res.json()
  assert.equal(body.object, 'list')
  assert.equal(body.data[0].id, 'sim-test-model')
})

test('answers 401 with an OpenAI error body when the key is wrong', async () => {
  const res = await chat({}, { authorization: 'Bearer sk-nope' })
  assert.equal(res.status, 401)
  const body = await res.json()
  assert.equal(body.error.code, 'invalid_api_key')
  assert.ok(!JSON.stringify(body).includes('sk-nope'))
  assert.match(res.headers.get('x-request-id'), /^req_/)
})

test('applies a fault sent per request in the x-sim-fault header', async () => {
  const res = await chat({}, { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 503, retryAfter: '2' }) })
  assert.equal(res.status, 503)
  assert.equal(res.headers.get('retry-after'), '2')
})

test('queued faults are applied once each, in order', async () => {
  sim.enqueueFault({ kind: 'status', status: 500 })
  sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '25' })
  assert.equal(sim.pendingFaults, 2)
  assert.equal((await chat({})).status, 500)
  const limited = await chat({})
  assert.equal(limited.status, 429)
  assert.equal(limited.headers.get('retry-after-ms'), '25')
  assert.equal((await chat({})).status, 200)
  sim.enqueueFault({ kind: 'status' })
  sim.clearFaults()
  assert.equal(sim.pendingFaults, 0)
})

test('rejects a malformed fault with ERR_CHATGPT_INVALID_ARG', () => {
  assert.throws(() => sim.enqueueFault({ kind: 'explode' }), (err) => err instanceof ChatGPTError && err.code === 'ERR_CHATGPT_INVALID_ARG')
})

test('counts requests and the most requests in flight at once', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 150 })
  try {
    const api = clientFor(slow, { apiKey: 'any' })
    await Promise.all(Array.from({ length: 6 }, (_, i) => api.sendMessage(`parallel ${i}`)))
    const stats = slow.stats()
    assert.equal(stats.chatRequests, 6)
    assert.equal(stats.maxInFlight, 6)
    assert.equal(stats.inFlight, 0)
    assert.ok(stats.completionTokens > 0)
    slow.resetStats()
    assert.equal(slow.stats().chatRequests, 0)
  } finally {
    await slow.close()
  }
})

test('generates deterministic text: same prompt, same answer', async () => {
  const a = await (await chat({ messages: [{ role: 'user', content: 'determinism' }] })).json()
  const b = await (await chat({ messages: [{ role: 'user', content: 'determinism' }] })).json()
  const c = await (await chat({ messages: [{ role: 'user', content: 'something else' }] })).json()
  assert.equal(a.choices[0].message.content, b.choices[0].message.content)
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content)
})

test('paces streams with ttftMs and tokenDelayMs', async () => {
  const paced = await ChatGPTSimulator.start({ ttftMs: 100, tokenDelayMs: 20, responseTokens: 5 })
  try {
    const started = performance.now()
    const times = []
    await clientFor(paced, { apiKey: 'any' }).sendMessage('pace', { onProgress: () => times.push(performance.now() - started) })
    assert.equal(times.length, 5)
    assert.ok(times[0] >= 90, `first token after ttft, got ${times[0]}`)
    assert.ok(times[4] - times[0] >= 70, `tokens spaced by tokenDelayMs, got ${times[4] - times[0]}`)
  } finally {
    await paced.close()
  }
})

test('close() stops it listening and is idempotent', async () => {
  const temp = await ChatGPTSimulator.start()
  const url = temp.url
  await temp.close()
  await temp.close()
  const err = await rejection(clientFor({ url }, { apiKey: 'any' }).sendMessage('closed'))
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
})

test('rejects invalid options naming the option', async () => {
  await assert.rejects(ChatGPTSimulator.start({ port: 70000 }), /`port`/)
  await assert.rejects(ChatGPTSimulator.start({ ttftMs: -1 }), /`ttftMs`.*-1/)
})

// The chat-completions surface beyond plain text, checked on the wire (raw fetch, no client).

/** The parsed chunks of an SSE body, without `[DONE]` (which must end it). */
async function chunksOf(res) {
  assert.equal(res.status, 200)
  const frames = (await res.text()).split('\n\n').filter(Boolean).map((frame) => frame.replace(/^data: /, ''))
  assert.equal(frames.pop(), '[DONE]')
  return frames.map((frame) => JSON.parse(frame))
}

/** The joined `delta[field]` strings of choice `index`. */
const joined = (chunks, index, field) =>
  chunks.filter((c) => c.choices[0]?.index === index).map((c) => c.choices[0].delta[field] ?? '').join('')

test('n = 3 streams the choices round-robin, a finish chunk each, usage summing them', async () => {
  const complete = await (await chat({ n: 3 })).json()
  assert.deepEqual(complete.choices.map((c) => c.index), [0, 1, 2])
  assert.equal(new Set(complete.choices.map((c) => c.message.content)).size, 3)
  assert.equal(complete.usage.completion_tokens, 3 * 8)
  const chunks = await chunksOf(await chat({ n: 3, stream: true, stream_options: { include_usage: true } }))
  const usage = chunks.pop()
  assert.deepEqual(usage.choices, [])
  assert.equal(usage.usage.completion_tokens, 3 * 8)
  // A role chunk per choice, 8 rounds of one delta per choice, a finish chunk per choice.
  assert.deepEqual(chunks.map((c) => c.choices[0].index), Array.from({ length: 10 }, () => [0, 1, 2]).flat())
  assert.deepEqual(chunks.slice(-3).map((c) => c.choices[0].finish_reason), ['stop', 'stop', 'stop'])
  for (const choice of complete.choices) assert.equal(joined(chunks, choice.index, 'content'), choice.message.content)
})

test('the [refuse] marker is answered with a refusal, complete or streamed', async () => {
  const messages = [{ role: 'user', content: 'tell me [refuse]' }]
  const complete = await (await chat({ messages })).json()
  const { message, finish_reason: finish } = complete.choices[0]
  assert.equal(message.content, null)
  assert.equal(typeof message.refusal, 'string')
  assert.equal(finish, 'stop')
  assert.ok(complete.usage.completion_tokens > 3)
  const chunks = await chunksOf(await chat({ messages, stream: true }))
  const pieces = chunks.filter((c) => c.choices[0].delta.refusal)
  assert.ok(pieces.length > 3, 'the refusal comes in several deltas')
  assert.equal(pieces.length, complete.usage.completion_tokens)
  assert.ok(chunks.every((c) => !('content' in c.choices[0].delta)))
  assert.equal(joined(chunks, 0, 'refusal'), message.refusal)
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop')
})

test('logprobs: an entry per token with its bytes and top alternatives, complete or streamed', async () => {
  const complete = await (await chat({ logprobs: true, top_logprobs: 2 })).json()
  const { content, refusal } = complete.choices[0].logprobs
  assert.equal(refusal, null)
  assert.equal(content.length, 8)
  assert.equal(content.map((e) => e.token).join(''), complete.choices[0].message.content)
  for (const entry of content) {
    assert.ok(entry.logprob <= 0)
    assert.deepEqual(entry.bytes, [...Buffer.from(entry.token)])
    assert.equal(entry.top_logprobs.length, 2)
  }
  const chunks = await chunksOf(await chat({ logprobs: true, top_logprobs: 2, stream: true }))
  const streamed = chunks.filter((c) => c.choices[0].delta.content).map((c) => c.choices[0].logprobs.content)
  assert.ok(streamed.every((entries) => entries.length === 1))
  assert.deepEqual(streamed.flat(), content)
  assert.equal((await (await chat({})).json()).choices[0].logprobs, null)
})

test('json_schema answers are instances of the schema; streamed, the deltas join into it', async () => {
  const schema = {
    type: 'object',
    properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 2 }, unit: { enum: ['c', 'f'] }, note: { type: 'string' } },
    required: ['city', 'days', 'unit'],
    additionalProperties: false,
  }
  const response_format = { type: 'json_schema', json_schema: { name: 'weather', strict: true, schema } }
  const complete = await (await chat({ response_format })).json()
  const text = complete.choices[0].message.content
  const parsed = JSON.parse(text)
  assert.deepEqual(Object.keys(parsed).sort(), ['city', 'days', 'unit'])
  assert.equal(typeof parsed.city, 'string')
  assert.equal(parsed.days, 2)
  assert.equal(parsed.unit, 'c')
  const chunks = await chunksOf(await chat({ response_format, stream: true }))
  assert.ok(chunks.filter((c) => c.choices[0].delta.content).length > 3)
  assert.equal(joined(chunks, 0, 'content'), text)
  const object = await (await chat({ response_format: { type: 'json_object' } })).json()
  assert.equal(typeof JSON.parse(object.choices[0].message.content).answer, 'string')
})

test('a JSON answer cut by max_tokens is invalid JSON with finish_reason length', async () => {
  const whole = await (await chat({ response_format: { type: 'json_object' } })).json()
  const body = await (await chat({ response_format: { type: 'json_object' }, max_tokens: 3 })).json()
  assert.equal(body.choices[0].finish_reason, 'length')
  assert.equal(typeof JSON.parse(whole.choices[0].message.content).answer, 'string')
  assert.ok(whole.choices[0].message.content.startsWith(body.choices[0].message.content))
  assert.throws(() => JSON.parse(body.choices[0].message.content), SyntaxError)
  assert.equal(body.usage.completion_tokens, 3)
})

test('reasoning models report reasoning tokens inside completion_tokens', async () => {
  const usageOf = async (extra) => (await (await chat({ model: 'o4-mini', ...extra })).json()).usage
  const usage = await usageOf({})
  const reasoning = usage.completion_tokens_details.reasoning_tokens
  assert.ok(reasoning > 0)
  assert.equal(usage.completion_tokens, 8 + reasoning)
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
  assert.equal(usage.prompt_tokens_details.cached_tokens, 0)
  const low = await usageOf({ reasoning_effort: 'low' })
  const high = await usageOf({ reasoning_effort: 'high' })
  assert.ok(high.completion_tokens_details.reasoning_tokens > low.completion_tokens_details.reasoning_tokens)
  assert.equal((await (await chat({})).json()).usage.completion_tokens_details, undefined)
})

test('out-of-range n, top_logprobs, response_format and reasoning_effort get 400 naming the parameter', async () => {
  for (const [extra, param] of [
    [{ n: 0 }, 'n'],
    [{ n: 9 }, 'n'],
    [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    [{ top_logprobs: 2 }, 'top_logprobs'],
    [{ response_format: { type: 'yaml' } }, 'response_format'],
    [{ model: 'o3', reasoning_effort: 'max' }, 'reasoning_effort'],
    [{ model: 'gpt-4o', reasoning_effort: 'low' }, 'reasoning_effort'],
  ]) {
    const res = await chat(extra)
    assert.equal(res.status, 400, JSON.stringify(extra))
    const { error } = await res.json()
    assert.equal(error.type, 'invalid_request_error')
    assert.equal(error.param, param, JSON.stringify(extra))
  }
})
