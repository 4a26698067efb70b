// warmup: opens a connection to the server before the first call, sending no completion.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSimulator, clientFor } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 8 })
})
after(() => sim.close())

test('warmup opens the connection before the first call', async () => {
  const api = clientFor(sim)
  sim.resetStats()
  const ms = await api.warmup()
  assert.equal(typeof ms, 'number')
  assert.equal(sim.stats().requests, 1)
  assert.equal(sim.stats().chatRequests, 0)
})
