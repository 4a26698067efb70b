// The addon in worker threads: each JavaScript environment gets its own error class, relays and
// Promise settling, a worker torn down with calls in flight leaves the process unharmed, and
// environments may start and end in any order.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startSimulator, clientFor, whenInFlight, whenIdle, API_KEY } from './helpers.mjs'

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
  await whenInFlight(sim, 3) // the simulator answers after 300 ms
  await w.terminate()
  // The calls end in Rust after the worker's environment is gone; their results are dropped.
  await whenIdle(sim)
  const reply = await clientFor(sim).sendMessage('still alive')
  assert.equal(reply.role, 'assistant')
})

// Environments starting and ending in any order. Each scenario runs in a child process, so a
// crash shows up as its exit signal instead of taking the test runner down. Every worker starts
// a simulator of its own, makes a call, counts tokens off-thread and streams with onProgress.
const WORK = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { ChatGPTAPI, ChatGPTSimulator, countTokensAsync } = require(workerData.index)
  ;(async () => {
    const sim = await ChatGPTSimulator.start({ responseTokens: 5, ttftMs: workerData.ttftMs ?? 0 })
    const api = new ChatGPTAPI({ apiKey: 'sk-x', apiBaseUrl: sim.url, systemMessage: '' })
    const first = api.sendMessage('hello')
    // 'started' tells the parent that the first call has reached the simulator (bounded wait).
    for (let i = 0; i < 1000 && sim.stats().maxInFlight === 0; i++) await new Promise((r) => setTimeout(r, 5))
    parentPort.postMessage('started')
    const reply = await first
    const tokens = await countTokensAsync('hello world')
    let deltas = 0
    const streamed = await api.sendMessage('stream', { onProgress: () => deltas++ })
    await sim.close()
    parentPort.postMessage({ role: reply.role, tokens, streamed: streamed.text.length > 0 && deltas > 0 })
  })()
`

/** Child-process code: `work(name)` runs WORK in a worker and resolves with its report. */
const PRELUDE = `
  const { Worker } = require('node:worker_threads')
  const index = ${JSON.stringify(INDEX)}
  const WORK = ${JSON.stringify(WORK)}
  function spawnWorker(name, extra = {}) {
    return new Worker(WORK, { eval: true, workerData: { index, ...extra } })
  }
  function work(name) {
    const w = spawnWorker(name)
    return new Promise((resolve, reject) => {
      let report
      w.on('message', (m) => { if (m !== 'started') report = m })
      w.on('error', reject)
      w.on('exit', (code) => resolve(name + ':' + code + ':' + JSON.stringify(report)))
    })
  }
  const done = (lines) => console.log(lines.join('\\n'));
`

/** Run `body` (after PRELUDE) in a child process; returns its status, signal and output lines. */
function scenario(body) {
  const out = spawnSync(process.execPath, ['-e', PRELUDE + body], { encoding: 'utf8', timeout: 60_000 })
  return { status: out.status, signal: out.signal, lines: out.stdout.trim().split('\n'), stderr: out.stderr }
}

const REPORT = JSON.stringify({ role: 'assistant', tokens: 2, streamed: true })

test('workers that load the addon one after another, with the main thread never loading it', () => {
  const r = scenario(`(async () => done([await work('w1'), await work('w2'), await work('w3')]))()`)
  assert.equal(r.signal, null, r.stderr)
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.lines, ['w1', 'w2', 'w3'].map((n) => `${n}:0:${REPORT}`))
})

test('workers whose lifetimes overlap', () => {
  const r = scenario(`(async () => {
    const first = work('w1')
    const second = work('w2')
    const lines = await Promise.all([first, second])
    done([...lines, await work('w3')])
  })()`)
  assert.equal(r.signal, null, r.stderr)
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.lines, ['w1', 'w2', 'w3'].map((n) => `${n}:0:${REPORT}`))
})

test('the main thread loads the addon after every worker that used it has exited', () => {
  const r = scenario(`(async () => {
    const lines = [await work('w1')]
    const { ChatGPTAPI, ChatGPTSimulator, countTokensAsync } = require(index)
    lines.push('main tokens:' + (await countTokensAsync('hello world')))
    const sim = await ChatGPTSimulator.start({ responseTokens: 5 })
    const api = new ChatGPTAPI({ apiKey: 'sk-x', apiBaseUrl: sim.url, systemMessage: '' })
    let deltas = 0
    const reply = await api.sendMessage('hello', { onProgress: () => deltas++ })
    lines.push('main reply:' + reply.role + ':' + (deltas > 0))
    await sim.close()
    lines.push(await work('w2'))
    // The calls ran on the addon's own threads, not on a runtime napi-rs made after w1 ended.
    const { readdirSync, readFileSync, existsSync } = require('node:fs')
    const ours = !existsSync('/proc/self/task') || readdirSync('/proc/self/task').some(
      (tid) => readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim() === 'chatgpt-native')
    lines.push('own threads:' + ours)
    done(lines)
  })()`)
  assert.equal(r.signal, null, r.stderr)
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.lines, [
    `w1:0:${REPORT}`,
    'main tokens:2',
    'main reply:assistant:true',
    `w2:0:${REPORT}`,
    'own threads:true',
  ])
})

test('a worker terminated mid-call, then another worker and the main thread use the addon', () => {
  const r = scenario(`(async () => {
    const doomed = spawnWorker('w1', { ttftMs: 5000 })
    // Its first call is in flight (the simulator answers after 5 s).
    await new Promise((resolve) => doomed.on('message', resolve))
    const code = await doomed.terminate()
    const lines = ['w1 terminated:' + code, await work('w2')]
    const { countTokensAsync } = require(index)
    lines.push('main tokens:' + (await countTokensAsync('hello world')))
    done(lines)
  })()`)
  assert.equal(r.signal, null, r.stderr)
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.lines, ['w1 terminated:1', `w2:0:${REPORT}`, 'main tokens:2'])
})
