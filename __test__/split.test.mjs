// splitText: chunks within maxTokens at paragraph/sentence boundaries, well filled, UTF-8 safe.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEncoding } from 'js-tiktoken'
import { splitText, countTokens, ChatGPTError } from '../index.js'
import { mixedText } from '../bench/common.mjs'

const fill = (chunks, max) => chunks.reduce((n, c) => n + c.tokens, 0) / (chunks.length * max)
const nonSpace = (s) => s.replace(/\s+/g, '')

const english = mixedText(200_000, 1).split('\n\n').filter((p) => /^[\x00-\x7f]+$/.test(p)).join('\n\n')
const chinese = mixedText(200_000, 2).split('\n\n').filter((p) => !/[a-z]/i.test(p)).join('\n\n')

for (const [name, text] of [['English', english], ['Chinese', chinese]]) {
  for (const maxTokens of [512, 1024]) {
    test(`${name} prose in ${maxTokens}-token chunks: bounded, exact counts, >= 95% fill, nothing lost`, () => {
      const chunks = splitText(text, { maxTokens, model: 'gpt-4o' })
      const reference = getEncoding('o200k_base')
      for (const c of chunks) {
        assert.ok(c.tokens <= maxTokens)
        assert.equal(c.tokens, reference.encode(c.text, [], []).length)
        assert.ok(c.text.length > 0)
      }
      const f = fill(chunks, maxTokens)
      assert.ok(f >= 0.95, `mean fill ${f.toFixed(3)}`)
      assert.equal(nonSpace(chunks.map((c) => c.text).join('')), nonSpace(text))
    })
  }
}

test('256-token chunks still fill at least 92% (whole sentences cost about half a sentence per chunk)', () => {
  const chunks = splitText(english, { maxTokens: 256 })
  assert.ok(fill(chunks, 256) >= 0.92)
})

test('chunks end at sentence punctuation and prefer paragraph breaks', () => {
  const chunks = splitText(english, { maxTokens: 300 })
  const endsSentence = chunks.filter((c) => /[.!?]$/.test(c.text)).length
  assert.equal(endsSentence, chunks.length)
  const paragraph = 'A short paragraph that fills most of a chunk. '.repeat(5).trim()
  const text = `${paragraph}\n\nSecond paragraph starts here. It has two sentences.`
  const max = countTokens(paragraph) + 8
  const [first] = splitText(text, { maxTokens: max })
  assert.equal(first.text, paragraph)
})

test('overlap repeats the tail sentences of the previous chunk', () => {
  const chunks = splitText(english, { maxTokens: 200, overlapTokens: 40 })
  assert.ok(chunks.length > 3)
  let overlapping = 0
  for (let i = 1; i < chunks.length; i++) {
    const prev = chunks[i - 1].text
    // The longest prefix of this chunk that is a suffix of the previous one.
    let k = Math.min(prev.length, chunks[i].text.length)
    while (k > 0 && !prev.endsWith(chunks[i].text.slice(0, k))) k--
    if (k > 0) {
      overlapping++
      assert.ok(countTokens(chunks[i].text.slice(0, k)) <= 40 + 1)
    }
    assert.ok(chunks[i].tokens <= 200)
  }
  assert.ok(overlapping >= chunks.length / 2, `${overlapping} of ${chunks.length - 1} chunks overlap`)
})

test('never splits a character: emoji, CJK without punctuation, long URLs', () => {
  const cases = [
    '👩‍👩‍👧‍👦🇯🇵👋🏽'.repeat(300),
    '中文没有标点符号的长句子'.repeat(400),
    'https://example.com/' + 'a1b2c3'.repeat(500),
  ]
  for (const text of cases) {
    const chunks = splitText(text, { maxTokens: 50 })
    for (const c of chunks) {
      assert.ok(c.tokens <= 50)
      assert.ok(!/[\uD800-\uDBFF]$/.test(c.text) && !/^[\uDC00-\uDFFF]/.test(c.text), 'no split surrogate pair')
      assert.ok(!c.text.includes('\uFFFD'))
    }
    assert.equal(nonSpace(chunks.map((c) => c.text).join('')), nonSpace(text))
  }
})

test('empty and whitespace-only input give no chunks', () => {
  assert.deepEqual(splitText('', { maxTokens: 10 }), [])
  assert.deepEqual(splitText(' \n\n\t ', { maxTokens: 10 }), [])
})

test('invalid options throw ERR_CHATGPT_INVALID_ARG naming the option', () => {
  const cases = [
    [() => splitText('x', {}), /`maxTokens`/],
    [() => splitText('x', { maxTokens: 0 }), /`maxTokens`/],
    [() => splitText('x', { maxTokens: 10, overlapTokens: 5 }), /`overlapTokens`/],
    [() => splitText('x', { maxTokens: -1 }), /`maxTokens`.*-1/],
    [() => splitText(5, { maxTokens: 10 }), /`text`/],
  ]
  for (const [fn, pattern] of cases) {
    assert.throws(fn, (err) => err instanceof ChatGPTError && err.code === 'ERR_CHATGPT_INVALID_ARG' && pattern.test(err.message))
  }
})
