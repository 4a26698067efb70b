// The client suite `npm run test:interop` runs against servers this project did not write (the
// LiteLLM proxy and aimock, see interop/servers.mjs), through the public API. scripts/interop.mjs
// starts the servers and passes them in INTEROP_SERVERS (a JSON array of `{ id, url, apiKey }`,
// `id` a key of PROFILES); the same tests run once per server. Each quirk test first captures the
// server's raw SSE, to show the quirk is really there with the pinned version, then checks what
// the client makes of it.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'

import { ChatGPTAPI, ChatGPTError } from '../index.js'
import { PROFILES, WEATHER_TOOL, WEATHER_ARGS } from './servers.mjs'

const servers = JSON.parse(process.env.INTEROP_SERVERS ?? '[]')
if (servers.length === 0) {
  throw new Error('INTEROP_SERVERS is not set: run this suite with `npm run test:interop`')
}

/** A client for one server: quick retries, a bounded call, no cache. */
function clientFor(server, { model, completionParams, apiKey, keyPool } = {}) {
  return new ChatGPTAPI({
    ...(keyPool ? { apiKeys: [server.apiKey, server.spareKey] } : { apiKey: apiKey ?? server.apiKey }),
    apiBaseUrl: `${server.url}/v1`,
    completionParams: { model, ...completionParams },
    maxRetries: 2,
    retryBaseMs: 20,
    timeoutMs: 30_000,
  })
}

/** Sends `body` to the server as it is and returns the data of each SSE event (`[DONE]` left out). */
async function rawStream(server, body) {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    signal: AbortSignal.timeout(30_000),
  })
  assert.equal(res.status, 200)
  const events = (await res.text())
    .split(/\r?\n\r?\n/)
    .map((event) => event.split(/\r?\n/).filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trim()).join('\n'))
    .filter((data) => data !== '' && data !== '[DONE]')
  return events.map((data) => JSON.parse(data))
}

/** Streams `prompt` through the client; returns the reply and every onProgress delta. */
async function streamed(api, prompt, options = {}) {
  const deltas = []
  const reply = await api.sendMessage(prompt, { ...options, onProgress: (partial) => deltas.push(partial.delta) })
  return { reply, deltas }
}

function assertServerUsage(reply) {
  assert.equal(reply.usage.estimated, false, 'usage is the server count, not an estimate')
  assert.ok(reply.usage.completionTokens > 0)
  assert.equal(reply.usage.totalTokens, reply.usage.promptTokens + reply.usage.completionTokens)
}

function assertWeatherCall(reply, finishReason) {
  assert.equal(reply.finishReason, finishReason)
  assert.equal(reply.toolCalls?.length, 1)
  const [call] = reply.toolCalls
  assert.equal(call.type, 'function')
  assert.equal(typeof call.id, 'string')
  assert.ok(call.id.length > 0)
  assert.equal(call.function.name, 'get_weather')
  assert.deepEqual(JSON.parse(call.function.arguments), WEATHER_ARGS)
  assert.equal(reply.text, '')
}

async function rejection(promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  assert.fail('expected a rejection')
}

for (const server of servers) {
  const p = PROFILES[server.id]
  describe(`against ${p.name}`, () => {
    test('a plain reply has the text, finish reason and server usage', async () => {
      const reply = await clientFor(server, p.plain).sendMessage(p.plain.prompt)
      assert.equal(reply.text, p.plain.text)
      assert.equal(reply.finishReason, 'stop')
      assertServerUsage(reply)
      assert.equal(reply.toolCalls, undefined)
    })

    test('a streamed reply arrives in several deltas that join to the text', async () => {
      const { reply, deltas } = await streamed(clientFor(server, p.plain), p.plain.prompt)
      assert.ok(deltas.length > 1, `${deltas.length} deltas`)
      assert.equal(deltas.join(''), p.plain.text)
      assert.equal(reply.text, p.plain.text)
      assert.equal(reply.finishReason, 'stop')
    })

    test('a streamed reply has the usage of the chunk include_usage asked for, counted once', async () => {
      const chunks = await rawStream(server, { model: p.plain.model, messages: [{ role: 'user', content: p.plain.prompt }] })
      const usageChunk = chunks.find((chunk) => chunk.usage)
      assert.ok(usageChunk, 'the server sends a usage chunk when stream_options.include_usage is set')
      // The quirk: LiteLLM's usage chunk has a choice (with an empty delta), OpenAI's has none.
      assert.equal(usageChunk.choices.length > 0, p.usageChunkHasChoices, JSON.stringify(usageChunk))

      // Both servers send a usage chunk only when the request asks for it, so these counts being
      // the server's shows the client sent `stream_options: { include_usage: true }`.
      const { reply, deltas } = await streamed(clientFor(server, p.plain), p.plain.prompt)
      assertServerUsage(reply)
      // The client's prompt has its system message too, so only the completion is comparable.
      assert.equal(reply.usage.completionTokens, usageChunk.usage.completion_tokens)
      // The usage chunk's choice added nothing and did not end the text twice.
      assert.equal(deltas.join(''), p.plain.text)
      assert.equal(reply.text, p.plain.text)
      assert.equal(reply.finishReason, 'stop')
      if (p.journal) {
        // aimock's journal has the request as the client sent it.
        const res = await fetch(`${server.url}/__aimock/journal?requestId=${encodeURIComponent(reply.requestId)}`, {
          headers: { authorization: `Bearer ${server.apiKey}` },
          signal: AbortSignal.timeout(10_000),
        })
        const [entry] = await res.json()
        assert.equal(entry.body.stream, true)
        assert.deepEqual(entry.body.stream_options, { include_usage: true })
      }
      // `detail` is the chunk that carried finish_reason, not the usage chunk's choice.
      assert.equal(reply.detail.choices[0].finish_reason, 'stop')
      assert.equal(reply.detail.usage.completion_tokens, usageChunk.usage.completion_tokens)
    })

    test('an emoji arrives whole in the text and in the deltas', async () => {
      const chunks = await rawStream(server, { model: p.emoji.model, messages: [{ role: 'user', content: p.emoji.prompt }] })
      const contents = chunks.map((chunk) => chunk.choices?.[0]?.delta?.content).filter((c) => typeof c === 'string')
      // The quirk: aimock cuts its text every 20 UTF-16 units, so an emoji straddling a cut is
      // sent as a lone high surrogate ending one chunk and a lone low one starting the next.
      const split = contents.some((c) => /[\ud800-\udbff]$/.test(c))
      assert.equal(split, p.splitsSurrogates, JSON.stringify(contents))
      assert.equal(contents.join(''), p.emoji.text)

      const { reply, deltas } = await streamed(clientFor(server, p.emoji), p.emoji.prompt)
      assert.equal(reply.text, p.emoji.text)
      assert.equal(deltas.join(''), p.emoji.text)
      for (const delta of deltas) {
        assert.equal(delta.isWellFormed(), true, `delta ${JSON.stringify(delta)} holds half a surrogate pair`)
      }
    })

    test('a reply that calls a tool has toolCalls', async () => {
      const reply = await clientFor(server, p.tools).sendMessage(p.tools.prompt, { tools: [WEATHER_TOOL] })
      assertWeatherCall(reply, p.tools.finishReason)
    })

    test('a streamed tool call is joined from its fragments', async () => {
      const api = clientFor(server, p.toolsStreamed)
      const chunks = await rawStream(server, {
        model: p.toolsStreamed.model,
        messages: [{ role: 'user', content: p.toolsStreamed.prompt }],
        tools: [WEATHER_TOOL],
      })
      const fragments = chunks.flatMap((chunk) => chunk.choices?.[0]?.delta?.tool_calls ?? [])
      assert.ok(fragments.length > 1, `the server streams the call in ${fragments.length} fragments`)

      const partials = []
      const reply = await api.sendMessage(p.toolsStreamed.prompt, {
        tools: [WEATHER_TOOL],
        onProgress: (partial) => partials.push(partial),
      })
      assertWeatherCall(reply, p.toolsStreamed.finishReason)
      assert.ok(partials.length > 0)
      assert.equal(partials.at(-1).toolCalls?.[0]?.function.name, 'get_weather')
    })

    test('an error status rejects with its code, not retried', async () => {
      const err = await rejection(clientFor(server, p.badRequest).sendMessage(p.badRequest.prompt))
      assert.ok(err instanceof ChatGPTError)
      assert.equal(err.code, 'ERR_CHATGPT_HTTP')
      assert.equal(err.statusCode, p.badRequest.statusCode)
      assert.equal(err.type, 'invalid_request_error')
      assert.equal(err.attempts, 1)
    })

    test('a key the server does not know rejects with the code its status means', async () => {
      const api = clientFor(server, { ...p.wrongKey, apiKey: 'sk-interop-not-the-key-0000000000000000' })
      const err = await rejection(api.sendMessage(p.wrongKey.prompt))
      assert.ok(err instanceof ChatGPTError)
      assert.equal(err.code, p.wrongKey.code)
      assert.equal(err.statusCode, p.wrongKey.statusCode)
      assert.equal(err.attempts, 1)
    })

    if (p.notFound) {
      test('a 404 rejects with ERR_CHATGPT_HTTP, not retried', async () => {
        const err = await rejection(clientFor(server, p.notFound).sendMessage(p.notFound.prompt))
        assert.equal(err.code, 'ERR_CHATGPT_HTTP')
        assert.equal(err.statusCode, 404)
        assert.equal(err.attempts, 1)
      })
    }

    test('a 429 is retried and the retry succeeds', async () => {
      const api = clientFor(server, p.flaky)
      const reply = await api.sendMessage(p.flaky.prompt)
      assert.equal(reply.text, p.flaky.text)
      const metrics = api.metrics()
      assert.equal(metrics.rateLimitedResponses, 1)
      assert.equal(metrics.attempts, 2)
      assert.equal(metrics.retries, 1)
    })

    if (p.keyPool) {
      test('a 429 with a second key is retried on that key at once', async () => {
        const api = clientFor(server, p.keyPool)
        const started = Date.now()
        const reply = await api.sendMessage(p.keyPool.prompt)
        assert.equal(reply.text, p.keyPool.text)
        assert.equal(api.metrics().attempts, 2)
        assert.ok(Date.now() - started < 1000, 'the retry does not wait for the first key')
        assert.deepEqual(api.metrics().keys.map((k) => k.coolDowns).sort(), [0, 1])
      })
    }
  })
}
