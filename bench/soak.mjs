// Soak: many requests through ONE ChatGPTAPI instance against the bundled simulator, with about
// 5% scripted faults (500s, 429s with retry-after-ms, resets, malformed chunks, mid-stream
// disconnects, stalls caught by small idle/attempt timeouts, error events, truncated streams),
// streaming and non-streaming calls, some cache hits, and some aborts (from inside onProgress or
// after a random delay), at bounded concurrency. Every outcome is classified: completed (text
// checked against the simulator's deterministic answer), failed by code, aborted, and
// "unexplained" (a rejection that is not a ChatGPTError with a code this load can produce, wrong
// text, deltas that do not add up, a partialText that is not a prefix of the answer, or a call
// that does not settle): that count must be 0. RSS is sampled at start, after warm-up and at the
// end, and the load runs in a child process so the parent can measure whether it exits by itself
// once the work is done and the simulator closed.
//   node bench/soak.mjs [requests=100000] [concurrency=64]
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const REQUESTS = Number(process.argv.find((a, i) => i >= 2 && /^\d+$/.test(a)) ?? 100_000)
const CONCURRENCY = Number(process.argv.filter((a, i) => i >= 2 && /^\d+$/.test(a))[1] ?? 64)
/** How long the child may take to exit after its last line before it counts as hanging. */
const EXIT_GRACE_MS = 10_000

if (process.argv.includes('--child')) {
  await child()
} else {
  await parent()
}

// --- Parent: spawn the load, then time the child's exit -----------------------------------------

async function parent() {
  const script = fileURLToPath(import.meta.url)
  const proc = spawn(process.execPath, ['--expose-gc', script, '--child', String(REQUESTS), String(CONCURRENCY)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let buffered = ''
  let result
  let doneAt
  let killer
  proc.stdout.on('data', (data) => {
    buffered += data
    const match = buffered.match(/^SOAK_RESULT (.*)$/m)
    if (match && !result) {
      result = JSON.parse(match[1])
      doneAt = performance.now()
      // The child has nothing left to do: it must exit on its own well within this.
      killer = setTimeout(() => proc.kill('SIGKILL'), EXIT_GRACE_MS)
    }
  })
  const { code, signal, exitMs } = await new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      clearTimeout(killer)
      resolve({ code, signal, exitMs: doneAt === undefined ? undefined : performance.now() - doneAt })
    })
  })
  if (!result) {
    console.error(`The soak child ended without a result (exit code ${code}, signal ${signal}).`)
    process.exit(1)
  }
  const exited = signal === null ? `yes, ${Math.round(exitMs)} ms after its last line (exit code ${code})` : `no: killed after ${EXIT_GRACE_MS} ms`
  print(result, exited)
  process.exit(result.unexplained === 0 && signal === null && code === 0 ? 0 : 1)
}

function print(r, exited) {
  const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`
  // V8 grows its young generation's semi-spaces (up to 16 MiB each) as the allocation rate
  // demands, which raises RSS in steps that have nothing to do with what the addon holds; RSS
  // less the heap's reserved space is the native side alone.
  const native = (m) => m.rss - m.heapTotal
  const pct = (a, b) => `${(((a - b) / b) * 100).toFixed(1)}%`
  const lines = [
    `### Soak: ${r.requests.toLocaleString('en-US')} requests, concurrency ${r.concurrency}`,
    '',
    '| measure | value |',
    '| --- | --- |',
    `| elapsed | ${(r.elapsedMs / 1000).toFixed(1)} s (${Math.round(r.requests / (r.elapsedMs / 1000))} requests/s) |`,
    `| completed (text checked) | ${r.completed} (streamed ${r.completedStreamed}, answered without a request of their own ${r.cached}) |`,
    `| failed | ${r.failed} |`,
    ...Object.entries(r.failedByCode)
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => `| &nbsp;&nbsp;${code} | ${n} |`),
    `| aborted | ${r.aborted} (of ${r.abortsArmed} calls given an abort) |`,
    `| **unexplained** | **${r.unexplained}** |`,
    `| faults queued / injected by the simulator | ${r.faultsQueued} / ${r.sim.faultsInjected} |`,
    `| HTTP requests received / client attempts / retries | ${r.sim.chatRequests} / ${r.metrics.attempts} / ${r.metrics.retries} |`,
    `| left running after the load (client in flight, queued; simulator in flight) | ${r.left.clientInFlight}, ${r.left.clientQueued}; ${r.left.simInFlight} |`,
    `| RSS at start | ${mib(r.memory.start.rss)} |`,
    `| RSS after warm-up (${r.warmup.toLocaleString('en-US')} requests) | ${mib(r.memory.warm.rss)} |`,
    `| RSS at end | ${mib(r.memory.end.rss)} (${pct(r.memory.end.rss, r.memory.warm.rss)} from warm-up) |`,
    `| RSS less the V8 heap's reserved space: after warm-up, at end | ${mib(native(r.memory.warm))}, ${mib(native(r.memory.end))} (${pct(native(r.memory.end), native(r.memory.warm))}) |`,
    `| RSS every 10% | ${r.memory.samples.map((m) => mib(m.rss)).join(', ')} |`,
    `| V8 heap reserved every 10% | ${r.memory.samples.map((m) => mib(m.heapTotal)).join(', ')} |`,
    `| V8 heap in use every 10% | ${r.memory.samples.map((m) => mib(m.heapUsed)).join(', ')} |`,
    `| process exits by itself | ${exited} |`,
  ]
  if (r.unexplainedSamples.length > 0) {
    lines.push('', 'Unexplained outcomes (first few):', '', ...r.unexplainedSamples.map((s) => `- ${s}`))
  }
  console.log(lines.join('\n'))
}

// --- Child: the load ----------------------------------------------------------------------------

async function child() {
  const { ChatGPTAPI, ChatGPTError, ChatGPTSimulator } = await import('../index.js')
  const gc = globalThis.gc ?? (() => {})
  /** RSS, with the V8 heap in use and reserved after a full GC: the heap figures tell growth of
   * JavaScript objects, and of the space V8 keeps for them, from native growth. */
  const memory = () => {
    gc()
    const { rss, heapUsed, heapTotal } = process.memoryUsage()
    return { rss, heapUsed, heapTotal }
  }

  // Deterministic randomness, so a run can be repeated.
  let seed = 0x9e3779b9
  const random = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    return seed / 2 ** 32
  }
  const randomInt = (n) => Math.floor(random() * n)

  /** Codes this load can produce; anything else is unexplained. */
  const EXPECTED_CODES = new Set([
    'ERR_CHATGPT_HTTP',
    'ERR_CHATGPT_RATE_LIMITED',
    'ERR_CHATGPT_TIMEOUT',
    'ERR_CHATGPT_NETWORK',
    'ERR_CHATGPT_BAD_RESPONSE',
    'ERR_CHATGPT_STREAM_INCOMPLETE',
    'ERR_CHATGPT_STREAM_ERROR',
    'ERR_CHATGPT_STREAM_INTERRUPTED',
    'ERR_CHATGPT_CIRCUIT_OPEN',
  ])
  const FAULT_RATE = 0.05
  const ABORT_RATE = 0.01
  const STREAM_SHARE = 0.5
  const CACHE_SHARE = 0.1
  const PROMPTS = 500
  const TIMEOUT_MS = 10_000
  /** A call still unsettled this long after its deadline counts as hanging. */
  const WATCHDOG_MS = TIMEOUT_MS + 10_000

  /** One of the scripted faults, weighted roughly as they appear in the wild. */
  const randomFault = () => {
    const roll = random()
    if (roll < 0.25) return { kind: 'status', status: [500, 502, 503][randomInt(3)] }
    if (roll < 0.4) return { kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: String(5 + randomInt(20)) }
    if (roll < 0.55) return { kind: 'reset' }
    if (roll < 0.65) return { kind: 'malformed', afterChunks: randomInt(4) }
    if (roll < 0.8) return { kind: 'disconnect', afterChunks: randomInt(5) }
    if (roll < 0.9) return { kind: 'stall', afterChunks: randomInt(4) }
    if (roll < 0.95) return { kind: 'errorEvent', afterChunks: randomInt(3), type: 'server_error', message: 'overloaded' }
    return { kind: 'truncate', afterChunks: randomInt(4) }
  }

  const memoryStart = memory()
  const sim = await ChatGPTSimulator.start({ ttftMs: 2, tokenDelayMs: 1, responseTokens: 8 })
  const api = new ChatGPTAPI({
    apiKey: 'sk-soak',
    apiBaseUrl: sim.url,
    systemMessage: '',
    completionParams: { model: 'sim-gpt' },
    maxRetries: 2,
    retryBaseMs: 5,
    retryMaxMs: 50,
    timeoutMs: TIMEOUT_MS,
    attemptTimeoutMs: 500,
    idleTimeoutMs: 100,
    // On, so that the CACHE_SHARE of calls that do not opt out may be answered from it.
    cache: true,
  })

  // The simulator's answer to each prompt, learned without faults, is what every later reply
  // must say.
  const prompts = Array.from({ length: PROMPTS }, (_, i) => `Soak prompt ${i}: tell me something about number ${i * 7919}`)
  const expected = []
  for (const prompt of prompts) expected.push((await api.sendMessage(prompt, { cache: false })).text)
  api.resetMetrics()
  sim.resetStats()

  const counts = {
    completed: 0,
    completedStreamed: 0,
    cached: 0,
    failed: 0,
    failedByCode: {},
    aborted: 0,
    abortsArmed: 0,
    unexplained: 0,
    faultsQueued: 0,
  }
  const unexplainedSamples = []
  const unexplained = (what) => {
    counts.unexplained++
    if (unexplainedSamples.length < 10) unexplainedSamples.push(what)
  }

  async function one(i) {
    const prompt = i % PROMPTS
    const want = expected[prompt]
    const streaming = random() < STREAM_SHARE
    const abortKind = random() < ABORT_RATE ? (random() < 0.5 ? 'progress' : 'timer') : undefined
    if (random() < FAULT_RATE) {
      sim.enqueueFault(randomFault())
      counts.faultsQueued++
    }
    const options = {}
    if (random() >= CACHE_SHARE) options.cache = false
    const controller = abortKind ? new AbortController() : undefined
    if (controller) {
      counts.abortsArmed++
      options.abortSignal = controller.signal
    }
    let streamed = ''
    let deltaProblem
    if (streaming || abortKind === 'progress') {
      const abortAfter = 1 + randomInt(7)
      let calls = 0
      options.onProgress = (partial) => {
        streamed += partial.delta
        if (partial.text !== streamed && !deltaProblem) deltaProblem = `partial.text ${JSON.stringify(partial.text)} is not the sum of the deltas ${JSON.stringify(streamed)}`
        if (abortKind === 'progress' && ++calls === abortAfter) controller.abort()
      }
    }
    const timer = abortKind === 'timer' ? setTimeout(() => controller.abort(), randomInt(30)) : undefined
    let watchdog
    const hung = new Promise((resolve) => {
      watchdog = setTimeout(() => resolve('hung'), WATCHDOG_MS)
    })
    try {
      const reply = await Promise.race([api.sendMessage(prompts[prompt], options), hung])
      if (reply === 'hung') return unexplained(`call ${i} did not settle within ${WATCHDOG_MS} ms`)
      if (reply.text !== want) return unexplained(`call ${i}: text ${JSON.stringify(reply.text)}, expected ${JSON.stringify(want)}`)
      if (options.onProgress && streamed !== reply.text) return unexplained(`call ${i}: deltas ${JSON.stringify(streamed)} do not add up to the text`)
      if (deltaProblem) return unexplained(`call ${i}: ${deltaProblem}`)
      counts.completed++
      if (options.onProgress) counts.completedStreamed++
      if (reply.cached) counts.cached++
    } catch (err) {
      const isAbort = err?.code === 'ABORT_ERR' && err?.name === 'AbortError'
      if (isAbort && controller) {
        counts.aborted++
      } else if (err instanceof ChatGPTError && EXPECTED_CODES.has(err.code)) {
        counts.failed++
        counts.failedByCode[err.code] = (counts.failedByCode[err.code] ?? 0) + 1
      } else {
        return unexplained(`call ${i}: ${err?.name} ${err?.code ?? ''} ${err?.message ?? err}`)
      }
      if (err.partialText !== undefined && !want.startsWith(err.partialText)) {
        return unexplained(`call ${i}: ${err.code} partialText ${JSON.stringify(err.partialText)} is not a prefix of the answer`)
      }
      if (err.code === 'ERR_CHATGPT_STREAM_INTERRUPTED' && err.partialText !== streamed) {
        return unexplained(`call ${i}: ${err.code} partialText ${JSON.stringify(err.partialText)} differs from the deltas ${JSON.stringify(streamed)}`)
      }
      if (deltaProblem) return unexplained(`call ${i}: ${deltaProblem}`)
    } finally {
      clearTimeout(timer)
      clearTimeout(watchdog)
    }
  }

  const warmup = Math.min(10_000, Math.floor(REQUESTS / 10))
  const samples = []
  let memoryWarm = memoryStart
  let next = 0
  let done = 0
  const started = performance.now()
  async function worker() {
    while (next < REQUESTS) {
      const i = next++
      await one(i)
      done++
      if (done === warmup) memoryWarm = memory()
      if (done % Math.max(1, Math.floor(REQUESTS / 10)) === 0) {
        samples.push(memory())
        const seconds = (performance.now() - started) / 1000
        process.stderr.write(`soak: ${done}/${REQUESTS} in ${seconds.toFixed(1)} s, unexplained ${counts.unexplained}, rss ${(samples.at(-1).rss / 1048576).toFixed(1)} MiB\n`)
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const elapsedMs = performance.now() - started

  // What is still running once every call settled: nothing, in the client or at the server (the
  // server notices a client that went away within a moment).
  const metrics = api.metrics()
  const quietBy = Date.now() + 2000
  while (sim.stats().inFlight > 0 && Date.now() < quietBy) await new Promise((resolve) => setTimeout(resolve, 10))
  const left = { clientInFlight: metrics.inFlight, clientQueued: metrics.queued, simInFlight: sim.stats().inFlight }
  const simStats = sim.stats()
  await sim.close()
  const memoryEnd = memory()

  const result = {
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    warmup,
    elapsedMs,
    ...counts,
    unexplainedSamples,
    left,
    sim: { chatRequests: simStats.chatRequests, faultsInjected: simStats.faultsInjected },
    metrics: { attempts: metrics.attempts, retries: metrics.retries },
    memory: { start: memoryStart, warm: memoryWarm, end: memoryEnd, samples },
  }
  process.stdout.write(`SOAK_RESULT ${JSON.stringify(result)}\n`)
  // Nothing else: the process must now exit on its own, which the parent measures.
}
