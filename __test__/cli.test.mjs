// The `chatgpt-native` command run as a child process: help and usage errors, configuration
// from flags and the environment, `simulate`, `tokens`, `split` and one-shot `chat`. (`batch`
// is in cli-batch.test.mjs, interactive `chat` through a pseudo-terminal in cli-chat.test.mjs.)
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { ChatGPTAPI, countTokens, splitText } from '../index.js'
import { API_KEY, startSimulator } from './helpers.mjs'
import { cliEnv, runCli, simEnv, startCli, tempDir } from './cli-helpers.mjs'

const COMMANDS = ['chat', 'batch', 'simulate', 'tokens', 'split']
/** Makes loading any native addon fail, so a command that loads one cannot succeed. */
const NO_ADDON = ['--import', 'data:text/javascript,process.dlopen=()=>{throw new Error("native addon loaded")}']

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 8 })
})
after(async () => {
  await sim.close()
})

test('--help prints the usage of the command and of each sub-command, without loading the native addon', async () => {
  const top = await runCli(['--help'], { nodeArgs: NO_ADDON })
  assert.equal(top.code, 0, top.stderr)
  assert.match(top.stdout, /^Usage: chatgpt-native <command>/)
  for (const command of COMMANDS) assert.match(top.stdout, new RegExp(`^  ${command} `, 'm'))
  for (const command of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      const out = await runCli([command, flag], { nodeArgs: NO_ADDON })
      assert.equal(out.code, 0, `${command} ${flag}: ${out.stderr}`)
      assert.match(out.stdout, new RegExp(`^Usage: chatgpt-native ${command}`))
      assert.equal(out.stderr, '')
    }
  }
})

test('the addon guard used by the help test does stop a command that loads the addon', async () => {
  const file = path.join(tempDir(), 'text.txt')
  writeFileSync(file, 'hello world')
  const out = await runCli(['tokens', file], { nodeArgs: NO_ADDON })
  assert.equal(out.code, 1)
})

test('no command prints the usage on stderr and exits 2; an unknown command is one line and exit 2', async () => {
  const none = await runCli([])
  assert.equal(none.code, 2)
  assert.match(none.stderr, /^Usage: chatgpt-native/)
  const unknown = await runCli(['chatt'])
  assert.equal(unknown.code, 2)
  assert.equal(unknown.stderr.trimEnd().split('\n').length, 1)
  assert.match(unknown.stderr, /unknown command 'chatt'/)
})

test('an unknown flag, a missing value or a bad value is one line on stderr naming the flag, and exit 2', async () => {
  const cases = [
    ['chat', '--bogus', 'hi'],
    ['batch', 'in.jsonl', '--concurency', '4'],
    ['batch', 'in.jsonl', '--concurrency', '0'],
    ['batch', 'in.jsonl', '--rpm', 'many'],
    ['batch', 'in.jsonl', '--timeout', '-1'],
    ['batch', 'in.jsonl', '-o'],
    ['simulate', '--fail-rate', '2'],
    ['simulate', '--port', 'http'],
    ['simulate', 'extra'],
    ['tokens', '--model'],
    ['split', 'file.txt'],
    ['split', 'file.txt', '--max-tokens', '0'],
    ['chat', '--timeout', '1.5', 'hi'],
  ]
  for (const args of cases) {
    const out = await runCli(args, { env: simEnv(sim), nodeArgs: NO_ADDON })
    assert.equal(out.code, 2, `${args.join(' ')}: exit ${out.code}, ${out.stderr}`)
    assert.equal(out.stdout, '', args.join(' '))
    const lines = out.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 1, `${args.join(' ')}: ${out.stderr}`)
    assert.match(lines[0], new RegExp(`^chatgpt-native ${args[0]}: `))
    const flag = args.find((a) => a.startsWith('-'))
    if (flag) assert.ok(lines[0].includes(flag), `${lines[0]} names ${flag}`)
  }
})

test('a bad value the library rejects (an unknown encoding) is a usage error too', async () => {
  const file = path.join(tempDir(), 'text.txt')
  writeFileSync(file, 'hello')
  const out = await runCli(['tokens', file, '--encoding', 'p50k'])
  assert.equal(out.code, 2)
  assert.match(out.stderr, /^chatgpt-native tokens: .*encoding/)
})

test('chat with a prompt streams the answer to stdout and the usage line to stderr, plain off a terminal', async () => {
  const expected = await new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: sim.url, completionParams: { model: 'sim-gpt' }, systemMessage: 'Be brief.' }).sendMessage(
    'What is Rust?',
  )
  const out = await runCli(['chat', '--system', 'Be brief.', 'What', 'is', 'Rust?'], { env: simEnv(sim) })
  assert.equal(out.code, 0, out.stderr)
  assert.equal(out.stdout, `${expected.text}\n`)
  assert.match(out.stderr, new RegExp(`^\\[${expected.usage.promptTokens} prompt \\+ 8 completion tokens · first token \\d+ ms · total \\d+ ms\\]\n$`))
  assert.ok(!out.stderr.includes('\x1b'), 'no escape codes off a terminal')
})

test('chat - reads the prompt from stdin; piped lines are one conversation', async () => {
  const one = await runCli(['chat', '-'], { env: simEnv(sim), input: 'hello from stdin' })
  assert.equal(one.code, 0, one.stderr)
  assert.ok(one.stdout.trim().length > 0)
  assert.match(one.stderr, /^\[\d+ prompt \+ 8 completion tokens/)

  const two = await runCli(['chat', '--system', ''], { env: simEnv(sim), input: 'first\nsecond\n' })
  assert.equal(two.code, 0, two.stderr)
  const prompts = [...two.stderr.matchAll(/\[(\d+) prompt/g)].map((m) => Number(m[1]))
  assert.equal(prompts.length, 2)
  const firstAnswer = two.stdout.split('\n')[0]
  const { countMessageTokens } = await import('../index.js')
  assert.equal(
    prompts[1],
    countMessageTokens(
      [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: firstAnswer },
        { role: 'user', content: 'second' },
      ],
      { model: 'gpt-4o' },
    ),
    'the second question is sent after the first answer',
  )
})

test('configuration: flags win over the environment (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL)', async () => {
  const wrongKey = await runCli(['chat', 'hi'], { env: simEnv(sim, { OPENAI_API_KEY: 'sk-wrong-0123456789' }) })
  assert.equal(wrongKey.code, 1)
  assert.match(wrongKey.stderr, /^chatgpt-native chat: ERR_CHATGPT_AUTH/)
  assert.ok(!wrongKey.stderr.includes('sk-wrong-0123456789'), 'the key is not printed')

  const flagKey = await runCli(['chat', '--api-key', API_KEY, 'hi'], { env: simEnv(sim, { OPENAI_API_KEY: 'sk-wrong-0123456789' }) })
  assert.equal(flagKey.code, 0, flagKey.stderr)

  const flagsOnly = await runCli(['chat', '--api-key', API_KEY, '--base-url', sim.url, '-m', 'flag-model', 'hi'], { env: cliEnv() })
  assert.equal(flagsOnly.code, 0, flagsOnly.stderr)

  const noKey = await runCli(['chat', 'hi'], { env: cliEnv({ OPENAI_BASE_URL: sim.url }) })
  assert.equal(noKey.code, 2)
  assert.match(noKey.stderr, /^chatgpt-native chat: .*apiKey/)
})

test('the model comes from --model, else OPENAI_MODEL', async () => {
  const dir = tempDir()
  const input = path.join(dir, 'in.jsonl')
  writeFileSync(input, '{"text":"hi"}\n')
  const fromEnv = await runCli(['batch', input, '-q'], { env: simEnv(sim, { OPENAI_MODEL: 'env-model' }) })
  assert.equal(JSON.parse(fromEnv.stdout.split('\n')[0]).model, 'env-model')
  const fromFlag = await runCli(['batch', input, '-q', '--model', 'flag-model'], { env: simEnv(sim, { OPENAI_MODEL: 'env-model' }) })
  assert.equal(JSON.parse(fromFlag.stdout.split('\n')[0]).model, 'flag-model')
})

test('tokens counts a file or stdin with the model or encoding given', async () => {
  const text = 'Hello, world! Tokenizers split text into tokens. 你好，世界。'
  const file = path.join(tempDir(), 'text.txt')
  writeFileSync(file, text)
  const plain = await runCli(['tokens', file])
  assert.equal(plain.code, 0, plain.stderr)
  assert.equal(plain.stdout, `${countTokens(text)}\n`)
  const gpt4 = await runCli(['tokens', '-', '--model', 'gpt-4'], { input: text })
  assert.equal(gpt4.stdout, `${countTokens(text, { model: 'gpt-4' })}\n`)
  const cl100k = await runCli(['tokens', file, '-e', 'cl100k_base'])
  assert.equal(cl100k.stdout, gpt4.stdout)
  assert.notEqual(gpt4.stdout, plain.stdout, 'the two encodings count this text differently')
  const missing = await runCli(['tokens', path.join(tempDir(), 'nope.txt')])
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /^chatgpt-native tokens: ENOENT/)
})

test('split prints the chunks of splitText as JSONL', async () => {
  const text = Array.from({ length: 40 }, (_, i) => `Sentence number ${i} says something short.`).join(' ')
  const file = path.join(tempDir(), 'doc.txt')
  writeFileSync(file, text)
  const out = await runCli(['split', file, '--max-tokens', '50', '--overlap', '10'])
  assert.equal(out.code, 0, out.stderr)
  const chunks = out.stdout.trimEnd().split('\n').map((line) => JSON.parse(line))
  const expected = splitText(text, { maxTokens: 50, overlapTokens: 10 })
  assert.ok(expected.length > 2)
  assert.deepEqual(
    chunks,
    expected.map((c, index) => ({ index, tokens: c.tokens, text: c.text })),
  )
})

test('simulate prints its URL, serves, and stops with exit 0 on SIGINT and on SIGTERM', async () => {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    const child = startCli(['simulate', '--port', '0', '--response-tokens', '3', '--api-key', API_KEY])
    const url = await new Promise((resolve, reject) => {
      child.stdout.on('data', () => {
        const m = child.output().stdout.match(/listening on (http:\/\/\S+)/)
        if (m) resolve(m[1])
      })
      child.done.then((r) => reject(new Error(`simulate exited early: ${r.stderr}`)))
    })
    const api = new ChatGPTAPI({ apiKey: API_KEY, apiBaseUrl: url, completionParams: { model: 'sim-gpt' } })
    const reply = await api.sendMessage('hi')
    assert.equal(reply.usage.completionTokens, 3)
    child.kill(signal)
    const { code, stdout } = await child.done
    assert.equal(code, 0, `${signal}: exit ${code}`)
    assert.match(stdout, /simulator stopped after 1 chat requests/)
  }
})
