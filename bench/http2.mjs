// HTTP/1.1 vs HTTP/2 over TLS at concurrency 64: connections the server saw and requests/s.
// The server is local (node:https offering only http/1.1, or node:http2 with allowHTTP1
// offering h2 and http/1.1 by ALPN), its certificate signed by a private CA made at run time;
// the client is one ChatGPTAPI instance trusting that CA through `ca`.
//   node bench/http2.mjs [rounds=20]    (64 concurrent calls per round)
import https from 'node:https'
import http2 from 'node:http2'

import { ChatGPTAPI } from '../index.js'
import { makePrivateCa } from '../__test__/private-ca.mjs'

const ROUNDS = Number(process.argv[2] ?? 20)
const CONCURRENCY = 64
const COMPLETION = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})

/** Starts `kind` ('http/1.1' or 'h2'), counting TLS connections and each request's version. */
async function startServer(kind, ca) {
  const seen = { connections: 0, versions: {} }
  const handler = (req, res) => {
    seen.versions[req.httpVersion] = (seen.versions[req.httpVersion] ?? 0) + 1
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(COMPLETION)
    })
  }
  const tls = { key: ca.key, cert: ca.cert }
  const server = kind === 'h2' ? http2.createSecureServer({ ...tls, allowHTTP1: true }, handler) : https.createServer(tls, handler)
  server.on('secureConnection', () => seen.connections++)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `https://127.0.0.1:${server.address().port}/v1`, seen, close: () => server.close() }
}

/** `warm`: `api.warmup()` first, so the burst finds a connection whose protocol is known. */
async function measure(kind, ca, warm) {
  const server = await startServer(kind, ca)
  const api = new ChatGPTAPI({ apiKey: 'sk-bench', apiBaseUrl: server.url, ca: ca.caPem, systemMessage: '', cache: false, maxRetries: 0 })
  const round = () => Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => api.sendMessage(`hello ${i}`)))
  if (warm) await api.warmup()
  await round() // connections are made here; the timed rounds reuse them
  const start = performance.now()
  for (let r = 0; r < ROUNDS; r++) await round()
  const seconds = (performance.now() - start) / 1000
  server.close()
  return {
    'server offers': kind === 'h2' ? 'h2, http/1.1' : 'http/1.1',
    'first burst': warm ? 'after warmup()' : 'cold',
    'negotiated': Object.keys(server.seen.versions).join(', '),
    'TLS connections': server.seen.connections,
    'requests': CONCURRENCY * (ROUNDS + 1),
    'requests/s': Math.round((CONCURRENCY * ROUNDS) / seconds),
  }
}

const ca = makePrivateCa()
try {
  const rows = []
  for (const warm of [false, true]) for (const kind of ['http/1.1', 'h2']) rows.push(await measure(kind, ca, warm))
  console.table(rows)
} finally {
  ca.remove()
}
