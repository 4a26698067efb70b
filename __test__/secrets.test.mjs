// Keys and credentials never leave in messages, logs or inspect output: a server that echoes the
// Authorization header (in an error body, a header or a stream error event) does not get the key
// into the error, and URL credentials in apiBaseUrl show nowhere. These tests are about message
// text, so they read it.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { inspect } from 'node:util'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { ChatGPTAPI } from '../index.js'
import { rejection } from './helpers.mjs'

const INDEX = fileURLToPath(new URL('../index.js', import.meta.url))
const KEY = 'sk-proj-SECRETkey0123456789abcdefWXYZ'
const OTHER_KEY = 'sk-proj-OTHERsecret9876543210zyxw4321'
const PASSWORD = 'hunter2-pa55w0rd'
const HEADER_KEY = 'azure-HEADERsecret-0123456789'

/** What the server does with the next request, by path. */
let server
let baseUrl
before(async () => {
  server = http.createServer((req, res) => {
    const auth = `${req.headers.authorization ?? ''} ${req.headers['api-key'] ?? ''}`.trim()
    // Echo the credentials back in every place a server can put text.
    const echo = `${auth} (you sent ${auth.replace(/^Bearer /, '')})`
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      const mode = req.url.split('/')[1]
      res.setHeader('x-request-id', echo)
      if (mode === 'json401') {
        res.writeHead(401, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${echo}`, type: echo, param: echo, code: echo } }))
      } else if (mode === 'text500') {
        res.writeHead(500, { 'content-type': 'text/plain' })
        // Long enough that the key straddles the 500-character cap on quoted bodies.
        res.end('x'.repeat(470) + echo)
      } else if (mode === 'stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        const chunk = { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hi' } }] }
        res.write(`data: ${JSON.stringify(chunk)}\n\n`)
        res.end(`data: ${JSON.stringify({ error: { message: `stream failed for ${echo}`, type: echo, code: echo } })}\n\n`)
      } else {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(
          JSON.stringify({
            id: 'c1',
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
          }),
        )
      }
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${server.address().port}`
})
after(() => server.close())

function client(mode, options = {}) {
  return new ChatGPTAPI({
    apiKey: KEY,
    apiBaseUrl: `${baseUrl}/${mode}`,
    systemMessage: '',
    maxRetries: 0,
    cache: false,
    circuitBreaker: false,
    ...options,
  })
}

const SECRETS = [KEY, KEY.slice(0, 14), 'SECRETkey', OTHER_KEY.slice(0, 14), 'OTHERsecret', PASSWORD, 'HEADERsecret']

/** Neither the error's own fields nor anything inspect prints of it carries a secret. */
function assertClean(value, label) {
  const texts = [inspect(value, { depth: 5, showHidden: true, getters: true })]
  if (value && typeof value === 'object') {
    for (const k of Object.getOwnPropertyNames(value)) {
      if (typeof value[k] === 'string') texts.push(value[k])
    }
  }
  for (const text of texts) {
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `${label} leaks ${secret}: ${text}`)
  }
}

test('a 401 body, header and fields that echo the key do not carry it into the error', async () => {
  const err = await rejection(client('json401').sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
  assertClean(err, '401')
  // Still useful: the fingerprint says which key failed.
  assert.match(err.message, /sk-…WXYZ|Bearer <redacted>/)
})

test('a credential sent in an extra header (api-key) is scrubbed like the key', async () => {
  const err = await rejection(client('json401', { headers: { 'api-key': HEADER_KEY } }).sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_AUTH')
  assertClean(err, 'api-key header')
})

test('a 500 text body that echoes the key, cut at the quoting cap, does not leak its prefix', async () => {
  const err = await rejection(client('text500').sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assertClean(err, '500')
})

test('a stream error event that echoes the key does not carry it into the error', async () => {
  const err = await rejection(client('stream').sendMessage('hi', { onProgress: () => {} }))
  // The error event came after a delta had been delivered.
  assert.equal(err.code, 'ERR_CHATGPT_STREAM_INTERRUPTED')
  assert.equal(err.partialText, 'Hi')
  assertClean(err, 'stream error')
})

test('every key of apiKeys is scrubbed, and sendMany item errors are too', async () => {
  const api = new ChatGPTAPI({
    apiKeys: [OTHER_KEY, KEY],
    apiBaseUrl: `${baseUrl}/json401`,
    systemMessage: '',
    maxRetries: 0,
    cache: false,
    circuitBreaker: false,
  })
  const results = await api.sendMany(['a', 'b'])
  for (const r of results) {
    assert.equal(r.ok, false)
    assertClean(r.error, 'sendMany item')
  }
  assertClean(api.metrics(), 'metrics')
  assertClean(api.metricsText(), 'metricsText')
})

test('URL credentials in apiBaseUrl show in no getter, inspect output or error', async () => {
  const api = client('json401', { apiBaseUrl: `http://user:${PASSWORD}@127.0.0.1:${server.address().port}/json401` })
  assert.ok(!api.apiBaseUrl.includes(PASSWORD), api.apiBaseUrl)
  assert.match(api.apiBaseUrl, /^http:\/\/<redacted>@127\.0\.0\.1:\d+\/json401$/)
  assertClean(api, 'inspect(api)')
  const err = await rejection(api.sendMessage('hi'))
  assertClean(err, 'error with URL credentials')
  // A rejected URL is quoted without its credentials.
  let thrown
  try {
    client('x', { apiBaseUrl: `http://user:${PASSWORD}@127.0.0.1:1/v1#fragment` })
  } catch (e) {
    thrown = e
  }
  assert.equal(thrown.code, 'ERR_CHATGPT_INVALID_ARG')
  assertClean(thrown, 'invalid apiBaseUrl')
})

test('debug lines show neither the key, the URL password nor an echoed key', async () => {
  const script = `
    const { ChatGPTAPI } = require(${JSON.stringify(INDEX)})
    ;(async () => {
      const common = { apiKey: ${JSON.stringify(KEY)}, systemMessage: '', debug: true, maxRetries: 0, cache: false, circuitBreaker: false }
      const url = (mode) => 'http://user:${PASSWORD}@127.0.0.1:${server.address().port}/' + mode
      await new ChatGPTAPI({ ...common, apiBaseUrl: url('ok') }).sendMessage('hi, my key is ' + ${JSON.stringify(KEY)})
      await new ChatGPTAPI({ ...common, apiBaseUrl: url('json401') }).sendMessage('hi').catch(() => {})
      await new ChatGPTAPI({ ...common, apiBaseUrl: url('stream') }).sendMessage('hi', { onProgress() {} }).catch(() => {})
    })()
  `
  // Asynchronously: the server the child talks to runs in this process.
  const out = await promisify(execFile)(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  // The log is on stdout: each request body (the prompt's key scrubbed to its fingerprint), the
  // response of the plain call, and a line per failed call.
  assert.equal(out.stderr, '')
  assert.equal(out.stdout.match(/^sendMessage \(\d+ tokens\) \{$/gm).length, 3, out.stdout)
  assert.match(out.stdout, /content: 'hi, my key is sk-…WXYZ'/)
  assert.match(out.stdout, /object: 'chat.completion'/)
  const failures = out.stdout.split('\n').filter((l) => l.startsWith('[chatgpt-native]'))
  assert.equal(failures.length, 2, out.stdout)
  assert.match(failures[0], /ERR_CHATGPT_AUTH status=401/)
  assert.match(failures[0], /http:\/\/<redacted>@127\.0\.0\.1/)
  for (const secret of SECRETS) assert.ok(!`${out.stdout}${out.stderr}`.includes(secret), `debug output leaks ${secret}: ${out.stdout}`)
})
