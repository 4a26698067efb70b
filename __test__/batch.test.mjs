// sendMany: results in input order with partial failures, onItem as each item completes,
// maxConcurrency and dispatch in input order, an abortSignal that cancels what is left, and
// validation of the inputs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
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

/** A server that records which item each request carries (`item 7`) in arrival order. */
async function orderRecorder() {
  const order = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      order.push(Number(JSON.parse(body).messages.at(-1).content.split(' ')[1]))
      const reply = { id: 'c', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(reply))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { order, url: `http://127.0.0.1:${server.address().port}/v1`, close: () => new Promise((resolve) => server.close(resolve)) }
}

test('sendMany dispatches its inputs in input order, with the cache on or off, small or large', async () => {
  const recorder = await orderRecorder()
  try {
    // 5 and 40 fall on both sides of the point where the batch's join switches strategy.
    for (const cache of [true, false]) {
      for (const n of [5, 40]) {
        recorder.order.length = 0
        const api = clientFor({ url: recorder.url }, { apiKey: 'sk-any', maxConcurrency: 1, cache })
        const results = await api.sendMany(Array.from({ length: n }, (_, i) => `item ${i}`))
        assert.ok(results.every((r) => r.ok))
        assert.deepEqual(recorder.order, Array.from({ length: n }, (_, i) => i), `cache: ${cache}, ${n} inputs`)
      }
    }
  } finally {
    await recorder.close()
  }
})
