// chatgpt-native's public typings: the native addon's generated typings (binding.d.ts, from the
// Rust doc comments) plus what the JavaScript layer (index.js, lib/) adds, and the types Rust's
// typegen cannot express: `SendManyOptions` (the `sendMessage` options plus `onItem`),
// `SendMessagesOptions` (the `sendMessage` options but the conversation's), the `ChatMessage` base
// interface and the unions (`SendManyResult`), the request and response bodies
// (`CompletionParams`, `ChatCompletion`, `ChatCompletionChunk`, kept small, after openai-node's),
// and the names the `chatgpt` package (v5) exports, so code written for it compiles with only its
// import changed (`__test__/fixtures/v5-port.ts`). Hand-written; `__test__/exports.test.mjs`
// checks that its exports are exactly those of index.js and index.mjs, and that
// `ChatGPTErrorOptions` lists exactly the fields of lib/errors.js.

export * from './binding'

import type { ChatHistory, ChatReply, ChatUsage, PartialChatMessage, ReplyChoice, SendMessageOptions } from './binding'

/** The author of a message (`'tool'`: a tool's result, stored after the reply that called it). */
export type Role = 'user' | 'assistant' | 'system' | 'tool'

/** `toolChoice`: whether the model may (`'auto'`), must (`'required'`) or must not (`'none'`) call a tool, or which one it must call. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } }

/** One of `toolResults`: the result of the tool call `toolCallId` (`reply.toolCalls[i].id`). */
export interface ToolResult {
  toolCallId: string
  /** What the tool returned: a string, or any JSON value (sent stringified). */
  content: unknown
}

/**
 * A tool's result given as `sendMessage`'s input, alone or in an array (after openai-node's
 * `ChatCompletionToolMessageParam`, spelt as `toolResults` is): `sendMessage(messages, {
 * parentMessageId })` is exactly `sendMessage('', { toolResults, parentMessageId })`, sent, stored
 * and chained the same. Content parts and tool messages do not mix in one input, nor do tool
 * messages and `toolResults`. `tool_call_id` (the request body's spelling) is refused, naming
 * `toolCallId`.
 */
export interface ToolMessage {
  role: 'tool'
  /** The `id` of the call answered (`reply.toolCalls[i].id`). */
  toolCallId: string
  /** What the tool returned: a string, or any JSON value (sent stringified). */
  content: unknown
}

/**
 * A message of a conversation, in the `chatgpt` package's shape: what a store keeps, what
 * `getMessageById` returns and `upsertMessage` receives. What `sendMessage` resolves with
 * (`ChatReply`) and what `onProgress` receives (`PartialChatMessage`) are `ChatMessage`s with
 * more fields required, so handlers typed `(message: ChatMessage) => void` accept both.
 */
export interface ChatMessage {
  /** The message's id; a reply's `id` is what the next call passes as `parentMessageId`. */
  id: string
  text: string
  role: Role
  /** The `name` sent with a user message. */
  name?: string
  /** In an `onProgress` partial: what its chunk added to `text`. */
  delta?: string
  /** A reply's raw response (`ChatCompletion`), or a stream's chunk (`ChatCompletionChunk`). */
  detail?: ChatCompletion | ChatCompletionChunk
  /** The id of the message this one answers. */
  parentMessageId?: string
  conversationId?: string
  /** A reply's token usage. */
  usage?: ChatUsage
  /** A reply's `finish_reason`: `stop`, `length`, `content_filter`, `tool_calls`, ... */
  finishReason?: string
  /** A reply's `x-request-id`. */
  requestId?: string
  /** How the conversation history was assembled for a reply's prompt. */
  history?: ChatHistory
  /** True for a reply served from the response cache (no request was sent). */
  cached?: boolean
  /** The tool calls of a reply (or of a partial, assembled so far) that called tools. */
  toolCalls?: Array<ChatCompletionMessageToolCall>
  /** A stored tool result (`role: 'tool'`): the id of the call it answers. */
  toolCallId?: string
  /**
   * A reply's (or partial's, so far) refusal, when the model declined: `message.refusal`, or a
   * stream's `delta.refusal` joined. `text` stays the content only.
   */
  refusal?: string
  /** A reply's log probabilities (`completionParams: { logprobs: true }`), a stream's joined. */
  logprobs?: ChatCompletionLogprobs
  /**
   * Every choice of a reply to a call that asked for several (`completionParams: { n }` above
   * 1); absent otherwise. The reply's own `text`, `finishReason`, `toolCalls`, `refusal` and
   * `logprobs` are the first choice's.
   */
  choices?: Array<ReplyChoice>
  /** In an `onProgress` partial of a call that asked for several choices: the choice it belongs to. */
  choiceIndex?: number
  /**
   * A user message sent as content parts keeps them here (and their text parts, joined with
   * `'\n'`, in `text`); a follow-up's history sends the parts again.
   */
  content?: ContentPart[]
}

/** A text part of a message's content (openai-node's `ChatCompletionContentPartText`). */
export interface ChatCompletionContentPartText {
  type: 'text'
  text: string
}

/**
 * An image part of a message's content (openai-node's `ChatCompletionContentPartImage`). Budgeted
 * by OpenAI's formula: `detail: 'low'` 85 tokens; otherwise scaled to fit 2048x2048 and its
 * shortest side to 768, then 170 per 512-pixel tile plus 85. The size is read from a data URL's
 * PNG, JPEG, GIF or WebP header; an `http(s)` URL's image is counted as a 1024x1024 one (765).
 */
export interface ChatCompletionContentPartImage {
  type: 'image_url'
  image_url: {
    /** `https://...` (or `http://`), or `data:image/png;base64,...` (any image type). */
    url: string
    /** How closely the model looks (and what the image costs). @default 'auto' */
    detail?: 'auto' | 'low' | 'high'
  }
}

/** One part of a message's content: `sendMessage([...parts])` sends them as given. */
export type ContentPart = ChatCompletionContentPartText | ChatCompletionContentPartImage

/**
 * One message of `sendMessages(messages)`, after openai-node's `ChatCompletionMessageParam`: sent
 * as given. `content` is a string or content parts; an `assistant` message carrying only
 * `tool_calls` may leave it `null`. `tool_calls` and `tool_call_id` are checked and counted as
 * `countMessageTokens` counts them; other fields are sent as they are and counted as their JSON
 * text.
 */
export interface ChatCompletionMessageParam {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool'
  content: string | ContentPart[] | null
  /** The author's name. */
  name?: string
  /** For a `tool` message: the id of the tool call it answers (required then). */
  tool_call_id?: string
  /** For an `assistant` message: the tool calls it made. */
  tool_calls?: ChatCompletionMessageToolCall[]
  [field: string]: unknown
}

/**
 * `getMessageById` of `new ChatGPTAPI(options)`: the stored message with this id, or
 * `undefined`/`null` when there is none. May return the message itself instead of a Promise.
 */
export type GetMessageByIdFunction = (
  id: string,
) => Promise<ChatMessage | undefined | null> | ChatMessage | undefined | null

/**
 * `upsertMessage` of `new ChatGPTAPI(options)`: store a message (every sent and received one),
 * replacing any with the same `id`. A returned Promise is awaited; its value is ignored.
 */
export type UpsertMessageFunction = (message: ChatMessage) => unknown

/** A successful item of `sendMany`'s result. */
export interface SendManySuccess {
  ok: true
  /** The reply. */
  message: ChatReply
  error?: undefined
}

/** A failed item of `sendMany`'s result. */
export interface SendManyFailure {
  ok: false
  message?: undefined
  /** Why the item failed. */
  error: ChatGPTError
}

/** One item of `sendMany`'s result: check `ok` to know which. */
export type SendManyResult = SendManySuccess | SendManyFailure

/**
 * A chat-completions request body, after openai-node's `ChatCompletionCreateParams` (the
 * `chatgpt` package's `openai.CreateChatCompletionRequest`): the documented parameters most
 * used; `CompletionParams` passes any other through.
 */
export interface ChatCompletionCreateParams {
  /** The prompt: system message, history, the new message. */
  messages: Array<openai.ChatCompletionRequestMessage>
  /** The model, e.g. `gpt-4.1-mini`. */
  model: string
  /** Sampling temperature, 0 to 2: higher is more random. */
  temperature?: number | null
  /** Nucleus sampling: only tokens within this probability mass are considered. */
  top_p?: number | null
  /** Choices to generate. */
  n?: number | null
  /** Stream the answer as server-sent events. */
  stream?: boolean | null
  /** Options of a streamed answer (`include_usage`). */
  stream_options?: { include_usage?: boolean } | null
  /** Up to 4 sequences where generation stops. */
  stop?: string | Array<string> | null
  /** Most tokens of the answer (older models; newer ones use `max_completion_tokens`). */
  max_tokens?: number | null
  /** Most tokens of the answer, reasoning tokens included. */
  max_completion_tokens?: number | null
  /** -2 to 2: positive values favour new topics. */
  presence_penalty?: number | null
  /** -2 to 2: positive values discourage repeating the same line. */
  frequency_penalty?: number | null
  /** Token id to bias, -100 to 100. */
  logit_bias?: Record<string, number> | null
  /** Return the log probabilities of the answer's tokens. */
  logprobs?: boolean | null
  /** With `logprobs`: most likely tokens to return per position, 0 to 20. */
  top_logprobs?: number | null
  /** An id of your end user, for abuse monitoring. */
  user?: string
  /** Best-effort deterministic sampling. */
  seed?: number | null
  /** `{ type: 'json_object' }`, or `{ type: 'json_schema', json_schema }` for structured output. */
  response_format?: ResponseFormat
  /** Functions the model may call. */
  tools?: Array<ChatCompletionTool>
  /** `'none'`, `'auto'`, `'required'` or a function to call. */
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } }
  /** Let the model call several tools at once. */
  parallel_tool_calls?: boolean
  /** Reasoning models' effort: `'minimal'`, `'low'`, `'medium'`, `'high'`, ... */
  reasoning_effort?: string | null
}

/**
 * `completionParams` of `new ChatGPTAPI(options)` and `sendMessage(text, options)`: request
 * parameters merged into the request body. Any parameter the server accepts may be given (it is
 * sent as is); `messages` and `stream` are set by the client and rejected with
 * `ERR_CHATGPT_INVALID_ARG`.
 */
export interface CompletionParams
  extends Partial<Omit<ChatCompletionCreateParams, 'messages' | 'n' | 'stream'>> {
  messages?: never
  /**
   * Choices to generate, an integer from 1 to 128 (else `ERR_CHATGPT_INVALID_ARG`). Above 1 the
   * reply has `choices`, and streamed partials `choiceIndex`.
   * @default 1
   */
  n?: number
  stream?: never
  [param: string]: unknown
}

/** `response_format` of a request. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema'
      json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null }
    }

/**
 * `reasoningEffort`: how long a reasoning model (o1, o3, o4-mini, gpt-5, ...) thinks before it
 * answers, sent as `reasoning_effort`.
 */
export type ReasoningEffort = 'minimal' | 'low' | 'medium' | 'high'

/** A function the model may call (`tools` of a request). */
export interface ChatCompletionTool {
  type: 'function'
  function: {
    name: string
    description?: string
    /** The arguments, as a JSON Schema object. */
    parameters?: Record<string, unknown>
    strict?: boolean | null
  }
}

/** A tool call of an answer. */
export interface ChatCompletionMessageToolCall {
  id: string
  type: 'function'
  function: {
    name: string
    /** The arguments as JSON text, as the model wrote them (validate before use). */
    arguments: string
  }
}

/** Token counts of a response (`usage`), as the server sends them. */
export interface CompletionUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  prompt_tokens_details?: { cached_tokens?: number; audio_tokens?: number } | null
  completion_tokens_details?: { reasoning_tokens?: number; audio_tokens?: number } | null
  /**
   * `true` in a streamed reply's `detail.usage` when the server sent no usage and it was counted
   * locally (as the `chatgpt` package does).
   */
  estimated?: true
}

/** One token's log probability, with the most likely alternatives (`top_logprobs`). */
export interface ChatCompletionTokenLogprob {
  token: string
  logprob: number
  /** The token's UTF-8 bytes (`null` when it has none). */
  bytes: Array<number> | null
  top_logprobs: Array<{ token: string; logprob: number; bytes: Array<number> | null }>
}

/** Log probabilities of an answer's tokens (openai-node's `ChoiceLogprobs`). */
export interface ChatCompletionLogprobs {
  /** The content's tokens, in order. */
  content: Array<ChatCompletionTokenLogprob> | null
  /** The refusal's tokens, in order, when the model refused. */
  refusal?: Array<ChatCompletionTokenLogprob> | null
}

/** The answer of a choice. */
export interface ChatCompletionMessage {
  role: 'assistant'
  /** `null` when the model only called tools. */
  content: string | null
  refusal?: string | null
  tool_calls?: Array<ChatCompletionMessageToolCall>
}

/** One choice of a `ChatCompletion`. */
export interface ChatCompletionChoice {
  index: number
  message: ChatCompletionMessage
  /** `stop`, `length`, `tool_calls`, `content_filter`, ... */
  finish_reason: string | null
  logprobs?: ChatCompletionLogprobs | null
}

/** A chat-completions response (`detail` of a reply that was not streamed), as the server sent it. */
export interface ChatCompletion {
  /** The server's completion id (`chatcmpl-...`). */
  id: string
  object: 'chat.completion'
  /** Unix time, in seconds. */
  created: number
  model: string
  choices: Array<ChatCompletionChoice>
  usage?: CompletionUsage
  system_fingerprint?: string | null
  service_tier?: string | null
}

/** What one chunk of a stream adds to a choice. */
export interface ChatCompletionChunkDelta {
  role?: 'developer' | 'system' | 'user' | 'assistant' | 'tool'
  content?: string | null
  refusal?: string | null
  tool_calls?: Array<{
    index: number
    id?: string
    type?: 'function'
    function?: { name?: string; arguments?: string }
  }>
}

/** One choice of a `ChatCompletionChunk`. */
export interface ChatCompletionChunkChoice {
  index: number
  delta: ChatCompletionChunkDelta
  /** Set in the chunk that finishes the choice. */
  finish_reason: string | null
  logprobs?: ChatCompletionLogprobs | null
}

/**
 * One chunk of a streamed response, as the server sent it: a partial's `detail`, and a streamed
 * reply's `detail` (the chunk that finished the answer, with the stream's `usage`).
 */
export interface ChatCompletionChunk {
  /** The server's completion id (`chatcmpl-...`). */
  id: string
  object: 'chat.completion.chunk'
  /** Unix time, in seconds. */
  created: number
  model: string
  choices: Array<ChatCompletionChunkChoice>
  usage?: CompletionUsage | null
  system_fingerprint?: string | null
  service_tier?: string | null
}

/** The `chatgpt` package's name of a streamed reply's `detail`. */
export type CreateChatCompletionStreamResponse = ChatCompletionChunk
/** The `chatgpt` package's name of a streamed reply's `detail.usage`. */
export type CreateCompletionStreamResponseUsage = CompletionUsage
/** The `chatgpt` package's type of its `fetch` option (accepted and ignored here). */
export type FetchFn = typeof fetch

/** The request and response types under the names the `chatgpt` package (v5) uses. */
export declare namespace openai {
  /** One message of a request's prompt. */
  interface ChatCompletionRequestMessage {
    role: Role
    content: string
    name?: string
  }
  type ChatCompletionRequestMessageRoleEnum = Role
  type ChatCompletionResponseMessage = ChatCompletionMessage
  type ChatCompletionResponseMessageRoleEnum = Role
  type CreateChatCompletionRequest = ChatCompletionCreateParams
  type CreateChatCompletionRequestStop = string | Array<string>
  type CreateChatCompletionResponse = ChatCompletion
  type CreateChatCompletionResponseChoicesInner = ChatCompletionChoice
  type CreateChatCompletionDeltaResponse = ChatCompletionChunk
  type CreateCompletionResponseUsage = CompletionUsage
}

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

/**
 * Options of `sendMessages(messages, options)`: those of `sendMessage` that do not concern the
 * conversation store. The messages are sent as given, so the conversation options are rejected
 * with `ERR_CHATGPT_INVALID_ARG`; a partial's `parentMessageId` is absent. Answer a reply's tool
 * calls with an `assistant` message carrying `tool_calls` and one `tool` message (`tool_call_id`)
 * per call.
 */
export interface SendMessagesOptions
  extends Omit<SendMessageOptions, 'parentMessageId' | 'messageId' | 'conversationId' | 'systemMessage' | 'name' | 'toolResults'> {}

declare module './binding' {
  // The generated interfaces are `ChatMessage`s (a check too: tsc rejects these if a field's type
  // drifts from `ChatMessage`'s).
  interface ChatReply extends ChatMessage {}
  interface PartialChatMessage extends ChatMessage {}

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
    /**
     * Answer tool calls with JavaScript functions until the model answers in text (like
     * openai-node's `runTools`): sends `text` offering `tools`, calls the `function` of each tool
     * the model calls with the parsed arguments, sends the results back (`toolResults`), and
     * repeats. A tool whose arguments are not JSON, which is not in `tools`, or which throws is
     * reported to the model as its result, `Error: <message>`. Resolves with the first reply that
     * calls no tool, plus `rounds` (the requests made); after `maxRounds` requests that all called
     * tools it rejects with `ERR_CHATGPT_TOOL_ROUNDS`. Every request is a `sendMessage` with
     * these options, so the exchange is stored and `parentMessageId` chains continue from it.
     */
    runTools(text: string, options: RunToolsOptions): Promise<ChatReply & { rounds: number }>
  }
}

/** A tool `runTools` can run: a `ChatCompletionTool` whose `function` also has the code to call. */
export interface RunnableTool<Args = any> {
  type: 'function'
  function: {
    name: string
    description?: string
    /** The arguments, as a JSON Schema object. */
    parameters?: Record<string, unknown>
    strict?: boolean | null
    /**
     * Called with the parsed arguments and the call; what it returns (or resolves with) is sent
     * to the model: a string as it is, anything else as JSON.
     */
    function: (args: Args, toolCall: ChatCompletionMessageToolCall) => unknown
  }
}

/** Options of `runTools`: the `sendMessage` options (without `toolResults`), `tools` to run, and `maxRounds`. */
export interface RunToolsOptions extends Omit<SendMessageOptions, 'tools' | 'toolResults'> {
  tools: Array<RunnableTool>
  /**
   * Most requests the loop makes; a reply that still calls tools after that many rejects with
   * `ERR_CHATGPT_TOOL_ROUNDS`.
   * @default 10
   */
  maxRounds?: number
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
   * `ERR_CHATGPT_TOOL_ROUNDS` (`runTools` reached `maxRounds`),
   * `ERR_CHATGPT_OUTPUT_PARSE`, `ERR_CHATGPT_OUTPUT_LENGTH`, `ERR_CHATGPT_REFUSAL` (a
   * `responseFormat` reply that is not JSON, was cut by the token limit, or was refused),
   * `ERR_CHATGPT_INTERNAL` (a bug in this package ended the call; the process is unaffected),
   * `ERR_CHATGPT_UNSUPPORTED_PLATFORM` (thrown by loading the package where no native addon loads) or
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
  /** `ERR_CHATGPT_OUTPUT_PARSE` / `ERR_CHATGPT_OUTPUT_LENGTH`: the reply's whole text. */
  text?: string
  /** `ERR_CHATGPT_REFUSAL`: the model's refusal message. */
  refusal?: string
  /**
   * With the `upstreams` option: the name of the upstream this failure came from. When a call
   * fell back and every upstream failed, the error is the last upstream's, and its `cause` chain
   * holds the earlier upstreams' errors, latest first (each with its own `upstream`).
   */
  upstream?: string
  /**
   * The underlying error, kept as the standard `cause`: the failure behind an
   * `ERR_CHATGPT_STREAM_INTERRUPTED`, the previous upstream's error after fallbacks, or what a
   * store callback threw.
   */
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
  /** Never set: typed because the `chatgpt` package declares it (for its unofficial proxy API). */
  isFinal?: boolean
  /** Never set: typed because the `chatgpt` package declares it (for its unofficial proxy API). */
  accountId?: string
}
// The other fields, declared once above.
export interface ChatGPTError extends Omit<ChatGPTErrorOptions, 'code' | 'cause'> {}
