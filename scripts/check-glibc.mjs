// Reads the glibc symbol versions a Linux .node (a 64-bit little-endian ELF shared object) needs,
// from its .gnu.version_r section, and checks the highest against a limit. No external tool: the
// release build of linux-x64-gnu must load on glibc 2.17 (RHEL/CentOS 7 and everything newer), and
// this is how the build, the tests and the pack test make sure it does.
//
//   node scripts/check-glibc.mjs [--max 2.17] [--load] [file.node ...]
//
// With no file it checks the release builds present: the one `npm run build` leaves in target/
// and any .node under npm/. It prints each file's highest GLIBC_ version and exits 1 when one is
// newer than --max, or 2 when there is nothing to check. With --load it also loads each file in a
// program run by glibc 2.17's own loader and libc, from the toolchain `npm run build` fetched.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** The highest glibc symbol version the linux-x64-gnu release binary may require. */
export const GLIBC_LIMIT = '2.17'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Where `npm run build` (napi build --release for x86_64-unknown-linux-gnu) leaves the library. */
export const RELEASE_LIBRARY = join(
  process.env.CARGO_TARGET_DIR || join(ROOT, 'target'),
  'x86_64-unknown-linux-gnu',
  'release',
  'libchatgpt_native.so',
)

const SHT_GNU_VERNEED = 0x6ffffffe
const ELF_HEADER_BYTES = 64
const SECTION_HEADER_BYTES = 64
const VERNEED_BYTES = 16
const VERNAUX_BYTES = 16
// Bounds on what a section table may claim, so a damaged file gives an error, not a long loop.
const MAX_SECTIONS = 0xffff
const MAX_ENTRIES = 10_000
const MAX_NAME_BYTES = 256

class ElfError extends Error {
  constructor(file, what) {
    super(`${file}: ${what}`)
    this.name = 'ElfError'
  }
}

/** Reads `length` bytes at `offset`, or throws when they are outside the file. */
function checkedRange(buf, offset, length, file, what) {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > buf.length) {
    throw new ElfError(file, `${what} lies outside the file (offset ${offset}, ${length} bytes)`)
  }
  return offset
}

function u64(buf, offset, file, what) {
  const value = buf.readBigUInt64LE(checkedRange(buf, offset, 8, file, what))
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(file, `${what} is out of range`)
  return Number(value)
}

function cString(buf, offset, file) {
  checkedRange(buf, offset, 1, file, 'a version name')
  const end = buf.indexOf(0, offset)
  if (end < 0 || end - offset > MAX_NAME_BYTES) throw new ElfError(file, `unterminated name at offset ${offset}`)
  return buf.toString('latin1', offset, end)
}

/**
 * The versions each needed library is required at, from the ELF's .gnu.version_r section:
 * `[{ file: 'libc.so.6', versions: ['GLIBC_2.2.5', ...] }, ...]`. An ELF with no such section
 * needs no versioned symbol, and gives `[]`. Throws an `ElfError` for anything that is not a
 * well-formed 64-bit little-endian ELF.
 */
export function neededVersions(buf, file = 'input') {
  if (buf.length < ELF_HEADER_BYTES || buf.readUInt32BE(0) !== 0x7f454c46) throw new ElfError(file, 'not an ELF file')
  if (buf[4] !== 2 || buf[5] !== 1) throw new ElfError(file, 'not a 64-bit little-endian ELF file')
  const sectionTable = u64(buf, 0x28, file, 'the section table')
  const entrySize = buf.readUInt16LE(0x3a)
  const count = buf.readUInt16LE(0x3c)
  if (count === 0) return []
  if (entrySize !== SECTION_HEADER_BYTES || count > MAX_SECTIONS) throw new ElfError(file, 'unexpected section table shape')
  checkedRange(buf, sectionTable, count * SECTION_HEADER_BYTES, file, 'the section table')
  const section = (index) => {
    const at = sectionTable + index * SECTION_HEADER_BYTES
    return {
      type: buf.readUInt32LE(at + 4),
      offset: u64(buf, at + 0x18, file, 'a section'),
      size: u64(buf, at + 0x20, file, 'a section'),
      link: buf.readUInt32LE(at + 0x28),
      info: buf.readUInt32LE(at + 0x2c),
    }
  }
  const needed = []
  for (let index = 0; index < count; index += 1) {
    const verneed = section(index)
    if (verneed.type !== SHT_GNU_VERNEED) continue
    if (verneed.link >= count) throw new ElfError(file, 'the version section names no string table')
    const strings = section(verneed.link)
    checkedRange(buf, strings.offset, strings.size, file, 'the string table')
    checkedRange(buf, verneed.offset, verneed.size, file, 'the version section')
    const name = (at) => {
      if (at >= strings.size) throw new ElfError(file, 'a version name lies outside its string table')
      return cString(buf, strings.offset + at, file)
    }
    let at = verneed.offset
    for (let entry = 0; entry < Math.min(verneed.info, MAX_ENTRIES); entry += 1) {
      checkedRange(buf, at, VERNEED_BYTES, file, 'a version entry')
      const auxCount = buf.readUInt16LE(at + 2)
      const library = { file: name(buf.readUInt32LE(at + 4)), versions: [] }
      let aux = at + buf.readUInt32LE(at + 8)
      for (let k = 0; k < Math.min(auxCount, MAX_ENTRIES); k += 1) {
        checkedRange(buf, aux, VERNAUX_BYTES, file, 'a version entry')
        library.versions.push(name(buf.readUInt32LE(aux + 8)))
        const next = buf.readUInt32LE(aux + 12)
        if (next === 0) break
        aux += next
      }
      needed.push(library)
      const next = buf.readUInt32LE(at + 12)
      if (next === 0) break
      at += next
    }
  }
  return needed
}

/** Compares dotted version numbers ('2.17' < '2.2.5' is false: 17 > 2). */
export function compareVersions(a, b) {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i += 1) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

/** The glibc versions (e.g. '2.17') that `buf` requires, highest last. */
export function glibcVersions(buf, file = 'input') {
  const versions = new Set()
  for (const library of neededVersions(buf, file)) {
    for (const version of library.versions) {
      const match = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(version)
      if (match) versions.add(match[1])
    }
  }
  return [...versions].sort(compareVersions)
}

/**
 * Checks one file: `{ file, highest, ok }`, where `highest` is the highest GLIBC_ version the
 * file requires (null when none) and `ok` says it is at most `max`.
 */
export function checkFile(file, max = GLIBC_LIMIT) {
  const versions = glibcVersions(readFileSync(file), file)
  const highest = versions.at(-1) ?? null
  return { file, highest, ok: highest === null || compareVersions(highest, max) <= 0 }
}

/** The release builds present in the repository: `npm run build`'s library and npm/<platform>/*.node. */
export function releaseBuilds(root = ROOT) {
  const found = []
  if (existsSync(RELEASE_LIBRARY)) found.push(RELEASE_LIBRARY)
  const npmDir = join(root, 'npm')
  if (existsSync(npmDir)) {
    for (const platform of readdirSync(npmDir)) {
      if (!platform.startsWith('linux-') || !platform.endsWith('-gnu')) continue
      const dir = join(npmDir, platform)
      if (!statSync(dir).isDirectory()) continue
      for (const name of readdirSync(dir)) if (name.endsWith('.node')) found.push(join(dir, name))
    }
  }
  return found
}

/** The glibc 2.17 toolchain `npm run build` unpacked under target/napi-cross/, or null. */
export function glibcToolchain(targetDir = process.env.CARGO_TARGET_DIR || join(ROOT, 'target')) {
  const base = join(targetDir, 'napi-cross')
  if (!existsSync(base)) return null
  const name = readdirSync(base).find((entry) => /^x86_64-unknown-linux-gnu-[\d.]+$/.test(entry))
  return name ? join(base, name) : null
}

/**
 * Loads `file` with dlopen(RTLD_NOW) in a small C program built by the toolchain's gcc and run by
 * the glibc 2.17 sysroot's loader and libraries: what a RHEL/CentOS 7 machine would do. Node's
 * own `napi_*` functions are stand-ins that do nothing (the program is not Node), so this shows
 * that every symbol resolves and the library's initialisers run; not that the addon works.
 * Returns `{ ok, output }`.
 */
export function loadWithGlibc217(file, toolchain) {
  const triple = 'x86_64-unknown-linux-gnu'
  const sysroot = join(toolchain, triple, 'sysroot')
  // Every NUL-delimited napi_* name in the file, the dynamic string table's among them: a stand-in
  // too many does no harm.
  const napiNames = [...readFileSync(file).toString('latin1').matchAll(/\0(napi_[a-z0-9_]+)(?=\0)/g)].map((m) => m[1])
  const stubs = [...new Set(napiNames)].map((name) => `int ${name}(void) { return 1; }`)
  const program = [
    '#include <dlfcn.h>',
    '#include <stdio.h>',
    '#include <gnu/libc-version.h>',
    ...stubs,
    'int main(int argc, char **argv) {',
    '  if (argc < 2) return 2;',
    '  if (!dlopen(argv[1], RTLD_NOW)) { printf("dlopen failed: %s\\n", dlerror()); return 1; }',
    '  printf("loaded with glibc %s\\n", gnu_get_libc_version());',
    '  return 0;',
    '}',
  ].join('\n')
  const dir = mkdtempSync(join(tmpdir(), 'check-glibc-'))
  try {
    writeFileSync(join(dir, 'load.c'), program)
    execFileSync(join(toolchain, 'bin', `${triple}-gcc`), ['-rdynamic', '-o', join(dir, 'load'), join(dir, 'load.c'), '-ldl'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    const libraries = ['lib64', 'usr/lib64', 'lib'].map((sub) => join(sysroot, sub)).join(':')
    const loader = join(sysroot, 'lib64', 'ld-linux-x86-64.so.2')
    const run = spawnSync(loader, ['--library-path', libraries, join(dir, 'load'), file], { encoding: 'utf8', timeout: 30_000 })
    const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim()
    return { ok: run.status === 0 && output.startsWith('loaded with glibc 2.17'), output }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    options: { max: { type: 'string', default: GLIBC_LIMIT }, load: { type: 'boolean', default: false } },
    allowPositionals: true,
  })
  const files = positionals.length > 0 ? positionals : releaseBuilds()
  if (files.length === 0) {
    console.error('check-glibc: no release build to check; run `npm run build` first')
    process.exit(2)
  }
  let failed = false
  for (const file of files) {
    const { highest, ok } = checkFile(file, values.max)
    const shown = relative(process.cwd(), file) || file
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${shown}: highest glibc ${highest ?? '(none)'} (limit ${values.max})`)
    failed ||= !ok
    if (values.load) {
      const toolchain = glibcToolchain()
      if (!toolchain) {
        console.error('check-glibc: --load needs the glibc 2.17 toolchain; `npm run build` fetches it')
        process.exit(2)
      }
      const loaded = loadWithGlibc217(file, toolchain)
      console.log(`${loaded.ok ? 'ok  ' : 'FAIL'} ${shown}: ${loaded.output || 'no output'}`)
      failed ||= !loaded.ok
    }
  }
  if (failed) {
    console.error('check-glibc: a binary needs a newer glibc than the limit; build it with `npm run build`')
    process.exit(1)
  }
}
