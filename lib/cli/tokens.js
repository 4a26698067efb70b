// `chatgpt-native tokens <file|->`: prints the token count of a text with the library's
// tokenizer (countTokensAsync, off the JavaScript thread), for a model's or a named encoding.
'use strict'

const { parse, UsageError } = require('./args.js')
const { readText } = require('./input.js')

const OPTIONS = {
  model: { type: 'string', short: 'm' },
  encoding: { type: 'string', short: 'e' },
}

const HELP = `Usage: chatgpt-native tokens <file|-> [options]

Prints the number of tokens in the file (or stdin, for -), as the API counts text.

Options:
  -m, --model <name>        count with this model's tokenizer (gpt-4o, gpt-4: o200k_base, cl100k_base)
  -e, --encoding <name>     o200k_base or cl100k_base (wins over --model; default o200k_base)
  -h, --help                this text
`

async function run(argv) {
  const { values, positionals } = parse('tokens', argv, OPTIONS)
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('tokens: expected one file (or - for stdin); see chatgpt-native tokens --help')
  const text = await readText(positionals[0])
  const { countTokensAsync } = require('../../index.js')
  const options = { model: values.model, encoding: values.encoding }
  let count
  try {
    count = await countTokensAsync(text, options)
  } catch (err) {
    if (err && err.code === 'ERR_CHATGPT_INVALID_ARG') throw new UsageError(`tokens: ${err.message}`)
    throw err
  }
  process.stdout.write(`${count}\n`)
  return 0
}

module.exports = { run, HELP }
