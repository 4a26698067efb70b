// `api.runTools(text, options)`: the tool loop, after openai-node's `runTools`. It sends `text`
// offering the tools, runs the JavaScript function of each tool the model calls, sends the
// results back (`toolResults` with `parentMessageId`), and repeats until a reply calls no tool.
// Everything on the wire goes through `sendMessage`: this file only calls the user's functions
// and decides whether to go round again.
//
// As in openai-node, a tool that fails does not fail the loop: arguments that are not JSON, an
// unknown tool name, or a function that throws (or rejects) are reported to the model as that
// tool's result, `Error: <message>`, so it can correct itself. `maxRounds` bounds the requests.
'use strict'

const { ChatGPTError } = require('./errors.js')

const DEFAULT_MAX_ROUNDS = 10

function invalid(message) {
  return new ChatGPTError(message, { code: 'ERR_CHATGPT_INVALID_ARG' })
}

/** A short rendering of a bad value for messages (never its contents beyond a few characters). */
function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'function') return 'a function'
  return String(value)
}

/**
 * The checked tools: what is sent (`wire`, without the functions) and the functions by name.
 * Throws ERR_CHATGPT_INVALID_ARG naming the bad entry.
 */
function readTools(tools) {
  if (!Array.isArray(tools) || tools.length === 0) {
    throw invalid(`Expected \`tools\` to be a non-empty array of tools, got ${describe(tools)}`)
  }
  const wire = []
  const functions = new Map()
  tools.forEach((tool, i) => {
    const fn = tool?.function
    if (tool?.type !== 'function' || fn === null || typeof fn !== 'object') {
      throw invalid(`Expected \`tools[${i}]\` to be { type: 'function', function: { name, function } }, got ${describe(tool)}`)
    }
    if (typeof fn.name !== 'string' || fn.name === '') {
      throw invalid(`Expected \`tools[${i}].function.name\` to be a non-empty string, got ${describe(fn.name)}`)
    }
    if (typeof fn.function !== 'function') {
      throw invalid(`Expected \`tools[${i}].function.function\` to be a function, got ${describe(fn.function)}`)
    }
    if (functions.has(fn.name)) {
      throw invalid(`Expected \`tools[${i}].function.name\` to be unique, but ${describe(fn.name)} is given twice`)
    }
    functions.set(fn.name, fn.function)
    const { function: _run, ...definition } = fn
    wire.push({ type: 'function', function: definition })
  })
  return { wire, functions }
}

function readMaxRounds(maxRounds) {
  if (maxRounds === undefined || maxRounds === null) return DEFAULT_MAX_ROUNDS
  if (!Number.isSafeInteger(maxRounds) || maxRounds < 1) {
    throw invalid(`Expected \`maxRounds\` to be a positive integer, got ${describe(maxRounds)}`)
  }
  return maxRounds
}

/** What a tool's result becomes on the wire: a string as it is, anything else as JSON. */
function resultContent(result) {
  if (typeof result === 'string') return result
  const json = JSON.stringify(result)
  return json === undefined ? '' : json
}

const errorContent = (err) => `Error: ${err instanceof Error ? err.message : String(err)}`

/** Run the function the model called with `call`; its result, or the error, as the tool's content. */
async function runCall(functions, call) {
  const fn = functions.get(call.function.name)
  if (fn === undefined) {
    const known = [...functions.keys()].map((n) => JSON.stringify(n)).join(', ')
    return `Error: there is no tool named ${JSON.stringify(call.function.name)}; the tools are ${known}`
  }
  let args
  try {
    args = JSON.parse(call.function.arguments || '{}')
  } catch (err) {
    return errorContent(err)
  }
  try {
    return resultContent(await fn(args, call))
  } catch (err) {
    return errorContent(err)
  }
}

/**
 * `runTools(text, { tools, maxRounds = 10, ...sendMessage options })`: resolves with the first
 * reply that calls no tool, with `rounds` (the requests the loop made).
 */
async function runTools(text, options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalid(`Expected \`options\` to be an object with \`tools\`, got ${describe(options)}`)
  }
  const { tools, maxRounds, toolResults, ...sendOptions } = options
  if (toolResults !== undefined) {
    throw invalid('Expected no `toolResults` in `runTools` options: the loop sends the results itself')
  }
  const { wire, functions } = readTools(tools)
  const rounds = readMaxRounds(maxRounds)
  // The first request is the caller's message; the later ones answer a reply, so they take
  // neither its id nor its parent.
  const { messageId: _id, parentMessageId: _parent, ...followUp } = sendOptions
  let reply = await this.sendMessage(text, { ...sendOptions, tools: wire })
  let round = 1
  while (reply.toolCalls !== undefined) {
    if (round >= rounds) {
      throw new ChatGPTError(
        `The model still called tools after \`maxRounds\` (${rounds}) requests; the last reply is ${reply.id}`,
        { code: 'ERR_CHATGPT_TOOL_ROUNDS' },
      )
    }
    // One at a time, in the order the model listed them, as openai-node runs them.
    const results = []
    for (const call of reply.toolCalls) {
      results.push({ toolCallId: call.id, content: await runCall(functions, call) })
    }
    reply = await this.sendMessage('', { ...followUp, tools: wire, toolResults: results, parentMessageId: reply.id })
    round++
  }
  reply.rounds = round
  return reply
}

/** Adds `runTools` to ChatGPTAPI's prototype. */
function defineRunTools(ChatGPTAPI) {
  Object.defineProperty(ChatGPTAPI.prototype, 'runTools', {
    value: runTools,
    writable: true,
    configurable: true,
  })
}

module.exports = { defineRunTools }
