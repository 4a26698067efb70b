// Loads the native addon through the generated loader (binding.js), and turns its failure into an
// error a user can act on.
//
// The addon ships as one npm package per platform (npm/<platform>/), installed by npm as an
// optional dependency of this one when its `os`, `cpu` and `libc` match. binding.js picks the
// package for this process and, when nothing loads, throws a generic message that blames npm. The
// error thrown here instead says which platform this is, which package it needed, which platform
// packages exist, and how to build the addon from source; the loader's own error is its `cause`.
'use strict'

const { ChatGPTError } = require('./errors.js')

const BUILD_FROM_SOURCE =
  'To build it from source instead, install Rust (rustup), clone the repository, run `npm install` ' +
  'there (it compiles the addon) and then `npm install <path to the clone>` in your project; ' +
  'see "Supported platforms" in the README.'

/** The C library of this Linux process: 'glibc' (with its version when known) or 'musl'. */
function linuxLibc() {
  let header
  try {
    const report = process.report
    const excluded = report.excludeNetwork
    report.excludeNetwork = true
    try {
      header = report.getReport().header
    } finally {
      report.excludeNetwork = excluded
    }
  } catch {
    return { family: 'gnu', label: 'libc unknown' }
  }
  if (header && header.glibcVersionRuntime) {
    return { family: 'gnu', label: `glibc ${header.glibcVersionRuntime}` }
  }
  return { family: 'musl', label: 'musl' }
}

/**
 * This process's platform: `os`/`arch` as Node names them, its C library on Linux, and the suffix
 * of the platform package napi names for it (e.g. 'linux-x64-gnu', 'darwin-arm64', 'win32-x64-msvc').
 */
function currentPlatform() {
  const os = process.platform
  const arch = process.arch
  if (os === 'linux') {
    const libc = linuxLibc()
    return { os, arch, libc: libc.label, suffix: `linux-${arch}-${libc.family}` }
  }
  if (os === 'win32') return { os, arch, libc: undefined, suffix: `win32-${arch}-msvc` }
  return { os, arch, libc: undefined, suffix: `${os}-${arch}` }
}

/** Whether npm installed the package `name` where this package can require it. */
function isInstalled(name) {
  try {
    require.resolve(`${name}/package.json`)
    return true
  } catch {
    return false
  }
}

/** Why the installed package `name` does not load: the first line of what requiring it throws. */
function loadFailure(name) {
  try {
    require(name)
    return 'it loads when required directly'
  } catch (err) {
    return String((err && err.message) || err).split('\n')[0]
  }
}

/** The package suffix napi gives a Rust target triple, e.g. aarch64-unknown-linux-musl -> linux-arm64-musl. */
function suffixOfTriple(triple) {
  const [cpu, , system, abi] = String(triple).split('-')
  const arch = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }[cpu] || cpu
  if (system === 'linux') return `linux-${arch}-${abi}`
  if (system === 'darwin') return `darwin-${arch}`
  if (system === 'windows') return `win32-${arch}-${abi}`
  return `${system}-${arch}`
}

/**
 * The error for a loader that found no binary: names the platform, the package it looked for and
 * why that did not load, the platform packages there are, and how to build from source.
 */
function noBinaryError(loaderError, manifest) {
  const platform = currentPlatform()
  const where = [platform.os, platform.arch, platform.libc].filter(Boolean).join(' ')
  // A published package lists its platform packages (napi pre-publish writes them); a source
  // checkout does not, and has the addon only once it is built.
  const published = Object.keys(manifest.optionalDependencies || {}).filter((name) => name.startsWith(`${manifest.name}-`))
  const suffixes =
    published.length > 0
      ? published.map((name) => name.slice(manifest.name.length + 1))
      : ((manifest.napi && manifest.napi.targets) || []).map(suffixOfTriple)
  const wanted = `${manifest.name}-${platform.suffix}`

  let situation
  if (published.length === 0) {
    situation = 'This is a source checkout whose addon is not built: run `npm run build:dev` (needs a Rust toolchain).'
  } else if (!suffixes.includes(platform.suffix)) {
    situation = 'No binary is published for this platform.'
  } else if (isInstalled(wanted)) {
    situation = `Its package ${wanted} is installed but does not load: ${loadFailure(wanted)}.`
  } else {
    situation =
      `Its package ${wanted} is not installed. npm installs it as an optional dependency: reinstall ` +
      'without --omit=optional (a package-lock.json made on another platform can leave it out: ' +
      'delete it and node_modules, then run `npm install`).'
  }
  const message =
    `chatgpt-native has no native addon that loads on this platform (${where}). ${situation} ` +
    `Platform packages: ${suffixes.join(', ')}.` +
    (published.length > 0 ? ` ${BUILD_FROM_SOURCE}` : '')
  return new ChatGPTError(message, { code: 'ERR_CHATGPT_UNSUPPORTED_PLATFORM', cause: loaderError })
}

/** The generated loader's exports, or a ChatGPTError (code ERR_CHATGPT_UNSUPPORTED_PLATFORM). */
function loadBinding() {
  try {
    return require('../binding.js')
  } catch (err) {
    // The loader's own "found nothing" errors carry no code; anything with one (such as its
    // ERR_NAPI_BINDING_TARGET_CONFLICT) is not about the platform and goes through as it is.
    if (err && err.code !== undefined) throw err
    throw noBinaryError(err, require('../package.json'))
  }
}

module.exports = { loadBinding }
