// Parity with the `chatgpt` package (v5): one scenario script runs against the real v5
// ChatGPTAPI and against ours, each with its own simulator behind a recording proxy, and what the
// two did is compared field by field: the request bodies and headers, the replies, the onProgress
// partials, the errors, the conversation chains and the store contents. Every difference is
// either an equality failure here or a row of DELIBERATE, which the test checks is what happens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTAPI as V5ChatGPTAPI, ChatGPTError as V5ChatGPTError } from 'chatgpt'
import { ChatGPTAPI, ChatGPTError, ChatGPTSimulator } from '../index.js'
import { rejection } from './helpers.mjs'
import { startProxy } from './parity/proxy.mjs'
import { ABSENT, LISTED, assertSame, expect, normalise, settleListedDifferences } from './parity/compare.mjs'

const API_KEY = 'sk-parity-0123456789abcdef'
const WRONG_KEY = 'sk-parity-wrong-key-9876543210'

/** Sampling parameters set explicitly, so v5's defaults and ours cannot differ. */
const PARAMS = { model: 'sim-gpt', temperature: 0.5, top_p: 0.9, presence_penalty: 0.25, max_tokens: 64 }
const SYSTEM = 'You are the parity probe.'

/** The fields of v5's `ChatMessage`; anything else on a message is listed as `extraKeys`. */
const MESSAGE_FIELDS = ['role', 'id', 'parentMessageId', 'conversationId', 'text', 'delta', 'detail']
/** The fields v5 puts on its errors; anything else is listed as `extraKeys`. */
const ERROR_FIELDS = ['name', 'message', 'statusCode', 'statusText']

const IMPLS = [
  { label: 'v5', ChatGPTAPI: V5ChatGPTAPI, ChatGPTError: V5ChatGPTError, noRetries: {} },
  // v5 never retries: where a fault is injected ours gets `maxRetries: 0` to see the same request.
  { label: 'ours', ChatGPTAPI, ChatGPTError, noRetries: { maxRetries: 0 } },
]

const README_ERRORS = 'README "Coming from": errors are ChatGPTError with a stable `code`'
const README_ADDED = 'README "Coming from": `usage`, `finishReason`, `requestId` and `history` are on the result'
const README_ID = "README \"Coming from\": `reply.id` is the client's own id; the server's is `reply.detail.id`"
const README_USAGE = 'README: `stream_options.include_usage` is sent, so a stream reports the usage the server counted'
const README_PROGRESS =
  'README Streaming: onProgress runs once per content delta; v5 also calls it for the role chunk ' +
  '(`delta: ""`) and the finish chunk (`delta: undefined`)'
const README_TOKENS =
  'README "Coming from": prompt tokens are counted as billed (per-message overhead, the model ' +
  'encoding), not over a transcript'
const README_TOO_LONG =
  'README "Coming from": a prompt that cannot fit rejects with ERR_CHATGPT_CONTEXT_TOO_LONG instead of being cut'
const STORE_ERROR =
  'README Conversations: a store hook that throws fails the call with ERR_CHATGPT_STORE, what it threw in `cause`'

/** A reply's extra fields: v5 has none beyond ChatMessage. */
const REPLY_EXTRAS = ['cached', 'finishReason', 'history', 'requestId', 'usage']

/** A streamed reply's `detail.usage`: v5 estimates it; ours asks the server for it. */
const V5_STREAM_USAGE = expect('the estimate v5 adds ({ ..., estimated: true })', (usage) => usage?.estimated === true)
const SERVER_USAGE = expect("the server's usage (no `estimated`)", (usage) => usage && usage.estimated === undefined)

/** Scenarios in which at least one request streams. */
const STREAMING = ['streamed', 'defaults', 'Keyv-like messageStore', 'abort', 'disconnect mid-stream', '401']

/** The default system messages, today's date aside. */
const DEFAULT_SYSTEM = 'You are ChatGPT, a large language model trained by OpenAI. Answer as concisely as possible.\n'
const V5_SYSTEM = (text) => text === `${DEFAULT_SYSTEM}Knowledge cutoff: 2021-09-01\nCurrent date: ${dateIn(text)}`
const OUR_SYSTEM = (text) => text === `${DEFAULT_SYSTEM}Current date: ${dateIn(text)}`
function dateIn(text) {
  return /Current date: (\d{4}-\d{2}-\d{2})$/.exec(text)?.[1]
}

/**
 * Every difference between chatgpt v5 and ours that the scenarios meet: in which scenarios
 * (`'*'` = all that have the path's first member), the path in the normalised observation (`*` =
 * every member), what v5 gives, what ours gives (a literal, ABSENT, or `expect(...)`), and why.
 * Each row is checked on every run, and one that no longer differs fails.
 */
const DELIBERATE = [
  // Replies.
  { scenario: '*', path: 'replies.*.extraKeys', v5: [], ours: REPLY_EXTRAS, reason: README_ADDED },
  { scenario: '*', path: 'replies.*.idIsCompletionId', v5: true, ours: false, reason: README_ID },
  {
    scenario: ['streamed'],
    path: 'replies.0.detail.usage',
    v5: V5_STREAM_USAGE,
    ours: SERVER_USAGE,
    reason: README_USAGE,
  },
  {
    scenario: ['Keyv-like messageStore'],
    path: 'replies.1.detail.usage',
    v5: V5_STREAM_USAGE,
    ours: SERVER_USAGE,
    reason: README_USAGE,
  },

  // onProgress.
  {
    scenario: ['streamed', 'abort', 'disconnect mid-stream'],
    path: 'partials.*.idIsCompletionId',
    v5: true,
    ours: false,
    reason: README_ID,
  },
  {
    scenario: ['streamed', 'abort', 'disconnect mid-stream'],
    path: 'partials.*.detail.usage',
    v5: ABSENT,
    ours: null,
    reason: `${README_USAGE} (and the server then sends \`usage: null\` on every other chunk)`,
  },
  {
    scenario: ['streamed'],
    path: 'otherProgressCalls',
    v5: [{ delta: '', finishReason: null }, { finishReason: 'stop' }],
    ours: [],
    reason: README_PROGRESS,
  },
  {
    scenario: ['abort', 'disconnect mid-stream'],
    path: 'otherProgressCalls',
    v5: [{ delta: '', finishReason: null }],
    ours: [],
    reason: README_PROGRESS,
  },

  // Requests.
  {
    scenario: STREAMING,
    path: 'requests.*.body.stream_options',
    v5: ABSENT,
    ours: expect('{ include_usage: true } when streaming', (value, { parent }) =>
      parent.stream ? value?.include_usage === true : value === undefined,
    ),
    reason: README_USAGE,
  },
  {
    scenario: ['defaults'],
    path: 'requests.*.body.model',
    v5: 'gpt-3.5-turbo',
    ours: 'gpt-4.1-mini',
    reason: 'README "Coming from": the default model is gpt-4.1-mini',
  },
  {
    scenario: ['defaults'],
    path: 'requests.*.body.messages.0.content',
    v5: expect('the default, with a "Knowledge cutoff: 2021-09-01" line', V5_SYSTEM),
    ours: expect('the default, without a knowledge cutoff line', OUR_SYSTEM),
    reason: 'README "Coming from": the default system message has no "Knowledge cutoff" line',
  },
  {
    scenario: ['maxModelTokens pressure'],
    path: 'requests.0.body.messages',
    v5: expect('system, the last 8 of history, the new message', (list) => list.length === 10),
    ours: expect('system, the last 7 of history, the new message', (list) => list.length === 9),
    reason: README_TOKENS,
  },
  {
    scenario: ['maxModelTokens pressure'],
    path: 'requests.1',
    v5: expect('a request with the system message alone', (request) => request?.body?.messages?.length === 1),
    ours: ABSENT,
    reason: README_TOO_LONG,
  },
  {
    scenario: ['maxModelTokens pressure'],
    path: 'oversized',
    v5: { rejected: false, requestsSent: 1 },
    ours: { rejected: true, code: 'ERR_CHATGPT_CONTEXT_TOO_LONG', requestsSent: 0 },
    reason: README_TOO_LONG,
  },

  // Stores.
  {
    scenario: ['Keyv-like messageStore', 'store hooks', 'one store hook', 'empty message', 'name and messageId'],
    path: 'store.*.detail',
    v5: expect("the reply's `detail` on assistant rows", (value, { parent }) =>
      parent.role === 'assistant' ? value !== undefined : value === undefined,
    ),
    ours: ABSENT,
    reason: 'README Conversations: the raw `detail` is not stored',
  },

  {
    scenario: ['name and messageId'],
    path: 'store.*.name',
    v5: ABSENT,
    ours: expect('`name` on the user row', (value, { parent }) =>
      value === (parent.role === 'user' ? 'alice' : undefined),
    ),
    reason: 'README Conversations: stored messages keep `name`, so the history sends it again',
  },
  {
    scenario: ['name and messageId'],
    path: 'requests.1.body.messages.1.name',
    v5: ABSENT,
    ours: 'alice',
    reason: 'README Conversations: stored messages keep `name`, so the history sends it again',
  },

  // Errors.
  {
    scenario: ['401', '429'],
    path: 'errors.*.name',
    v5: 'Error',
    ours: 'ChatGPTError',
    reason: `${README_ERRORS} (v5's class does not set \`name\`)`,
  },
  {
    scenario: ['401', '429'],
    path: 'errors.*.message',
    v5: expect('"OpenAI error <status>: <body>" ("ChatGPT error ..." when streaming)', (text) =>
      /^(OpenAI|ChatGPT) error 4\d\d: \{"error":/.test(text),
    ),
    ours: expect('"OpenAI error <status> <status text>: <server message>"', (text) =>
      /^OpenAI error 4\d\d [A-Z]/.test(text),
    ),
    reason: README_ERRORS,
  },
  {
    scenario: ['401', '429'],
    path: 'errors.*.causeKind',
    v5: 'Response',
    ours: ABSENT,
    reason: `${README_ERRORS}: v5's \`cause\` is the fetch Response; ours has the status and the error body's fields`,
  },
  {
    scenario: ['401', '429'],
    path: 'errors.*.extraKeys',
    v5: [],
    ours: ['attempts', 'code', 'errorCode', 'requestId', 'type'],
    reason: README_ERRORS,
  },
  {
    scenario: ['failing store hook'],
    path: 'rejectedWithThrown',
    v5: true,
    ours: false,
    reason: STORE_ERROR,
  },
  {
    scenario: ['failing store hook'],
    path: 'causeIsThrown',
    v5: false,
    ours: true,
    reason: STORE_ERROR,
  },
  {
    scenario: ['failing store hook'],
    path: 'error',
    v5: expect('the Error the hook threw', (error) => error.name === 'Error' && !error.isPackageChatGPTError),
    ours: expect('a ChatGPTError with a `code`', (error) =>
      error.isPackageChatGPTError && error.extraKeys.includes('code'),
    ),
    reason: README_ERRORS,
  },
  {
    scenario: ['abort', 'timeout'],
    path: 'error.isPackageChatGPTError',
    v5: false,
    ours: true,
    reason: `${README_ERRORS}; v5 rejects with the DOMException from fetch / p-timeout's TimeoutError`,
  },
  {
    scenario: ['abort'],
    path: 'error.extraKeys',
    v5: [],
    ours: ['attempts', 'code', 'partialText', 'requestId'],
    reason: `${README_ERRORS}; an abort keeps \`partialText\` (README Aborting) and \`attempts\` (README Errors)`,
  },
  {
    scenario: ['timeout'],
    path: 'error.extraKeys',
    v5: [],
    ours: ['attempts', 'code'],
    reason: `${README_ERRORS}; \`attempts\` is set on every error of a call that reached the network`,
  },
  {
    scenario: ['invalid text'],
    path: 'outcome',
    v5: { settled: 'resolved' },
    ours: { settled: 'rejected', code: 'ERR_CHATGPT_INVALID_ARG' },
    reason: 'README "Coming from": invalid arguments to `sendMessage` reject its Promise',
  },
  {
    scenario: ['invalid text'],
    path: 'requests.0',
    v5: expect('a request with the system message alone', (request) => request?.body?.messages?.length === 1),
    ours: ABSENT,
    reason: 'README "Coming from": invalid arguments to `sendMessage` reject its Promise',
  },
  {
    scenario: ['disconnect mid-stream'],
    path: 'error',
    v5: expect("undici's TypeError('terminated')", (error) =>
      error.name === 'TypeError' && !error.isPackageChatGPTError,
    ),
    ours: expect('a ChatGPTError with a `code`, `partialText` and `attempts`', (error) =>
      error.isPackageChatGPTError && ['attempts', 'code', 'partialText'].every((key) => error.extraKeys.includes(key)),
    ),
    reason: `${README_ERRORS}; a stream that breaks after deltas rejects with ERR_CHATGPT_STREAM_INTERRUPTED`,
  },
  {
    scenario: ['disconnect mid-stream'],
    path: 'causeCode',
    v5: 'UND_ERR_SOCKET',
    ours: expect('the code of the underlying ChatGPTError', (code) => /^ERR_CHATGPT_[A-Z_]+$/.test(code ?? '')),
    reason: `${README_ERRORS}; ERR_CHATGPT_STREAM_INTERRUPTED keeps the underlying failure in \`cause\``,
  },
  {
    scenario: ['disconnect mid-stream'],
    path: 'partialText',
    v5: ABSENT,
    ours: expect('the text delivered before the break', (text) => typeof text === 'string' && text.length > 0),
    reason: `${README_ERRORS}; README Aborting: failures mid-stream carry \`partialText\``,
  },
  { scenario: ['timeout'], path: 'error.name', v5: 'TimeoutError', ours: 'ChatGPTError', reason: README_ERRORS },
  {
    scenario: ['timeout'],
    path: 'error.message',
    v5: 'OpenAI timed out waiting for response',
    ours: expect('a message of its own', (text) => typeof text === 'string' && text.length > 0),
    reason: README_ERRORS,
  },
]

/** What v5 code can read on a message (reply, partial or stored row). */
function messageView(message) {
  const view = {}
  for (const field of MESSAGE_FIELDS) view[field] = message[field]
  view.extraKeys = Object.keys(message)
    .filter((key) => !MESSAGE_FIELDS.includes(key) && message[key] !== undefined)
    .sort()
  view.idIsCompletionId = message.detail != null && message.id === message.detail.id
  return view
}

/**
 * A recorder for onProgress: v5 passes one object that it keeps mutating, so each call is copied
 * at once; `detail` is read explicitly (ours may compute it on first read). `onEach` gets the
 * number of content calls so far and returns true to stop recording (after an abort, v5 still
 * delivers the events of a network read it already has, however many there are).
 */
function progressRecorder(onEach = () => false) {
  const calls = []
  let stopped = false
  return {
    onProgress(partial) {
      if (stopped) return
      calls.push(JSON.parse(JSON.stringify(messageView(partial))))
      stopped = onEach(calls.filter(isContentCall).length) === true
    },
    /** Content partials in order, and the calls that carried no content (summarised). */
    views() {
      return {
        partials: calls.filter(isContentCall),
        otherProgressCalls: calls
          .filter((call) => !isContentCall(call))
          .map((call) => ({ delta: call.delta, finishReason: call.detail?.choices?.[0]?.finish_reason ?? null })),
      }
    },
  }
}

function isContentCall(call) {
  return typeof call.delta === 'string' && call.delta !== ''
}

/** What v5 code can read on an error. */
function errorView(err, impl) {
  const isObject = err !== null && typeof err === 'object'
  return {
    isPackageChatGPTError: err instanceof impl.ChatGPTError,
    isError: err instanceof Error,
    name: isObject ? err.name : undefined,
    statusCode: isObject ? err.statusCode : undefined,
    statusText: isObject ? err.statusText : undefined,
    message: isObject ? err.message : String(err),
    causeKind: isObject && err.cause !== undefined ? (err.cause?.constructor?.name ?? typeof err.cause) : undefined,
    extraKeys: isObject ? Object.keys(err).filter((key) => !ERROR_FIELDS.includes(key)).sort() : [],
  }
}

/** A Keyv-like store over a Map (what v5 users pass as `messageStore`). */
function keyvLike() {
  const map = new Map()
  return {
    map,
    store: {
      async get(key) {
        return map.get(key)
      },
      async set(key, value) {
        map.set(key, JSON.parse(JSON.stringify(value)))
        return true
      },
      async delete(key) {
        return map.delete(key)
      },
      async clear() {
        map.clear()
      },
    },
  }
}

/** Runs `scenario.run` for `impl` with a fresh simulator and proxy; resolves to its observation. */
async function observe(scenario, impl) {
  const sim = await ChatGPTSimulator.start({ apiKey: API_KEY, seed: 12, responseTokens: 6, ...scenario.sim })
  const proxy = await startProxy(sim.url)
  const ctx = {
    impl,
    sim,
    proxy,
    /** A client of `impl` through the proxy, with this suite's explicit parameters. */
    api(options = {}) {
      return new impl.ChatGPTAPI({
        apiKey: API_KEY,
        apiBaseUrl: proxy.url,
        completionParams: PARAMS,
        systemMessage: SYSTEM,
        ...options,
      })
    },
  }
  try {
    const observed = await scenario.run(ctx)
    // The requests go last: ids are numbered as the replies first show them.
    observed.requests = proxy.requests
    return observed
  } finally {
    await proxy.close()
    await sim.close()
  }
}

/** Runs a scenario on both packages and asserts they agree except for its DELIBERATE rows. */
async function compare(scenario) {
  const [v5Raw, oursRaw] = [await observe(scenario, IMPLS[0]), await observe(scenario, IMPLS[1])]
  const v5 = normalise(v5Raw)
  const ours = normalise(oursRaw)
  const rows = DELIBERATE.filter(
    (row) => (row.scenario === '*' ? hasTopLevel(v5, ours, row.path) : row.scenario.includes(scenario.name)),
  )
  settleListedDifferences(
    rows.map((row) => ({ ...row, scenario: scenario.name })),
    v5,
    ours,
  )
  assertSame(ours, v5)
}

function hasTopLevel(v5, ours, path) {
  const top = path.split('.')[0]
  return top in v5 || top in ours
}

const SCENARIOS = [
  {
    name: 'plain',
    async run({ api }) {
      const client = api({ apiOrg: 'org-parity' })
      const first = await client.sendMessage('Hello there')
      // The same text again is a "regenerate": v5 asks the server again, and so must ours (the
      // response cache is off unless asked for).
      const again = await client.sendMessage('Hello there')
      return { replies: [messageView(first), messageView(again)] }
    },
  },
  {
    name: 'streamed',
    sim: { tokenDelayMs: 1 },
    async run({ api }) {
      const progress = progressRecorder()
      const reply = await api().sendMessage('Stream to me', { onProgress: progress.onProgress })
      return { replies: [messageView(reply)], ...progress.views() }
    },
  },
  {
    name: 'defaults',
    // No completionParams and no systemMessage: v5's defaults against ours. Only the requests are
    // compared (the answers differ with the prompt).
    async run({ impl, proxy }) {
      const client = new impl.ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: proxy.url })
      await client.sendMessage('What are your defaults?')
      await client.sendMessage('And when streaming?', { onProgress: () => {} })
      return {}
    },
  },
  {
    name: 'conversation',
    async run({ api }) {
      const client = api()
      const replies = []
      let parentMessageId
      for (let turn = 1; turn <= 5; turn++) {
        const reply = await client.sendMessage(`Turn ${turn}: and then?`, {
          parentMessageId,
          conversationId: 'conversation-parity',
        })
        replies.push(messageView(reply))
        parentMessageId = reply.id
      }
      const chain = replies.map((reply) => ({ id: reply.id, parentMessageId: reply.parentMessageId }))
      return { replies, chain }
    },
  },
  {
    name: 'system message',
    async run({ api }) {
      const client = api({ systemMessage: 'You answer in haiku.' })
      const replies = [
        await client.sendMessage('Instance system message'),
        await client.sendMessage('Per-call system message', { systemMessage: 'You answer in limericks.' }),
        await client.sendMessage('No system message', { systemMessage: '' }),
      ]
      return { replies: replies.map(messageView) }
    },
  },
  {
    name: 'Keyv-like messageStore',
    async run({ api }) {
      const keyv = keyvLike()
      const client = api({ messageStore: keyv.store })
      const first = await client.sendMessage('Remember this')
      const second = await client.sendMessage('Streamed follow-up', {
        parentMessageId: first.id,
        onProgress: () => {},
      })
      const third = await client.sendMessage('And a last one', { parentMessageId: second.id })
      return { replies: [first, second, third].map(messageView), store: Object.fromEntries(keyv.map) }
    },
  },
  {
    name: 'store hooks',
    async run({ api }) {
      // A row written by hand without `role`: v5 reads it as a user message.
      const rows = new Map([['note-1', { id: 'note-1', text: 'An old note without a role' }]])
      const calls = []
      const client = api({
        async getMessageById(id) {
          calls.push(['get', id])
          return rows.get(id)
        },
        async upsertMessage(message) {
          calls.push(['upsert', message.id])
          rows.set(message.id, JSON.parse(JSON.stringify(message)))
        },
      })
      const first = await client.sendMessage('Continue the note', { parentMessageId: 'note-1' })
      const second = await client.sendMessage('Once more', { parentMessageId: first.id })
      return { replies: [first, second].map(messageView), calls, store: Object.fromEntries(rows) }
    },
  },
  {
    name: 'name and messageId',
    // v5 sends `name` with the new message but does not store it, so history loses it.
    async run({ api }) {
      const keyv = keyvLike()
      const client = api({ messageStore: keyv.store })
      const first = await client.sendMessage('Hi, I am Alice', {
        name: 'alice',
        messageId: '0b7c6f1e-3a5d-4e2b-9c8f-1d2e3f4a5b6c',
      })
      const store = Object.fromEntries(keyv.map)
      // Only the follow-up's request is compared: its answer depends on whether `name` was kept.
      await client.sendMessage('What is my name?', { parentMessageId: first.id })
      return { replies: [messageView(first)], store }
    },
  },
  {
    name: 'one store hook',
    // Only upsertMessage, which v5 accepts: reads use the default store, which the hook bypasses, so
    // a follow-up finds no history.
    async run({ api }) {
      const upserts = []
      const client = api({
        async upsertMessage(message) {
          upserts.push(JSON.parse(JSON.stringify(message)))
        },
      })
      const first = await client.sendMessage('Only an upsert hook')
      const second = await client.sendMessage('Is the history there?', { parentMessageId: first.id })
      return { replies: [first, second].map(messageView), store: upserts }
    },
  },
  {
    name: 'failing store hook',
    async run({ api, impl }) {
      const boom = new Error('the database is down')
      const client = api({
        ...impl.noRetries,
        async getMessageById() {
          return undefined
        },
        async upsertMessage() {
          throw boom
        },
      })
      const err = await rejection(client.sendMessage('Store this'))
      return { error: errorView(err, impl), rejectedWithThrown: err === boom, causeIsThrown: err.cause === boom }
    },
  },
  {
    name: 'empty message',
    // sendMessage(''): v5 sends no user message, and still stores the empty one.
    async run({ api }) {
      const keyv = keyvLike()
      const client = api({ messageStore: keyv.store })
      const first = await client.sendMessage('Say something')
      const empty = await client.sendMessage('', { parentMessageId: first.id })
      return { replies: [first, empty].map(messageView), store: Object.fromEntries(keyv.map) }
    },
  },
  {
    name: 'abort',
    // Slow enough that the abort lands between two deltas.
    sim: { responseTokens: 30, tokenDelayMs: 15 },
    async run({ api, impl }) {
      const keyv = keyvLike()
      const controller = new AbortController()
      const progress = progressRecorder((contentCalls) => {
        if (contentCalls < 2) return false
        controller.abort()
        return true
      })
      const err = await rejection(
        api({ messageStore: keyv.store, ...impl.noRetries }).sendMessage('Abort me midway', {
          abortSignal: controller.signal,
          onProgress: progress.onProgress,
        }),
      )
      return { error: errorView(err, impl), ...progress.views(), store: Object.fromEntries(keyv.map) }
    },
  },
  {
    name: 'disconnect mid-stream',
    sim: { tokenDelayMs: 1 },
    async run({ api, impl, sim }) {
      sim.enqueueFault({ kind: 'disconnect', afterChunks: 3 })
      const progress = progressRecorder()
      const err = await rejection(
        api(impl.noRetries).sendMessage('Cut me off', { onProgress: progress.onProgress }),
      )
      return {
        error: errorView(err, impl),
        causeCode: err?.cause?.code,
        partialText: err?.partialText,
        ...progress.views(),
      }
    },
  },
  {
    name: 'timeoutMs 0',
    // v5 reads a falsy timeoutMs as "no timeout".
    async run({ api }) {
      const reply = await api().sendMessage('No timeout at all', { timeoutMs: 0 })
      return { replies: [messageView(reply)] }
    },
  },
  {
    name: 'invalid text',
    // v5 does not check `text`; ours rejects (never throws synchronously) and sends nothing.
    async run({ api }) {
      let outcome
      try {
        outcome = await api()
          .sendMessage(undefined)
          .then(
            () => ({ settled: 'resolved' }),
            (err) => ({ settled: 'rejected', code: err.code }),
          )
      } catch (err) {
        outcome = { settled: 'threw synchronously', code: err.code }
      }
      return { outcome }
    },
  },
  {
    name: 'timeout',
    async run({ api, impl, sim }) {
      const keyv = keyvLike()
      sim.enqueueFault({ kind: 'delay', delayMs: 5000 })
      const err = await rejection(
        api({ messageStore: keyv.store, ...impl.noRetries }).sendMessage('Too slow', { timeoutMs: 200 }),
      )
      return { error: errorView(err, impl), store: Object.fromEntries(keyv.map) }
    },
  },
  {
    name: '401',
    async run({ api, impl }) {
      const client = api({ apiKey: WRONG_KEY, ...impl.noRetries })
      const errors = [
        await rejection(client.sendMessage('Wrong key')),
        await rejection(client.sendMessage('Wrong key, streamed', { onProgress: () => {} })),
      ]
      for (const err of errors) assert.ok(!String(err.message).includes(WRONG_KEY), 'the key is not in the message')
      return { errors: errors.map((err) => errorView(err, impl)) }
    },
  },
  {
    name: '429',
    async run({ api, impl, sim }) {
      sim.enqueueFault({
        kind: 'status',
        status: 429,
        type: 'requests',
        code: 'rate_limit_exceeded',
        message: 'Rate limit reached for requests',
        retryAfter: '1',
      })
      const err = await rejection(api(impl.noRetries).sendMessage('Too many'))
      return { errors: [errorView(err, impl)] }
    },
  },
  {
    name: 'maxModelTokens pressure',
    // A long conversation (written straight into the store) and a small window: each package keeps
    // the history that fits its own count. Only the request is compared (the answer follows it).
    async run({ api, proxy }) {
      const keyv = keyvLike()
      let parentMessageId
      for (let i = 1; i <= 10; i++) {
        const id = `history-${i}`
        await keyv.store.set(id, {
          id,
          parentMessageId,
          role: i % 2 ? 'user' : 'assistant',
          text: `Message ${i} of the history, long enough to count for something.`,
        })
        parentMessageId = id
      }
      // No max_tokens: each package picks its own from the window.
      const { max_tokens: _, ...params } = PARAMS
      const client = api({
        messageStore: keyv.store,
        maxModelTokens: 240,
        maxResponseTokens: 80,
        completionParams: params,
      })
      await client.sendMessage('What did we talk about?', { parentMessageId })
      // A new message longer than the whole window: v5 sends the system message alone.
      const before = proxy.requests.length
      const oversized = await client.sendMessage('word '.repeat(300)).then(
        () => ({ rejected: false }),
        (err) => ({ rejected: true, code: err.code }),
      )
      oversized.requestsSent = proxy.requests.length - before
      return { oversized }
    },
  },
]

for (const scenario of SCENARIOS) {
  test(`parity with chatgpt v5: ${scenario.name}`, () => compare(scenario))
}

test('every DELIBERATE row names scenarios that exist, and gives a reason', () => {
  const names = new Set(SCENARIOS.map((scenario) => scenario.name))
  for (const row of DELIBERATE) {
    assert.ok(typeof row.reason === 'string' && row.reason.length > 0, `${row.path}: no reason`)
    if (row.scenario === '*') continue
    for (const name of row.scenario) assert.ok(names.has(name), `${row.path}: no scenario named ${name}`)
  }
})

test('the comparison fails on a difference that is not listed, and on a listed one that went away', () => {
  const v5 = normalise({ replies: [{ id: 'chatcmpl-aaa', text: 'same', extra: 1 }] })
  const ours = normalise({ replies: [{ id: 'chatcmpl-bbb', text: 'same', extra: 2 }] })
  assert.equal(v5.replies[0].id, ours.replies[0].id, 'ids are numbered by first appearance')
  assert.throws(() => assertSame(ours, v5), /replies\.0\.extra/)

  const row = { scenario: 'unit', path: 'replies.*.extra', v5: 1, ours: 2, reason: 'unit' }
  settleListedDifferences([row], v5, ours)
  assert.equal(ours.replies[0].extra, LISTED)
  assertSame(ours, v5)

  const agreeing = normalise({ replies: [{ extra: 1 }] })
  assert.throws(
    () => settleListedDifferences([{ ...row, ours: 1 }], agreeing, normalise({ replies: [{ extra: 1 }] })),
    /now agree here/,
  )
  const [before, changed] = [normalise({ replies: [{ extra: 1 }] }), normalise({ replies: [{ extra: 3 }] })]
  assert.throws(() => settleListedDifferences([row], before, changed), /the table says 2/)
})
