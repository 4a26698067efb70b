// The linux-x64-gnu release binary loads on glibc 2.17: the versioned symbols it needs, read from
// the ELF by scripts/check-glibc.mjs, go no higher. Also checks that reader against readelf and
// on hand-made and damaged ELF files.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  GLIBC_LIMIT,
  checkFile,
  compareVersions,
  glibcToolchain,
  glibcVersions,
  loadWithGlibc217,
  neededVersions,
  releaseBuilds,
} from '../scripts/check-glibc.mjs'

const CHECK_SCRIPT = new URL('../scripts/check-glibc.mjs', import.meta.url).pathname
const DEV_BUILD = new URL('../chatgpt-native.linux-x64-gnu.node', import.meta.url).pathname
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64'

/** A minimal ELF64 shared object whose .gnu.version_r says it needs `versions` of libc.so.6. */
function elfNeeding(versions) {
  const names = ['libc.so.6', ...versions]
  const offsets = []
  let strings = Buffer.from([0])
  for (const name of names) {
    offsets.push(strings.length)
    strings = Buffer.concat([strings, Buffer.from(`${name}\0`, 'latin1')])
  }
  const verneed = Buffer.alloc(16 + 16 * versions.length)
  verneed.writeUInt16LE(1, 0)
  verneed.writeUInt16LE(versions.length, 2)
  verneed.writeUInt32LE(offsets[0], 4)
  verneed.writeUInt32LE(16, 8)
  versions.forEach((_, i) => {
    const at = 16 + 16 * i
    verneed.writeUInt32LE(offsets[i + 1], at + 8)
    verneed.writeUInt32LE(i + 1 < versions.length ? 16 : 0, at + 12)
  })
  const stringsAt = 64
  const verneedAt = stringsAt + strings.length
  const tableAt = verneedAt + verneed.length
  const header = Buffer.alloc(64)
  header.writeUInt32BE(0x7f454c46, 0)
  header[4] = 2
  header[5] = 1
  header[6] = 1
  header.writeUInt16LE(3, 0x10)
  header.writeUInt16LE(62, 0x12)
  header.writeBigUInt64LE(BigInt(tableAt), 0x28)
  header.writeUInt16LE(64, 0x34)
  header.writeUInt16LE(64, 0x3a)
  header.writeUInt16LE(3, 0x3c)
  const table = Buffer.alloc(3 * 64)
  table.writeUInt32LE(3, 64 + 4)
  table.writeBigUInt64LE(BigInt(stringsAt), 64 + 0x18)
  table.writeBigUInt64LE(BigInt(strings.length), 64 + 0x20)
  table.writeUInt32LE(0x6ffffffe, 128 + 4)
  table.writeBigUInt64LE(BigInt(verneedAt), 128 + 0x18)
  table.writeBigUInt64LE(BigInt(verneed.length), 128 + 0x20)
  table.writeUInt32LE(1, 128 + 0x28)
  table.writeUInt32LE(1, 128 + 0x2c)
  return Buffer.concat([header, strings, verneed, table])
}

function withFile(bytes, fn) {
  const dir = mkdtempSync(join(tmpdir(), 'chatgpt-native-glibc-'))
  try {
    const file = join(dir, 'test.node')
    writeFileSync(file, bytes)
    return fn(file)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

test('the linux-x64-gnu release build needs glibc 2.17 at most', (t) => {
  const builds = releaseBuilds()
  if (!onLinuxX64 || builds.length === 0) {
    t.skip('no linux-x64-gnu release build here: `npm run build` makes one (the pack test checks it too)')
    return
  }
  for (const file of builds) {
    const { highest, ok } = checkFile(file)
    assert.ok(ok, `${file} needs glibc ${highest}, more than ${GLIBC_LIMIT}: build it with \`npm run build\``)
  }
})

test('the linux-x64-gnu release build loads with glibc 2.17 itself (its loader and libc)', (t) => {
  const builds = releaseBuilds()
  const toolchain = glibcToolchain()
  if (!onLinuxX64 || builds.length === 0 || !toolchain) {
    t.skip('no linux-x64-gnu release build or no glibc 2.17 toolchain here: `npm run build` makes both')
    return
  }
  for (const file of builds) {
    const { ok, output } = loadWithGlibc217(file, toolchain)
    assert.ok(ok, `${file} does not load with glibc 2.17: ${output}`)
  }
})

test('the reader finds the same glibc versions as readelf', (t) => {
  const readelf = spawnSync('readelf', ['--version'])
  if (readelf.error || !onLinuxX64) {
    t.skip('readelf is not installed (binutils); the hand-made ELF tests still cover the reader')
    return
  }
  for (const file of [DEV_BUILD, process.execPath].filter((path) => existsSync(path))) {
    const text = execFileSync('readelf', ['-V', '-W', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
    const section = text.slice(text.indexOf("'.gnu.version_r'"))
    const expected = [...new Set([...section.matchAll(/Name: GLIBC_([\d.]+)/g)].map((m) => m[1]))].sort(compareVersions)
    if (file === DEV_BUILD) assert.ok(expected.length > 0, `readelf lists no GLIBC_ version for ${file}`)
    assert.deepEqual(glibcVersions(readFileSync(file), file), expected)
  }
})

test('a binary needing glibc 2.34 fails the check and one needing 2.17 passes', () => {
  const newer = elfNeeding(['GLIBC_2.2.5', 'GLIBC_2.34', 'GLIBC_2.3.4'])
  assert.deepEqual(neededVersions(newer), [{ file: 'libc.so.6', versions: ['GLIBC_2.2.5', 'GLIBC_2.34', 'GLIBC_2.3.4'] }])
  withFile(newer, (file) => {
    assert.deepEqual(checkFile(file), { file, highest: '2.34', ok: false })
    assert.equal(spawnSync(process.execPath, [CHECK_SCRIPT, file]).status, 1)
  })
  withFile(elfNeeding(['GLIBC_2.17', 'GLIBC_2.2.5', 'GLIBC_2.9']), (file) => {
    assert.deepEqual(checkFile(file), { file, highest: '2.17', ok: true })
    assert.equal(spawnSync(process.execPath, [CHECK_SCRIPT, file]).status, 0)
  })
})

test('versions compare by number, not as text', () => {
  assert.equal(compareVersions('2.17', '2.2.5'), 1)
  assert.equal(compareVersions('2.3.4', '2.3'), 1)
  assert.equal(compareVersions('2.17', '2.17'), 0)
  assert.equal(compareVersions('2.9', '2.17'), -1)
})

test('a damaged or foreign file is an error, not a crash or a hang', () => {
  const good = elfNeeding(['GLIBC_2.17'])
  assert.throws(() => neededVersions(Buffer.from('#!/bin/sh\n')), { name: 'ElfError' })
  assert.throws(() => neededVersions(good.subarray(0, 100)), { name: 'ElfError' })
  const past = Buffer.from(good)
  // The Verneed entry's first Vernaux lies past the end of the file.
  past.writeUInt32LE(1_000_000, past.length - 3 * 64 - 32 + 8)
  assert.throws(() => neededVersions(past), { name: 'ElfError' })
  const wide = Buffer.from(good)
  wide.writeBigUInt64LE(1n << 62n, 0x28)
  assert.throws(() => neededVersions(wide), { name: 'ElfError' })
})
