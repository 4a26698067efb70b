// sendMany: results in input order with partial failures, onItem as each item completes,
// maxConcurrency, an abortSignal that cancels what is left, and validation of the inputs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTSimulator } from '../index.js'
import { startSimulator, clientFor, rejection } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 8 })
})
after(() => sim.close())

test('sendMany resolves in input order with partial failures, reporting each item as it completes', async () => {
  const api = clientFor(sim, { maxModelTokens: 200, maxResponseTokens: 50 })
  const inputs = ['one', { text: 'two', completionParams: { max_tokens: 3 } }, { text: 'x '.repeat(400) }, 'four']
  const reported = []
  const results = await api.sendMany(inputs, { onItem: (index, result) => reported.push([index, result.ok]) })
  assert.equal(results.length, 4)
  assert.deepEqual(results.map((r) => r.ok), [true, true, false, true])
  assert.equal(results[1].message.usage.completionTokens, 3)
  assert.equal(results[2].error.code, 'ERR_CHATGPT_CONTEXT_TOO_LONG')
  assert.deepEqual(reported.map(([i]) => i).sort(), [0, 1, 2, 3], 'every item reported before the Promise settled')
  assert.deepEqual(reported.find(([i]) => i === 2), [2, false])
})

test('sendMany respects maxConcurrency and abortSignal cancels what is left', async () => {
  const slow = await ChatGPTSimulator.start({ ttftMs: 100 })
  try {
    const api = clientFor(slow, { apiKey: 'any', maxConcurrency: 2 })
    const controller = new AbortController()
    // The first pair runs at once; aborting when its second item is reported cuts the rest.
    let reported = 0
    const onItem = () => {
      if (++reported === 2) controller.abort()
    }
    const results = await api.sendMany(Array.from({ length: 8 }, (_, i) => `item ${i}`), { abortSignal: controller.signal, onItem })
    assert.equal(slow.stats().maxInFlight, 2)
    assert.ok(slow.stats().chatRequests < 8, `the server saw ${slow.stats().chatRequests} of 8 requests`)
    const ok = results.filter((r) => r.ok).length
    const aborted = results.filter((r) => !r.ok && r.error.code === 'ABORT_ERR').length
    assert.ok(ok >= 2 && ok < 8, `ok ${ok}`)
    assert.equal(ok + aborted, 8)
  } finally {
    await slow.close()
  }
})

test('sendMany rejects invalid inputs', async () => {
  const api = clientFor(sim)
  for (const [inputs, pattern] of [['x', /`inputs` to be an array/], [[1], /`inputs\[0\]`/], [[{}], /`inputs\[0\].text`/]]) {
    const err = await rejection(api.sendMany(inputs))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, pattern)
  }
})
