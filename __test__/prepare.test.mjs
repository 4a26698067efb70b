// The `prepare` script (scripts/prepare.mjs): `npm install` / `npm ci` in the checkout builds the
// dev addon; `npm pack` / `npm publish`, and another project installing the checkout as a folder,
// build nothing. npm itself is stood in for by a script given as `npm_execpath`, which records
// the command it was asked to run instead of building.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const prepare = path.join(root, 'scripts', 'prepare.mjs')

let dir
let fakeNpm
let record

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'chatgpt-native-prepare-'))
  fakeNpm = path.join(dir, 'fake-npm.cjs')
  record = path.join(dir, 'ran.json')
  writeFileSync(fakeNpm, `require('node:fs').writeFileSync(${JSON.stringify(record)}, JSON.stringify(process.argv.slice(2)))\n`)
})

after(() => rmSync(dir, { recursive: true, force: true }))

/** Runs prepare as npm would for `command`, started in `initCwd`; the npm command it ran, if any. */
function runPrepare(command, initCwd) {
  rmSync(record, { force: true })
  const env = { ...process.env, npm_command: command, INIT_CWD: initCwd, npm_execpath: fakeNpm }
  const run = spawnSync(process.execPath, [prepare], { cwd: root, env, encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.status, 0, run.stderr)
  return existsSync(record) ? JSON.parse(readFileSync(record, 'utf8')) : null
}

test('npm install and npm ci in the checkout build the dev addon', () => {
  assert.deepEqual(runPrepare('install', root), ['run', 'build:dev'])
  assert.deepEqual(runPrepare('ci', path.join(root, 'lib')), ['run', 'build:dev'])
})

test('npm pack and npm publish build nothing', () => {
  assert.equal(runPrepare('pack', root), null)
  assert.equal(runPrepare('publish', root), null)
})

test('another project installing the checkout as a folder builds nothing', () => {
  assert.equal(runPrepare('install', dir), null)
})
