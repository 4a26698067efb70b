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

/**
 * Two worker processes sharing one 10-requests-a-minute bucket through the Redis `redis` names
 * (a worker's `coordination.redis`) each send 10 calls at once against `sim` (limited to 10 a
 * minute too): together they send exactly 10, the server never answers 429, and the other calls
 * wait for the shared bucket until their 1.5 s deadline. Resolves with the workers' reports.
 */
export async function twoProcessesShareOneBucket(sim, redis) {
  const config = { simUrl: sim.url, redis, rateLimit: { requestsPerMinute: 10 }, calls: 10, timeoutMs: 1500 }
  const workers = await Promise.all([startWorker(config), startWorker(config)])
  try {
    const reports = await Promise.all(workers.map((w) => w.run()))
    const succeeded = reports.reduce((n, r) => n + r.succeeded, 0)
    assert.equal(succeeded, 10, JSON.stringify(reports))
    assert.equal(sim.stats().rateLimited, 0)
    assert.equal(sim.stats().chatRequests, 10)
    for (const r of reports) {
      assert.equal(r.coordination.mode, 'shared')
      assert.equal(r.coordination.fallbacks, 0)
      assert.equal(r.coordination.redisErrors, 0)
      assert.ok(r.coordination.operations >= r.succeeded, JSON.stringify(r))
      for (const code of Object.keys(r.failures)) {
        assert.ok(['ERR_CHATGPT_TIMEOUT', 'ERR_CHATGPT_RATE_LIMITED'].includes(code), code)
      }
    }
    return reports
  } finally {
    for (const w of workers) w.stop()
  }
}
