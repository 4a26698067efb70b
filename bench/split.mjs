// splitText on 1 MiB of prose: mean fill (tokens used / maxTokens) and time, English and Chinese,
// for several chunk sizes.   node bench/split.mjs
import { splitText } from '../index.js'
import { mixedText, median, time } from './common.mjs'

const all = mixedText(4 * 1024 * 1024, 11).split('\n\n')
const english = all.filter((p) => /^[\x00-\x7f]+$/.test(p)).join('\n\n').slice(0, 1 << 20)
const chinese = all.filter((p) => !/[a-z]/i.test(p)).join('\n\n').slice(0, 1 << 19)
const rows = {}
for (const [name, text] of [['English', english], ['Chinese', chinese]]) {
  for (const maxTokens of [256, 512, 1024]) {
    let chunks
    const ms = median(await time(() => { chunks = splitText(text, { maxTokens }) }, { runs: 3 }))
    const fill = chunks.reduce((n, c) => n + c.tokens, 0) / (chunks.length * maxTokens)
    const mib = Buffer.byteLength(text) / (1 << 20)
    rows[`${name}, maxTokens ${maxTokens}`] = {
      chunks: chunks.length,
      'mean fill': `${(fill * 100).toFixed(1)}%`,
      'ms per MiB': (ms / mib).toFixed(0),
      'ends at . ! ? 。！？；': `${((chunks.filter((c) => /[.!?。！？；]$/.test(c.text)).length / chunks.length) * 100).toFixed(0)}%`,
    }
  }
}
console.table(rows)
