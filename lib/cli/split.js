// `chatgpt-native split <file|-> --max-tokens N`: the library's splitText over a document,
// printed as JSONL, one `{ "index", "tokens", "text" }` object per chunk.
'use strict'

const { parse, integerFlag, UsageError } = require('./args.js')
const { readText } = require('./input.js')

const OPTIONS = {
  'max-tokens': { type: 'string' },
  overlap: { type: 'string' },
  model: { type: 'string', short: 'm' },
  encoding: { type: 'string', short: 'e' },
}

const HELP = `Usage: chatgpt-native split <file|-> --max-tokens <n> [options]

Splits the file (or stdin, for -) into chunks of at most n tokens, ending at paragraph, then
sentence boundaries, and prints one JSON object per chunk: {"index":0,"tokens":498,"text":"..."}.

Options:
  --max-tokens <n>          most tokens in a chunk (required)
  --overlap <n>             tokens of trailing sentences repeated at the next chunk's start (default 0)
  -m, --model <name>        count with this model's tokenizer
  -e, --encoding <name>     o200k_base or cl100k_base (wins over --model; default o200k_base)
  -h, --help                this text
`

async function run(argv) {
  const { values, positionals } = parse('split', argv, OPTIONS)
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('split: expected one file (or - for stdin); see chatgpt-native split --help')
  const maxTokens = integerFlag('split', 'max-tokens', values['max-tokens'], { min: 1 })
  if (maxTokens === undefined) throw new UsageError('split: --max-tokens is required; see chatgpt-native split --help')
  const overlapTokens = integerFlag('split', 'overlap', values.overlap)
  const text = await readText(positionals[0])
  const { splitText } = require('../../index.js')
  let chunks
  try {
    chunks = splitText(text, { maxTokens, overlapTokens, model: values.model, encoding: values.encoding })
  } catch (err) {
    if (err && err.code === 'ERR_CHATGPT_INVALID_ARG') throw new UsageError(`split: ${err.message}`)
    throw err
  }
  const lines = chunks.map((chunk, index) => JSON.stringify({ index, tokens: chunk.tokens, text: chunk.text }))
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}

module.exports = { run, HELP }
