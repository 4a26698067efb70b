// npm run test:interop: runs interop/client.test.mjs against two OpenAI-compatible servers this
// project did not write, the LiteLLM proxy and aimock (interop/servers.mjs has their versions and
// configuration). On the first run, or when a pinned version changed, it installs them into
// .interop/ (git-ignored): LiteLLM into a virtual environment made with `python3 -m venv`, from
// interop/litellm-requirements.txt (every package at an exact version), and aimock with npm, at
// its exact version (it has no dependencies). Both installs run at once. It then starts each
// server on 127.0.0.1 on a free port (LiteLLM with a master key made for this run), waits for
// each to answer its health check (with a deadline), runs the suite once against both, and stops
// the servers however the run ends (success, failure, Ctrl-C). Logs are in .interop/logs/.
// Needs `python3` (3.10 to 3.14, as litellm requires, with the venv module; PYTHON names another
// interpreter) and the registries on the first run.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import {
  AIMOCK_FIXTURES,
  AIMOCK_VERSION,
  LITELLM_REQUIREMENTS,
  LITELLM_VERSION,
  litellmConfig,
} from '../interop/servers.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const DIR = join(ROOT, '.interop')
const LOGS = join(DIR, 'logs')
const VENV = join(DIR, 'litellm')
const AIMOCK_DIR = join(DIR, 'aimock')
const AIMOCK_CLI = join(AIMOCK_DIR, 'node_modules', '@copilotkit', 'aimock', 'dist', 'cli.js')
const LITELLM_BIN = process.platform === 'win32' ? join(VENV, 'Scripts', 'litellm.exe') : join(VENV, 'bin', 'litellm')
const PIP = process.platform === 'win32' ? join(VENV, 'Scripts', 'pip.exe') : join(VENV, 'bin', 'pip')

const INSTALL_TIMEOUT_MS = 8 * 60_000
// LiteLLM imports a great deal at start-up: tens of seconds on a busy 2-core machine.
const READY_TIMEOUT_MS = 3 * 60_000
const SUITE_TIMEOUT_MS = 5 * 60_000
const STOP_GRACE_MS = 5_000

const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`
const log = (line) => console.log(`[interop ${elapsed()}] ${line}`)

/** Children still running, stopped by `stopAll` on every way out. */
const children = new Set()

/** Runs a command to completion with its output in `logName`; rejects on a non-zero exit or the deadline. */
function run(command, args, { logName, env, timeoutMs = INSTALL_TIMEOUT_MS }) {
  const out = createWriteStream(join(LOGS, logName), { flags: 'a' })
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    children.add(child)
    child.stdout.pipe(out)
    child.stderr.pipe(out)
    const timer = setTimeout(() => {
      stop(child)
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs / 1000} s (see .interop/logs/${logName})`))
    }, timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      children.delete(child)
      reject(new Error(`cannot run ${command}: ${err.message}`))
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (code === 0) resolvePromise()
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}); see .interop/logs/${logName}:\n${tail(logName)}`))
    })
  })
}

function tail(logName, lines = 30) {
  try {
    return readFileSync(join(LOGS, logName), 'utf8').split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Installs into `dir` unless its stamp says `version` is there already; a half install is redone. */
async function installOnce(dir, version, install) {
  const stamp = join(dir, '.installed')
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === version) return false
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  await install()
  writeFileSync(stamp, version)
  return true
}

async function installLitellm() {
  const requirements = readFileSync(LITELLM_REQUIREMENTS, 'utf8')
  if (!requirements.includes(`litellm[proxy]==${LITELLM_VERSION}\n`)) {
    throw new Error(`interop/litellm-requirements.txt does not pin litellm[proxy]==${LITELLM_VERSION}`)
  }
  // The stamp covers the whole requirements file, so changing any pin reinstalls.
  const installed = await installOnce(VENV, requirements, async () => {
    const t = Date.now()
    await run(process.env.PYTHON ?? 'python3', ['-m', 'venv', VENV], { logName: 'install-litellm.log' })
    await run(PIP, ['install', '--no-compile', '--no-input', '--quiet', '-r', LITELLM_REQUIREMENTS], {
      logName: 'install-litellm.log',
      env: { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_WARN_SCRIPT_LOCATION: '1' },
    })
    log(`installed litellm[proxy] ${LITELLM_VERSION} in ${((Date.now() - t) / 1000).toFixed(1)} s`)
  })
  if (!installed) log(`litellm[proxy] ${LITELLM_VERSION} already installed`)
}

async function installAimock() {
  const installed = await installOnce(AIMOCK_DIR, AIMOCK_VERSION, async () => {
    const t = Date.now()
    // Through the npm that runs this script when there is one (npm run), else npm on PATH.
    const npm = process.env.npm_execpath
      ? [process.execPath, [process.env.npm_execpath]]
      : [process.platform === 'win32' ? 'npm.cmd' : 'npm', []]
    await run(
      npm[0],
      [...npm[1], 'install', '--prefix', AIMOCK_DIR, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', `@copilotkit/aimock@${AIMOCK_VERSION}`],
      { logName: 'install-aimock.log' },
    )
    log(`installed @copilotkit/aimock ${AIMOCK_VERSION} in ${((Date.now() - t) / 1000).toFixed(1)} s`)
  })
  if (!installed) log(`@copilotkit/aimock ${AIMOCK_VERSION} already installed`)
}

/** A port free on 127.0.0.1 now (the server is started on it right after). */
function freePort() {
  return new Promise((resolvePromise, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolvePromise(port))
    })
  })
}

/** Starts a long-running server in its own process group, output to `logName`. */
function startServer(command, args, { logName, env }) {
  const out = createWriteStream(join(LOGS, logName))
  const child = spawn(command, args, { cwd: DIR, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  children.add(child)
  child.stdout.pipe(out)
  child.stderr.pipe(out)
  child.on('exit', () => children.delete(child))
  child.on('error', () => children.delete(child))
  return child
}

/** Polls `url` until it answers 200, the process exits, or the deadline passes. */
async function waitReady(name, child, url, logName) {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited before it was ready; .interop/logs/${logName}:\n${tail(logName)}`)
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      if (res.ok) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`${name} was not ready within ${READY_TIMEOUT_MS / 1000} s; .interop/logs/${logName}:\n${tail(logName)}`)
}

/** Stops a child and everything it started (its process group): SIGTERM, then SIGKILL. */
function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  const signal = (sig) => {
    try {
      process.kill(-child.pid, sig)
    } catch {
      try {
        child.kill(sig)
      } catch {
        // already gone
      }
    }
  }
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => {
      signal('SIGKILL')
      resolvePromise()
    }, STOP_GRACE_MS)
    child.once('exit', () => {
      clearTimeout(timer)
      resolvePromise()
    })
    signal('SIGTERM')
  })
}

async function stopAll() {
  await Promise.all([...children].map(stop))
}

let stopping = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (stopping) return
    stopping = true
    log(`${sig}: stopping the servers`)
    stopAll().finally(() => process.exit(130))
  })
}

async function main() {
  mkdirSync(LOGS, { recursive: true })
  await Promise.all([installLitellm(), installAimock()])
  log('installed')

  const [litellmPort, aimockPort] = [await freePort(), await freePort()]
  const aimockUrl = `http://127.0.0.1:${aimockPort}`
  const litellmUrl = `http://127.0.0.1:${litellmPort}`
  // Made for this run; never written to the project. LiteLLM wants one of 32 characters or more.
  const apiKey = `sk-interop-${randomBytes(24).toString('hex')}`
  // aimock accepts a second key, for the suite's key-pool retry.
  const spareKey = `sk-interop-${randomBytes(24).toString('hex')}`

  const aimock = startServer(process.execPath, [AIMOCK_CLI, '--host', '127.0.0.1', '--port', String(aimockPort), '--fixtures', AIMOCK_FIXTURES, '--log-level', 'warn'], {
    logName: 'aimock.log',
    env: { AIMOCK_API_KEYS: `${apiKey},${spareKey}` },
  })
  const configPath = join(DIR, 'litellm-config.json')
  writeFileSync(configPath, JSON.stringify(litellmConfig({ aimockUrl }), null, 2))
  const litellm = startServer(LITELLM_BIN, ['--config', configPath, '--host', '127.0.0.1', '--port', String(litellmPort), '--num_workers', '1'], {
    logName: 'litellm.log',
    env: {
      LITELLM_MASTER_KEY: apiKey,
      INTEROP_UPSTREAM_KEY: apiKey,
      LITELLM_LOCAL_MODEL_COST_MAP: 'True',
      LITELLM_TELEMETRY: 'False',
      // The upstream (aimock, for `upstream-tools`) is on loopback: no proxy in between.
      NO_PROXY: '127.0.0.1,localhost',
      no_proxy: '127.0.0.1,localhost',
      PYTHONUNBUFFERED: '1',
    },
  })
  await Promise.all([
    waitReady('aimock', aimock, `${aimockUrl}/health`, 'aimock.log'),
    waitReady('LiteLLM', litellm, `${litellmUrl}/health/readiness`, 'litellm.log'),
  ])
  log(`servers ready: LiteLLM ${LITELLM_VERSION} at ${litellmUrl}, aimock ${AIMOCK_VERSION} at ${aimockUrl}`)

  const servers = [
    { id: 'litellm', url: litellmUrl, apiKey },
    { id: 'aimock', url: aimockUrl, apiKey, spareKey },
  ]
  const suite = spawn(process.execPath, ['--test', '--test-reporter=spec', join('interop', 'client.test.mjs')], {
    cwd: ROOT,
    env: { ...process.env, INTEROP_SERVERS: JSON.stringify(servers) },
    stdio: 'inherit',
  })
  children.add(suite)
  const timer = setTimeout(() => {
    log(`the suite did not finish within ${SUITE_TIMEOUT_MS / 1000} s`)
    stop(suite)
  }, SUITE_TIMEOUT_MS)
  const code = await new Promise((r) => suite.on('exit', (c, s) => r(c ?? (s ? 1 : 0))))
  clearTimeout(timer)
  children.delete(suite)
  return code
}

let code = 1
try {
  code = await main()
} catch (err) {
  console.error(`[interop ${elapsed()}] ${err.message}`)
  code = 1
} finally {
  await stopAll()
}
log(`done (exit ${code})`)
process.exit(code)
