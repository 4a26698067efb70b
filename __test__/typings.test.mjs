// The bundled typings under `strict`: they type-check themselves (no skipLibCheck), compile the
// README's TypeScript and batch examples and an ESM consumer importing the package by name, reject
// what they should (every `@ts-expect-error` in fixtures/strictness.mts is used), and compile code
// written for the `chatgpt` package (v5) with only its import changed, that code being proven v5
// code by compiling it against the `chatgpt` package too. One TypeScript program per package, built
// in this process with the compiler API (as tsc with these options would).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const require = createRequire(import.meta.url)
const ts = require('typescript')
const root = fileURLToPath(new URL('..', import.meta.url))
const fixture = (name) => path.join(root, '__test__', 'fixtures', name)

const V5_PORT = fixture('v5-port.mts')
// v5-port.mts with its import of 'chatgpt' replaced: served from memory, never written.
const V5_PORT_NATIVE = fixture('v5-port.native.mts')
const OURS = [fixture('usage.ts'), fixture('esm-usage.mts'), fixture('strictness.mts'), V5_PORT_NATIVE]

const options = {
  noEmit: true,
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  types: ['node'],
}

/** v5-port.mts importing chatgpt-native: the one change a v5 user makes. */
function portedText() {
  const text = readFileSync(V5_PORT, 'utf8')
  const from = "from 'chatgpt'\n"
  assert.equal(text.split(from).length, 2, "v5-port.mts imports from 'chatgpt' exactly once")
  return text.replace(from, "from 'chatgpt-native'\n")
}

/** A program over `files`, with `virtual` (path -> text) served from memory. */
function program(files, virtual = {}) {
  const host = ts.createCompilerHost(options)
  const { fileExists, readFile, getSourceFile } = host
  host.fileExists = (file) => file in virtual || fileExists.call(host, file)
  host.readFile = (file) => (file in virtual ? virtual[file] : readFile.call(host, file))
  host.getSourceFile = (file, language, ...rest) =>
    file in virtual ? ts.createSourceFile(file, virtual[file], language) : getSourceFile.call(host, file, language, ...rest)
  return ts.createProgram(files, options, host)
}

/** Every diagnostic of the program, as tsc prints them, grouped by file (`''`: global). */
function diagnostics(prog) {
  const all = [...prog.getOptionsDiagnostics(), ...prog.getGlobalDiagnostics(), ...prog.getSyntacticDiagnostics(), ...prog.getSemanticDiagnostics()]
  const byFile = new Map()
  for (const d of all) {
    const file = d.file ? path.resolve(d.file.fileName) : ''
    const text = ts.formatDiagnostics([d], { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' })
    byFile.set(file, [...(byFile.get(file) ?? []), text])
  }
  return byFile
}

let ours
let v5
const oursDiagnostics = () => (ours ??= diagnostics(program(OURS, { [V5_PORT_NATIVE]: portedText() })))
const v5Diagnostics = () => (v5 ??= diagnostics(program([V5_PORT])))

/** Assert the file (or, for `null`, every file but the fixtures) has no diagnostics. */
function assertClean(byFile, file) {
  const found = file ? (byFile.get(file) ?? []) : [...byFile].filter(([f]) => !OURS.includes(f) && f !== V5_PORT).flatMap(([, d]) => d)
  assert.deepEqual(found, [], found.join(''))
}

test('the typings themselves type-check under strict, without skipLibCheck', () => {
  assertClean(oursDiagnostics(), null)
})

test('index.d.ts type-checks the README TypeScript example', () => {
  assertClean(oursDiagnostics(), fixture('usage.ts'))
})

test('an ESM consumer importing the package by name type-checks, with apiKey, apiOrg, ChatGPTErrorOptions and the README batch example', () => {
  assertClean(oursDiagnostics(), fixture('esm-usage.mts'))
})

test('the typings accept replies, partials, batches and parameters as documented, and reject misuse', () => {
  assertClean(oursDiagnostics(), fixture('strictness.mts'))
})

test('code written for chatgpt v5 type-checks against the chatgpt package itself', () => {
  const byFile = v5Diagnostics()
  const found = [...byFile.values()].flat()
  assert.deepEqual(found, [], found.join(''))
})

test('the same v5 code type-checks against chatgpt-native with only its import changed', () => {
  assertClean(oursDiagnostics(), V5_PORT_NATIVE)
})
