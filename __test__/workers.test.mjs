// The addon in worker threads: each JavaScript environment gets its own error class, relays and
// Promise settling, and a worker torn down with calls in flight leaves the process unharmed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { startSimulator, clientFor, API_KEY } from './helpers.mjs'

const INDEX = fileURLToPath(new URL('../index.js', import.meta.url))

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 5, ttftMs: 300 })
})
after(() => sim.close())

/** A worker that sends `count` messages and posts each reply's role and text length. */
function sender(count) {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { ChatGPTAPI, ChatGPTError } = require(workerData.index)
    const api = new ChatGPTAPI({ apiKey: workerData.key, apiBaseUrl: workerData.url, systemMessage: '' })
    parentPort.postMessage('started')
    Promise.all(Array.from({ length: ${count} }, (_, i) => api.sendMessage('from a worker ' + i))).then(
      (replies) => parentPort.postMessage(replies.map((r) => r.role)),
      (err) => parentPort.postMessage({ error: String(err), isChatGPTError: err instanceof ChatGPTError }),
    )
  `
  return new Worker(source, { eval: true, workerData: { index: INDEX, url: sim.url, key: API_KEY } })
}

test('calls made from worker threads resolve there, alongside calls on the main thread', async () => {
  const workers = [sender(5), sender(5)]
  const results = workers.map((w) => new Promise((resolve) => w.on('message', (m) => m !== 'started' && resolve(m))))
  const main = clientFor(sim).sendMessage('from the main thread')
  const [a, b, m] = await Promise.all([...results, main])
  assert.deepEqual(a, Array(5).fill('assistant'))
  assert.deepEqual(b, Array(5).fill('assistant'))
  assert.equal(m.role, 'assistant')
  await Promise.all(workers.map((w) => w.terminate()))
})

test('terminating a worker with calls in flight does not crash the process', async () => {
  const w = sender(3)
  await once(w, 'message') // the calls are in flight (the simulator answers after 300 ms)
  await w.terminate()
  // The calls finish in Rust after the worker's environment is gone; their results are dropped.
  await sleep(600)
  const reply = await clientFor(sim).sendMessage('still alive')
  assert.equal(reply.role, 'assistant')
})
