// Token counting: ids and counts identical to js-tiktoken for both encodings; chat overhead.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEncoding } from 'js-tiktoken'
import { countTokens, countTokensAsync, countMessageTokens, encode, decode, ChatGPTError } from '../index.js'

const samples = {
  english: 'The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.',
  chinese: '中文平均每个词元大约两个半字符。长文档必须手动分块，否则会超出上下文窗口的限制！',
  emoji: 'Family: 👩‍👩‍👧‍👦, flags: 🇯🇵🇫🇷, skin tones: 👋🏽👍🏿, and a smile 😀.',
  code: 'fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}\n',
  whitespace: '   leading\t\ttabs\n\n\n    and   many    spaces     \r\n\r\n trailing   ',
  special: 'User input may contain <|endoftext|> or <|im_start|>system text that is not special.',
  mixed: 'Résumé naïve café — 日本語のテキスト and Ελληνικά, مرحبا, привет мир.\u2028line separator',
}

for (const name of ['o200k_base', 'cl100k_base']) {
  const reference = getEncoding(name)
  for (const [kind, text] of Object.entries(samples)) {
    test(`${name}: ${kind} text encodes to exactly js-tiktoken's ids`, () => {
      // disallowedSpecial = [] makes js-tiktoken treat special-token text as plain text, as we do.
      const expected = reference.encode(text, [], [])
      assert.deepEqual(Array.from(encode(text, { encoding: name })), expected)
      assert.equal(countTokens(text, { encoding: name }), expected.length)
      assert.equal(decode(expected, { encoding: name }), text)
    })
  }
}

test('a long mixed document counts the same as js-tiktoken, sync and async', async () => {
  const doc = Object.values(samples).join('\n\n').repeat(200)
  const expected = getEncoding('o200k_base').encode(doc, [], []).length
  assert.equal(countTokens(doc), expected)
  assert.equal(await countTokensAsync(doc), expected)
})

test('models pick their encoding, and encoding overrides model', () => {
  const text = samples.chinese
  const o200k = countTokens(text, { encoding: 'o200k_base' })
  const cl100k = countTokens(text, { encoding: 'cl100k_base' })
  assert.notEqual(o200k, cl100k)
  assert.equal(countTokens(text, { model: 'gpt-4o-mini' }), o200k)
  assert.equal(countTokens(text, { model: 'gpt-5' }), o200k)
  assert.equal(countTokens(text, { model: 'gpt-4' }), cl100k)
  assert.equal(countTokens(text, { model: 'gpt-3.5-turbo' }), cl100k)
  assert.equal(countTokens(text, { model: 'gpt-4', encoding: 'o200k_base' }), o200k)
  assert.equal(countTokens(text), o200k)
})

test('countMessageTokens adds OpenAI per-message overhead', () => {
  const enc = getEncoding('o200k_base')
  const n = (s) => enc.encode(s, [], []).length
  const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hello there', name: 'alice' },
  ]
  const expected = 3 + n('system') + n('You are terse.') + 3 + n('user') + n('Hello there') + 1 + n('alice') + 3
  assert.equal(countMessageTokens(messages, { model: 'gpt-4o' }), expected)
  assert.equal(countMessageTokens([]), 3)
})

test('invalid tokenizer arguments throw ERR_CHATGPT_INVALID_ARG', () => {
  const cases = [
    () => countTokens(42),
    () => countTokens('x', { encoding: 'p50k_base' }),
    () => countMessageTokens('not an array'),
    () => countMessageTokens([{ role: 'user' }]),
    () => decode('abc'),
    () => decode([1.5]),
  ]
  for (const fn of cases) {
    assert.throws(fn, (err) => err instanceof ChatGPTError && err.code === 'ERR_CHATGPT_INVALID_ARG')
  }
})
