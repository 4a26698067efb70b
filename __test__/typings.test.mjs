// The bundled typings compile the README's TypeScript usage, and an ESM consumer importing the
// package by name, under `strict`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))

/** Run tsc (strict, Node's module rules) over one fixture. */
function typeCheck(fixture) {
  const tsc = require.resolve('typescript/bin/tsc')
  return spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--skipLibCheck', fixture],
    { cwd: root, encoding: 'utf8' },
  )
}

test('index.d.ts type-checks the README TypeScript example', () => {
  const out = typeCheck('__test__/fixtures/usage.ts')
  assert.equal(out.status, 0, out.stdout + out.stderr)
})

test('an ESM consumer importing the package by name type-checks, with apiKey, apiOrg and ChatGPTErrorOptions', () => {
  const out = typeCheck('__test__/fixtures/esm-usage.mts')
  assert.equal(out.status, 0, out.stdout + out.stderr)
})
