// Adapter for JavaScript conversation stores (src/binding/store.rs).
//
// Two shapes are accepted, as in the `chatgpt` package: a pair of functions
// `getMessageById(id)` / `upsertMessage(message)`, or a Keyv-style `messageStore` with
// `get(key)` / `set(key, value)`. Either becomes `{ get, set }`, two functions that always return
// Promises, so the native side awaits them uniformly and a synchronous function or a synchronous
// throw works too.
'use strict'

function makeStore(getMessageById, upsertMessage, messageStore) {
  if (messageStore) {
    getMessageById = (id) => messageStore.get(id)
    upsertMessage = (message) => messageStore.set(message.id, message)
  }
  return {
    get: async (id) => {
      const message = await getMessageById(id)
      return message == null ? null : message
    },
    set: async (message) => {
      await upsertMessage(message)
    },
  }
}

module.exports = { makeStore }
