// The addon's threads: calls run on a runtime with a worker per core less one (the JavaScript
// thread's), TOKIO_WORKER_THREADS chooses the count, and a simulator serves on threads of its own.
// Each case runs in a child process, since the runtime is made once per process. Linux only: it
// reads thread names from /proc.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'

const INDEX = fileURLToPath(new URL('../index.js', import.meta.url))
const linux = existsSync('/proc/self/task')

/** Start a simulator, make one call, and report the process's threads by name. */
function threadsAfterACall(env = {}) {
  const source = `
    const { readdirSync, readFileSync } = require('node:fs')
    const { ChatGPTAPI, ChatGPTSimulator } = require(${JSON.stringify(INDEX)})
    ;(async () => {
      const sim = await ChatGPTSimulator.start({})
      const api = new ChatGPTAPI({ apiKey: 'sk-x', apiBaseUrl: sim.url, systemMessage: '' })
      const reply = await api.sendMessage('hello')
      const names = {}
      for (const tid of readdirSync('/proc/self/task')) {
        const name = readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim()
        names[name] = (names[name] ?? 0) + 1
      }
      await sim.close()
      console.log(JSON.stringify({ role: reply.role, names }))
    })()
  `
  const { TOKIO_WORKER_THREADS, ...inherited } = process.env
  const out = execFileSync(process.execPath, ['-e', source], { env: { ...inherited, ...env }, encoding: 'utf8' })
  return JSON.parse(out)
}

test('calls run on one worker thread per core less one for the JavaScript thread', { skip: !linux }, () => {
  const { role, names } = threadsAfterACall()
  assert.equal(role, 'assistant')
  assert.equal(names['chatgpt-native'], Math.max(1, availableParallelism() - 1))
})

test('TOKIO_WORKER_THREADS sets the number of call worker threads', { skip: !linux }, () => {
  const { role, names } = threadsAfterACall({ TOKIO_WORKER_THREADS: '3' })
  assert.equal(role, 'assistant')
  assert.equal(names['chatgpt-native'], 3)
})

test('a simulator serves on threads of its own', { skip: !linux }, () => {
  const { names } = threadsAfterACall({ TOKIO_WORKER_THREADS: '1' })
  assert.equal(names['chatgpt-native'], 1)
  assert.ok(names['chatgpt-sim'] >= 1, JSON.stringify(names))
})
