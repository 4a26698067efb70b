// The file formats of `chatgpt-native batch`: reading a request line, writing a result record,
// and reading back what an earlier run already answered.
//
// A request line is a JSON object: `{ "messages": [...] }` or `{ "text": "..." }` (sent as one
// user message), with an optional `id` (a string or a number; else `metadata.id`; else the line
// number), an optional `metadata` (returned as given, never sent) and any other fields sent as
// request parameters (`model`, `temperature`, `max_tokens`, `tools`, `response_format`, ...).
// The OpenAI Batch API's shape, `{ "custom_id", "body": { "messages", ... } }`, is read too
// (`custom_id` as the id, `body` as the request).
// A result record carries the request's `id` and `line`, its `metadata`, then either the reply or
// `error: { code, message, status? }`.
'use strict'

const { createReadStream } = require('node:fs')

/** The code of a result record for a line that is not a request (bad JSON, no messages). */
const MALFORMED = 'ERR_CHATGPT_MALFORMED_LINE'

/** Fields of a request line that are not request parameters. */
const OWN_FIELDS = new Set(['id', 'custom_id', 'metadata', 'messages', 'text'])

/** A key for an id that keeps 1 and "1" apart. */
function idKey(id) {
  return `${typeof id}:${id}`
}

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value)
const isId = (value) => typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))

/**
 * A request line read: `{ id, line, metadata, messages, params }`, or `{ id, line, metadata,
 * error }` for a line that is not a request (its id is the line number unless it had one).
 */
function readRequest(text, line) {
  const bad = (message, id = line, metadata) => ({ id, line, metadata, error: { code: MALFORMED, message: `line ${line}: ${message}` } })
  if (text === undefined) return bad(`longer than ${MAX_LINE_BYTES} bytes`)
  let value
  try {
    value = JSON.parse(text)
  } catch (err) {
    return bad(`not JSON (${err.message})`)
  }
  if (!isObject(value)) return bad('not a JSON object')
  // The OpenAI Batch API's line carries the request as `body` and its id as `custom_id`.
  const request = isObject(value.body) && value.messages === undefined && value.text === undefined ? value.body : value
  let id = value.id !== undefined ? value.id : value.custom_id
  if (id === undefined && isObject(value.metadata)) id = value.metadata.id
  const metadata = value.metadata
  if (id === undefined) id = line
  else if (!isId(id)) return bad(`the id must be a string or a number, got ${JSON.stringify(id)}`, line, metadata)
  const { messages, text: prompt } = request
  if (messages !== undefined && prompt !== undefined) return bad('give `messages` or `text`, not both', id, metadata)
  let sent
  if (Array.isArray(messages)) sent = messages
  else if (typeof prompt === 'string' || Array.isArray(prompt)) sent = [{ role: 'user', content: prompt }]
  else if (messages !== undefined) return bad('`messages` must be an array of messages', id, metadata)
  else return bad('a request needs `messages` (an array) or `text` (a string)', id, metadata)
  const params = {}
  for (const [key, param] of Object.entries(request)) {
    if (!OWN_FIELDS.has(key)) params[key] = param
  }
  return { id, line, metadata, messages: sent, params }
}

/** The result record of a reply. */
function replyRecord(request, reply, latencyMs) {
  const record = { id: request.id, line: request.line }
  if (request.metadata !== undefined) record.metadata = request.metadata
  record.text = reply.text
  if (reply.toolCalls) record.toolCalls = reply.toolCalls
  if (reply.refusal) record.refusal = reply.refusal
  if (reply.parsed !== undefined) record.parsed = reply.parsed
  if (reply.choices) record.choices = reply.choices
  record.finishReason = reply.finishReason
  record.usage = reply.usage
  if (reply.detail && typeof reply.detail.model === 'string') record.model = reply.detail.model
  if (reply.requestId) record.requestId = reply.requestId
  if (reply.cached) record.cached = true
  record.latencyMs = Math.round(latencyMs)
  return record
}

/** The result record of a failure: `{ id, line, metadata?, error: { code, message, status? } }`. */
function errorRecord(request, err) {
  const record = { id: request.id, line: request.line }
  if (request.metadata !== undefined) record.metadata = request.metadata
  const code = err && typeof err.code === 'string' ? err.code : 'ERR_CHATGPT_INTERNAL'
  const error = { code, message: err && err.message !== undefined ? String(err.message) : String(err) }
  if (err && typeof err.statusCode === 'number') error.status = err.statusCode
  record.error = error
  return record
}

/**
 * The longest line read, in bytes: a longer one becomes a MALFORMED record (the library takes at
 * most 32 MiB of JSON text in a request anyway) and is skipped without being held in memory.
 */
const MAX_LINE_BYTES = 64 * 1024 * 1024

/**
 * The lines of `file` as `{ text, line }`, numbered from 1 (blank lines are counted, not
 * yielded; a trailing `\r` is dropped). A line longer than MAX_LINE_BYTES is `{ line, tooLong:
 * true }`, with no text.
 */
async function* numberedLines(file) {
  let line = 0
  let parts = []
  let size = 0
  let tooLong = false
  const add = (piece) => {
    if (tooLong || piece.length === 0) return
    if (size + piece.length > MAX_LINE_BYTES) {
      tooLong = true
      parts = []
      size = 0
      return
    }
    parts.push(piece)
    size += piece.length
  }
  const take = () => {
    line += 1
    const taken = tooLong ? { line, tooLong: true } : { line, text: Buffer.concat(parts, size).toString('utf8').replace(/\r$/, '') }
    parts = []
    size = 0
    tooLong = false
    return taken
  }
  const wanted = (taken) => taken.tooLong || taken.text.trim() !== ''
  for await (const chunk of createReadStream(file)) {
    let start = 0
    for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
      add(chunk.subarray(start, newline))
      start = newline + 1
      const taken = take()
      if (wanted(taken)) yield taken
    }
    add(chunk.subarray(start))
  }
  if (size > 0 || tooLong) {
    const taken = take()
    if (wanted(taken)) yield taken
  }
}

/**
 * What an earlier run wrote to `file`: the keys of the ids it answered (records without
 * `error`), how many lines could not be read (a run killed mid-write can leave one), and whether
 * the file ends with a newline (when it does not, the next record must start on a new line).
 * A missing file is an empty one.
 */
async function readAnswered(file) {
  const answered = new Set()
  let unreadable = 0
  let endsWithNewline = true
  try {
    for await (const { text } of numberedLines(file)) {
      let record
      try {
        if (text === undefined) throw new Error('too long')
        record = JSON.parse(text)
      } catch {
        unreadable += 1
        continue
      }
      if (isObject(record) && isId(record.id) && record.error === undefined) answered.add(idKey(record.id))
    }
    endsWithNewline = await lastByteIsNewline(file)
  } catch (err) {
    if (err && err.code === 'ENOENT') return { answered, unreadable: 0, endsWithNewline: true }
    throw err
  }
  return { answered, unreadable, endsWithNewline }
}

/** Whether `file` is empty or ends with '\n'. */
async function lastByteIsNewline(file) {
  const { open } = require('node:fs/promises')
  const handle = await open(file, 'r')
  try {
    const { size } = await handle.stat()
    if (size === 0) return true
    const buffer = Buffer.alloc(1)
    await handle.read(buffer, 0, 1, size - 1)
    return buffer[0] === 0x0a
  } finally {
    await handle.close()
  }
}

module.exports = { MALFORMED, MAX_LINE_BYTES, idKey, readRequest, replyRecord, errorRecord, numberedLines, readAnswered }
