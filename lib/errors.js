// ChatGPTError: the one error class this package throws or rejects with.
//
// A real `Error` subclass (stack traces, `instanceof Error`), so it is written here rather than
// declared from Rust; the native side builds its errors with this very class, handed over once per
// environment at load (see index.js). FIELDS is the runtime list of the fields an error may carry:
// `__test__/exports.test.mjs` checks it against `ChatGPTErrorOptions` in index.d.ts, and a Rust
// test in src/binding/errors.rs checks it against what the native side sets.
'use strict'

const FIELDS = Object.freeze([
  'code',
  'statusCode',
  'statusText',
  'type',
  'param',
  'errorCode',
  'requestId',
  'partialText',
  'attempts',
  'promptTokens',
  'maxPromptTokens',
  'text',
  'refusal',
  'upstream',
])

class ChatGPTError extends Error {
  constructor(message, options) {
    super(message, options && options.cause !== undefined ? { cause: options.cause } : undefined)
    this.code = 'ERR_CHATGPT_HTTP'
    // Only given fields become own properties, so `'statusCode' in err` tells whether the failure
    // had a status.
    if (options) {
      for (const key of FIELDS) {
        if (options[key] !== undefined && options[key] !== null) this[key] = options[key]
      }
    }
    if (this.code === 'ABORT_ERR') this.name = 'AbortError'
  }
}
Object.defineProperty(ChatGPTError.prototype, 'name', { value: 'ChatGPTError', writable: true, configurable: true })

module.exports = { ChatGPTError, FIELDS }
