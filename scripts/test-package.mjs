// npm run test:package: the test a user would do. Builds the release addon (`npm run build`),
// lays the packages out as a release does (`napi artifacts` into npm/<platform>/, `napi
// pre-publish` through the prepublishOnly script), checks `npm publish --dry-run` of both
// packages prints no warning, packs this platform's package and the main package, installs both
// with `npm install --offline` into an empty project with no cargo, rustc or C compiler on PATH,
// and then requires the package from a .cjs file, imports it from an .mjs file (each streams a
// reply from the bundled simulator and counts tokens), type-checks a .ts file with
// `tsc --strict`, runs `npx chatgpt-native --help` and the installed command's `batch` against
// the bundled simulator. The package's runtime dependencies (the command's progress bar) are
// packed from the checkout's node_modules and installed beside it, as the registry would serve
// them. The installed tree must hold no Rust sources and exactly the release binary.
// It also checks that the main package alone (its platform package left out) fails to load with
// ERR_CHATGPT_UNSUPPORTED_PLATFORM. Prints each tarball's packed and unpacked size.
//
// Everything runs in a temporary directory, on a copy of the checkout's tracked files; the one
// change it makes to the checkout is the release build that `npm run build` writes there. Other
// platforms' binaries cannot be built here, so their npm/<platform>/ packages get placeholder
// files (as CI's artifacts would be) only so the napi commands, which want every target, run;
// those packages are never packed. The npm registry is a loopback stub that knows no package, so
// nothing leaves the machine. Set KEEP_TEST_PACKAGE_DIR=1 to keep the temporary directory.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'
import { GLIBC_LIMIT, checkFile } from './check-glibc.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const STEP_TIMEOUT_MS = 15 * 60_000
/** Tools the installed package must not need; none may be on the PATH the user steps run with. */
const BUILD_TOOLS = ['cargo', 'rustc', 'rustup', 'cc', 'gcc', 'c++', 'g++', 'clang', 'ld']

const log = (...args) => console.log('[test:package]', ...args)

/** npm's own CLI script, so npm runs under this node without needing PATH. */
function npmCli() {
  if (process.env.npm_execpath && process.env.npm_execpath.endsWith('.js')) return process.env.npm_execpath
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm')
    if (!existsSync(candidate)) continue
    const cli = path.join(path.dirname(realpathSync(candidate)), 'npm-cli.js')
    if (existsSync(cli)) return cli
  }
  throw new Error('npm-cli.js not found: run this as `npm run test:package`')
}

/** process.env without npm's per-run variables, so a child npm reads no settings of this run. */
function cleanEnv(extra = {}) {
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith('npm_')) env[key] = value
  }
  return { ...env, ...extra }
}

/** Runs a command to completion (asynchronously: the loopback registry answers meanwhile). */
function run(command, args, { cwd, env = cleanEnv(), allowFailure = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      const result = { status, signal, stdout, stderr }
      if (!allowFailure && status !== 0) {
        reject(new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${status ?? signal}\n${stdout}\n${stderr}`))
      } else resolve(result)
    })
  })
}

const npm = (args, options) => run(process.execPath, [npmCli(), ...args], options)
const napi = (args, options) =>
  run(process.execPath, [path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js'), ...args], options)

/** napi's name for this platform, as in its package and file names (linux-x64-gnu, darwin-arm64...). */
function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report.getReport().header.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** The package suffix of a Rust target triple, as napi names it. */
function suffixOfTriple(triple) {
  const [cpu, , system, abi] = triple.split('-')
  const arch = { x86_64: 'x64', aarch64: 'arm64' }[cpu] ?? cpu
  if (system === 'linux') return `linux-${arch}-${abi}`
  if (system === 'darwin') return `darwin-${arch}`
  if (system === 'windows') return `win32-${arch}-${abi}`
  return `${system}-${arch}`
}

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex')

/** Every file under `dir`, as paths relative to it (symbolic links not followed). */
function walk(dir, base = dir) {
  const out = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(full, base))
    else out.push(path.relative(base, full))
  }
  return out
}

/** Section names of an ELF64 little-endian file (enough to tell a stripped build from a dev one). */
function elfSectionNames(file) {
  const b = readFileSync(file)
  assert.equal(b.toString('latin1', 1, 4), 'ELF', `${file} is not an ELF file`)
  const shoff = Number(b.readBigUInt64LE(0x28))
  const shentsize = b.readUInt16LE(0x3a)
  const shnum = b.readUInt16LE(0x3c)
  const shstrndx = b.readUInt16LE(0x3e)
  const strtab = Number(b.readBigUInt64LE(shoff + shstrndx * shentsize + 0x18))
  const names = []
  for (let i = 0; i < shnum; i++) {
    const nameOffset = strtab + b.readUInt32LE(shoff + i * shentsize)
    names.push(b.toString('latin1', nameOffset, b.indexOf(0, nameOffset)))
  }
  return names
}

/** A registry that knows no package: lets `npm publish --dry-run` run its checks on loopback. */
async function startStubRegistry() {
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: 'Not found' }))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}/`
  return { url, close: () => new Promise((resolve) => server.close(resolve)) }
}

/** The lines of npm's output that warn (npm prints them as "npm warn ..."). */
const warnings = (text) => text.split('\n').filter((line) => /^npm warn/i.test(line))

const USE_CJS = `
const assert = require('node:assert/strict')
const { ChatGPTAPI, ChatGPTSimulator, countTokens, __napiBindingTarget } = require('chatgpt-native')
;(async () => {
  assert.equal(__napiBindingTarget, 'native')
  assert.equal(countTokens('hello world'), 2)
  const sim = await ChatGPTSimulator.start({ responseTokens: 8 })
  try {
    const api = new ChatGPTAPI({ apiKey: 'sk-test', apiBaseUrl: sim.url })
    const deltas = []
    const reply = await api.sendMessage('Hello from CommonJS', { onProgress: (p) => deltas.push(p.delta) })
    assert.ok(deltas.length >= 8, 'streamed: one delta per token')
    assert.equal(deltas.join(''), reply.text)
    console.log('cjs ok', deltas.length)
  } finally {
    await sim.close()
  }
})().catch((err) => { console.error(err); process.exit(1) })
`

const USE_MJS = `
import assert from 'node:assert/strict'
import { ChatGPTAPI, ChatGPTSimulator, countTokens } from 'chatgpt-native'
import native from 'chatgpt-native'

assert.equal(native.ChatGPTAPI, ChatGPTAPI)
assert.equal(countTokens('hello world'), 2)
const sim = await ChatGPTSimulator.start({ responseTokens: 8 })
try {
  const api = new ChatGPTAPI({ apiKey: 'sk-test', apiBaseUrl: sim.url })
  const deltas = []
  const reply = await api.sendMessage('Hello from ESM', { onProgress: (p) => deltas.push(p.delta) })
  assert.ok(deltas.length >= 8, 'streamed: one delta per token')
  assert.equal(deltas.join(''), reply.text)
  console.log('mjs ok', deltas.length)
} finally {
  await sim.close()
}
`

const USE_TS = `
import { ChatGPTAPI, ChatGPTError, ChatGPTSimulator, countTokens, type ChatMessage } from 'chatgpt-native'

export async function ask(text: string): Promise<ChatMessage> {
  const sim = await ChatGPTSimulator.start({ responseTokens: 4 })
  const api = new ChatGPTAPI({ apiKey: 'sk-test', apiBaseUrl: sim.url })
  try {
    return await api.sendMessage(text, { onProgress: (partial) => process.stdout.write(partial.delta ?? '') })
  } catch (err) {
    if (err instanceof ChatGPTError) console.error(err.code)
    throw err
  } finally {
    await sim.close()
  }
}

const tokens: number = countTokens('hello world')
export { tokens }
`

const USE_BIN = `
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { ChatGPTSimulator } from 'chatgpt-native'

// The simulator answers on native threads, so the blocking spawnSync below does not stall it.
const sim = await ChatGPTSimulator.start({ responseTokens: 4 })
try {
  writeFileSync('requests.jsonl', ['{"id":"a","text":"one"}', '{"id":"b","text":"two"}', '{"id":"c","text":"three"}'].join('\\n') + '\\n')
  const run = spawnSync('node_modules/.bin/chatgpt-native', ['batch', 'requests.jsonl', '-o', 'results.jsonl', '--json', '--model', 'sim-gpt'], {
    encoding: 'utf8',
    env: { ...process.env, OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: sim.url },
  })
  assert.equal(run.status, 0, run.stderr)
  assert.equal(JSON.parse(run.stdout).succeeded, 3)
  const ids = readFileSync('results.jsonl', 'utf8').trim().split('\\n').map((line) => JSON.parse(line).id).sort()
  assert.deepEqual(ids, ['a', 'b', 'c'])
  console.log('bin ok', ids.length)
} finally {
  await sim.close()
}
`

/** The full path of `command` on this process's PATH. */
function whichOnPath(command) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, command)
    if (dir && existsSync(candidate)) return candidate
  }
  throw new Error(`${command} is not on the PATH`)
}

/** The package's runtime dependencies and theirs, as installed in the checkout's node_modules. */
function runtimeDependencies() {
  const found = new Set()
  const visit = (names) => {
    for (const name of names) {
      if (found.has(name)) continue
      found.add(name)
      const dependencyManifest = JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8'))
      visit(Object.keys(dependencyManifest.dependencies ?? {}))
    }
  }
  visit(Object.keys(manifest.dependencies ?? {}))
  return [...found].sort()
}

async function main() {
  const suffix = platformSuffix()
  const targets = manifest.napi.targets.map(suffixOfTriple)
  assert.ok(targets.includes(suffix), `this platform (${suffix}) is not among napi.targets`)
  const binaryFile = `${manifest.napi.binaryName}.${suffix}.node`
  const platformPackage = `${manifest.name}-${suffix}`

  const dir = mkdtempSync(path.join(tmpdir(), 'chatgpt-native-package-'))
  const registry = await startStubRegistry()
  try {
    log('release build: npm run build')
    await npm(['run', 'build'], { cwd: root, env: process.env })
    const release = path.join(dir, 'release.node')
    copyFileSync(path.join(root, binaryFile), release)

    // A copy of the files a commit would hold (tracked, or new and not ignored), as a clone has them.
    const stage = path.join(dir, 'stage')
    const tracked = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
    assert.equal(tracked.status, 0, `git ls-files failed: ${tracked.stderr}`)
    for (const file of tracked.stdout.split('\0').filter(Boolean)) {
      // Skips files deleted in the work tree, and links (a node_modules link is not a source file).
      if (!existsSync(path.join(root, file)) || !lstatSync(path.join(root, file)).isFile()) continue
      mkdirSync(path.dirname(path.join(stage, file)), { recursive: true })
      copyFileSync(path.join(root, file), path.join(stage, file))
    }
    symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'), 'junction')

    log('napi artifacts: the release binary, and placeholders for the targets only CI builds')
    const artifacts = path.join(dir, 'artifacts')
    mkdirSync(artifacts)
    for (const target of targets) {
      const name = `${manifest.napi.binaryName}.${target}.node`
      if (target === suffix) copyFileSync(release, path.join(artifacts, name))
      else writeFileSync(path.join(artifacts, name), `placeholder for the ${target} binary, which CI builds\n`)
    }
    await napi(['artifacts', '--output-dir', artifacts, '--npm-dir', 'npm'], { cwd: stage })
    assert.equal(sha256(path.join(stage, 'npm', suffix, binaryFile)), sha256(release), 'napi artifacts put the release binary in its package')

    log('npm publish --dry-run of both packages, against a loopback registry')
    const registryArgs = ['--registry', registry.url, `--${registry.url.replace(/^http:/, '')}:_authToken=test-token`]
    const common = ['--no-update-notifier', '--cache', path.join(dir, 'cache'), ...registryArgs]
    const manifestBefore = readFileSync(path.join(stage, 'package.json'), 'utf8')
    for (const pkgDir of [stage, path.join(stage, 'npm', suffix)]) {
      const dry = await npm(['publish', '--dry-run', ...common], { cwd: pkgDir })
      assert.deepEqual(warnings(dry.stderr + dry.stdout), [], `npm publish --dry-run in ${pkgDir} warns`)
    }
    assert.equal(readFileSync(path.join(stage, 'package.json'), 'utf8'), manifestBefore, 'a dry run leaves package.json alone')

    log('prepublishOnly (napi pre-publish): optionalDependencies at this exact version')
    await npm(['run', 'prepublishOnly', ...common], { cwd: stage })
    const staged = JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8'))
    assert.deepEqual(
      staged.optionalDependencies,
      Object.fromEntries(targets.map((target) => [`${manifest.name}-${target}`, manifest.version])),
    )

    log('npm pack of the main package and of', platformPackage)
    const tarballs = path.join(dir, 'tarballs')
    mkdirSync(tarballs)
    const packed = {}
    for (const pkgDir of [stage, path.join(stage, 'npm', suffix)]) {
      const out = await npm(['pack', '--json', '--pack-destination', tarballs, ...common], { cwd: pkgDir })
      assert.deepEqual(warnings(out.stderr), [], `npm pack in ${pkgDir} warns`)
      const [info] = JSON.parse(out.stdout)
      packed[info.name] = info
      log(`${info.filename}: ${(info.size / 1e6).toFixed(2)} MB packed, ${(info.unpackedSize / 1e6).toFixed(2)} MB unpacked, ${info.entryCount} files`)
    }
    assert.ok(!existsSync(path.join(stage, 'target')), 'packing and publishing built nothing (prepare skips them)')
    const mainFiles = packed[manifest.name].files.map((f) => f.path).sort()
    assert.deepEqual(
      mainFiles,
      [
        'LICENSE',
        'README.md',
        'binding.d.ts',
        'binding.js',
        'index.d.ts',
        'index.js',
        'index.mjs',
        'package.json',
        ...walk(path.join(root, 'lib')).map((f) => `lib/${f}`),
        ...walk(path.join(root, 'bin')).map((f) => `bin/${f}`),
      ].sort(),
      'the main package holds exactly the JavaScript, the command, the typings, README and LICENSE',
    )
    assert.deepEqual(packed[platformPackage].files.map((f) => f.path).sort(), ['README.md', binaryFile, 'package.json'])

    log('npm pack of the runtime dependencies, from node_modules:', Object.keys(manifest.dependencies ?? {}).join(', '))
    const dependencyTarballs = []
    for (const dependency of runtimeDependencies()) {
      const out = await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs, ...common, path.join(root, 'node_modules', dependency)], { cwd: dir })
      dependencyTarballs.push(path.join(tarballs, JSON.parse(out.stdout)[0].filename))
    }

    // An empty project; npm and node run with a PATH holding node alone.
    const bin = path.join(dir, 'bin')
    mkdirSync(bin)
    symlinkSync(process.execPath, path.join(bin, path.basename(process.execPath)))
    const userEnv = cleanEnv({ PATH: bin })
    for (const tool of BUILD_TOOLS) assert.ok(!existsSync(path.join(bin, tool)), `${tool} is on the stripped PATH`)
    const project = path.join(dir, 'project')
    mkdirSync(project)
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'smoke-project', version: '1.0.0', private: true }))
    const tgz = (name) => path.join(tarballs, packed[name].filename)

    log('npm install --offline of the two tarballs, without cargo, rustc or a C compiler')
    const install = await npm(['install', '--offline', '--no-audit', '--no-fund', '--no-update-notifier', '--cache', path.join(dir, 'cache'), tgz(platformPackage), tgz(manifest.name), ...dependencyTarballs], {
      cwd: project,
      env: userEnv,
    })
    assert.deepEqual(warnings(install.stderr), [], 'npm install warns')

    const installed = path.join(project, 'node_modules')
    const installedManifest = JSON.parse(readFileSync(path.join(installed, manifest.name, 'package.json'), 'utf8'))
    assert.equal(installedManifest.scripts?.prepare, undefined, 'the packed package.json has no prepare script')
    assert.deepEqual(installedManifest.optionalDependencies, staged.optionalDependencies)
    assert.equal(readFileSync(path.join(stage, 'package.json'), 'utf8'), `${JSON.stringify(staged, null, 2)}\n`, 'postpack put package.json back')
    const files = [...walk(path.join(installed, manifest.name)).map((f) => `${manifest.name}/${f}`), ...walk(path.join(installed, platformPackage)).map((f) => `${platformPackage}/${f}`)]
    const sources = files.filter((f) => /\.rs$|(^|\/)(Cargo\.(toml|lock)|build\.rs|rustfmt\.toml|clippy\.toml)$/.test(f))
    assert.deepEqual(sources, [], 'no Rust sources or Cargo files are installed')
    assert.deepEqual(files.filter((f) => f.endsWith('.node')), [`${platformPackage}/${binaryFile}`], 'one binary, in the platform package')
    const installedBinary = path.join(installed, platformPackage, binaryFile)
    assert.equal(sha256(installedBinary), sha256(release), 'the installed binary is the release build')
    if (process.platform === 'linux') {
      const debug = elfSectionNames(installedBinary).filter((name) => name === '.symtab' || name.startsWith('.debug_'))
      assert.deepEqual(debug, [], 'the installed binary is stripped (the dev build is not)')
    }
    if (platformPackage.endsWith('-linux-x64-gnu')) {
      const glibc = checkFile(installedBinary)
      assert.ok(glibc.ok, `the installed binary needs glibc ${glibc.highest}, more than ${GLIBC_LIMIT}`)
      log(`the installed binary needs glibc ${glibc.highest} at most (limit ${GLIBC_LIMIT})`)
    }

    log('require from .cjs, import from .mjs: stream from the bundled simulator, count tokens')
    writeFileSync(path.join(project, 'use.cjs'), USE_CJS)
    writeFileSync(path.join(project, 'use.mjs'), USE_MJS)
    for (const file of ['use.cjs', 'use.mjs']) {
      const out = await run(process.execPath, [file], { cwd: project, env: userEnv })
      log(out.stdout.trim())
    }

    log('tsc --strict --noEmit over a .ts file using the installed package')
    writeFileSync(path.join(project, 'use.ts'), USE_TS)
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    const typeRoots = path.join(root, 'node_modules', '@types')
    await run(
      process.execPath,
      [tsc, '--strict', '--noEmit', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', typeRoots, 'use.ts'],
      { cwd: project, env: userEnv },
    )

    log('npx chatgpt-native --help, and the installed command\'s batch against the bundled simulator')
    // npm exec runs the command through a shell, which the stripped PATH leaves out: name it.
    const shell = process.platform === 'win32' ? [] : [`--script-shell=${whichOnPath('sh')}`]
    const help = await npm(['exec', '--offline', '--no-update-notifier', ...shell, '--cache', path.join(dir, 'cache'), '--', 'chatgpt-native', '--help'], {
      cwd: project,
      env: userEnv,
    })
    assert.match(help.stdout, /^Usage: chatgpt-native <command>/)
    writeFileSync(path.join(project, 'use-bin.mjs'), USE_BIN)
    log((await run(process.execPath, ['use-bin.mjs'], { cwd: project, env: userEnv })).stdout.trim())

    log('the main package alone (no platform package): ERR_CHATGPT_UNSUPPORTED_PLATFORM')
    const bare = path.join(dir, 'bare-project')
    mkdirSync(bare)
    writeFileSync(path.join(bare, 'package.json'), JSON.stringify({ name: 'bare-project', version: '1.0.0', private: true }))
    await npm(['install', '--offline', '--no-audit', '--no-fund', '--no-update-notifier', '--cache', path.join(dir, 'cache'), tgz(manifest.name), ...dependencyTarballs], { cwd: bare, env: userEnv })
    const probe = "try { require('chatgpt-native'); console.log('loaded') } catch (e) { console.log(e.code, e.message) }"
    const bareRun = await run(process.execPath, ['-e', probe], { cwd: bare, env: userEnv })
    assert.match(bareRun.stdout, new RegExp(`^ERR_CHATGPT_UNSUPPORTED_PLATFORM .*${platformPackage} is not installed`))

    log('passed')
  } finally {
    await registry.close()
    if (process.env.KEEP_TEST_PACKAGE_DIR) log('kept', dir)
    else rmSync(dir, { recursive: true, force: true })
  }
}

await main()
