// The `chatgpt-native` command's dispatcher: picks the sub-command, prints help, and turns what
// a command throws into an exit code.
//
// Exit codes: 0 success; 1 a failure at run time (a request failed, a batch line failed, a file
// could not be read); 2 a usage mistake (unknown command or flag, a bad flag value), printed as
// one line on stderr. Each command's module is required only when that command runs, and none
// of them loads the native addon before its flags are parsed, so `--help` costs about what a
// bare `node` start does.
'use strict'

const { UsageError } = require('./args.js')

/** The commands, with the one-line summary the top-level help shows. */
const COMMANDS = {
  chat: { file: './chat.js', summary: 'stream an answer, or talk interactively (keeps the conversation)' },
  batch: { file: './batch.js', summary: 'run a JSONL file of requests under rate limits, resumable, with a load-test table' },
  simulate: { file: './simulate.js', summary: 'run the bundled OpenAI-compatible simulator in the foreground' },
  tokens: { file: './tokens.js', summary: 'count the tokens of a file or of stdin' },
  split: { file: './split.js', summary: 'split a file into token-bounded chunks, printed as JSONL' },
}

const HELP = `Usage: chatgpt-native <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, { summary }]) => `  ${name.padEnd(10)}${summary}`)
  .join('\n')}

Run \`chatgpt-native <command> --help\` for a command's options.
Configuration comes from flags, then the environment: OPENAI_API_KEY, OPENAI_BASE_URL,
OPENAI_ORG_ID, OPENAI_MODEL. NO_COLOR turns styling off.

Exit codes: 0 success, 1 failure (a request or a batch line failed), 2 usage error.
`

/** One line on stderr, then the exit code (set, so pending output is still written). */
function fail(message, code) {
  process.stderr.write(`chatgpt-native${message.startsWith(':') ? '' : ' '}${message}\n`)
  process.exitCode = code
}

async function main(argv) {
  // A reader that stops early (`| head`) closes the pipe: stop quietly, as other commands do.
  process.stdout.on('error', (err) => {
    if (err && err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process[name === undefined ? 'stderr' : 'stdout'].write(HELP)
    process.exitCode = name === undefined ? 2 : 0
    return
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${require('../../package.json').version}\n`)
    return
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (!command) {
    fail(`: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; see chatgpt-native --help)`, 2)
    return
  }
  try {
    const code = await require(command.file).run(rest)
    if (typeof code === 'number' && process.exitCode === undefined) process.exitCode = code
  } catch (err) {
    if (err instanceof UsageError) fail(err.message, 2)
    else if (err && typeof err.code === 'string') fail(`${name}: ${err.code}: ${err.message}`, 1)
    else fail(`${name}: ${err && err.stack ? err.stack : err}`, 1)
  }
}

module.exports = { main, COMMANDS }
