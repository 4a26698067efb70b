// The README's runnable examples: each is run as written (importing 'chatgpt-native', which
// resolves to this package) and must print what its `// ...` comments say.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

/** The first ```js block after the heading `heading`. */
function exampleUnder(heading) {
  const at = readme.indexOf(`\n${heading}\n`)
  assert.ok(at >= 0, `README has no heading ${heading}`)
  const block = readme.slice(at).match(/```js\n([\s\S]*?)```/)
  assert.ok(block, `no js example under ${heading}`)
  return block[1]
}

/**
 * The output an example promises: the trailing comment of each `console.log(...)` line, when
 * the comment is literal output (not an elided shape with `...`).
 */
function promisedLines(code) {
  return code
    .split('\n')
    .filter((line) => line.includes('console.log('))
    .map((line) => line.match(/\/\/ (.*)$/)?.[1])
    .filter((comment) => comment && !comment.includes('...'))
}

test("the simulator example prints what its comments say: a retried 429, then a quota error that is not retried", () => {
  const code = exampleUnder('## The simulator')
  const promised = promisedLines(code)
  assert.deepEqual(promised, ['50 2', 'ERR_CHATGPT_INSUFFICIENT_QUOTA 1'])
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.equal(run.status, 0, run.stderr)
  const lines = run.stdout.split('\n')
  assert.deepEqual(lines.slice(0, promised.length), promised)
  // The last log is the stats object: three chat requests, two of them faults.
  assert.match(run.stdout, /chatRequests: 3/)
  assert.match(run.stdout, /faultsInjected: 2/)
})

test('the tool calling example prints what its comments say: a call by hand, then a runTools loop', () => {
  runsAsPromised('### Tool calling', ['tool_calls get_weather', 'stop undefined', '2 stop'])
})

/** Runs the example under `heading` and checks it prints exactly the lines its comments promise. */
function runsAsPromised(heading, promised) {
  const code = exampleUnder(heading)
  assert.deepEqual(promisedLines(code), promised)
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.equal(run.status, 0, run.stderr)
  assert.deepEqual(run.stdout.trim().split('\n'), promised)
}

test('the several-choices example prints what its comments say: three choices, streamed choice indexes, a refusal', () => {
  runsAsPromised('### Several choices', ['3 true', '[ 0, 1 ] true', `"" I'm sorry, but I can't help with that request.`])
})

test('the structured-outputs example prints what its comments say: parsed JSON, then a refusal and a cut that reject', () => {
  runsAsPromised('### Structured outputs', [
    "[ 'city', 'temperatureC' ] number",
    "ERR_CHATGPT_REFUSAL I'm sorry, but I can't help with that request.",
    'ERR_CHATGPT_OUTPUT_LENGTH',
  ])
})

test('the reasoning-models example prints what its comments say: reasoning tokens inside the completion tokens', () => {
  runsAsPromised('### Reasoning models', ['true true'])
})

test('the upstream-fallbacks example prints what its comments say: a fallback after 503s, then a 400 that stays', () => {
  runsAsPromised('### Upstream fallbacks', [
    'backup backup-model',
    'ERR_CHATGPT_HTTP 400 primary',
    "[ [ 'primary', 3, 1 ], [ 'backup', 1, 0 ] ]",
  ])
})
