// TLS and proxies: `ca`, NODE_EXTRA_CA_CERTS and `proxy`, against a node:https server on
// 127.0.0.1 whose certificate a private CA made at run time signed (see private-ca.mjs), a
// CONNECT proxy tunnelling to it, and a plain HTTP forward proxy.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import http2 from 'node:http2'
import net from 'node:net'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { ChatGPTAPI } from '../index.js'
import { API_KEY, rejection, thrown } from './helpers.mjs'
import { makePrivateCa } from './private-ca.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-tls',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'over tls' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
})

function answer(req, res) {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(COMPLETION)
  })
}

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))

let ca
let upstream
let upstreamUrl

before(async () => {
  ca = makePrivateCa()
  upstream = https.createServer({ key: ca.key, cert: ca.cert }, answer)
  upstreamUrl = `https://127.0.0.1:${await listen(upstream)}/v1`
})

after(() => {
  upstream?.close()
  ca?.remove()
})

/** A proxy: CONNECT tunnels (recorded as `host:port`) and forwarded plain requests (answered itself). */
async function startProxy() {
  const connects = []
  const forwarded = []
  const server = http.createServer((req, res) => {
    forwarded.push(req.url)
    answer(req, res)
  })
  server.on('connect', (req, socket, head) => {
    connects.push(req.url)
    const [host, port] = req.url.split(':')
    const target = net.connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      target.write(head)
      target.pipe(socket)
      socket.pipe(target)
    })
    target.on('error', () => socket.destroy())
    socket.on('error', () => target.destroy())
  })
  const port = await listen(server)
  return { url: `http://127.0.0.1:${port}`, connects, forwarded, close: () => { server.closeAllConnections(); server.close() } }
}

/** Runs `code` (CommonJS, `api` options in OPTIONS) in a child with `env` added. */
function runChild(code, env) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/_proxy$|^NODE_EXTRA_CA_CERTS$/i.test(k)))
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', code], { cwd: root, env: { ...clean, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve(stdout.trim()),
    )
  })
}

const childCall = (options) => `
  const { ChatGPTAPI } = require('./index.js')
  new ChatGPTAPI(${JSON.stringify({ apiKey: API_KEY, maxRetries: 0, ...options })})
    .sendMessage('hi')
    .then((r) => console.log('ok', r.text), (e) => console.log('failed', e.code))
`

test('a server signed by a private CA is refused without `ca`, with a network error naming the certificate', async () => {
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: upstreamUrl, maxRetries: 0 })
  const err = await rejection(api.sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
  assert.match(err.message, /invalid peer certificate: UnknownIssuer/)
  assert.match(err.message, /`ca`/, "the message says what fixes it")
})

test('`ca` as a string, a Buffer or in an array trusts the private CA', async () => {
  for (const given of [ca.caPem, Buffer.from(ca.caPem), [Buffer.from(ca.caPem), ca.caPem]]) {
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: upstreamUrl, maxRetries: 0, ca: given })
    assert.equal((await api.sendMessage('hi')).text, 'over tls')
  }
})

test('NODE_EXTRA_CA_CERTS trusts the private CA for instances created after it is set', async () => {
  assert.equal(await runChild(childCall({ apiBaseUrl: upstreamUrl }), { NODE_EXTRA_CA_CERTS: ca.caFile }), 'ok over tls')
  assert.equal(await runChild(childCall({ apiBaseUrl: upstreamUrl }), {}), 'failed ERR_CHATGPT_NETWORK')
  // A file that cannot be read is skipped, as Node skips it: the instance is created, `ca` trusted.
  assert.equal(
    await runChild(childCall({ apiBaseUrl: upstreamUrl, ca: ca.caPem }), { NODE_EXTRA_CA_CERTS: `${ca.dir}/missing.pem` }),
    'ok over tls',
  )
})

test('HTTP/2 is negotiated when the server offers it, and concurrent calls share its one connection', async (t) => {
  const versions = []
  let connections = 0
  const server = http2.createSecureServer({ key: ca.key, cert: ca.cert, allowHTTP1: true }, (req, res) => {
    versions.push(req.httpVersion)
    answer(req, res)
  })
  server.on('secureConnection', () => connections++)
  const url = `https://127.0.0.1:${await listen(server)}/v1`
  t.after(() => server.close())
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: url, ca: ca.caPem, maxRetries: 0 })
  // The first exchange learns the protocol (ALPN); until then concurrent calls cannot know they
  // could share a connection.
  await api.warmup()
  const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => api.sendMessage(`hi ${i}`)))
  assert.ok(replies.every((r) => r.text === 'over tls'))
  assert.deepEqual(new Set(versions), new Set(['2.0']))
  assert.equal(versions.length, 17)
  assert.equal(connections, 1)
})

test('bad `ca` values throw naming the option', () => {
  for (const bad of ['not a pem', Buffer.from('nope'), [ca.caPem, 42], 42, {}]) {
    const err = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, ca: bad }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /`ca/)
  }
})

test('`proxy` tunnels https requests through CONNECT', async (t) => {
  const proxy = await startProxy()
  t.after(proxy.close)
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: upstreamUrl, ca: ca.caPem, proxy: proxy.url, maxRetries: 0 })
  assert.equal((await api.sendMessage('hi')).text, 'over tls')
  assert.deepEqual(proxy.connects, [new URL(upstreamUrl).host])
})

test('`proxy` forwards plain http requests, and wins over HTTP_PROXY', async (t) => {
  const proxy = await startProxy()
  t.after(proxy.close)
  // `.invalid` never resolves (RFC 2606): only the proxy can answer.
  const code = childCall({ apiBaseUrl: 'http://upstream.invalid/v1', proxy: proxy.url })
  assert.equal(await runChild(code, { HTTP_PROXY: 'http://127.0.0.1:9' }), 'ok over tls')
  assert.deepEqual(proxy.forwarded, ['http://upstream.invalid/v1/chat/completions'])
})

test('`proxy: false` and `proxy: null` connect directly even when HTTPS_PROXY is set', async () => {
  for (const proxy of [false, null]) {
    const code = childCall({ apiBaseUrl: upstreamUrl, ca: ca.caPem, proxy })
    // Port 9 (discard) refuses: a request sent to that proxy would fail.
    assert.equal(await runChild(code, { HTTPS_PROXY: 'http://127.0.0.1:9', ALL_PROXY: 'http://127.0.0.1:9' }), 'ok over tls')
  }
})

test('an unreachable proxy fails the call as a network error without its credentials', async () => {
  // Port 9 (discard) refuses connections.
  const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: upstreamUrl, proxy: 'http://user:s3cret@127.0.0.1:9', maxRetries: 0 })
  const err = await rejection(api.sendMessage('hi'))
  assert.equal(err.code, 'ERR_CHATGPT_NETWORK')
  assert.doesNotMatch(err.message, /s3cret/)
})

test('bad `proxy` values throw naming the option, without the URL credentials', () => {
  for (const bad of ['ftp://user:s3cret@proxy', 'not a url', true, 42]) {
    const err = thrown(() => new ChatGPTAPI({ apiKey: API_KEY, proxy: bad }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /`proxy`/)
    assert.doesNotMatch(err.message, /s3cret/)
  }
})
