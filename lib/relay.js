// The relays that carry native events to user callbacks (`onProgress`, `onItem`).
//
// The native side queues one call per event through a ThreadsafeFunction and never waits for
// JavaScript; a final call with a null first argument is its barrier (src/binding/progress.rs).
// One relay serves every callback: it stops calling back after the first throw, turns a throw into
// an exception the native side catches (and rethrows nothing to Node), tracks the thenables the
// callback returns so a rejection is reported through `report(reason)` instead of going unhandled,
// and calls `idle()` once the barrier has run and no returned Promise is pending (or one failed).
'use strict'

/**
 * A relay calling `deliver(a, b)` per event. `report(reason)` receives the first rejection of a
 * returned thenable; `idle()` is called once after the barrier, when nothing is pending.
 */
function makeRelay(deliver, report, idle) {
  let failed = false
  let pending = 0
  let draining = false
  const fail = (err) => {
    if (failed) return
    failed = true
    // A throw out of a rejection handler would be an unhandled rejection: never let one out.
    try {
      report(err)
    } catch (_) {}
  }
  const maybeIdle = () => {
    if (draining && (failed || pending === 0)) idle()
  }
  const settled = () => {
    pending--
    maybeIdle()
  }
  const rejected = (err) => {
    fail(err)
    settled()
  }
  const watch = (ret) => {
    if (ret === null || (typeof ret !== 'object' && typeof ret !== 'function')) return
    let then
    try {
      then = ret.then
    } catch (err) {
      failed = true
      throw err
    }
    if (typeof then !== 'function') return
    pending++
    Promise.resolve(ret).then(settled, rejected)
  }
  return function relay(a, b, c) {
    if (a == null) {
      draining = true
      return maybeIdle()
    }
    if (failed) return
    let ret
    try {
      ret = deliver(a, b, c)
    } catch (err) {
      failed = true
      throw err
    }
    watch(ret)
  }
}

/**
 * A partial reply as `onProgress` receives it. `detail` is the chunk that carried the delta, as
 * `chatgpt` v5 passes it: its JSON text is kept and parsed on first read (then memoised), so a
 * callback that never reads it pays for no parse. A delta replayed from the cache or a shared
 * call has no chunk of its own: its `detail` is a chunk built from the delta.
 */
class PartialChatMessage {
  #chunk
  #detail
  constructor(id, parentMessageId, conversationId, text, delta, chunk, toolCalls, choiceIndex, refusal) {
    this.role = 'assistant'
    this.id = id
    // `sendMessages` has no user message: its partials' parentMessageId is undefined.
    this.parentMessageId = parentMessageId || undefined
    this.text = text
    this.delta = delta
    if (conversationId != null) this.conversationId = conversationId
    if (toolCalls !== undefined) this.toolCalls = toolCalls
    // Only with several choices (`n > 1`) and once the model refuses: a plain partial keeps v5's shape.
    if (choiceIndex != null) this.choiceIndex = choiceIndex
    if (refusal !== undefined) this.refusal = refusal
    this.#chunk = chunk
  }

  get detail() {
    if (this.#detail === undefined) {
      let detail = null
      if (this.#chunk != null) {
        try {
          detail = JSON.parse(this.#chunk)
        } catch (_) {}
      }
      this.#detail = detail ?? {
        object: 'chat.completion.chunk',
        choices: [{ index: this.choiceIndex ?? 0, delta: { content: this.delta }, finish_reason: null }],
      }
      this.#chunk = undefined
    }
    return this.#detail
  }
}

/**
 * `onProgress`'s relay: events are `(delta, id, chunk)`, `id` only when it changed, `chunk` the
 * JSON text of the chunk (or null). Only the delta and the chunk cross from native code; the text
 * so far is concatenated here (a rope in V8), which keeps a long stream linear where sending the
 * whole text per delta would copy O(n²) bytes. Any other event has `[chunk, changesJson,
 * choiceIndex, refusalDelta]` as its chunk (null where absent): the changes are what each tool
 * call gained, `[index, id, type, name, argumentsPiece]` (null where unchanged), folded here the
 * same way; each partial gets its own copy of the calls so far (their strings shared), which
 * later partials carry too. The choice index is only there when the call asked for several
 * choices: each choice then has its own text, calls and refusal.
 */
function makeProgressRelay(onProgress, parentMessageId, conversationId, report, idle) {
  let text = ''
  let id = ''
  let toolCalls
  let refusal
  const calls = []
  // Per choice index, when the call asked for several choices.
  const choices = []
  const foldToolCalls = (calls, changesJson) => {
    for (const [index, callId, type, name, piece] of JSON.parse(changesJson)) {
      const call = (calls[index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } })
      if (callId != null) call.id = callId
      if (type != null) call.type = type
      if (name != null) call.function.name = name
      call.function.arguments += piece
    }
    return calls
      .filter(Boolean)
      .map((c) => ({ id: c.id, type: c.type, function: { name: c.function.name, arguments: c.function.arguments } }))
  }
  const deliverExtra = (delta, [chunk, changes, choiceIndex, refusalDelta]) => {
    if (choiceIndex == null) {
      text += delta
      if (changes != null) toolCalls = foldToolCalls(calls, changes)
      if (refusalDelta != null) refusal = (refusal ?? '') + refusalDelta
      return onProgress(
        new PartialChatMessage(id, parentMessageId, conversationId, text, delta, chunk, toolCalls, undefined, refusal),
      )
    }
    const choice = (choices[choiceIndex] ??= { text: '', calls: [], toolCalls: undefined, refusal: undefined })
    choice.text += delta
    if (changes != null) choice.toolCalls = foldToolCalls(choice.calls, changes)
    if (refusalDelta != null) choice.refusal = (choice.refusal ?? '') + refusalDelta
    return onProgress(
      new PartialChatMessage(
        id,
        parentMessageId,
        conversationId,
        choice.text,
        delta,
        chunk,
        choice.toolCalls,
        choiceIndex,
        choice.refusal,
      ),
    )
  }
  const deliver = (delta, newId, chunk) => {
    if (newId != null) id = newId
    if (typeof chunk === 'object' && chunk !== null) return deliverExtra(delta, chunk)
    text += delta
    return onProgress(
      new PartialChatMessage(id, parentMessageId, conversationId, text, delta, chunk, toolCalls, undefined, refusal),
    )
  }
  return makeRelay(deliver, report, idle)
}

/** `sendMany`'s `onItem` relay: events are `(index, result)`. */
function makeItemRelay(onItem, report, idle) {
  return makeRelay((index, result) => onItem(index, result), report, idle)
}

module.exports = { makeRelay, makeProgressRelay, makeItemRelay }
