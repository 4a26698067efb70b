// debug: the chatgpt package's log on stdout (the request body before a call, the response after
// a non-streamed reply) and a line for a failure, with the prompt but never the API key.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

test('debug logs the request and the response with console.log like the chatgpt package, never the key', () => {
  const script = `
    const { ChatGPTAPI, ChatGPTSimulator } = require('./index.js')
    ;(async () => {
      const sim = await ChatGPTSimulator.start({ apiKey: 'sk-super-secret-key-42' })
      const api = new ChatGPTAPI({ apiKey: 'sk-super-secret-key-42', apiBaseUrl: sim.url, debug: true, maxRetries: 0 })
      const reply = await api.sendMessage('my private prompt, with the key sk-super-secret-key-42 pasted in')
      console.log('REPLY', reply.usage.promptTokens)
      sim.enqueueFault({ kind: 'status', status: 500 })
      await api.sendMessage('my private prompt, again', { stream: true }).catch(() => {})
      await sim.close()
    })()
  `
  const out = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  assert.equal(out.status, 0, out.stderr)
  const stdout = out.stdout
  // The request: "sendMessage (N tokens)" then the body as util.inspect prints the object, with
  // the prompt (scrubbed of the key) and N the prompt tokens the server billed.
  const requests = [...stdout.matchAll(/^sendMessage \((\d+) tokens\) \{$/gm)]
  assert.equal(requests.length, 2, stdout)
  const billed = Number(/^REPLY (\d+)$/m.exec(stdout)[1])
  assert.equal(Number(requests[0][1]), billed)
  assert.ok(stdout.includes("content: 'my private prompt, with the key sk-…y-42 pasted in'"), stdout)
  assert.match(stdout, /stream: false\n\}/)
  // The response, logged as the parsed object, before the reply reached the caller.
  const response = stdout.indexOf("object: 'chat.completion'")
  assert.ok(response > requests[0].index && response < stdout.indexOf('REPLY'), stdout)
  // The failed streamed call: its request, then a line with the code, and no response.
  assert.ok(stdout.includes("content: 'my private prompt, again'"))
  assert.match(stdout, /\[chatgpt-native\] POST .*\/chat\/completions .*ERR_CHATGPT_HTTP status=500/)
  assert.ok(!stdout.includes('sk-super-secret-key-42') && !out.stderr.includes('sk-super-secret-key-42'))
  assert.equal(out.stderr, '')
})

test('works from CommonJS and ESM alike', async () => {
  const cjs = spawnSync(process.execPath, ['-e', "const m = require('./index.js'); console.log(typeof m.ChatGPTAPI, typeof m.ChatGPTError, typeof m.ChatGPTSimulator)"], { cwd: root, encoding: 'utf8' })
  assert.equal(cjs.stdout.trim(), 'function function function')
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "import { ChatGPTAPI, ChatGPTError, ChatGPTSimulator } from 'chatgpt-native'; console.log(typeof ChatGPTAPI, typeof ChatGPTError, typeof ChatGPTSimulator)"], { cwd: root, encoding: 'utf8' })
  assert.equal(esm.stdout.trim(), 'function function function', esm.stderr)
})
