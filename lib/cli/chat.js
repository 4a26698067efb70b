// `chatgpt-native chat [prompt]`: streams an answer to stdout. Without a prompt it reads
// questions line by line (node:readline: line editing and history on a terminal) and keeps the
// conversation through each reply's id as the next `parentMessageId`.
//
// Ctrl-C during an answer aborts that answer (its AbortSignal) and returns to the prompt, and the
// conversation goes on from the last complete answer; Ctrl-C at the prompt clears the line;
// Ctrl-D (end of input) exits. After each answer a line with its token usage and latency goes to
// stderr, dimmed on a terminal (lib/cli/style.js).
'use strict'

const readline = require('node:readline')
const { performance } = require('node:perf_hooks')
const {
  parse,
  integerFlag,
  connectionOptions,
  createClient,
  UsageError,
  CONNECTION_OPTIONS,
  CONNECTION_HELP,
} = require('./args.js')
const { dim } = require('./style.js')
const { readText } = require('./input.js')

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  system: { type: 'string', short: 's' },
  timeout: { type: 'string' },
}

const HELP = `Usage: chatgpt-native chat [prompt...] [options]

With a prompt (or - to read it from stdin), streams the answer to stdout and exits.
Without one, asks each line you type and keeps the conversation:
  /reset            start a new conversation
  /system <text>    set the system message ('/system' alone shows it)
  /model <name>     switch the model ('/model' alone shows it)
  /help             these commands
  Ctrl-C            abort the answer being written (at the prompt: clear the line)
  Ctrl-D            exit
Token usage and latency follow each answer on stderr.

Options:
  -s, --system <text>       system message ('' sends none; default the library's)
  --timeout <ms>            bound on one answer in milliseconds (default 600000; 0: none)
  -h, --help                this text

${CONNECTION_HELP}
`

const COMMANDS_HELP = `/reset  /system <text>  /model <name>  /help   Ctrl-C aborts an answer, Ctrl-D exits`

/** `n` milliseconds for the usage line: "412 ms", "3.1 s". */
function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

/** The conversation state and the client an interactive session (or a one-shot prompt) uses. */
class Session {
  constructor(api, { systemMessage, model }) {
    this.api = api
    this.systemMessage = systemMessage
    this.model = model
    this.parentMessageId = undefined
    /** The AbortController of the answer being written, if any. */
    this.answering = null
  }

  /**
   * Asks `text`, streaming the answer to stdout, then writes the usage line to stderr. Resolves
   * with 'ok', 'aborted' or the error (already reported on stderr).
   */
  async ask(text) {
    const controller = new AbortController()
    this.answering = controller
    const started = performance.now()
    let firstTokenMs
    let wrote = ''
    try {
      const reply = await this.api.sendMessage(text, {
        parentMessageId: this.parentMessageId,
        systemMessage: this.systemMessage,
        completionParams: this.model === undefined ? undefined : { model: this.model },
        abortSignal: controller.signal,
        onProgress: (partial) => {
          if (firstTokenMs === undefined) firstTokenMs = performance.now() - started
          if (partial.delta) {
            process.stdout.write(partial.delta)
            wrote = partial.delta
          }
        },
      })
      const elapsed = performance.now() - started
      if (reply.toolCalls) {
        for (const call of reply.toolCalls) process.stdout.write(`[tool call] ${call.function.name}(${call.function.arguments})\n`)
      }
      if (reply.refusal && !reply.text) process.stdout.write(`[refusal] ${reply.refusal}`)
      if (!wrote.endsWith('\n')) process.stdout.write('\n')
      this.parentMessageId = reply.id
      const { promptTokens, completionTokens, estimated } = reply.usage
      const parts = [`${promptTokens} prompt + ${completionTokens} completion tokens${estimated ? ' (estimated)' : ''}`]
      if (firstTokenMs !== undefined) parts.push(`first token ${duration(firstTokenMs)}`)
      parts.push(`total ${duration(elapsed)}`)
      process.stderr.write(`${dim(process.stderr, `[${parts.join(' · ')}]`)}\n`)
      return 'ok'
    } catch (err) {
      if (wrote && !wrote.endsWith('\n')) process.stdout.write('\n')
      if (err && err.code === 'ABORT_ERR') {
        process.stderr.write(`${dim(process.stderr, '[aborted]')}\n`)
        return 'aborted'
      }
      if (err && err.code === 'ERR_CHATGPT_INVALID_ARG') throw new UsageError(`chat: ${err.message}`)
      process.stderr.write(`chatgpt-native chat: ${err && err.code ? `${err.code}: ` : ''}${err && err.message}\n`)
      return err
    } finally {
      this.answering = null
    }
  }

  /** Runs a `/command` line; false when it is not one this session knows. */
  command(line) {
    const [, name, arg = ''] = /^\/(\S+)\s*(.*)$/s.exec(line) ?? []
    const say = (text) => process.stderr.write(`${dim(process.stderr, text)}\n`)
    switch (name) {
      case 'reset':
        this.parentMessageId = undefined
        say('[new conversation]')
        return true
      case 'system':
        if (arg) {
          this.systemMessage = arg
          say('[system message set]')
        } else say(`[system message: ${this.systemMessage === undefined ? "the library's default" : JSON.stringify(this.systemMessage)}]`)
        return true
      case 'model':
        if (arg) {
          this.model = arg.trim()
          say(`[model: ${this.model}]`)
        } else say(`[model: ${this.model ?? this.api.model}]`)
        return true
      case 'help':
        say(COMMANDS_HELP)
        return true
      default:
        return false
    }
  }
}

/** The interactive loop: one question per line until end of input. */
async function interactive(session) {
  const terminal = Boolean(process.stdin.isTTY && process.stdout.isTTY)
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal,
    historySize: 1000,
    prompt: '> ',
  })
  // On a terminal readline reads Ctrl-C as a key (raw mode) and emits 'SIGINT'; with piped input
  // Ctrl-C is the process's signal. Either way: abort the answer being written, else clear the
  // line being typed.
  const interrupt = () => {
    if (session.answering) {
      session.answering.abort()
    } else if (terminal) {
      rl.write(null, { ctrl: true, name: 'u' })
      process.stdout.write('\n')
      process.stderr.write(`${dim(process.stderr, '(Ctrl-D exits)')}\n`)
      rl.prompt()
    } else {
      rl.close()
    }
  }
  rl.on('SIGINT', interrupt)
  process.on('SIGINT', interrupt)
  if (terminal) {
    process.stderr.write(`${dim(process.stderr, `chatgpt-native chat · ${session.model ?? session.api.model} at ${session.api.apiBaseUrl}\n${COMMANDS_HELP}`)}\n`)
    rl.prompt()
  }
  try {
    for await (const raw of rl) {
      const line = raw.trim()
      if (line !== '' && !(line.startsWith('/') && session.command(line))) {
        await session.ask(line)
      }
      if (terminal) rl.prompt()
    }
  } finally {
    process.off('SIGINT', interrupt)
    rl.close()
  }
  if (terminal) process.stdout.write('\n')
  return 0
}

async function run(argv) {
  const { values, positionals } = parse('chat', argv, OPTIONS)
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  const timeoutMs = integerFlag('chat', 'timeout', values.timeout)
  const options = connectionOptions(values)
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs
  const { ChatGPTAPI } = require('../../index.js')
  const api = createClient('chat', ChatGPTAPI, options)
  const session = new Session(api, { systemMessage: values.system, model: undefined })

  if (positionals.length === 0) return interactive(session)
  const prompt = positionals.length === 1 && positionals[0] === '-' ? await readText('-') : positionals.join(' ')
  const interrupt = () => session.answering?.abort()
  process.on('SIGINT', interrupt)
  try {
    const outcome = await session.ask(prompt)
    return outcome === 'ok' ? 0 : outcome === 'aborted' ? 130 : 1
  } finally {
    process.off('SIGINT', interrupt)
  }
}

module.exports = { run, HELP }
