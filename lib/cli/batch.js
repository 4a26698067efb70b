// `chatgpt-native batch requests.jsonl -o results.jsonl`: sends every request line through one
// ChatGPTAPI (its concurrency limit, rate limits, retries, timeouts and optional cache), writing
// a result record per line as each completes.
//
// Nothing finished is lost: each record is written to the output with one write(2) as its call
// completes, so a killed run keeps every answer it had. Re-running the same command resumes: the
// ids the output already answered are skipped, and lines that failed (or were cut short) are sent
// again, their new record appended, so the last record of an id in the file is its outcome.
// Lines are dispatched in input order, each with `sendMessages` (the request exactly as the line
// gives it, no system message added, nothing stored), at most `--concurrency` at a time.
'use strict'

const fs = require('node:fs')
const { setMaxListeners } = require('node:events')
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
const { idKey, readRequest, replyRecord, errorRecord, numberedLines, readAnswered } = require('./batch-lines.js')
const { Tally, summarize, formatTable, Progress } = require('./batch-report.js')

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  output: { type: 'string', short: 'o' },
  concurrency: { type: 'string', short: 'c' },
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  'max-retries': { type: 'string' },
  timeout: { type: 'string' },
  'max-tokens': { type: 'string' },
  cache: { type: 'boolean' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  'progress-interval-ms': { type: 'string' },
}

const DEFAULT_CONCURRENCY = 32
const DEFAULT_PROGRESS_INTERVAL_MS = 5000
/** Context window given to the client: the server, not a local guess, decides what fits. */
const MAX_MODEL_TOKENS = 10_000_000

const HELP = `Usage: chatgpt-native batch <requests.jsonl> [-o results.jsonl] [options]

Sends each line of the input, a JSON request, and writes one JSON result per line as it completes.
  request: {"id":"q1","messages":[{"role":"user","content":"Hi"}],"model":"gpt-4.1-mini","max_tokens":100}
           {"text":"Hi","metadata":{"user":7}}        (text: one user message)
           {"custom_id":"q1","body":{"messages":[...]}} (OpenAI Batch API lines)
           id: "id", else "custom_id", else metadata.id, else the line number; other fields are
           request parameters (model, temperature, max_tokens, tools, response_format, ...)
  result:  {"id":"q1","line":1,"text":"...","finishReason":"stop","usage":{...},"latencyMs":812}
           {"id":"q2","line":2,"error":{"code":"ERR_CHATGPT_RATE_LIMITED","message":"...","status":429}}
Re-running with the same output resumes: ids already answered are skipped, failed ones are sent
again (the last record of an id is its outcome). Ctrl-C stops, keeping what finished.
Exits 0 when every line is answered, 1 when any failed or was malformed, 2 on a usage error.

Options:
  -o, --output <file>        append results here (default: stdout, no resume)
  -c, --concurrency <n>      requests in flight at most (default ${DEFAULT_CONCURRENCY})
  --rpm <n>                  requests-per-minute limit (rateLimit.requestsPerMinute)
  --tpm <n>                  tokens-per-minute limit (rateLimit.tokensPerMinute): a request
                             reserves its prompt plus max_tokens, the unused part is given back
  --max-retries <n>          retries after the first attempt (default 2)
  --timeout <ms>             bound on one request, retries and waits for the limits included
                             (default 600000; 0: none)
  --max-tokens <n>           max_tokens of lines that set none (default 1000)
  --cache                    answer identical requests once (the response cache; off by default)
  --json                     print the final summary as JSON instead of the table
  -q, --quiet                no progress display
  --progress-interval-ms <n> period of the plain progress lines off a terminal (default ${DEFAULT_PROGRESS_INTERVAL_MS})
  -h, --help                 this text

${CONNECTION_HELP}
`

/** Thrown for a failure of the job as a whole (exit 1), such as an input with a repeated id. */
class JobError extends Error {
  constructor(message) {
    super(message)
    this.code = 'ERR_CHATGPT_BATCH'
  }
}

/** The input's request lines counted, and a repeated id found, before anything is sent. */
async function scanInput(file) {
  const seen = new Map()
  let lines = 0
  for await (const { text, line } of numberedLines(file)) {
    lines += 1
    const request = readRequest(text, line)
    if (request.error && request.id === line) continue
    const key = idKey(request.id)
    const first = seen.get(key)
    if (first !== undefined) {
      throw new JobError(`${file} line ${line}: id ${JSON.stringify(request.id)} is also on line ${first}; ids must be unique`)
    }
    seen.set(key, line)
  }
  return lines
}

/** Where records go: the output file (appended, one write each) or stdout. */
function openSink(file, { endsWithNewline }) {
  if (file === undefined) {
    return { write: (record) => process.stdout.write(`${JSON.stringify(record)}\n`), close() {} }
  }
  const fd = fs.openSync(file, 'a')
  // A run killed mid-write can leave a partial last line: start the next record on a line of its own.
  if (!endsWithNewline) fs.writeSync(fd, '\n')
  return {
    write: (record) => fs.writeSync(fd, `${JSON.stringify(record)}\n`),
    close: () => fs.closeSync(fd),
  }
}

async function run(argv) {
  const { values, positionals } = parse('batch', argv, OPTIONS)
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('batch: expected one input file; see chatgpt-native batch --help')
  const [input] = positionals
  const flag = (name, opts) => integerFlag('batch', name, values[name], opts)
  const concurrency = flag('concurrency', { min: 1 }) ?? DEFAULT_CONCURRENCY
  const limits = { rpm: flag('rpm', { min: 1 }), tpm: flag('tpm', { min: 1 }) }
  const maxRetries = flag('max-retries')
  const timeoutMs = flag('timeout')
  const maxResponseTokens = flag('max-tokens', { min: 1 })
  const intervalMs = flag('progress-interval-ms', { min: 100 }) ?? DEFAULT_PROGRESS_INTERVAL_MS
  const output = values.output
  if (!fs.existsSync(input)) throw new UsageError(`batch: input file ${input} does not exist`)

  const lines = await scanInput(input)
  const previous = output === undefined ? { answered: new Set(), unreadable: 0, endsWithNewline: true } : await readAnswered(output)
  if (previous.unreadable > 0) {
    process.stderr.write(`chatgpt-native batch: ${previous.unreadable} line(s) of ${output} are not JSON (a run cut off mid-write?); ignored\n`)
  }

  const options = {
    ...connectionOptions(values),
    maxConcurrency: concurrency,
    maxModelTokens: MAX_MODEL_TOKENS,
    cache: Boolean(values.cache),
  }
  if (limits.rpm !== undefined || limits.tpm !== undefined) {
    options.rateLimit = { requestsPerMinute: limits.rpm, tokensPerMinute: limits.tpm }
  }
  if (maxRetries !== undefined) options.maxRetries = maxRetries
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs
  if (maxResponseTokens !== undefined) options.maxResponseTokens = maxResponseTokens
  const { ChatGPTAPI } = require('../../index.js')
  const api = createClient('batch', ChatGPTAPI, options)

  // Count the skipped lines first, so the progress total is what this run has to do.
  let skipped = 0
  if (previous.answered.size > 0) {
    for await (const { text, line } of numberedLines(input)) {
      const request = readRequest(text, line)
      if (!request.error && previous.answered.has(idKey(request.id))) skipped += 1
    }
  }
  const tally = new Tally({ lines, skipped })
  const sink = openSink(output, previous)
  const progress = new Progress({ tally, metrics: () => api.metrics(), limits, intervalMs, quiet: values.quiet })

  const controller = new AbortController()
  // Every call in flight listens on this one signal.
  setMaxListeners(0, controller.signal)
  let stopping = false
  const stop = () => {
    if (stopping) process.exit(130)
    stopping = true
    controller.abort()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)

  // At most `concurrency` calls pending here too, so lines are read as slots free up and no call
  // waits in the client's queue long enough to spend its timeout there.
  let pending = 0
  let slotFreed = null
  const send = async (request) => {
    const started = performance.now()
    try {
      const reply = await api.sendMessages(request.messages, {
        completionParams: request.params,
        abortSignal: controller.signal,
      })
      const latencyMs = performance.now() - started
      sink.write(replyRecord(request, reply, latencyMs))
      tally.success(reply.usage, latencyMs)
    } catch (err) {
      if (stopping && err && err.code === 'ABORT_ERR') {
        tally.interrupted += 1
        return
      }
      const record = errorRecord(request, err)
      sink.write(record)
      tally.failure(record.error.code, performance.now() - started)
    } finally {
      pending -= 1
      progress.tick()
      if (slotFreed) slotFreed()
    }
  }

  try {
    for await (const { text, line } of numberedLines(input)) {
      if (stopping) break
      const request = readRequest(text, line)
      if (request.error) {
        sink.write(errorRecord(request, request.error))
        tally.failure(request.error.code)
        progress.tick()
        continue
      }
      if (previous.answered.has(idKey(request.id))) continue
      while (pending >= concurrency) await new Promise((resolve) => (slotFreed = resolve))
      slotFreed = null
      if (stopping) break
      pending += 1
      send(request)
    }
    while (pending > 0) await new Promise((resolve) => (slotFreed = resolve))
  } finally {
    tally.end()
    progress.stop()
    sink.close()
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }

  const summary = summarize(tally, api.metrics(), limits)
  // With -o, stdout is free for the report; without it, stdout holds the records.
  const report = output === undefined ? process.stderr : process.stdout
  report.write(values.json ? `${JSON.stringify(summary, null, 2)}\n` : formatTable(summary))
  if (stopping) {
    process.stderr.write(`chatgpt-native batch: interrupted; ${tally.interrupted} line(s) in flight were not written; run the same command again to resume\n`)
    return 130
  }
  if (summary.failed > 0) {
    const codes = Object.entries(summary.failuresByCode)
      .map(([code, n]) => `${code} ${n}`)
      .join(', ')
    const where = output === undefined ? '' : `; run the same command again to retry them`
    process.stderr.write(`chatgpt-native batch: ${summary.failed} of ${summary.lines} lines failed (${codes})${where}\n`)
    return 1
  }
  return 0
}

module.exports = { run, HELP }
