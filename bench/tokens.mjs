// countTokens on 1 MiB of mixed English/Chinese prose: chatgpt-native vs js-tiktoken (pure JS),
// tiktoken (WASM build of OpenAI's Rust core) and gpt-tokenizer, o200k_base, same process.
//   node bench/tokens.mjs
import { getEncoding } from 'js-tiktoken'
import { get_encoding } from 'tiktoken'
import { countTokens as gptTokenizerCount } from 'gpt-tokenizer/encoding/o200k_base'
import { countTokens, countTokensAsync } from '../index.js'
import { mixedText, median, time } from './common.mjs'

const text = mixedText(1024 * 1024)
const js = getEncoding('o200k_base')
const wasm = get_encoding('o200k_base')

const contenders = {
  'chatgpt-native countTokens': () => countTokens(text, { encoding: 'o200k_base' }),
  'chatgpt-native countTokensAsync': () => countTokensAsync(text, { encoding: 'o200k_base' }),
  'js-tiktoken': () => js.encode(text, [], []).length,
  'tiktoken (WASM)': () => wasm.encode_ordinary(text).length,
  'gpt-tokenizer': () => gptTokenizerCount(text),
}

const rows = {}
const counts = {}
for (const [name, fn] of Object.entries(contenders)) {
  counts[name] = await fn()
  rows[name] = median(await time(fn, { runs: 5, warmup: 1 }))
}
wasm.free()

const base = rows['chatgpt-native countTokens']
const table = Object.fromEntries(
  Object.entries(rows).map(([name, ms]) => [
    name,
    { 'median ms': ms.toFixed(1), 'MiB/s': (1 / (ms / 1000)).toFixed(1), tokens: counts[name], 'native is x faster': (ms / base).toFixed(2) },
  ]),
)
console.log(`input: ${Buffer.byteLength(text)} bytes of mixed English/Chinese prose`)
console.table(table)
const distinct = new Set(Object.values(counts))
console.log(distinct.size === 1 ? 'token counts identical across all tokenizers' : `COUNTS DIFFER: ${JSON.stringify(counts)}`)
