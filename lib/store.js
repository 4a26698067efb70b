// Adapter for JavaScript conversation stores (src/binding/store.rs).
//
// Two shapes are accepted, as in the `chatgpt` package: functions `getMessageById(id)` /
// `upsertMessage(message)`, or a Keyv-style `messageStore` with `get(key)` / `set(key, value)`.
// As there, each operation is its hook when given, else the `messageStore`'s; one provided by
// neither is left out (null), and the native side uses its in-memory store for it. What is
// provided becomes a function that always returns a Promise, so the native side awaits it
// uniformly and a synchronous function or a synchronous throw works too; whatever it throws or
// rejects with becomes the `cause` of the call's ERR_CHATGPT_STORE.
'use strict'

function makeStore(getMessageById, upsertMessage, messageStore) {
  if (getMessageById == null && messageStore) getMessageById = (id) => messageStore.get(id)
  if (upsertMessage == null && messageStore) upsertMessage = (message) => messageStore.set(message.id, message)
  return {
    get:
      getMessageById == null
        ? null
        : async (id) => {
            const message = await getMessageById(id)
            return message == null ? null : message
          },
    set:
      upsertMessage == null
        ? null
        : async (message) => {
            await upsertMessage(message)
          },
  }
}

module.exports = { makeStore }
