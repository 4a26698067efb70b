// A pinned redis-server for the tests, installed without root: the Debian packages of the pinned
// versions are fetched with `apt-get download` (from the machine's configured package sources)
// and unpacked with `dpkg-deb -x` into .redis/ (git-ignored), libraries included, so nothing is
// installed system-wide. `node scripts/redis.mjs` installs it (when missing or when a pin
// changed) and prints the binary's path; `.ci/run` runs it before `npm test`, and the tests call
// `ensureRedis()` themselves so a plain `npm test` works too. `startRedis()` starts a throwaway
// server on 127.0.0.1 on a free port with a temporary directory and no persistence (optionally
// speaking only TLS); `startRedisCluster()` starts three such servers as a Redis Cluster.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const REDIS_DIR = join(ROOT, '.redis')
/** The Debian packages, at exact versions: the server and the two libraries Debian's build links. */
export const REDIS_PACKAGES = [
  'redis-server=5:7.0.15-1~deb12u7',
  'redis-tools=5:7.0.15-1~deb12u7',
  'liblzf1=3.6-3',
  'libjemalloc2=5.3.0-1',
]
const STAMP = join(REDIS_DIR, 'installed.txt')
const READY_TIMEOUT_MS = 10_000

/** Where the unpacked binary is and the library directories it needs. */
export function redisPaths() {
  const libRoot = join(REDIS_DIR, 'usr', 'lib')
  const libDirs = existsSync(libRoot)
    ? [libRoot, ...readdirSync(libRoot, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(libRoot, d.name))]
    : []
  return {
    server: join(REDIS_DIR, 'usr', 'bin', 'redis-server'),
    cli: join(REDIS_DIR, 'usr', 'bin', 'redis-cli'),
    libDirs,
  }
}

/** The environment redis-server runs with: its unpacked libraries first. */
export function redisEnv() {
  const { libDirs } = redisPaths()
  const existing = process.env.LD_LIBRARY_PATH ? [process.env.LD_LIBRARY_PATH] : []
  return { ...process.env, LD_LIBRARY_PATH: [...libDirs, ...existing].join(':') }
}

/** Installs the pinned redis-server into .redis/ unless it is there already; returns its path. */
export function ensureRedis() {
  const wanted = REDIS_PACKAGES.join('\n')
  const { server } = redisPaths()
  if (existsSync(server) && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === wanted) return server
  rmSync(REDIS_DIR, { recursive: true, force: true })
  const debs = join(REDIS_DIR, 'debs')
  mkdirSync(debs, { recursive: true })
  try {
    execFileSync('apt-get', ['download', ...REDIS_PACKAGES], { cwd: debs, stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    throw new Error(`could not fetch redis-server (${REDIS_PACKAGES.join(' ')}) with apt-get download: ${err.stderr || err.message}`)
  }
  for (const deb of readdirSync(debs).filter((f) => f.endsWith('.deb'))) {
    execFileSync('dpkg-deb', ['-x', join(debs, deb), REDIS_DIR])
  }
  rmSync(debs, { recursive: true, force: true })
  // Fails here, with the loader's message, if a library is still missing.
  const version = execFileSync(server, ['--version'], { env: redisEnv(), encoding: 'utf8' })
  if (!version.includes('v=7.0.15')) throw new Error(`unexpected redis-server: ${version}`)
  writeFileSync(STAMP, wanted)
  return server
}

/** A free TCP port on 127.0.0.1 (free when this returns; the server binds it next). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolvePort(port))
    })
  })
}

/**
 * Starts redis-server on 127.0.0.1 (`port`, or a free one) in a temporary directory (`dir`, or a
 * new one), without persistence. Resolves once it accepts connections, with
 * `{ port, url, dir, stop(), kill(), restart() }`: `stop()` kills it (SIGKILL: nothing to save)
 * and removes the directory, and is safe to call twice; `kill()` kills it and keeps the
 * directory, and `restart()` starts it again on the same port and directory (a cluster node
 * finds its nodes.conf there).
 *
 * `tls: { certFile, keyFile, caFile }` makes it speak only TLS on the port (clients need not
 * present a certificate; the URL is `rediss://`). `args` are further redis-server arguments.
 */
export async function startRedis({ port, tls, args: extra = [], password } = {}) {
  const server = ensureRedis()
  port ??= await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'chatgpt-native-redis-'))
  const listen = tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile,
        '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(port)]
  const args = [...listen, '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    ...(password ? ['--requirepass', password] : []), ...extra]
  let running = await spawnRedis(server, args)
  const kill = () => running.kill()
  return {
    port,
    dir,
    url: `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    kill,
    async restart() {
      await kill()
      running = await spawnRedis(server, args)
    },
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Runs redis-server with `args` until it is ready; resolves with `{ kill() }`. */
async function spawnRedis(server, args) {
  const child = spawn(server, args, { env: redisEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const exited = new Promise((resolveExit) => child.once('exit', resolveExit))
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  const ready = new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within ${READY_TIMEOUT_MS} ms:\n${output}`)), READY_TIMEOUT_MS)
    const onData = (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolveReady()
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', (chunk) => (output += chunk))
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited (${signal ?? code}) before it was ready:\n${output}`))
    })
  })
  try {
    await ready
  } catch (err) {
    await kill()
    throw err
  }
  // Keep draining output so a chatty server never blocks on a full pipe.
  child.stdout.resume()
  return { kill }
}

/** A free port whose Redis Cluster bus port (port + 10000) is free too. */
async function freeClusterPort() {
  for (;;) {
    const port = await freePort()
    if (port > 65535 - 10000) continue
    const busFree = await new Promise((resolveFree) => {
      const probe = net.createServer()
      probe.once('error', () => resolveFree(false))
      probe.listen(port + 10000, '127.0.0.1', () => probe.close(() => resolveFree(true)))
    })
    if (busFree) return port
  }
}

/**
 * Runs the pinned redis-cli with `args`; its output. Killed after `READY_TIMEOUT_MS`
 * (`--cluster create` waits for the nodes to join for as long as it takes).
 */
export function redisCli(args) {
  return execFileSync(redisPaths().cli, args, {
    env: redisEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: READY_TIMEOUT_MS,
  })
}

/**
 * Starts a Redis Cluster of three masters (no replicas) on 127.0.0.1, joined with
 * `redis-cli --cluster create`, and resolves once every node says `cluster_state:ok`, with
 * `{ nodes, urls, waitUntilOk(), stop() }` (each node as `startRedis` gives it).
 */
export async function startRedisCluster() {
  const nodes = []
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(await startRedis({ port: await freeClusterPort(), args: ['--cluster-enabled', 'yes'] }))
    }
    redisCli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'])
    const waitUntilOk = async () => {
      const started = Date.now()
      for (const node of nodes) {
        while (!redisCli(['-p', String(node.port), 'cluster', 'info']).includes('cluster_state:ok')) {
          if (Date.now() - started > 2 * READY_TIMEOUT_MS) throw new Error('the Redis Cluster did not become ok')
          await new Promise((resolveWait) => setTimeout(resolveWait, 50))
        }
      }
    }
    await waitUntilOk()
    return {
      nodes,
      urls: nodes.map((n) => n.url),
      waitUntilOk,
      stop: () => Promise.all(nodes.map((n) => n.stop())),
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()))
    throw err
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureRedis())
}
