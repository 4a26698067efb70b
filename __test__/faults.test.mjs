// The fault matrix: one row per fault a server or the network can produce, each with its
// documented outcome (the result or error `code`, the number of HTTP requests or attempts,
// `partialText` where text had streamed), an upper time bound that proves it does not hang, and a
// check that nothing is left running afterwards (no request in flight at the server, none in
// flight or queued in the client). Faults the simulator scripts come from its queue; faults at
// the byte level (HTML error pages, lone surrogates, duplicate ids, endless bodies) come from a
// raw node:http server started for the row. README.md's "Fault handling" table lists the same
// rows, word for word; the last test keeps the two in step.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { ChatGPTError } from '../index.js'
import { startSimulator, clientFor, rejection, until } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 8 })
})
after(() => sim.close())

/** Every row's client: quick retries, a deadline well inside the rows' time bound, no cache. */
const CLIENT = { maxRetries: 2, retryBaseMs: 5, retryMaxMs: 20, timeoutMs: 4000, cache: false }
/** Upper bound on a row's whole run unless the row says otherwise: "it does not hang". */
const WITHIN_MS = 5000

const rateLimited = (headers) => ({ kind: 'status', status: 429, code: 'rate_limit_exceeded', ...headers })
const times = (n, fault) => Array.from({ length: n }, () => ({ ...fault }))

// --- Raw servers for byte-level faults ----------------------------------------------------------

/** A node:http server answering every request with `handler(req, res, body)`; counts requests
 * and the responses not yet closed. */
async function startRaw(handler) {
  let requests = 0
  let active = 0
  const bodies = []
  const server = http.createServer(async (req, res) => {
    requests++
    active++
    res.on('close', () => active--)
    let text = ''
    for await (const part of req) text += part
    const body = JSON.parse(text)
    bodies.push(body)
    handler(req, res, body)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    requests: () => requests,
    inFlight: () => active,
    bodies,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

/** A port nothing listens on: bound once, then released. */
async function refusedUrl() {
  const server = http.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return `http://127.0.0.1:${port}/v1`
}

const html = (status) => (req, res) => {
  res.writeHead(status, { 'content-type': 'text/html' })
  res.end(`<html><head><title>${status}</title></head><body><h1>${status} Bad Gateway or worse</h1></body></html>`)
}

/** One SSE chunk whose content is `jsonContent`, written as raw JSON string text (so escapes
 * such as `\ud83c` reach the client exactly as written). */
const sseDelta = (jsonContent, id = 'chatcmpl-raw') =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":0,"model":"raw","choices":[{"index":0,"delta":{"content":"${jsonContent}"},"finish_reason":null}]}\n\n`
const sseFinish = (id = 'chatcmpl-raw') =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":0,"model":"raw","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n`

/** A stream of the given raw-JSON contents, then a finish chunk and [DONE]. */
const rawStream = (contents) => (req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  for (const content of contents) res.write(sseDelta(content))
  res.end(sseFinish())
}

/** The role chunk at once, then after `delayMs` the whole reply (as a model that thinks first). */
const slowFirstToken = (delayMs) => (req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.write(`data: {"id":"chatcmpl-raw","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`)
  // A timed wait: the server's slowness is the subject of the rows using it.
  const timer = setTimeout(() => {
    res.write(sseDelta('late '))
    res.write(sseDelta('but fine'))
    res.end(sseFinish())
  }, delayMs)
  res.on('close', () => clearTimeout(timer))
}

const completionJson = (id, jsonContent) =>
  `{"id":"${id}","object":"chat.completion","created":0,"model":"raw","choices":[{"index":0,"message":{"role":"assistant","content":"${jsonContent}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`

/** Writes `piece(n)` forever (every `everyMs`, or as fast as the socket drains) until the client
 * goes away. */
const endless = ({ head, contentType, piece, everyMs }) => (req, res) => {
  res.writeHead(200, { 'content-type': contentType })
  if (head) res.write(head)
  let n = 0
  const tick = () => {
    if (res.destroyed || res.writableEnded) return
    const drained = res.write(piece(n++))
    // A timed drip: the rows using it are about a server that is slow, so time is the subject.
    if (everyMs) setTimeout(tick, everyMs)
    else if (drained) setImmediate(tick)
    else res.once('drain', tick)
  }
  tick()
}

/** Answers every request with the same completion id; the text names the last user message. */
const sameId = (req, res, body) => {
  const last = body.messages.at(-1).content
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(completionJson('chatcmpl-same', `reply to ${last}`))
}

// --- The matrix ---------------------------------------------------------------------------------
//
// A row has `fault` and `outcome` (the README's words), then how to produce it: `sim` (faults to
// queue, or a function returning them), `raw` (a handler for a raw server) or `url` (a function
// returning the base URL); `client` and `call` options over the defaults; `stream: true` to stream
// with an onProgress that records the deltas; `run` to replace the single call. `expect` holds:
// `text` (exact reply text) or `ok`, `code`, `statusCode`, `requests` (HTTP requests the server
// saw), `attempts` (err.attempts), `causeCode` (err.cause.code), `partialText` ('deltas': non-empty and equal to what reached
// onProgress), `withinMs`, `atLeastMs`; `check(ctx)` adds row-specific assertions.

const rows = [
  // 429 and its Retry-After forms.
  {
    fault: '429 with `retry-after: 1` (seconds)',
    outcome: 'Waits 1 s and retries: succeeds, 2 requests',
    sim: [rateLimited({ retryAfter: '1' })],
    expect: { ok: true, requests: 2, atLeastMs: 950 },
  },
  {
    fault: '429 with `retry-after-ms: 200`',
    outcome: 'Waits 200 ms and retries: succeeds, 2 requests',
    sim: [rateLimited({ retryAfterMs: '200' })],
    expect: { ok: true, requests: 2, atLeastMs: 190 },
  },
  {
    fault: '429 with `retry-after` as an HTTP date 2 s ahead',
    outcome: 'Waits until that date (1 to 2 s, the header has whole seconds) and retries: succeeds, 2 requests',
    sim: () => [rateLimited({ retryAfter: new Date(Date.now() + 2000).toUTCString() })],
    expect: { ok: true, requests: 2, atLeastMs: 900 },
  },
  {
    fault: '429 without `retry-after`',
    outcome: "Retries after the client's own wait: succeeds, 2 requests",
    sim: [rateLimited({})],
    expect: { ok: true, requests: 2 },
  },
  {
    fault: '429 with `retry-after-ms: -5` (negative)',
    outcome: "The header is ignored; retries after the client's own wait: succeeds, 2 requests",
    sim: [rateLimited({ retryAfterMs: '-5' })],
    expect: { ok: true, requests: 2 },
  },
  {
    fault: '429 with `retry-after: soon` (garbage)',
    outcome: "The header is ignored; retries after the client's own wait: succeeds, 2 requests",
    sim: [rateLimited({ retryAfter: 'soon' })],
    expect: { ok: true, requests: 2 },
  },
  {
    fault: '429 with `retry-after: 1e20`',
    outcome: 'The wait saturates and is capped at 60 s, past the call\'s deadline: `ERR_CHATGPT_RATE_LIMITED` at once, 1 request',
    sim: [rateLimited({ retryAfter: '1e20' })],
    expect: { code: 'ERR_CHATGPT_RATE_LIMITED', requests: 1, attempts: 1, withinMs: 1500 },
  },
  {
    fault: '429 with `retry-after-ms: 1e300`',
    outcome: 'The wait saturates and is capped at 60 s, past the call\'s deadline: `ERR_CHATGPT_RATE_LIMITED` at once, 1 request',
    sim: [rateLimited({ retryAfterMs: '1e300' })],
    expect: { code: 'ERR_CHATGPT_RATE_LIMITED', requests: 1, attempts: 1, withinMs: 1500 },
  },
  {
    fault: '429 with `retry-after: 3600`',
    outcome:
      'Capped at 60 s, past the call\'s deadline: `ERR_CHATGPT_RATE_LIMITED` at once, 1 request; the next call on the instance also fails at once with `ERR_CHATGPT_RATE_LIMITED` and sends nothing',
    sim: [rateLimited({ retryAfter: '3600' })],
    expect: {
      code: 'ERR_CHATGPT_RATE_LIMITED',
      requests: 1,
      attempts: 1,
      withinMs: 1500,
      async check({ api, server }) {
        const next = await rejection(api.sendMessage('the call after the pause began'))
        assert.equal(next.code, 'ERR_CHATGPT_RATE_LIMITED')
        assert.equal(server.requests(), 1, 'nothing was sent during the pause')
      },
    },
  },
  {
    fault: '429 `insufficient_quota`',
    outcome: '`ERR_CHATGPT_INSUFFICIENT_QUOTA`, not retried: 1 request',
    sim: [{ kind: 'status', status: 429, code: 'insufficient_quota' }],
    expect: { code: 'ERR_CHATGPT_INSUFFICIENT_QUOTA', statusCode: 429, requests: 1, attempts: 1 },
  },
  {
    fault: '401',
    outcome: '`ERR_CHATGPT_AUTH` with `statusCode` 401, not retried: 1 request',
    sim: [{ kind: 'status', status: 401 }],
    expect: { code: 'ERR_CHATGPT_AUTH', statusCode: 401, requests: 1, attempts: 1 },
  },
  {
    fault: '400 with an OpenAI error body',
    outcome: '`ERR_CHATGPT_HTTP` with `statusCode` 400 and the body\'s `type`, `param`, `errorCode`, not retried: 1 request',
    sim: [{ kind: 'status', status: 400, message: 'bad temperature', type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' }],
    expect: {
      code: 'ERR_CHATGPT_HTTP',
      statusCode: 400,
      requests: 1,
      attempts: 1,
      check({ error }) {
        assert.equal(error.type, 'invalid_request_error')
        assert.equal(error.param, 'temperature')
        assert.equal(error.errorCode, 'invalid_value')
      },
    },
  },
  {
    fault: '500 with an HTML body, every attempt',
    outcome: 'Retried: `ERR_CHATGPT_HTTP` with `statusCode` 500 after 3 attempts',
    raw: html(500),
    expect: { code: 'ERR_CHATGPT_HTTP', statusCode: 500, requests: 3, attempts: 3 },
  },
  {
    fault: '502 with an HTML body, every attempt',
    outcome: 'Retried: `ERR_CHATGPT_HTTP` with `statusCode` 502 after 3 attempts',
    raw: html(502),
    expect: { code: 'ERR_CHATGPT_HTTP', statusCode: 502, requests: 3, attempts: 3 },
  },

  // The connection.
  {
    fault: 'Connection refused',
    outcome: 'Retried: `ERR_CHATGPT_NETWORK` after 3 attempts',
    url: refusedUrl,
    expect: { code: 'ERR_CHATGPT_NETWORK', attempts: 3 },
  },
  {
    fault: 'Connection reset before the headers, every attempt',
    outcome: 'Retried: `ERR_CHATGPT_NETWORK` after 3 attempts',
    sim: times(3, { kind: 'reset' }),
    expect: { code: 'ERR_CHATGPT_NETWORK', requests: 3, attempts: 3 },
  },
  {
    fault: 'Connection closed mid-stream after 3 deltas',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_NETWORK`) with the 3 deltas as `partialText`, not retried: 1 request',
    sim: [{ kind: 'disconnect', afterChunks: 3 }],
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INTERRUPTED', causeCode: 'ERR_CHATGPT_NETWORK', partialText: 'deltas', requests: 1, attempts: 1 },
  },
  {
    fault: 'Stall before the headers, every attempt, `attemptTimeoutMs: 100`',
    outcome: 'Each attempt times out and is retried: `ERR_CHATGPT_TIMEOUT` after 3 attempts',
    sim: times(3, { kind: 'stall' }),
    client: { attemptTimeoutMs: 100 },
    expect: { code: 'ERR_CHATGPT_TIMEOUT', requests: 3, attempts: 3, atLeastMs: 290 },
  },
  {
    fault: 'Stall before the headers, `timeoutMs: 300`',
    outcome: '`ERR_CHATGPT_TIMEOUT` after 300 ms, 1 request',
    sim: [{ kind: 'stall' }],
    call: { timeoutMs: 300 },
    expect: { code: 'ERR_CHATGPT_TIMEOUT', requests: 1, attempts: 1, atLeastMs: 290, withinMs: 2000 },
  },
  {
    fault: 'First token 600 ms after the role chunk, `idleTimeoutMs: 150`',
    outcome: 'Succeeds: the idle timeout starts at the first token, 1 request',
    raw: slowFirstToken(600),
    client: { idleTimeoutMs: 150 },
    stream: true,
    expect: { text: 'late but fine', requests: 1, atLeastMs: 590 },
  },
  {
    fault: 'First token 600 ms after the role chunk, every attempt, `attemptTimeoutMs: 200`',
    outcome: 'Each attempt times out waiting for it and is retried: `ERR_CHATGPT_TIMEOUT` after 3 attempts',
    raw: slowFirstToken(600),
    client: { attemptTimeoutMs: 200 },
    stream: true,
    expect: { code: 'ERR_CHATGPT_TIMEOUT', requests: 3, attempts: 3, atLeastMs: 590 },
  },
  {
    fault: 'Stall mid-stream after 2 deltas, `idleTimeoutMs: 150`',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_TIMEOUT`) with the 2 deltas as `partialText`, not retried: 1 request',
    sim: [{ kind: 'stall', afterChunks: 2 }],
    client: { idleTimeoutMs: 150 },
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INTERRUPTED', causeCode: 'ERR_CHATGPT_TIMEOUT', partialText: 'deltas', requests: 1, attempts: 1, atLeastMs: 140, withinMs: 2000 },
  },

  // The stream's content.
  {
    fault: 'Malformed chunk before any delta',
    outcome: '`ERR_CHATGPT_BAD_RESPONSE`, not retried: 1 request',
    sim: [{ kind: 'malformed' }],
    stream: true,
    expect: { code: 'ERR_CHATGPT_BAD_RESPONSE', requests: 1, attempts: 1 },
  },
  {
    fault: 'Malformed chunk after 2 deltas',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_BAD_RESPONSE`) with the 2 deltas as `partialText`, not retried: 1 request',
    sim: [{ kind: 'malformed', afterChunks: 2 }],
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INTERRUPTED', causeCode: 'ERR_CHATGPT_BAD_RESPONSE', partialText: 'deltas', requests: 1, attempts: 1 },
  },
  {
    fault: 'Error event (`server_error`) as the first event, every attempt',
    outcome: 'Retried like a 5xx: `ERR_CHATGPT_STREAM_ERROR` with the server\'s `type` after 3 attempts',
    sim: times(3, { kind: 'errorEvent', type: 'server_error', message: 'overloaded' }),
    stream: true,
    expect: {
      code: 'ERR_CHATGPT_STREAM_ERROR',
      requests: 3,
      attempts: 3,
      check({ error }) {
        assert.equal(error.type, 'server_error')
      },
    },
  },
  {
    fault: 'Error event (`event: error`) after 2 deltas',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_STREAM_ERROR`) with the server\'s `type` and the 2 deltas as `partialText`: 1 request',
    sim: [{ kind: 'errorEvent', afterChunks: 2, sseEvent: true, type: 'server_error', message: 'overloaded' }],
    stream: true,
    expect: {
      code: 'ERR_CHATGPT_STREAM_INTERRUPTED',
      causeCode: 'ERR_CHATGPT_STREAM_ERROR',
      partialText: 'deltas',
      requests: 1,
      attempts: 1,
      check({ error }) {
        assert.equal(error.type, 'server_error')
      },
    },
  },
  {
    fault: 'No `[DONE]`, with a `finish_reason`',
    outcome: 'Succeeds: 1 request',
    sim: [{ kind: 'noDone' }],
    stream: true,
    expect: { ok: true, requests: 1 },
  },
  {
    fault: 'No `[DONE]` and no `finish_reason`, every attempt',
    outcome: 'Retried: `ERR_CHATGPT_STREAM_INCOMPLETE` after 3 attempts',
    sim: times(3, { kind: 'truncate' }),
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INCOMPLETE', requests: 3, attempts: 3 },
  },
  {
    fault: 'Lone surrogates in a stream (`\\ud800`, `\\udc00`, a high surrogate ending the last delta)',
    outcome: 'Succeeds; each unpaired surrogate becomes U+FFFD in `text` and in `onProgress`',
    raw: rawStream(['a\\ud800b', '\\udc00c', 'd\\ud83c']),
    stream: true,
    expect: { text: 'a\uFFFDb\uFFFDcd\uFFFD', requests: 1 },
  },
  {
    fault: 'A lone surrogate in a non-streamed body',
    outcome: 'Succeeds; the surrogate becomes U+FFFD',
    raw: (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(completionJson('chatcmpl-lone', 'x\\ud800y'))
    },
    expect: { text: 'x\uFFFDy', requests: 1 },
  },
  {
    fault: 'A surrogate pair split across two chunks (`\\ud83c`, then `\\udf89`)',
    outcome: 'Succeeds; the emoji arrives whole, in one `onProgress` delta and in `text`',
    raw: rawStream(['party \\ud83c', '\\udf89!']),
    stream: true,
    expect: {
      text: 'party \u{1F389}!',
      requests: 1,
      check({ deltas }) {
        assert.ok(deltas.some((d) => d.includes('\u{1F389}')), 'one delta holds the whole emoji')
      },
    },
  },
  {
    fault: 'The same completion `id` for different replies',
    outcome:
      'Both succeed with different `id`s (the server\'s stays in `detail.id`); a follow-up with `parentMessageId` carries only its own conversation',
    raw: sameId,
    run: async ({ api, server }) => {
      const a = await api.sendMessage('conversation A')
      const b = await api.sendMessage('conversation B')
      assert.notEqual(a.id, b.id)
      assert.equal(a.detail.id, 'chatcmpl-same')
      assert.equal(b.detail.id, 'chatcmpl-same')
      const followUp = await api.sendMessage('A, part two', { parentMessageId: a.id })
      const sent = server.bodies.at(-1).messages.map(({ role, content }) => ({ role, content }))
      assert.deepEqual(sent, [
        { role: 'user', content: 'conversation A' },
        { role: 'assistant', content: 'reply to conversation A' },
        { role: 'user', content: 'A, part two' },
      ])
      return followUp
    },
    expect: { text: 'reply to A, part two', requests: 3 },
  },
  {
    fault: 'An endless stream, `maxResponseBytes: 65536`',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_RESPONSE_TOO_LARGE`) with what had streamed as `partialText`, not retried: 1 request',
    raw: endless({ contentType: 'text/event-stream', piece: () => sseDelta('word ') }),
    client: { maxResponseBytes: 65536 },
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INTERRUPTED', causeCode: 'ERR_CHATGPT_RESPONSE_TOO_LARGE', partialText: 'deltas', requests: 1, attempts: 1 },
  },
  {
    fault: 'An endless slow stream (a delta every 20 ms), `timeoutMs: 500`',
    outcome: '`ERR_CHATGPT_STREAM_INTERRUPTED` (`cause.code` `ERR_CHATGPT_TIMEOUT`) after 500 ms with what had streamed as `partialText`: 1 request',
    raw: endless({ contentType: 'text/event-stream', piece: () => sseDelta('word '), everyMs: 20 }),
    call: { timeoutMs: 500 },
    stream: true,
    expect: { code: 'ERR_CHATGPT_STREAM_INTERRUPTED', causeCode: 'ERR_CHATGPT_TIMEOUT', partialText: 'deltas', requests: 1, attempts: 1, atLeastMs: 490, withinMs: 2000 },
  },
  {
    fault: 'A non-streamed body over `maxResponseBytes: 2048`',
    outcome: '`ERR_CHATGPT_RESPONSE_TOO_LARGE`, not retried: 1 request',
    client: { maxResponseBytes: 2048, headers: { 'x-sim-response-tokens': '2000' }, completionParams: { model: 'sim-gpt', max_tokens: 2000 } },
    sim: [],
    expect: { code: 'ERR_CHATGPT_RESPONSE_TOO_LARGE', requests: 1, attempts: 1 },
  },
  {
    fault: 'An endless non-streamed body, `maxResponseBytes: 65536`',
    outcome: '`ERR_CHATGPT_RESPONSE_TOO_LARGE`, not retried: 1 request',
    raw: endless({ contentType: 'application/json', head: '{"id":"chatcmpl-big","choices":[{"message":{"content":"', piece: () => 'a'.repeat(1024) }),
    client: { maxResponseBytes: 65536 },
    expect: { code: 'ERR_CHATGPT_RESPONSE_TOO_LARGE', requests: 1, attempts: 1 },
  },
]

// --- Running a row ------------------------------------------------------------------------------

/** The row's server: the shared simulator (stats reset, the row's faults queued), a raw server,
 * or only a URL. */
async function serverFor(row) {
  if (row.raw) return startRaw(row.raw)
  if (row.url) {
    const url = await row.url()
    return { url, requests: () => undefined, inFlight: () => 0, close: async () => {} }
  }
  sim.clearFaults()
  sim.resetStats()
  const faults = typeof row.sim === 'function' ? row.sim() : row.sim
  for (const fault of faults) sim.enqueueFault(fault)
  return { url: sim.url, requests: () => sim.stats().chatRequests, inFlight: () => sim.stats().inFlight, close: async () => {} }
}

for (const row of rows) {
  test(`${row.fault}: ${row.outcome}`, async () => {
    const server = await serverFor(row)
    try {
      const api = clientFor({ url: server.url }, { ...CLIENT, ...row.client })
      const deltas = []
      const call = { ...row.call, ...(row.stream ? { onProgress: (p) => deltas.push(p.delta) } : {}) }
      const expect = row.expect
      const started = performance.now()
      let result
      let error
      try {
        result = row.run ? await row.run({ api, server }) : await api.sendMessage(`fault matrix: ${row.fault}`, call)
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err
        error = err
      }
      if (expect.code) {
        assert.ok(error instanceof ChatGPTError, `expected a ChatGPTError with ${expect.code}, got ${result ? 'a result' : error}`)
        assert.equal(error.code, expect.code)
        if (expect.statusCode !== undefined) assert.equal(error.statusCode, expect.statusCode)
        if (expect.attempts !== undefined) assert.equal(error.attempts, expect.attempts)
        if (expect.causeCode !== undefined) {
          assert.ok(error.cause instanceof ChatGPTError, 'the underlying failure is the cause')
          assert.equal(error.cause.code, expect.causeCode)
        }
        if (expect.partialText === 'deltas') {
          assert.ok(deltas.length > 0, 'some deltas reached onProgress')
          assert.equal(error.partialText, deltas.join(''))
        }
      } else {
        assert.equal(error, undefined, `expected a result, got ${error?.code ?? error}`)
        assert.equal(result.role, 'assistant')
        if (expect.text !== undefined) assert.equal(result.text, expect.text)
        if (row.stream) {
          assert.equal(deltas.join(''), result.text, 'the deltas add up to the text')
          for (const delta of deltas) assert.ok(delta.isWellFormed(), `delta ${JSON.stringify(delta)} holds no lone surrogate`)
        }
      }
      if (expect.check) await expect.check({ api, server, result, error, deltas })
      const elapsedMs = performance.now() - started
      if (expect.requests !== undefined) assert.equal(server.requests(), expect.requests, 'HTTP requests the server saw')
      assert.ok(elapsedMs < (expect.withinMs ?? WITHIN_MS), `settled in ${Math.round(elapsedMs)} ms`)
      if (expect.atLeastMs !== undefined) assert.ok(elapsedMs >= expect.atLeastMs, `waited ${Math.round(elapsedMs)} ms`)

      // Nothing is left running: the server answers nothing more, the client holds no slot.
      await until(() => server.inFlight() === 0, 'no request left in flight at the server', 2000)
      const metrics = api.metrics()
      assert.equal(metrics.inFlight, 0, 'no request left in flight in the client')
      assert.equal(metrics.queued, 0, 'no call left queued in the client')
    } finally {
      await server.close()
    }
  })
}

test("README's Fault handling table lists exactly these rows", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const section = readme.split('\n### Fault handling\n')[1]?.split('\n#')[0] ?? ''
  const table = section
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| fault |') && !line.startsWith('| ---'))
    .map((line) => line.slice(2, -2).split(' | '))
  assert.deepEqual(
    table,
    rows.map((row) => [row.fault, row.outcome]),
  )
})
