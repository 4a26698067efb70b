// chatgpt-native's public typings: the native addon's generated typings (binding.d.ts, from the
// Rust doc comments) plus what the JavaScript layer (index.js, lib/) adds, and `SendManyOptions`
// (the `sendMessage` options plus `onItem`, which Rust's typegen cannot express). Hand-written;
// `__test__/exports.test.mjs` checks that its exports are exactly those of index.js and index.mjs,
// and that `ChatGPTErrorOptions` lists exactly the fields of lib/errors.js.

export * from './binding'

import type { PartialChatMessage, SendManyResult, SendMessageOptions } from './binding'

/**
 * Options of `sendMany(inputs, options)`: the `sendMessage` options, used for the string inputs
 * (object inputs carry their own; their `onProgress` and `abortSignal` are not used), plus
 * `onItem`.
 */
export interface SendManyOptions extends SendMessageOptions {
  /**
   * Called as each item completes, in completion order; every call has run before the
   * Promise settles. A throw, or a returned Promise that rejects, rejects the batch with that
   * value and cancels the rest. Returned Promises are awaited before the batch settles, up to
   * its `timeoutMs` (then it rejects with `ERR_CHATGPT_TIMEOUT`); an abort during that wait
   * rejects the batch with `ABORT_ERR`.
   */
  onItem?: (index: number, result: SendManyResult) => void
  /** Cancels the items not yet finished. */
  abortSignal?: AbortSignal
  /**
   * The user-message id of the string inputs: only usable with one string input, as every
   * item needs its own.
   * @default a random UUID v4 per item
   */
  messageId?: string
  /**
   * As in `sendMessage`, for string inputs. Promises `onItem` returned are waited for up to
   * the longest item's bound.
   */
  timeoutMs?: number
  /** Never called for batch items (use `onItem`); given, string inputs stream by default. */
  onProgress?: (partial: PartialChatMessage) => void
}

declare module './binding' {
  // Added by lib/api.js.
  interface ChatGPTAPI {
    /**
     * The API key requests use, as in the `chatgpt` package. Setting it makes later calls use
     * this key alone (it replaces an `apiKeys` pool too); calls in flight finish with the key
     * they started with. The conversation history is kept; rate limits, circuit breaker, response
     * cache and metrics start afresh. A value that is not a non-empty string without spaces or
     * control characters throws `ERR_CHATGPT_INVALID_ARG`. Reading it gives the fingerprint
     * (`sk-…abcd`) of the key in use (the first of `apiKeys` when several were given), never the
     * key itself, so it cannot leak through logs or `util.inspect`.
     */
    apiKey: string
    /**
     * The organisation sent as `OpenAI-Organization`, as in the `chatgpt` package. Setting it
     * (`undefined` removes it) applies to later calls, like `apiKey`.
     */
    apiOrg: string | undefined
  }
}

/** Fields accepted by the `ChatGPTError` constructor; every one but `cause` becomes a field of the error. */
export interface ChatGPTErrorOptions {
  /**
   * Stable code: `ERR_CHATGPT_HTTP`, `ERR_CHATGPT_AUTH`, `ERR_CHATGPT_RATE_LIMITED`,
   * `ERR_CHATGPT_INSUFFICIENT_QUOTA`, `ERR_CHATGPT_TIMEOUT`, `ERR_CHATGPT_NETWORK`,
   * `ERR_CHATGPT_BAD_RESPONSE`, `ERR_CHATGPT_STREAM_INCOMPLETE`, `ERR_CHATGPT_STREAM_ERROR`,
   * `ERR_CHATGPT_RESPONSE_TOO_LARGE`, `ERR_CHATGPT_CONTEXT_TOO_LONG`, `ERR_CHATGPT_STORE`,
   * `ERR_CHATGPT_STREAM_INTERRUPTED`, `ERR_CHATGPT_QUEUE_FULL`, `ERR_CHATGPT_REQUEST_TOO_LARGE`,
   * `ERR_CHATGPT_CIRCUIT_OPEN`, `ERR_CHATGPT_NO_KEY_AVAILABLE`, `ERR_CHATGPT_INVALID_ARG`,
   * `ERR_CHATGPT_INTERNAL` (a bug in this package ended the call; the process is unaffected) or
   * `ABORT_ERR`.
   * @default 'ERR_CHATGPT_HTTP'
   */
  code?: string
  /** HTTP status of the failed response. */
  statusCode?: number
  /** Reason phrase of `statusCode`, e.g. "Too Many Requests". */
  statusText?: string
  /** The server's `error.type`, e.g. "invalid_request_error". */
  type?: string
  /** The server's `error.param`. */
  param?: string
  /** The server's own `error.code`, e.g. "rate_limit_exceeded" or "context_length_exceeded". */
  errorCode?: string
  /** `x-request-id` of the failed response: quote it to the provider's support. */
  requestId?: string
  /** Text streamed before a stream failed, timed out or was aborted. */
  partialText?: string
  /** How many HTTP attempts were made. */
  attempts?: number
  /** `ERR_CHATGPT_CONTEXT_TOO_LONG`: tokens the system and user messages need. */
  promptTokens?: number
  /** `ERR_CHATGPT_CONTEXT_TOO_LONG`: the prompt budget, `maxModelTokens - maxResponseTokens`. */
  maxPromptTokens?: number
  /** The underlying error, kept as the standard `cause`. */
  cause?: unknown
}

/**
 * Every error this package throws or rejects with. Branch on `code`, never on `message`.
 *
 * `instanceof ChatGPTError` and `instanceof Error` both hold. Aborts have `name === 'AbortError'`
 * and `code === 'ABORT_ERR'`, like `fetch`. Fields the failure did not have are absent.
 */
export declare class ChatGPTError extends Error {
  /**
   * Build one yourself, e.g. to fake failures in your tests:
   * `new ChatGPTError('boom', { code: 'ERR_CHATGPT_HTTP', statusCode: 500 })`.
   */
  constructor(message: string, options?: ChatGPTErrorOptions)
  /** Stable code (see `ChatGPTErrorOptions.code`). */
  code: string
}
// The other fields, declared once above.
export interface ChatGPTError extends Omit<ChatGPTErrorOptions, 'code' | 'cause'> {}
