// The bundled typings compile the README's TypeScript usage under `strict`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))

test('index.d.ts type-checks the README TypeScript example', () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const out = spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--skipLibCheck', '__test__/fixtures/usage.ts'],
    { cwd: root, encoding: 'utf8' },
  )
  assert.equal(out.status, 0, out.stdout + out.stderr)
})
