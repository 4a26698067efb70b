// Shared test helpers: one simulator per test file, a client factory pointed at it, and waits
// for a state to be reached (so tests act on events, not on guessed delays).
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'
import http from 'node:http'

export const API_KEY = 'sk-test-0123456789abcdef'

/** Start a simulator that checks the test key. */
export async function startSimulator(options = {}) {
  return ChatGPTSimulator.start({ apiKey: API_KEY, ...options })
}

/** A client for `sim` with no system message (so prompts are exactly what the test sends). */
export function clientFor(sim, options = {}) {
  return new ChatGPTAPI({
    apiKey: API_KEY,
    apiBaseUrl: sim.url,
    systemMessage: '',
    completionParams: { model: 'sim-gpt' },
    ...options,
  })
}

/** Await `promise`, which must reject, and return the error. */
export async function rejection(promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected the promise to reject, but it resolved')
}

/** Call `fn`, which must throw synchronously, and return the error. */
export function thrown(fn) {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a synchronous throw')
}

/**
 * Resolves once `predicate()` holds, checking every 2 ms; rejects naming `what` if it does not
 * hold within `limitMs`. The limit only bounds a broken test; the wait ends as soon as the state
 * is reached.
 */
export async function until(predicate, what, limitMs = 5000) {
  const start = Date.now()
  while (!predicate()) {
    if (Date.now() - start > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** Resolves once the simulator `sim` is answering at least `n` chat requests at once. */
export function whenInFlight(sim, n, limitMs = 5000) {
  return until(() => sim.stats().inFlight >= n, `${n} chat requests in flight at the simulator`, limitMs)
}

/** Resolves once the simulator `sim` answers no chat request: each one ended or was cancelled. */
export function whenIdle(sim, limitMs = 2000) {
  return until(() => sim.stats().inFlight === 0, 'no chat request in flight at the simulator', limitMs)
}

/**
 * The JSON body of a complete (non-streamed) chat completion answering `content`, for raw
 * node:http servers standing in for an OpenAI-compatible one.
 */
export function completionJson(content, { id = 'chatcmpl-1', completionTokens = 1 } = {}) {
  return JSON.stringify({
    id,
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: completionTokens, total_tokens: 1 + completionTokens },
  })
}

/**
 * A loopback server answering every request with `answer`: an array of SSE frames (objects are
 * sent as JSON, strings as they are) or an object sent as JSON, or a function of the request's
 * number (1 for the first) returning one. Records the request bodies.
 */
export async function answeringServer(answer) {
  const bodies = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      bodies.push(JSON.parse(body))
      const reply = typeof answer === 'function' ? answer(bodies.length) : answer
      if (Array.isArray(reply)) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        for (const frame of reply) res.write(`data: ${typeof frame === 'string' ? frame : JSON.stringify(frame)}\n\n`)
        res.end()
      } else {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(reply))
      }
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}/v1`, bodies, close: () => server.close() }
}
