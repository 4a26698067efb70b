// A recording HTTP proxy for the parity suite: it sits between a client (chatgpt v5 or
// chatgpt-native) and a ChatGPTSimulator on 127.0.0.1, forwards every request unchanged, streams
// every response back unchanged, and keeps what the two clients are compared on: the method, the
// path, the headers that carry meaning (the authorization scheme, never the key), and the parsed
// JSON body.
import http from 'node:http'

/** Headers compared between the two packages (lower-case, as node:http gives them). */
const RECORDED_HEADERS = ['content-type', 'openai-organization']

/**
 * Starts a proxy in front of `upstreamUrl` (a simulator's `url`, ending in `/v1`). Resolves to
 * `{ url, requests, onRequest, close }`: `url` replaces the simulator's as `apiBaseUrl`;
 * `requests` fills in arrival order; `onRequest(fn)` calls `fn(record)` once a request's body has
 * been read (before it is forwarded), so a test can act on "the server has the request".
 */
export async function startProxy(upstreamUrl) {
  const upstream = new URL(upstreamUrl)
  const requests = []
  const listeners = []
  const sockets = new Set()

  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      const record = {
        method: req.method,
        path: req.url,
        headers: recordedHeaders(req.headers),
        body: parseJson(raw),
      }
      requests.push(record)
      for (const listener of listeners) listener(record)

      const forwarded = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: req.url,
          method: req.method,
          headers: req.headers,
        },
        (upstreamRes) => {
          res.writeHead(upstreamRes.statusCode, upstreamRes.statusMessage, upstreamRes.headers)
          upstreamRes.pipe(res)
          // A response the simulator cut off (a scripted disconnect) is cut off for the client too,
          // rather than ended cleanly.
          upstreamRes.on('error', () => res.destroy())
          upstreamRes.on('close', () => {
            if (!upstreamRes.complete) res.destroy()
          })
        },
      )
      forwarded.on('error', () => res.destroy())
      // A client that gives up (abort, timeout) closes its connection: stop the upstream request too,
      // so the simulator is not left streaming to nobody.
      res.on('close', () => {
        if (!res.writableFinished) forwarded.destroy()
      })
      forwarded.end(raw)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })

  return {
    url: `http://127.0.0.1:${server.address().port}${upstream.pathname}`,
    requests,
    onRequest(fn) {
      listeners.push(fn)
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** The compared headers, with `authorization` reduced to its scheme ("Bearer"). */
function recordedHeaders(headers) {
  const out = {}
  if (typeof headers.authorization === 'string') out.authorization = headers.authorization.split(' ')[0]
  for (const name of RECORDED_HEADERS) {
    if (headers[name] !== undefined) out[name] = headers[name]
  }
  return out
}

function parseJson(raw) {
  if (raw.length === 0) return undefined
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch {
    return { unparsed: raw.toString('utf8') }
  }
}
