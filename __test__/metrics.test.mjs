// metrics, resetMetrics and metricsText: counters of a scripted run, and the Prometheus text.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  // Each answer is 8 tokens: the completion-token count below depends on it.
  sim = await startSimulator({ responseTokens: 8 })
})
after(() => sim.close())

test('metrics count a scripted run, and resetMetrics zeroes them', async () => {
  const api = clientFor(sim, { retryBaseMs: 5, maxModelTokens: 1000, maxResponseTokens: 100, cache: true })
  sim.enqueueFault({ kind: 'status', status: 500 })
  await api.sendMessage('metrics one', { onProgress: () => {} })
  sim.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5' })
  const sent = await api.sendMessage('metrics two')
  await api.sendMessage('metrics two')
  sim.enqueueFault({ kind: 'status', status: 400 })
  await rejection(api.sendMessage('metrics three'))
  const m = api.metrics()
  assert.equal(m.callsStarted, 4)
  assert.equal(m.callsSucceeded, 3)
  assert.equal(m.callsFailed, 1)
  assert.deepEqual(m.failuresByCode, { ERR_CHATGPT_HTTP: 1 })
  assert.equal(m.attempts, 5)
  assert.equal(m.retries, 2)
  assert.equal(m.rateLimitedResponses, 1)
  assert.equal(m.cacheHits, 1)
  assert.equal(m.cacheTokensSaved, sent.usage.promptTokens + sent.usage.completionTokens)
  assert.equal(m.latencyMs.count, 4)
  assert.ok(m.latencyMs.p50 > 0 && m.latencyMs.p99 >= m.latencyMs.p50)
  assert.equal(m.timeToFirstTokenMs.count, 1)
  assert.equal(m.completionTokens, 16)
  assert.ok(m.tokenUtilization > 0 && m.tokenUtilization < 1)
  assert.equal(m.breakerState, 'closed')
  assert.equal(m.keys.length, 1)
  assert.ok(!JSON.stringify(m).includes('sk-test-0123456789abcdef'))
  api.resetMetrics()
  assert.equal(api.metrics().callsStarted, 0)
  assert.equal(api.metrics().cacheTokensSaved, 0)
  assert.equal(api.metrics().latencyMs.count, 0)
})

test('metricsText is valid Prometheus text exposition', async () => {
  const api = clientFor(sim)
  await api.sendMessage('prometheus')
  const text = api.metricsText()
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+$/
  const declared = new Set()
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# TYPE ')) {
      declared.add(line.split(' ')[2])
      continue
    }
    if (line.startsWith('#')) continue
    assert.match(line, sample)
    const name = line.split(/[{ ]/)[0]
    assert.ok([...declared].some((d) => name === d || name.startsWith(`${d}_`)), `${name} has a TYPE`)
  }
  assert.match(text, /chatgpt_native_calls_total\{outcome="succeeded"\} 1/)
  assert.match(text, /chatgpt_native_request_duration_seconds\{quantile="0.99"\}/)
})
