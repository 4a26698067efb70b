// AbortSignal: before the request, during the wait for headers, and mid-stream.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTError } from '../index.js'
import { startSimulator, clientFor, rejection, whenInFlight, whenIdle } from './helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 400, tokenDelayMs: 5 })
})
after(() => sim.close())

test('an already-aborted signal rejects with ABORT_ERR before any request is sent', async () => {
  sim.resetStats()
  const controller = new AbortController()
  controller.abort()
  const err = await rejection(clientFor(sim).sendMessage('never sent', { abortSignal: controller.signal }))
  assert.ok(err instanceof ChatGPTError)
  assert.equal(err.name, 'AbortError')
  assert.equal(err.code, 'ABORT_ERR')
  assert.equal(sim.stats().chatRequests, 0)
})

test('aborting while waiting for the response rejects at once', async () => {
  sim.enqueueFault({ kind: 'stall' })
  const controller = new AbortController()
  // Without the abort the stalled call would end only at its timeoutMs, as ERR_CHATGPT_TIMEOUT.
  const pending = clientFor(sim).sendMessage('stalled', { abortSignal: controller.signal, timeoutMs: 10_000 })
  await whenInFlight(sim, 1)
  const started = Date.now()
  controller.abort()
  const err = await rejection(pending)
  assert.equal(err.code, 'ABORT_ERR')
  assert.equal(err.name, 'AbortError')
  assert.ok(Date.now() - started < 2000)
  await whenIdle(sim)
})

test('aborting mid-stream rejects with the partial text and stops the deltas', async () => {
  const controller = new AbortController()
  const deltas = []
  const err = await rejection(
    clientFor(sim).sendMessage('long stream', {
      abortSignal: controller.signal,
      onProgress: (p) => {
        deltas.push(p.delta)
        if (deltas.length === 5) controller.abort()
      },
    }),
  )
  assert.equal(err.code, 'ABORT_ERR')
  assert.ok(err.partialText.startsWith(deltas.slice(0, 5).join('')))
  const seen = deltas.length
  // The upstream request is cancelled rather than read to its end (400 tokens, 2 s).
  await whenIdle(sim, 1000)
  // A late delta cannot be waited for as an event: give one the time it would take to show up.
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(deltas.length, seen, 'no delta arrives after the rejection')
})

test('a signal reused across calls does not accumulate listeners', async () => {
  const controller = new AbortController()
  const api = clientFor(sim, { headers: { 'x-sim-response-tokens': '1' } })
  for (let i = 0; i < 30; i++) await api.sendMessage(`call ${i}`, { abortSignal: controller.signal })
  // Node warns (MaxListenersExceededWarning) past 10 listeners on one EventTarget; count them.
  const { getEventListeners } = await import('node:events')
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
})

test('aborting after completion is harmless', async () => {
  const controller = new AbortController()
  const reply = await clientFor(sim, { headers: { 'x-sim-response-tokens': '2' } }).sendMessage('quick', { abortSignal: controller.signal })
  controller.abort()
  assert.equal(reply.finishReason, 'stop')
})

test('an abort or timeout of a call that sent its request reports attempts, cached or not', async () => {
  // With `cache: true` the request runs as a shared call the caller waits on.
  for (const cache of [false, true]) {
    // The fault rides on each request (a header), so one that is never sent cannot leave a queued
    // stall behind for a later test.
    const api = clientFor(sim, { cache, headers: { 'x-sim-fault': JSON.stringify({ kind: 'stall' }) } })
    const timedOut = await rejection(api.sendMessage(`stalled until the timeout, cache ${cache}`, { timeoutMs: 200 }))
    assert.equal(timedOut.code, 'ERR_CHATGPT_TIMEOUT')
    assert.equal(timedOut.attempts, 1, `timeout, cache ${cache}`)
    // The timed-out request must have left the simulator, or `whenInFlight` below would count it
    // and the abort could come before the next request is sent.
    await whenIdle(sim)

    const controller = new AbortController()
    const pending = api.sendMessage(`stalled until aborted, cache ${cache}`, { abortSignal: controller.signal })
    await whenInFlight(sim, 1)
    controller.abort()
    const aborted = await rejection(pending)
    assert.equal(aborted.code, 'ABORT_ERR')
    assert.equal(aborted.attempts, 1, `abort, cache ${cache}`)
    await whenIdle(sim)
  }
})

test('an abort after deltas stays ABORT_ERR, with the partial text and attempts, cached or not', async () => {
  for (const cache of [false, true]) {
    const controller = new AbortController()
    const deltas = []
    const err = await rejection(
      clientFor(sim, { cache }).sendMessage(`aborted mid-stream, cache ${cache}`, {
        abortSignal: controller.signal,
        onProgress: (p) => {
          deltas.push(p.delta)
          if (deltas.length === 3) controller.abort()
        },
      }),
    )
    assert.equal(err.code, 'ABORT_ERR')
    assert.equal(err.cause, undefined)
    assert.equal(err.attempts, 1)
    assert.ok(err.partialText.startsWith(deltas.slice(0, 3).join('')))
    await whenIdle(sim, 1000)
  }
})

test('a timeout or abort after the reply arrived (waiting for onProgress or the store) reports attempts', async () => {
  const api = clientFor(sim, { cache: false, headers: { 'x-sim-response-tokens': '3' } })
  const controller = new AbortController()
  const waiting = await rejection(
    api.sendMessage('waits for an onProgress Promise', {
      abortSignal: controller.signal,
      onProgress: () => {
        setImmediate(() => controller.abort())
        return new Promise(() => {})
      },
    }),
  )
  assert.equal(waiting.code, 'ABORT_ERR')
  assert.equal(waiting.attempts, 1)

  // A store whose writes never finish: the call ends at its timeoutMs, after its one request.
  const stuck = clientFor(sim, {
    cache: false,
    headers: { 'x-sim-response-tokens': '3' },
    getMessageById: async () => undefined,
    upsertMessage: () => new Promise(() => {}),
  })
  const storing = await rejection(stuck.sendMessage('stored forever', { timeoutMs: 300 }))
  assert.equal(storing.code, 'ERR_CHATGPT_TIMEOUT')
  assert.equal(storing.attempts, 1)
})
