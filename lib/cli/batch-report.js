// What `chatgpt-native batch` reports: the running tally of a run, the live progress (a
// cli-progress bar on a terminal, plain periodic lines elsewhere) and the load-test table at the
// end (or the same as JSON).
//
// The counts, latencies and tokens come from the run itself (each call's outcome and its reply's
// `usage`); retries, 429s received and cache hits come from the client's `metrics()`, which is
// where the library counts what happens inside a call.
'use strict'

const { performance } = require('node:perf_hooks')

/** How far back the live requests- and tokens-per-minute rates look (short: they are live). */
const RATE_WINDOW_MS = 10_000

/** The tally of one run. */
class Tally {
  constructor({ lines, skipped }) {
    /** Request lines in the input (blank lines not counted). */
    this.lines = lines
    /** Lines an earlier run already answered, not sent again. */
    this.skipped = skipped
    this.succeeded = 0
    this.failed = 0
    this.failuresByCode = {}
    /** Lines whose call was cut short by Ctrl-C (no record written: the next run sends them). */
    this.interrupted = 0
    this.tokensIn = 0
    this.tokensOut = 0
    /** Latency of each finished call (ms), from the call's start to its reply or error. */
    this.latenciesMs = []
    this.startedAt = performance.now()
    this.endedAt = undefined
    /** Recent completions, `{ at, tokens }`, for the live rates. */
    this.recent = []
  }

  /** Lines this run is to answer. */
  get toRun() {
    return Math.max(0, this.lines - this.skipped)
  }

  get finished() {
    return this.succeeded + this.failed
  }

  success(usage, latencyMs) {
    this.succeeded += 1
    const tokens = (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0)
    this.tokensIn += usage?.promptTokens ?? 0
    this.tokensOut += usage?.completionTokens ?? 0
    this.latenciesMs.push(latencyMs)
    this.recent.push({ at: performance.now(), tokens })
  }

  failure(code, latencyMs) {
    this.failed += 1
    this.failuresByCode[code] = (this.failuresByCode[code] ?? 0) + 1
    if (latencyMs !== undefined) {
      this.latenciesMs.push(latencyMs)
      this.recent.push({ at: performance.now(), tokens: 0 })
    }
  }

  /** Requests and tokens per minute over the last RATE_WINDOW_MS (or since the start, if shorter). */
  rates() {
    const now = performance.now()
    while (this.recent.length > 0 && now - this.recent[0].at > RATE_WINDOW_MS) this.recent.shift()
    const spanMs = Math.min(RATE_WINDOW_MS, Math.max(1, now - this.startedAt))
    const tokens = this.recent.reduce((sum, r) => sum + r.tokens, 0)
    return { rpm: (this.recent.length * 60_000) / spanMs, tpm: (tokens * 60_000) / spanMs }
  }

  end() {
    this.endedAt = performance.now()
  }
}

/** The `q` quantile (0 < q <= 1) of sorted numbers, nearest rank; 0 for none. */
function quantile(sorted, q) {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

const round = (n, digits = 0) => Number(n.toFixed(digits))

/**
 * The load-test summary of a finished run: the table's numbers, as `--json` prints them.
 * `metrics` is the client's `metrics()`; `limits` the `--rpm` / `--tpm` given.
 */
function summarize(tally, metrics, limits) {
  const elapsedMs = Math.max(1, (tally.endedAt ?? performance.now()) - tally.startedAt)
  const minutes = elapsedMs / 60_000
  const sorted = [...tally.latenciesMs].sort((a, b) => a - b)
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : 0
  const finished = tally.finished
  const tokensUsed = tally.tokensIn + tally.tokensOut
  return {
    lines: tally.lines,
    skipped: tally.skipped,
    requests: finished,
    succeeded: tally.succeeded,
    failed: tally.failed,
    failuresByCode: tally.failuresByCode,
    interrupted: tally.interrupted,
    elapsedSeconds: round(elapsedMs / 1000, 3),
    latencyMs: {
      avg: round(mean, 1),
      p50: round(quantile(sorted, 0.5), 1),
      p95: round(quantile(sorted, 0.95), 1),
      p99: round(quantile(sorted, 0.99), 1),
      max: round(sorted.length ? sorted[sorted.length - 1] : 0, 1),
    },
    qps: round(finished / (elapsedMs / 1000), 3),
    requestsPerMinute: round(finished / minutes, 1),
    errorRate: finished ? round(tally.failed / finished, 6) : 0,
    attempts: metrics.attempts,
    retries: metrics.retries,
    rateLimitedResponses: metrics.rateLimitedResponses,
    cacheHits: metrics.cacheHits,
    tokensIn: tally.tokensIn,
    tokensOut: tally.tokensOut,
    tokensPerMinute: round(tokensUsed / minutes, 1),
    rpmLimit: limits.rpm ?? null,
    tpmLimit: limits.tpm ?? null,
    // Used over the limit times the elapsed minutes. HTTP attempts count (a retry spends a request
    // of the budget too). A limit's bucket starts full (a minute's worth, at OpenAI as in the
    // client's own limiter), so a run of a few minutes that starts with full buckets can read
    // above 100%; over a long run the figure tends to the steady rate over the limit.
    requestUtilization: limits.rpm ? round(metrics.attempts / (limits.rpm * minutes), 4) : null,
    tokenUtilization: limits.tpm ? round(tokensUsed / (limits.tpm * minutes), 4) : null,
  }
}

const int = (n) => Math.round(n).toLocaleString('en-US')
const pct = (f) => `${(f * 100).toFixed(1)}%`

/** The summary as the table printed at the end of a run. */
function formatTable(s) {
  const rows = [
    ['requests', `${int(s.requests)} of ${int(s.lines)} lines${s.skipped ? ` (${int(s.skipped)} answered before, skipped)` : ''}`],
    ['succeeded', int(s.succeeded)],
    [
      'failed',
      `${int(s.failed)}${s.failed ? ` (${Object.entries(s.failuresByCode).map(([code, n]) => `${code} ${int(n)}`).join(', ')})` : ''}`,
    ],
  ]
  if (s.interrupted) rows.push(['interrupted', `${int(s.interrupted)} (not written: the next run sends them)`])
  rows.push(
    ['elapsed', `${s.elapsedSeconds.toFixed(1)} s`],
    ['latency', `avg ${int(s.latencyMs.avg)} ms, p50 ${int(s.latencyMs.p50)} ms, p95 ${int(s.latencyMs.p95)} ms, p99 ${int(s.latencyMs.p99)} ms`],
    ['QPS', `${s.qps.toFixed(2)} (${int(s.requestsPerMinute)} requests/min)`],
    ['error rate', pct(s.errorRate)],
    ['429s received', int(s.rateLimitedResponses)],
    ['retries', int(s.retries)],
    ['cache hits', int(s.cacheHits)],
    ['tokens in / out', `${int(s.tokensIn)} / ${int(s.tokensOut)} (${int(s.tokensPerMinute)} tokens/min)`],
    ['request utilisation', s.requestUtilization === null ? 'no --rpm limit' : `${pct(s.requestUtilization)} of ${int(s.rpmLimit)} RPM (${int(s.attempts)} attempts)`],
    ['token utilisation', s.tokenUtilization === null ? 'no --tpm limit' : `${pct(s.tokenUtilization)} of ${int(s.tpmLimit)} TPM`],
  )
  const width = Math.max(...rows.map(([name]) => name.length))
  return `${rows.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`).join('\n')}\n`
}

/** A duration in seconds as "1m05s" / "42s". */
function clock(seconds) {
  if (!Number.isFinite(seconds)) return '?'
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}

/**
 * The live progress of a run, on stderr: a cli-progress bar on a terminal (cli-progress is loaded
 * only then), a plain line every `intervalMs` elsewhere (CI logs), nothing with `quiet`.
 * `metrics()` gives the client's retries and its requests in flight and queued.
 */
class Progress {
  constructor({ tally, metrics, limits, intervalMs, quiet }) {
    this.tally = tally
    this.metrics = metrics
    this.limits = limits
    this.bar = null
    this.timer = null
    if (quiet) return
    const stream = process.stderr
    if (stream.isTTY) {
      const { SingleBar } = require('cli-progress')
      this.bar = new SingleBar({
        stream,
        format:
          '{bar} {percentage}% | {value}/{total} | {failed} failed | {retries} retries | {inflight} in flight | {rpm} rpm | {tpm} tpm | ETA {eta}',
        barsize: 20,
        barCompleteChar: '#',
        barIncompleteChar: '-',
        hideCursor: true,
        fps: 5,
      })
      this.bar.start(tally.toRun, 0, this.payload())
      this.timer = setInterval(() => this.bar.update(this.tally.finished, this.payload()), 500)
    } else {
      this.timer = setInterval(() => stream.write(`${this.line()}\n`), intervalMs)
    }
    this.timer.unref()
  }

  payload() {
    const m = this.metrics()
    const { rpm, tpm } = this.tally.rates()
    const left = this.tally.toRun - this.tally.finished
    const limit = (value, max) => (max ? `${int(value)}/${int(max)}` : int(value))
    return {
      failed: int(this.tally.failed),
      retries: int(m.retries),
      inflight: int(m.inFlight + m.queued),
      rpm: limit(rpm, this.limits.rpm),
      tpm: limit(tpm, this.limits.tpm),
      eta: left <= 0 ? '0s' : rpm > 0 ? clock((left / rpm) * 60) : '?',
    }
  }

  /** One plain progress line. */
  line() {
    const p = this.payload()
    const { finished, toRun } = this.tally
    return `batch: ${int(finished)}/${int(toRun)} done, ${p.failed} failed, ${p.retries} retries, ${p.inflight} in flight, ${p.rpm} rpm, ${p.tpm} tpm, eta ${p.eta}`
  }

  /** Called as each line finishes. */
  tick() {
    // The payload (rates, metrics) is refreshed by the timer; this only moves the bar.
    if (this.bar) this.bar.update(this.tally.finished)
  }

  stop() {
    if (this.timer) clearInterval(this.timer)
    if (this.bar) {
      this.bar.update(this.tally.finished, this.payload())
      this.bar.stop()
    }
  }
}

module.exports = { Tally, summarize, formatTable, Progress, quantile }
