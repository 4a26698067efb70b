// Argument parsing and configuration shared by the `chatgpt-native` commands.
//
// Flags are parsed with Node's own `util.parseArgs` (strict: an unknown flag or a missing value
// is an error), so the command adds no dependency and no startup cost for parsing. A bad flag
// becomes a UsageError, which bin/chatgpt-native.js prints as one line and exits 2 on.
// Nothing here loads the native addon: `--help` must stay as fast as a bare `node`.
'use strict'

const { parseArgs } = require('node:util')

/** A mistake in how the command was called: one line on stderr, exit code 2. */
class UsageError extends Error {}

/**
 * The connection flags every command that talks to a server takes. Their values fall back to the
 * environment (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_MODEL), which the library
 * reads itself for the first three.
 */
const CONNECTION_OPTIONS = {
  'api-key': { type: 'string' },
  'base-url': { type: 'string' },
  org: { type: 'string' },
  model: { type: 'string', short: 'm' },
}

/** The help lines of CONNECTION_OPTIONS, for the commands' usage texts. */
const CONNECTION_HELP = `Connection (flags first, then the environment):
  --api-key <key>      API key (env OPENAI_API_KEY)
  --base-url <url>     any OpenAI-compatible server (env OPENAI_BASE_URL, default OpenAI's)
  --org <id>           OpenAI-Organization header (env OPENAI_ORG_ID)
  -m, --model <name>   model (env OPENAI_MODEL, else the library's default)`

/**
 * Parses `argv` with `options` (util.parseArgs' spec; `help` is added), turning parseArgs' errors
 * into UsageErrors naming the command.
 */
function parse(command, argv, options, { allowPositionals = true } = {}) {
  try {
    return parseArgs({
      args: argv,
      options: { help: { type: 'boolean', short: 'h' }, ...options },
      allowPositionals,
      strict: true,
    })
  } catch (err) {
    if (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) {
      // parseArgs' messages start with a sentence of what was wrong; advice about `--` follows.
      const what = String(err.message).split('\n')[0].split('. ')[0].replace(/\.$/, '')
      throw new UsageError(`${command}: ${what} (see chatgpt-native ${command} --help)`)
    }
    throw err
  }
}

/** `value` of flag `--name` as an integer from `min` up (undefined when not given). */
function integerFlag(command, name, value, { min = 0 } = {}) {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${command}: --${name} must be an integer of at least ${min}, got '${value}'`)
  }
  return n
}

/** `value` of flag `--name` as a number from `min` to `max` (undefined when not given). */
function numberFlag(command, name, value, { min, max }) {
  if (value === undefined) return undefined
  const n = value.trim() === '' ? NaN : Number(value)
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${command}: --${name} must be a number from ${min} to ${max}, got '${value}'`)
  }
  return n
}

/**
 * ChatGPTAPI options from the connection flags: only the flags given, so the library's own
 * environment fallbacks apply to the rest. OPENAI_MODEL is read here (the library has no
 * environment variable for the model).
 */
function connectionOptions(values) {
  const options = {}
  if (values['api-key'] !== undefined) options.apiKey = values['api-key']
  if (values['base-url'] !== undefined) options.apiBaseUrl = values['base-url']
  if (values.org !== undefined) options.apiOrg = values.org
  const model = values.model ?? (process.env.OPENAI_MODEL || undefined)
  if (model !== undefined) options.completionParams = { model }
  return options
}

/**
 * Builds a client, reporting an invalid option built from the flags (ERR_CHATGPT_INVALID_ARG,
 * such as a missing API key) as a UsageError.
 */
function createClient(command, ChatGPTAPI, options) {
  try {
    return new ChatGPTAPI(options)
  } catch (err) {
    if (err && err.code === 'ERR_CHATGPT_INVALID_ARG') throw new UsageError(`${command}: ${err.message}`)
    throw err
  }
}

module.exports = {
  UsageError,
  CONNECTION_OPTIONS,
  CONNECTION_HELP,
  parse,
  integerFlag,
  numberFlag,
  connectionOptions,
  createClient,
}
