// Interactive `chatgpt-native chat` through a pseudo-terminal (util-linux `script`), driven by
// writing keystrokes to it: a streamed answer, Ctrl-C in the middle of an answer, a question
// that continues the conversation, the slash commands, Ctrl-D, and dimmed output vs NO_COLOR.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { countMessageTokens } from '../index.js'
import { clientFor, startSimulator, until } from './helpers.mjs'
import { BIN, simEnv } from './cli-helpers.mjs'

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0
const skip = hasScript ? false : 'util-linux `script` is not installed: no pseudo-terminal to run the bin in'

const SYSTEM = 'Be brief.'
let sim
before(async () => {
  if (hasScript) sim = await startSimulator({ responseTokens: 40, tokenDelayMs: 5 })
})
after(async () => {
  await sim?.close()
})

/** The bin's `chat` on a pseudo-terminal; `write` types, `output` is everything the terminal showed. */
function startChat(env, args = []) {
  const quoted = [process.execPath, BIN, 'chat', '--system', SYSTEM, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
  const child = spawn('script', ['-qfec', quoted, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (d) => (output += d))
  child.stderr.setEncoding('utf8').on('data', (d) => (output += d))
  const done = new Promise((resolve) => child.on('close', (code) => resolve(code)))
  return {
    output: () => output,
    write: (keys) => child.stdin.write(keys),
    /** Resolves once `regex` has matched `count` times in the output. */
    waitFor: (regex, count = 1) => until(() => (output.match(new RegExp(regex.source, 'g')) ?? []).length >= count, `${count}× ${regex} in:\n${output}`, 20_000),
    done,
    kill: () => child.kill('SIGKILL'),
  }
}

/** The prompt-token counts of the usage lines shown so far. */
const promptTokens = (output) => [...output.matchAll(/\[(\d+) prompt \+ \d+ completion tokens/g)].map((m) => Number(m[1]))

test('chat streams an answer, Ctrl-C aborts the next one, and the question after continues the conversation', { skip }, async () => {
  // The simulator answers the same messages with the same text: this is the first answer.
  const first = await clientFor(sim).sendMessages([
    { role: 'system', content: SYSTEM },
    { role: 'user', content: 'first question' },
  ])
  const chat = startChat(simEnv(sim))
  try {
    await chat.waitFor(/> /)
    const before = sim.stats().chatRequests
    chat.write('first question\r')
    await chat.waitFor(/completion tokens/)
    assert.ok(chat.output().includes(first.text), 'the streamed answer is shown')

    // The second answer streams five words, then nothing more until it is aborted.
    sim.enqueueFault({ kind: 'stall', afterChunks: 5 })
    const shown = chat.output().length
    chat.write('second question\r')
    await until(() => sim.stats().inFlight === 1 && chat.output().length > shown + 'second question'.length + 5, 'part of the second answer', 20_000)
    chat.write('\x03')
    await chat.waitFor(/\[aborted\]/)
    assert.equal(promptTokens(chat.output()).length, 1, 'no usage line for the aborted answer')

    chat.write('third question\r')
    await chat.waitFor(/completion tokens/, 2)
    const [, third] = promptTokens(chat.output())
    const expected = countMessageTokens(
      [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: first.text },
        { role: 'user', content: 'third question' },
      ],
      { model: 'gpt-4o' },
    )
    assert.equal(third, expected, 'the third question is sent after the first exchange (the aborted one is not in the history)')
    assert.equal(sim.stats().chatRequests - before, 3)
    assert.match(chat.output(), /\x1b\[2m\[\d+ prompt/, 'the usage line is dimmed on a terminal')

    chat.write('\x04')
    assert.equal(await chat.done, 0, 'Ctrl-D exits 0')
  } finally {
    chat.kill()
  }
})

test('/reset, /system and /model change the session; NO_COLOR leaves the output unstyled', { skip }, async () => {
  const chat = startChat(simEnv(sim, { NO_COLOR: '1' }))
  try {
    await chat.waitFor(/> /)
    chat.write('hello\r')
    await chat.waitFor(/completion tokens/)
    chat.write('/model other-model\r')
    await chat.waitFor(/\[model: other-model\]/)
    chat.write('/model\r')
    await chat.waitFor(/\[model: other-model\]/, 2)
    chat.write('/system Answer like a pirate.\r')
    await chat.waitFor(/\[system message set\]/)
    chat.write('/reset\r')
    await chat.waitFor(/\[new conversation\]/)
    chat.write('ahoy\r')
    await chat.waitFor(/completion tokens/, 2)
    const [, fresh] = promptTokens(chat.output())
    assert.equal(
      fresh,
      countMessageTokens(
        [
          { role: 'system', content: 'Answer like a pirate.' },
          { role: 'user', content: 'ahoy' },
        ],
        { model: 'gpt-4o' },
      ),
      'after /reset only the new system message and the question are sent',
    )
    chat.write('/nope\r')
    await chat.waitFor(/completion tokens/, 3)
    chat.write('\x03')
    await chat.waitFor(/\(Ctrl-D exits\)/)
    assert.ok(!chat.output().includes('\x1b[2m'), 'no dim styling with NO_COLOR')
    chat.write('\x04')
    assert.equal(await chat.done, 0)
  } finally {
    chat.kill()
  }
})
