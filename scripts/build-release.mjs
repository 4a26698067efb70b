// `npm run build`: the release build of the addon (napi build --release, LTO), as published.
//
// For linux-x64-gnu on a Linux x64 host it links against glibc 2.17 with napi-rs's prebuilt gcc
// cross toolchain (the npm package @napi-rs/cross-toolchain-x64-target-x86_64, pinned below by
// version and integrity), so the binary loads on every glibc Linux from RHEL/CentOS 7 on, not
// only on the build machine's. `napi build --use-napi-cross` would do the same, but it fetches
// that package at the version of its own @napi-rs/cross-toolchain dependency (1.0.5 with CLI
// 3.10), which the registry does not have for this target (it has 1.0.0), and unpacks it into
// the home directory; this script keeps it in the git-ignored target/ folder instead. It is not a
// devDependency: only this build needs its 50 MB (not `npm ci` for the dev build), and it
// declares `cpu: x64`, which npm refuses to install elsewhere unless optional. C code
// (mimalloc, ring) is compiled against the toolchain's glibc 2.17 headers, and the result is
// checked with scripts/check-glibc.mjs before the script succeeds.
//
// Other hosts and targets build with the machine's own toolchain. Arguments are passed on to
// `napi build` (e.g. `--target aarch64-apple-darwin`, `--output-dir dist`).
//
//   npm run build [-- napi build options]
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GLIBC_LIMIT, RELEASE_LIBRARY, checkFile } from './check-glibc.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const LINUX_X64_GNU = 'x86_64-unknown-linux-gnu'

/** The glibc 2.17 toolchain (gcc 4.8.5, binutils, a glibc 2.17 sysroot) for linux-x64-gnu. */
const TOOLCHAIN = {
  name: '@napi-rs/cross-toolchain-x64-target-x86_64',
  version: '1.0.0',
  integrity: 'sha512-lecoghCfoTAX9MLFcIx9/nL9M8xdkZ9n8Pki8qjKUNzjiq1zbECdEbzIZAMMHRtrXxifK9dAyYuh8gSxNbr2og==',
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options })
  if (result.error) throw new Error(`could not run ${command}: ${result.error.message}`)
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status ?? result.signal})`)
  return result
}

/** The target napi will build: `--target` among the arguments, else rustc's host triple. */
function requestedTarget(args) {
  const index = args.findIndex((arg) => arg === '--target' || arg === '-t')
  if (index >= 0) return args[index + 1] ?? null
  const inline = args.find((arg) => arg.startsWith('--target='))
  if (inline) return inline.slice('--target='.length)
  if (process.env.CARGO_BUILD_TARGET) return process.env.CARGO_BUILD_TARGET
  const rustc = spawnSync(process.env.RUSTC || 'rustc', ['-vV'], { cwd: ROOT, encoding: 'utf8' })
  return /^host: (\S+)$/m.exec(rustc.stdout ?? '')?.[1] ?? null
}

/**
 * Fetches (once) and unpacks the pinned toolchain under target/napi-cross/, and returns the
 * folder holding bin/ and the sysroot. Unpacks into a temporary folder renamed at the end, so
 * an interrupted run never leaves a half toolchain that looks complete.
 */
function toolchainDir() {
  const base = join(ROOT, 'target', 'napi-cross')
  const dir = join(base, `${LINUX_X64_GNU}-${TOOLCHAIN.version}`)
  if (existsSync(join(dir, 'bin', `${LINUX_X64_GNU}-gcc`))) return dir
  mkdirSync(base, { recursive: true })
  const partial = `${dir}.partial-${process.pid}`
  rmSync(partial, { recursive: true, force: true })
  mkdirSync(partial)
  try {
    console.log(`build-release: fetching ${TOOLCHAIN.name}@${TOOLCHAIN.version} (glibc ${GLIBC_LIMIT} toolchain, ~50 MB, once)`)
    const packed = spawnSync('npm', ['pack', `${TOOLCHAIN.name}@${TOOLCHAIN.version}`, '--json', '--pack-destination', partial], {
      cwd: partial,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    if (packed.status !== 0) throw new Error(`npm pack ${TOOLCHAIN.name}@${TOOLCHAIN.version} failed`)
    const [{ filename }] = JSON.parse(packed.stdout)
    const tarball = join(partial, filename)
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`
    if (integrity !== TOOLCHAIN.integrity) throw new Error(`${filename} has integrity ${integrity}, expected ${TOOLCHAIN.integrity}`)
    run('tar', ['-xzf', tarball, '-C', partial])
    run('tar', ['-xJf', join(partial, 'package', `${LINUX_X64_GNU}.tar.xz`), '-C', partial])
    rmSync(join(partial, 'package'), { recursive: true })
    rmSync(tarball)
    rmSync(dir, { recursive: true, force: true })
    renameSync(partial, dir)
  } catch (err) {
    rmSync(partial, { recursive: true, force: true })
    throw err
  }
  return dir
}

/**
 * Environment routing cargo's linker to the toolchain's gcc and cc-rs's C compiler to the glibc
 * 2.17 headers. The target is the host's own triple, so cc-rs reads the target-scoped names
 * (`CC_x86_64_unknown_linux_gnu`), not `TARGET_CC`. A variable the caller already set wins.
 *
 * C is compiled by the machine's own gcc against the toolchain's sysroot, not by the toolchain's
 * gcc 4.8.5: that one has no <stdatomic.h> (C11 atomics, which mimalloc needs, came in gcc 4.9)
 * and rejects the `-Wno-error=date-time` the mimalloc build passes. The glibc a binary needs is
 * set by the headers and libraries it is built and linked against, which are the sysroot's.
 */
function toolchainEnv(dir) {
  const tool = (name) => join(dir, 'bin', `${LINUX_X64_GNU}-${name}`)
  const sysroot = join(dir, LINUX_X64_GNU, 'sysroot')
  const suffix = LINUX_X64_GNU.replaceAll('-', '_')
  const wanted = {
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER: tool('gcc'),
    [`CC_${suffix}`]: 'cc',
    [`CFLAGS_${suffix}`]: `--sysroot=${sysroot}`,
    [`AR_${suffix}`]: tool('ar'),
    [`RANLIB_${suffix}`]: tool('ranlib'),
  }
  const env = { ...process.env }
  for (const [name, value] of Object.entries(wanted)) if (!env[name]) env[name] = value
  // gcc 4.8 knows no `-fuse-ld=lld`, which rustc passes when it links with its bundled lld
  // (the default for this target since Rust 1.90): link with the toolchain's own ld instead.
  // Cargo reads the first of these that is set, so the flag goes into that one.
  const noLld = '-Clinker-features=-lld'
  if (env.CARGO_ENCODED_RUSTFLAGS) env.CARGO_ENCODED_RUSTFLAGS += `\x1f${noLld}`
  else if (env.RUSTFLAGS) env.RUSTFLAGS += ` ${noLld}`
  else {
    const rustflags = 'CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS'
    env[rustflags] = [env[rustflags], noLld].filter(Boolean).join(' ')
  }
  env.PATH = `${join(dir, 'bin')}:${env.PATH ?? ''}`
  return env
}

function main() {
  const args = process.argv.slice(2)
  const target = requestedTarget(args)
  const useGlibcToolchain = target === LINUX_X64_GNU && process.platform === 'linux' && process.arch === 'x64'
  const env = useGlibcToolchain ? toolchainEnv(toolchainDir()) : process.env
  const napi = join(dirname(createRequire(import.meta.url).resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js')
  const buildArgs = ['build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts']
  run(process.execPath, [napi, ...buildArgs, ...args], { cwd: ROOT, env })
  if (useGlibcToolchain) {
    const { highest, ok } = checkFile(RELEASE_LIBRARY)
    if (!ok) throw new Error(`the release build needs glibc ${highest}, more than ${GLIBC_LIMIT}`)
    console.log(`build-release: the linux-x64-gnu binary needs glibc ${highest ?? '(none)'} at most (limit ${GLIBC_LIMIT})`)
  }
}

try {
  main()
} catch (err) {
  console.error(`build-release: ${err.message}`)
  process.exit(1)
}
