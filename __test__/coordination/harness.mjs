// What the `coordination` test files share: a fresh key prefix per test, worker processes
// (__test__/coordination/worker.mjs) started and triggered from a test, and the process warnings
// a block of code emits.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createInterface } from 'node:readline'

import { API_KEY } from '../helpers.mjs'

const WORKER = new URL('./worker.mjs', import.meta.url)

/** The `code` of the one-time warning when coordination falls back to the process's own. */
export const FALLBACK_WARNING = 'CHATGPT_NATIVE_COORDINATION_FALLBACK'

/** Keys of one test only, so tests sharing a Redis never share a bucket. */
export const freshPrefix = () => `t-${randomUUID()}`

/** A worker process for `config`; resolves once it is ready to send. */
export async function startWorker(config) {
  const child = spawn(process.execPath, [WORKER.pathname, JSON.stringify({ apiKey: API_KEY, ...config })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout })
  const next = () =>
    new Promise((resolve, reject) => {
      lines.once('line', resolve)
      child.once('exit', (code) => reject(new Error(`worker exited (${code})`)))
    })
  assert.equal(await next(), 'ready')
  return {
    /** Starts its calls; resolves with its report. */
    async run() {
      const report = next()
      child.stdin.write('go\n')
      return JSON.parse(await report)
    },
    stop: () => child.kill(),
  }
}

/** Collects the process warnings with `code` while `fn` runs (and a tick after). */
export async function warningsDuring(code, fn) {
  const seen = []
  const listener = (w) => {
    if (w.code === code) seen.push(w)
  }
  process.on('warning', listener)
  try {
    await fn()
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', listener)
  }
  return seen
}
