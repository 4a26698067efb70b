// onProgress: once per delta, in order, complete before the Promise settles; throwing callbacks.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSimulator, clientFor, rejection, whenIdle } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 20 })
})
after(() => sim.close())

test('calls onProgress once per delta, in order, with the accumulated text', async () => {
  const api = clientFor(sim)
  const partials = []
  const reply = await api.sendMessage('stream me', { onProgress: (p) => partials.push({ ...p }) })
  assert.equal(partials.length, 20)
  let text = ''
  for (const p of partials) {
    text += p.delta
    assert.equal(p.text, text)
    assert.equal(p.role, 'assistant')
    assert.equal(p.id, reply.id)
    assert.equal(p.parentMessageId, reply.parentMessageId)
  }
  assert.equal(text, reply.text)
})

test('every onProgress call has run before the Promise resolves, even for long streams', async () => {
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '3000' } })
  for (let round = 0; round < 3; round++) {
    let calls = 0
    const reply = await api.sendMessage(`long stream ${round}`, {
      completionParams: { max_tokens: 3000 },
      onProgress: () => {
        calls++
      },
    })
    assert.equal(calls, 3000, 'no delta may arrive after the Promise settled')
    assert.equal(reply.usage.completionTokens, 3000)
  }
})

test('stream defaults to !!onProgress and stream:false never calls onProgress', async () => {
  const api = clientFor(sim)
  let calls = 0
  const reply = await api.sendMessage('not streamed', { stream: false, onProgress: () => calls++ })
  assert.equal(calls, 0)
  assert.equal(reply.detail.object, 'chat.completion')
  const streamed = await api.sendMessage('streamed', { onProgress: () => calls++ })
  assert.equal(streamed.detail.object, 'chat.completion.chunk')
  assert.ok(calls > 0)
})

test('a throwing onProgress rejects with the thrown error and stops the request', async () => {
  // Read to its end, the answer would take 2 s (400 tokens, 5 ms apart).
  const slow = await startSimulator({ responseTokens: 400, tokenDelayMs: 5 })
  try {
    const api = clientFor(slow)
    const boom = new Error('callback failed')
    let calls = 0
    const err = await rejection(
      api.sendMessage('throw please', {
        onProgress: () => {
          calls++
          if (calls === 3) throw boom
        },
      }),
    )
    assert.equal(err, boom, 'rejects with the very value thrown')
    assert.equal(calls, 3, 'no callback runs after the throw')
    // The upstream request is cancelled rather than read to the end.
    await whenIdle(slow, 1000)
  } finally {
    await slow.close()
  }
})

test('a callback throwing a non-Error value rejects with that value', async () => {
  const api = clientFor(sim)
  const err = await rejection(
    api.sendMessage('throw a string', {
      onProgress: () => {
        throw 'plain string'
      },
    }),
  )
  assert.equal(err, 'plain string')
})

test('a callback throwing on the last delta still rejects', async () => {
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '1' } })
  const err = await rejection(
    api.sendMessage('one token', {
      onProgress: () => {
        throw new RangeError('last one')
      },
    }),
  )
  assert.ok(err instanceof RangeError)
})

test('the process survives a throwing callback and keeps serving calls', async () => {
  const api = clientFor(sim)
  await rejection(api.sendMessage('x', { onProgress: () => { throw new Error('x') } }))
  const reply = await api.sendMessage('still alive', { onProgress: () => {} })
  assert.equal(reply.finishReason, 'stop')
})
