// debug: one line per request on stderr, and never the API key or the prompt.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

test('debug logs each request to stderr without the key or the prompt', () => {
  const script = `
    const { ChatGPTAPI, ChatGPTSimulator } = require('./index.js')
    ;(async () => {
      const sim = await ChatGPTSimulator.start({ apiKey: 'sk-super-secret-key-42' })
      const api = new ChatGPTAPI({ apiKey: 'sk-super-secret-key-42', apiBaseUrl: sim.url, debug: true, maxRetries: 0 })
      await api.sendMessage('my private prompt')
      sim.enqueueFault({ kind: 'status', status: 500 })
      await api.sendMessage('my private prompt, again', { stream: true }).catch(() => {})
      await sim.close()
    })()
  `
  const out = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  assert.equal(out.status, 0, out.stderr)
  const lines = out.stderr.trim().split('\n')
  assert.equal(lines.length, 2)
  assert.match(lines[0], /\[chatgpt-native\] POST .*\/chat\/completions .*-> ok/)
  assert.match(lines[1], /ERR_CHATGPT_HTTP status=500/)
  assert.ok(!out.stderr.includes('sk-super-secret-key-42'))
  assert.ok(!out.stderr.includes('my private prompt'))
})

test('works from CommonJS and ESM alike', async () => {
  const cjs = spawnSync(process.execPath, ['-e', "const m = require('./index.js'); console.log(typeof m.ChatGPTAPI, typeof m.ChatGPTError, typeof m.ChatGPTSimulator)"], { cwd: root, encoding: 'utf8' })
  assert.equal(cjs.stdout.trim(), 'function function function')
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "import { ChatGPTAPI, ChatGPTError, ChatGPTSimulator } from 'chatgpt-native'; console.log(typeof ChatGPTAPI, typeof ChatGPTError, typeof ChatGPTSimulator)"], { cwd: root, encoding: 'utf8' })
  assert.equal(esm.stdout.trim(), 'function function function', esm.stderr)
})
