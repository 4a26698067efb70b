// Loading on a platform without a binary: the error names the platform (os, arch, libc), the
// package it needed and why it did not load, the platform packages there are, and how to build
// from source. Each case runs the package's own JavaScript in a child process, laid out as npm
// installs it (node_modules/chatgpt-native with no .node file) or as a source checkout; another
// platform is stood in for by redefining `process.platform` / `process.arch` in a preloaded
// script, so no other machine is needed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const published = manifest.napi.targets.length

let dir
let installed // node_modules/chatgpt-native of a project with no platform package
let stub // preload script that makes the process report FAKE_PLATFORM / FAKE_ARCH

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'chatgpt-native-platform-'))
  installed = path.join(dir, 'node_modules', 'chatgpt-native')
  mkdirSync(installed, { recursive: true })
  for (const file of ['index.js', 'index.mjs', 'binding.js', 'lib']) {
    cpSync(path.join(root, file), path.join(installed, file), { recursive: true })
  }
  // What `napi pre-publish` writes into the published manifest: one optional dependency per target.
  const optionalDependencies = Object.fromEntries(
    ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc'].map(
      (suffix) => [`chatgpt-native-${suffix}`, manifest.version],
    ),
  )
  assert.equal(Object.keys(optionalDependencies).length, published, 'one platform package per napi target')
  writeFileSync(path.join(installed, 'package.json'), JSON.stringify({ ...manifest, optionalDependencies }))
  stub = path.join(dir, 'stub.cjs')
  writeFileSync(
    stub,
    "if (process.env.FAKE_PLATFORM) Object.defineProperty(process, 'platform', { value: process.env.FAKE_PLATFORM })\n" +
      "if (process.env.FAKE_ARCH) Object.defineProperty(process, 'arch', { value: process.env.FAKE_ARCH })\n",
  )
})

after(() => rmSync(dir, { recursive: true, force: true }))

/** Require `entry` in a child process (optionally as another platform); the error it throws. */
function loadError(entry, fake = {}) {
  const script =
    'try { require(process.argv[1]); console.log(JSON.stringify({ loaded: true })) } catch (e) {' +
    ' console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, hasCause: e.cause !== undefined })) }'
  const run = spawnSync(process.execPath, ['--require', stub, '-e', script, entry], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, FAKE_PLATFORM: fake.platform ?? '', FAKE_ARCH: fake.arch ?? '' },
  })
  assert.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout.trim().split('\n').pop())
  assert.ok(!result.loaded, 'the package loaded, so there is no error to check')
  return result
}

/** The platform packages the message must list. */
function assertListsPackages(message) {
  for (const suffix of ['linux-x64-gnu', 'linux-arm64-musl', 'darwin-arm64', 'win32-x64-msvc']) {
    assert.match(message, new RegExp(`\\b${suffix}\\b`), `lists ${suffix}`)
  }
}

test('an OS with no published binary gets ERR_CHATGPT_UNSUPPORTED_PLATFORM naming os and arch, the packages, and the way to build from source', () => {
  const err = loadError(installed, { platform: 'freebsd', arch: 'x64' })
  assert.equal(err.name, 'ChatGPTError')
  assert.equal(err.code, 'ERR_CHATGPT_UNSUPPORTED_PLATFORM')
  assert.ok(err.hasCause, "the loader's own error is the cause")
  assert.match(err.message, /\(freebsd x64\)/)
  assert.match(err.message, /No binary is published for this platform/)
  assertListsPackages(err.message)
  assert.match(err.message, /build it from source/)
  assert.doesNotMatch(err.message, /npm has a bug/)
})

test('an architecture with no published binary is named with its libc on Linux', { skip: process.platform !== 'linux' }, () => {
  const err = loadError(installed, { arch: 'riscv64' })
  assert.equal(err.code, 'ERR_CHATGPT_UNSUPPORTED_PLATFORM')
  assert.match(err.message, /\(linux riscv64 (glibc [\d.]+|musl)\)/)
  assert.match(err.message, /No binary is published/)
})

test('a supported platform whose optional package was left out names the package to reinstall', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  const err = loadError(installed)
  assert.equal(err.code, 'ERR_CHATGPT_UNSUPPORTED_PLATFORM')
  assert.match(err.message, /chatgpt-native-linux-x64-gnu is not installed/)
  assert.match(err.message, /--omit=optional/)
  assertListsPackages(err.message)
})

test('an installed platform package whose binary does not load says why', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  const pkg = path.join(dir, 'node_modules', 'chatgpt-native-linux-x64-gnu')
  mkdirSync(pkg, { recursive: true })
  writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'chatgpt-native-linux-x64-gnu', version: manifest.version, main: 'broken.node' }))
  writeFileSync(path.join(pkg, 'broken.node'), 'not a shared object')
  try {
    const err = loadError(installed)
    assert.equal(err.code, 'ERR_CHATGPT_UNSUPPORTED_PLATFORM')
    assert.match(err.message, /chatgpt-native-linux-x64-gnu is installed but does not load: .*(ELF|header|too short)/i)
  } finally {
    rmSync(pkg, { recursive: true, force: true })
  }
})

test('a source checkout without a built addon for this platform says to build it', () => {
  const err = loadError(root, { arch: 'riscv64' })
  assert.equal(err.code, 'ERR_CHATGPT_UNSUPPORTED_PLATFORM')
  assert.match(err.message, /npm run build:dev/)
  assertListsPackages(err.message)
})

test('the ESM entry throws the same error', () => {
  const run = spawnSync(
    process.execPath,
    ['--require', stub, '--input-type=module', '-e', `import(${JSON.stringify(path.join(installed, 'index.mjs'))}).then(() => console.log('loaded'), (e) => console.log(e.code))`],
    { encoding: 'utf8', timeout: 30_000, env: { ...process.env, FAKE_PLATFORM: 'freebsd', FAKE_ARCH: '' } },
  )
  assert.equal(run.stdout.trim(), 'ERR_CHATGPT_UNSUPPORTED_PLATFORM', run.stderr)
})
