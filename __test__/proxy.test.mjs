// Proxies from the environment, as README "Any OpenAI-compatible server" documents them: the
// standard HTTP_PROXY / HTTPS_PROXY / ALL_PROXY variables (either case) and NO_PROXY. The client
// reads them when it is created, so each case runs in a child process with its own environment.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { completionJson } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

// `.invalid` never resolves (RFC 2606): a request that reaches it did not go through the proxy.
const CLIENT = `
  const { ChatGPTAPI } = require('./index.js')
  new ChatGPTAPI({ apiKey: 'sk-proxy-test', apiBaseUrl: 'http://upstream.invalid/v1', maxRetries: 0 })
    .sendMessage('hi')
    .then((r) => console.log('ok', r.text), (e) => console.log('failed', e.code))
`

/** A forward proxy that answers every request itself, recording the absolute URLs asked for. */
async function startProxy() {
  const urls = []
  const server = http.createServer((req, res) => {
    urls.push(req.url)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(completionJson('via the proxy', { id: 'chatcmpl-proxy', completionTokens: 3 }))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, urls, close: () => server.close() }
}

/** Runs the client with `env` added (and every proxy variable of this process removed). */
function runClient(env) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/_proxy$/i.test(k)))
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', CLIENT], { cwd: root, env: { ...clean, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve(stdout.trim()),
    )
  })
}

test('HTTP_PROXY (either case) and ALL_PROXY send requests through the proxy', async () => {
  const proxy = await startProxy()
  try {
    for (const name of ['HTTP_PROXY', 'http_proxy', 'ALL_PROXY']) {
      const before = proxy.urls.length
      assert.equal(await runClient({ [name]: proxy.url }), 'ok via the proxy', name)
      assert.deepEqual(proxy.urls.slice(before), ['http://upstream.invalid/v1/chat/completions'], name)
    }
  } finally {
    proxy.close()
  }
})

test('NO_PROXY lists hosts that are reached directly', async () => {
  const proxy = await startProxy()
  try {
    assert.equal(await runClient({ HTTP_PROXY: proxy.url, NO_PROXY: 'upstream.invalid' }), 'failed ERR_CHATGPT_NETWORK')
    assert.deepEqual(proxy.urls, [])
  } finally {
    proxy.close()
  }
})
