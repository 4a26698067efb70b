// Shared test helpers: one simulator per test file, and a client factory pointed at it.
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'

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
