// Option validation: ERR_CHATGPT_INVALID_ARG naming the option and the bad value, thrown by the
// constructor and rejected by Promise-returning calls.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ChatGPTAPI, ChatGPTError } from '../index.js'
import { thrown, rejection } from './helpers.mjs'

const base = { apiKey: 'sk-valid', apiBaseUrl: 'http://127.0.0.1:1/v1' }

function invalid(options, pattern) {
  const err = thrown(() => new ChatGPTAPI({ ...base, ...options }))
  assert.ok(err instanceof ChatGPTError)
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(err.message, pattern)
}

test('rejects negative, fractional and non-numeric numbers, naming the option', () => {
  invalid({ timeoutMs: -1 }, /`timeoutMs`.*non-negative integer, got -1/)
  invalid({ timeoutMs: 1.5 }, /`timeoutMs`.*got 1.5/)
  invalid({ timeoutMs: '100' }, /`timeoutMs`.*got "100"/)
  invalid({ idleTimeoutMs: 0 }, /`idleTimeoutMs`/)
  invalid({ maxModelTokens: NaN }, /`maxModelTokens`/)
  invalid({ maxResponseTokens: -5 }, /`maxResponseTokens`.*got -5/)
  invalid({ maxModelTokens: 100, maxResponseTokens: 100 }, /`maxResponseTokens`.*less than `maxModelTokens`/)
  invalid({ maxResponseBytes: Infinity }, /`maxResponseBytes`/)
})

test('rejects wrong types for strings, booleans and objects', () => {
  invalid({ apiBaseUrl: 42 }, /`apiBaseUrl` to be a string, got 42/)
  invalid({ debug: 'yes' }, /`debug` to be a boolean/)
  invalid({ completionParams: 'gpt' }, /`completionParams` to be an object/)
  invalid({ completionParams: [1] }, /`completionParams` to be an object, got an array/)
  invalid({ headers: { 'x-a': 1 } }, /`headers\["x-a"\]` to be a string, got 1/)
  invalid({ systemMessage: {} }, /`systemMessage` to be a string, got an object/)
})

test('rejects bad URLs and reserved completion params', () => {
  invalid({ apiBaseUrl: 'not a url' }, /`apiBaseUrl`.*http\(s\) URL/)
  invalid({ apiBaseUrl: 'ftp://example.com' }, /`apiBaseUrl`/)
  invalid({ completionParams: { messages: [] } }, /`completionParams`.*`messages`/)
  invalid({ completionParams: { stream: true } }, /`stream`/)
  invalid({ completionParams: { model: '' } }, /`completionParams.model`/)
})

test('a missing API key throws a clear error', () => {
  const saved = process.env.OPENAI_API_KEY
  delete process.env.OPENAI_API_KEY
  try {
    const err = thrown(() => new ChatGPTAPI({ apiBaseUrl: base.apiBaseUrl }))
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, /OPENAI_API_KEY/)
  } finally {
    if (saved !== undefined) process.env.OPENAI_API_KEY = saved
  }
})

test('a non-string API key is rejected without echoing it', () => {
  const err = thrown(() => new ChatGPTAPI({ apiKey: 12345678 }))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.ok(!err.message.includes('12345678'))
})

test('options must be an object', () => {
  const err = thrown(() => new ChatGPTAPI('sk-key'))
  assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
  assert.match(err.message, /`options` to be an object/)
})

test('sendMessage rejects invalid arguments instead of throwing', async () => {
  const api = new ChatGPTAPI(base)
  const cases = [
    [() => api.sendMessage(42), /`text` to be a string, got 42/],
    [() => api.sendMessage(), /`text` to be a string, got undefined/],
    [() => api.sendMessage('hi', 'opts'), /`options` to be an object/],
    [() => api.sendMessage('hi', { onProgress: 'no' }), /`onProgress` to be a function/],
    [() => api.sendMessage('hi', { timeoutMs: -1 }), /`timeoutMs`.*got -1/],
    [() => api.sendMessage('hi', { stream: 1 }), /`stream` to be a boolean/],
    [() => api.sendMessage('hi', { parentMessageId: 7 }), /`parentMessageId` to be a string/],
    [() => api.sendMessage('hi', { completionParams: { n: 0 } }), /`completionParams\.n`.*got 0/],
    [() => api.sendMessage('hi', { abortSignal: 'x' }), /`abortSignal` to be an object/],
  ]
  for (const [fn, pattern] of cases) {
    let promise
    assert.doesNotThrow(() => { promise = fn() })
    const err = await rejection(promise)
    assert.equal(err.code, 'ERR_CHATGPT_INVALID_ARG')
    assert.match(err.message, pattern)
  }
})

test('ChatGPTError can be constructed and is an Error', () => {
  const err = new ChatGPTError('boom', { code: 'ERR_CHATGPT_HTTP', statusCode: 503 })
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'ERR_CHATGPT_HTTP')
  assert.equal(err.statusCode, 503)
  assert.equal(err.message, 'boom')
  assert.equal(err.name, 'ChatGPTError')
  assert.ok(!('requestId' in err))
})
