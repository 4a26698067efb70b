// What the coordination tests need to look into (or tamper with) a test redis-server directly:
// `peer(options)` starts __test__/coordination/peer.mjs, and `redisCommand(port, ...args)` sends
// one command over RESP on a fresh connection and resolves with the parsed reply (an error reply
// rejects).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { createInterface } from 'node:readline'

const PEER = new URL('./peer.mjs', import.meta.url)

/** Parses one RESP reply at `at` in `buf`: `[value, next]`, or null when incomplete. */
function parse(buf, at) {
  const end = buf.indexOf('\r\n', at)
  if (end < 0) return null
  const kind = String.fromCharCode(buf[at])
  const line = buf.toString('utf8', at + 1, end)
  if (kind === '+') return [line, end + 2]
  if (kind === '-') return [new Error(line), end + 2]
  if (kind === ':') return [Number(line), end + 2]
  if (kind === '$') {
    const len = Number(line)
    if (len < 0) return [null, end + 2]
    if (buf.length < end + 2 + len + 2) return null
    return [buf.toString('utf8', end + 2, end + 2 + len), end + 2 + len + 2]
  }
  if (kind === '*') {
    const n = Number(line)
    if (n < 0) return [null, end + 2]
    const items = []
    let next = end + 2
    for (let i = 0; i < n; i++) {
      const item = parse(buf, next)
      if (!item) return null
      items.push(item[0])
      next = item[1]
    }
    return [items, next]
  }
  throw new Error(`unexpected RESP reply: ${line}`)
}

/** Runs one Redis command on 127.0.0.1:`port`. */
export function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    const parts = args.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a))))
    socket.on('connect', () => {
      socket.write(`*${parts.length}\r\n`)
      for (const p of parts) {
        socket.write(`$${p.length}\r\n`)
        socket.write(p)
        socket.write('\r\n')
      }
    })
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      const parsed = parse(buf, 0)
      if (!parsed) return
      socket.end()
      if (parsed[0] instanceof Error) reject(parsed[0])
      else resolve(parsed[0])
    })
    socket.on('error', reject)
  })
}

/** A peer process with `options` (ChatGPTAPI's); resolves once it is ready. */
export async function peer(options) {
  const child = spawn(process.execPath, [PEER.pathname, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })
  const next = () =>
    new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`peer exited (${code})`))
      child.once('exit', onExit)
      lines.once('line', (line) => {
        child.off('exit', onExit)
        resolve(line)
      })
    })
  assert.equal(await next(), 'ready')
  const ask = async (command) => {
    const answer = next()
    child.stdin.write(`${JSON.stringify(command)}\n`)
    return JSON.parse(await answer)
  }
  return {
    /**
     * Sends `text` (with `opts`; streamed with `stream`); resolves with
     * `{ ok, text, cached, deltas }` or `{ ok: false, code }`.
     */
    send: (text, opts = {}, stream = false) => ask({ send: text, opts, stream }),
    metrics: () => ask({ metrics: true }),
    stop: () => child.kill(),
  }
}

/** Resolves once the async `predicate` holds (checked every 10 ms), or throws after `limitMs`. */
export async function eventually(predicate, what, limitMs = 5000) {
  const start = Date.now()
  while (!(await predicate())) {
    if (Date.now() - start > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
