// Building the prompt of a 1,000-message conversation: chatgpt-native vs the `chatgpt` package
// v5, both reading the same JavaScript Map store, window large enough to keep every message.
//   node bench/history.mjs [messages=1000]
import { ChatGPTAPI as ChatGPTv5 } from 'chatgpt'
import { ChatGPTAPI } from '../index.js'
import { mixedText, median, time } from './common.mjs'

const N = Number(process.argv[2] ?? 1000)
const map = new Map()
const store = {
  getMessageById: async (id) => map.get(id),
  upsertMessage: async (message) => void map.set(message.id, message),
}
// A conversation of N messages with English sentences of 5-35 words.
const words = mixedText(N * 400, 7).replace(/[^\x00-\x7f]+/g, ' ').split(/\s+/).filter(Boolean)
let parentMessageId
for (let i = 0, w = 0; i < N; i++) {
  const length = 5 + ((i * 7919) % 31)
  const text = words.slice(w, w + length).join(' ')
  w = (w + length) % (words.length - 40)
  const id = `m${i}`
  map.set(id, { id, role: i % 2 ? 'assistant' : 'user', text, parentMessageId })
  parentMessageId = id
}

const window = { maxModelTokens: 1_000_000, maxResponseTokens: 1000 }
const systemMessage = 'You are a helpful assistant.'
const native = new ChatGPTAPI({
  apiKey: 'sk-bench',
  apiBaseUrl: 'http://127.0.0.1:9/v1',
  systemMessage,
  completionParams: { model: 'gpt-3.5-turbo' }, // cl100k_base, the encoding chatgpt v5 uses
  ...window,
  ...store,
})
const v5 = new ChatGPTv5({ apiKey: 'sk-bench', systemMessage, ...window, ...store })

const nativeBuilt = await native.buildMessages('next question', { parentMessageId })
const v5Built = await v5._buildMessages('next question', { parentMessageId, systemMessage })
if (nativeBuilt.messages.length !== N + 2 || v5Built.messages.length !== N + 2) {
  throw new Error(`expected ${N + 2} messages, got ${nativeBuilt.messages.length} and ${v5Built.messages.length}`)
}

const nativeMs = median(await time(() => native.buildMessages('next question', { parentMessageId }), { runs: 7, warmup: 2 }))
const v5Ms = median(await time(() => v5._buildMessages('next question', { parentMessageId, systemMessage }), { runs: 3, warmup: 0 }))

console.table({
  'chatgpt-native buildMessages': { 'median ms': nativeMs.toFixed(2), 'prompt tokens': nativeBuilt.numTokens },
  'chatgpt v5 _buildMessages': { 'median ms': v5Ms.toFixed(1), 'prompt tokens': v5Built.numTokens },
})
console.log(`${N}-message history: chatgpt-native is ${(v5Ms / nativeMs).toFixed(0)}x faster`)
console.log('(token counts differ by design: v5 counts a "User:/ChatGPT:" transcript, we count what the API bills)')
