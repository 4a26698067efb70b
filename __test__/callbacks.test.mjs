// User callbacks that throw, reject or never settle: `onProgress` and `sendMany`'s `onItem`. A
// rejected Promise a callback returns is treated like a throw (the call rejects with exactly that
// value); the process never sees an unhandled rejection; a Promise that never settles is bounded
// by the call's timeoutMs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSimulator, clientFor, rejection, whenIdle } from './helpers.mjs'

let sim
const unhandled = []
const onUnhandled = (reason) => unhandled.push(reason)

before(async () => {
  process.on('unhandledRejection', onUnhandled)
  sim = await startSimulator({ responseTokens: 8 })
})
after(async () => {
  process.off('unhandledRejection', onUnhandled)
  await sim.close()
})

/** Let any pending rejection surface as 'unhandledRejection' before asserting there was none. */
async function noUnhandledRejection() {
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(unhandled, [])
}

test('an async onProgress that rejects on the first delta rejects the call with that error', async () => {
  const boom = new Error('first delta')
  let calls = 0
  const err = await rejection(
    clientFor(sim).sendMessage('hello', {
      onProgress: async () => {
        calls++
        throw boom
      },
    }),
  )
  assert.equal(err, boom)
  // The relay stops calling back once the callback has failed.
  assert.ok(calls >= 1)
  await noUnhandledRejection()
})

test('a rejection that comes after the last delta still rejects the call', async () => {
  const boom = new Error('late')
  let deltas = 0
  const err = await rejection(
    clientFor(sim).sendMessage('hello', {
      onProgress: async (partial) => {
        deltas++
        // The last delta's Promise rejects only once the server has sent the whole answer.
        if (deltas === 8 && partial.text.length > 0) {
          await whenIdle(sim)
          throw boom
        }
      },
    }),
  )
  assert.equal(err, boom)
  assert.equal(deltas, 8)
  await noUnhandledRejection()
})

test('the call settles only after every Promise onProgress returned has settled', async () => {
  let settled = 0
  const reply = await clientFor(sim).sendMessage('hello', {
    onProgress: async () => {
      // Time is the point here: each Promise settles well after the stream has ended.
      await new Promise((resolve) => setTimeout(resolve, 20))
      settled++
    },
  })
  assert.equal(reply.role, 'assistant')
  assert.equal(settled, 8)
  await noUnhandledRejection()
})

test('a synchronous throw in onProgress still rejects with the thrown value', async () => {
  const boom = new Error('sync')
  const err = await rejection(
    clientFor(sim).sendMessage('hello', {
      onProgress: () => {
        throw boom
      },
    }),
  )
  assert.equal(err, boom)
})

test('a non-Error rejection value is passed through verbatim', async () => {
  const err = await rejection(clientFor(sim).sendMessage('hello', { onProgress: () => Promise.reject('just a string') }))
  assert.equal(err, 'just a string')
  const nothing = await rejection(clientFor(sim).sendMessage('hello', { onProgress: () => Promise.reject(undefined) }))
  assert.equal(nothing, undefined)
  await noUnhandledRejection()
})

test('a thenable that is not a Promise is followed too', async () => {
  const boom = new Error('thenable')
  const err = await rejection(
    clientFor(sim).sendMessage('hello', { onProgress: () => ({ then: (_resolve, reject) => reject(boom) }) }),
  )
  assert.equal(err, boom)
  // A `then` getter that throws counts as a throw.
  const getter = new Error('getter')
  const err2 = await rejection(
    clientFor(sim).sendMessage('hello', {
      onProgress: () => ({
        get then() {
          throw getter
        },
      }),
    }),
  )
  assert.equal(err2, getter)
  await noUnhandledRejection()
})

test('an async onProgress that resolves adds no error', async () => {
  let deltas = 0
  const reply = await clientFor(sim).sendMessage('hello', {
    onProgress: async () => {
      deltas++
    },
  })
  assert.equal(reply.role, 'assistant')
  assert.equal(deltas, 8)
  assert.ok(reply.text.length > 0)
  await noUnhandledRejection()
})

test('an onProgress Promise that never settles fails the call at its timeoutMs', async () => {
  const started = Date.now()
  const err = await rejection(
    clientFor(sim).sendMessage('hello', { timeoutMs: 500, onProgress: () => new Promise(() => {}) }),
  )
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
  const elapsed = Date.now() - started
  assert.ok(elapsed >= 400 && elapsed < 5000, `settled after ${elapsed} ms`)
})

test('aborting a call that waits for an onProgress Promise rejects it at once', async () => {
  const controller = new AbortController()
  let aborted
  const pending = clientFor(sim).sendMessage('hello', {
    // Without the abort the call would wait for the Promise until this timeoutMs.
    timeoutMs: 10_000,
    abortSignal: controller.signal,
    onProgress: () => {
      setImmediate(() => {
        aborted = Date.now()
        controller.abort()
      })
      return new Promise(() => {})
    },
  })
  const err = await rejection(pending)
  assert.equal(err.code, 'ABORT_ERR')
  assert.ok(Date.now() - aborted < 2000, 'rejected at the abort')
})

test('an async onItem that rejects rejects the batch with that value', async () => {
  const boom = new Error('item')
  const err = await rejection(
    clientFor(sim).sendMany(['a', 'b', 'c'], {
      onItem: async () => {
        throw boom
      },
    }),
  )
  assert.equal(err, boom)
  const str = await rejection(clientFor(sim).sendMany(['a'], { onItem: () => Promise.reject('item string') }))
  assert.equal(str, 'item string')
  await noUnhandledRejection()
})

test('an async onItem that resolves adds no error, and runs to completion first', async () => {
  const seen = []
  const results = await clientFor(sim).sendMany(['a', 'b'], {
    onItem: async (index) => {
      // Time is the point here: each Promise settles well after its item has completed.
      await new Promise((resolve) => setTimeout(resolve, 20))
      seen.push(index)
    },
  })
  assert.equal(results.length, 2)
  assert.ok(results.every((r) => r.ok))
  assert.deepEqual(seen.sort(), [0, 1])
  await noUnhandledRejection()
})

test('an onItem Promise that never settles fails the batch at its timeoutMs', async () => {
  const err = await rejection(
    clientFor(sim).sendMany(['a'], { timeoutMs: 500, onItem: () => new Promise(() => {}) }),
  )
  assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
})

// Conversation stores are callbacks too: a store that throws, rejects, resolves to nonsense or
// never settles fails the call with a code, within its timeoutMs, and nothing is unhandled.
const stored = { id: 'p1', role: 'user', text: 'earlier', parentMessageId: undefined }

test('a rejecting or throwing getMessageById rejects with ERR_CHATGPT_STORE', async () => {
  for (const getMessageById of [
    async () => {
      throw new Error('db down')
    },
    () => Promise.reject('db down, as a string'),
    () => {
      throw new Error('sync throw')
    },
    async () => 42,
    async () => ({ id: 7 }),
  ]) {
    const api = clientFor(sim, { getMessageById, upsertMessage: async () => {} })
    const err = await rejection(api.sendMessage('hello', { parentMessageId: 'p1' }))
    assert.equal(err.code, 'ERR_CHATGPT_STORE', String(getMessageById))
  }
  await noUnhandledRejection()
})

test('a rejecting upsertMessage or messageStore.set rejects with ERR_CHATGPT_STORE', async () => {
  const api = clientFor(sim, { getMessageById: async () => stored, upsertMessage: () => Promise.reject(undefined) })
  assert.equal((await rejection(api.sendMessage('hello', { parentMessageId: 'p1' }))).code, 'ERR_CHATGPT_STORE')
  const keyv = { get: async () => undefined, set: async () => Promise.reject(new Error('full')) }
  assert.equal((await rejection(clientFor(sim, { messageStore: keyv }).sendMessage('hello'))).code, 'ERR_CHATGPT_STORE')
  await noUnhandledRejection()
})

test('a store that never settles fails the call at its timeoutMs', async () => {
  const never = () => new Promise(() => {})
  for (const options of [
    { getMessageById: never, upsertMessage: async () => {} },
    { getMessageById: async () => stored, upsertMessage: never },
  ]) {
    const started = Date.now()
    const err = await rejection(clientFor(sim, options).sendMessage('hello', { parentMessageId: 'p1', timeoutMs: 400 }))
    assert.equal(err.code, 'ERR_CHATGPT_TIMEOUT')
    const elapsed = Date.now() - started
    assert.ok(elapsed >= 300 && elapsed < 5000, `settled after ${elapsed} ms`)
  }
})
