// `chatgpt-native batch` run as a child process against simulators started here: ids and order,
// per-line errors, resuming after a kill, rate limits, the summary's numbers against the
// simulator's counters, the cache, and the progress display on and off a terminal.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { startSimulator, clientFor, until, whenIdle } from './helpers.mjs'
import { BIN, completeLines, readRecords, runCli, simEnv, startCli, tempDir } from './cli-helpers.mjs'

let sim
before(async () => {
  sim = await startSimulator({ responseTokens: 6 })
})
after(async () => {
  await sim.close()
})

/** Writes request lines (objects, or strings as they are) to a new input file. */
function inputFile(lines) {
  const file = path.join(tempDir(), 'requests.jsonl')
  writeFileSync(file, `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`)
  return file
}

/** The JSON summary `--json` printed on stdout. */
const summaryOf = (out) => JSON.parse(out.stdout)

test('every line gets a record with its id (or line number) and the answer to its own request', async () => {
  const lines = Array.from({ length: 30 }, (_, i) =>
    i % 2 === 0 ? { id: `q${i}`, text: `question ${i}` } : { messages: [{ role: 'user', content: `question ${i}` }], metadata: { n: i } },
  )
  const input = inputFile(lines)
  const output = path.join(path.dirname(input), 'results.jsonl')
  const out = await runCli(['batch', input, '-o', output, '--concurrency', '16', '--json', '-q'], { env: simEnv(sim) })
  assert.equal(out.code, 0, out.stderr)
  assert.equal(out.stderr, '', 'nothing on stderr with -q (no warning either)')
  const records = readRecords(output)
  assert.equal(records.length, 30)
  const api = clientFor(sim)
  for (const record of records) {
    const i = record.line - 1
    assert.equal(record.id, i % 2 === 0 ? `q${i}` : record.line)
    if (i % 2 === 1) assert.deepEqual(record.metadata, { n: i })
    const expected = await api.sendMessages([{ role: 'user', content: `question ${i}` }])
    assert.equal(record.text, expected.text, `line ${record.line} has its own answer`)
    assert.equal(record.finishReason, 'stop')
    assert.equal(record.usage.completionTokens, 6)
  }
  // Sorted by line, the ids are the input's, in input order, each once.
  const ids = records.sort((a, b) => a.line - b.line).map((r) => r.id)
  assert.deepEqual(
    ids,
    lines.map((l, i) => l.id ?? i + 1),
  )
  assert.equal(summaryOf(out).succeeded, 30)
})

test('bad lines get structured error records and do not stop the job; the exit is 1 with a one-line summary', async () => {
  const input = inputFile([
    { id: 'good-1', text: 'hello' },
    'this is not JSON',
    '[1, 2]',
    { id: 'no-request' },
    { id: 'both', text: 'a', messages: [] },
    { id: { nested: true }, text: 'x' },
    { id: 'stream', text: 'x', stream: true },
    { id: 'bad-n', text: 'x', n: 9 },
    '',
    { id: 'good-2', messages: [{ role: 'user', content: 'bye' }] },
  ])
  const output = path.join(path.dirname(input), 'results.jsonl')
  const out = await runCli(['batch', input, '-o', output, '-q'], { env: simEnv(sim) })
  assert.equal(out.code, 1)
  const stderrLines = out.stderr.trimEnd().split('\n')
  assert.equal(stderrLines.length, 1, out.stderr)
  assert.match(stderrLines[0], /^chatgpt-native batch: 7 of 9 lines failed \(/)
  const byId = new Map(readRecords(output).map((r) => [JSON.stringify(r.id), r]))
  assert.equal(byId.size, 9, 'one record per non-blank line')
  assert.equal(typeof byId.get('"good-1"').text, 'string')
  assert.equal(typeof byId.get('"good-2"').text, 'string')
  assert.equal(byId.get('2').error.code, 'ERR_CHATGPT_MALFORMED_LINE', 'not JSON: the line number is the id')
  assert.equal(byId.get('3').error.code, 'ERR_CHATGPT_MALFORMED_LINE')
  assert.equal(byId.get('"no-request"').error.code, 'ERR_CHATGPT_MALFORMED_LINE')
  assert.equal(byId.get('"both"').error.code, 'ERR_CHATGPT_MALFORMED_LINE')
  assert.equal(byId.get('6').error.code, 'ERR_CHATGPT_MALFORMED_LINE', 'an id that is an object')
  assert.equal(byId.get('"stream"').error.code, 'ERR_CHATGPT_INVALID_ARG')
  const badN = byId.get('"bad-n"').error
  assert.equal(badN.status, 400, 'a server rejection carries its status')
  assert.equal(typeof badN.code, 'string')
  assert.equal(typeof badN.message, 'string')
  assert.equal(byId.get('"good-2"').line, 10, 'line numbers count blank lines')
})

test('a line over 64 MiB becomes an error record without stopping the job; CRLF line ends are read', async () => {
  const dir = tempDir()
  const input = path.join(dir, 'requests.jsonl')
  const long = JSON.stringify({ id: 'long', text: 'x'.repeat(64 * 1024 * 1024) })
  writeFileSync(input, `${JSON.stringify({ id: 'before', text: 'a' })}\r\n${long}\r\n${JSON.stringify({ id: 'after', text: 'b' })}\r\n`)
  const output = path.join(dir, 'results.jsonl')
  const out = await runCli(['batch', input, '-o', output, '-q'], { env: simEnv(sim) })
  assert.equal(out.code, 1)
  const records = readRecords(output)
  assert.deepEqual(records.map((r) => [r.id, r.error?.code ?? 'ok']).sort(), [
    [2, 'ERR_CHATGPT_MALFORMED_LINE'],
    ['after', 'ok'],
    ['before', 'ok'],
  ])
})

test('a killed run loses no finished line, and re-running sends only the lines not answered', async () => {
  const slow = await startSimulator({ responseTokens: 4, ttftMs: 30 })
  try {
    const n = 40
    const input = inputFile(Array.from({ length: n }, (_, i) => ({ id: `k${i}`, text: `line ${i}` })))
    const output = path.join(path.dirname(input), 'results.jsonl')
    const args = ['batch', input, '-o', output, '--concurrency', '2', '-q']
    const first = startCli(args, { env: simEnv(slow) })
    await until(() => completeLines(output) >= 6, 'six results written', 20_000)
    first.kill('SIGKILL')
    const killed = await first.done
    assert.equal(killed.signal, 'SIGKILL')
    await whenIdle(slow)
    const sentBefore = slow.stats().chatRequests
    const answeredBefore = new Set(readRecords(output).map((r) => r.id))
    assert.ok(answeredBefore.size >= 6 && answeredBefore.size < n, `${answeredBefore.size} answered before the kill`)

    const second = await runCli([...args, '--json'], { env: simEnv(slow) })
    assert.equal(second.code, 0, second.stderr)
    assert.equal(summaryOf(second).skipped, answeredBefore.size)
    const records = readRecords(output)
    const counts = new Map()
    for (const r of records) {
      assert.equal(r.error, undefined, JSON.stringify(r))
      counts.set(r.id, (counts.get(r.id) ?? 0) + 1)
    }
    assert.equal(counts.size, n, 'every id is answered')
    for (const [id, count] of counts) assert.equal(count, 1, `${id} answered once`)
    assert.equal(slow.stats().chatRequests - sentBefore, n - answeredBefore.size, 'finished lines were not sent again')
  } finally {
    await slow.close()
  }
})

test('resuming re-runs failed lines, skips answered ones, and starts after a partial last line', async () => {
  const input = inputFile([
    { id: 'a', text: 'one' },
    { id: 'b', text: 'two' },
    { id: 'c', text: 'three' },
  ])
  const output = path.join(path.dirname(input), 'results.jsonl')
  // What a run killed in the middle of its third write would leave.
  writeFileSync(
    output,
    `${JSON.stringify({ id: 'a', line: 1, text: 'earlier answer' })}\n${JSON.stringify({ id: 'b', line: 2, error: { code: 'ERR_CHATGPT_TIMEOUT', message: 'timed out' } })}\n{"id":"c","li`,
  )
  const before = sim.stats().chatRequests
  const out = await runCli(['batch', input, '-o', output, '-q', '--json'], { env: simEnv(sim) })
  assert.equal(out.code, 0, out.stderr)
  assert.match(out.stderr, /1 line\(s\) of .* are not JSON/)
  assert.equal(sim.stats().chatRequests - before, 2, 'b (failed before) and c (cut off) are sent, a is not')
  const lines = readFileSync(output, 'utf8').split('\n')
  assert.equal(lines[2], '{"id":"c","li', 'the partial line is kept as it was')
  const last = new Map()
  for (const line of lines.slice(3).filter(Boolean)) {
    const r = JSON.parse(line)
    last.set(r.id, r)
  }
  assert.deepEqual([...last.keys()].sort(), ['b', 'c'])
  for (const r of last.values()) assert.equal(typeof r.text, 'string')
  assert.equal(summaryOf(out).skipped, 1)
})

test('a repeated id stops the job before anything is sent (exit 1)', async () => {
  const input = inputFile([{ id: 'x', text: 'a' }, { id: 'y', text: 'b' }, { id: 'x', text: 'c' }])
  const before = sim.stats().chatRequests
  const out = await runCli(['batch', input, '-q'], { env: simEnv(sim) })
  assert.equal(out.code, 1)
  assert.match(out.stderr, /^chatgpt-native batch: .*line 3: id "x" is also on line 1/)
  assert.equal(out.stdout, '')
  assert.equal(sim.stats().chatRequests, before)
})

test('--rpm keeps the run within the server limit: the simulator sends no 429', async () => {
  const limited = await startSimulator({ responseTokens: 2, rateLimitRpm: 60 })
  try {
    const n = 63
    const input = inputFile(Array.from({ length: n }, (_, i) => ({ text: `limited ${i}` })))
    const out = await runCli(['batch', input, '-o', path.join(path.dirname(input), 'out.jsonl'), '--rpm', '60', '--concurrency', '16', '--json', '-q'], {
      env: simEnv(limited),
    })
    assert.equal(out.code, 0, out.stderr)
    const summary = summaryOf(out)
    assert.equal(summary.succeeded, n)
    assert.equal(limited.stats().rateLimited, 0, 'no 429 from the simulator')
    assert.equal(summary.rateLimitedResponses, 0)
    assert.equal(limited.stats().chatRequests, n)
  } finally {
    await limited.close()
  }
})

test('--rpm spaces the requests itself, against a server that states no limit', async () => {
  const n = 126
  const input = inputFile(Array.from({ length: n }, (_, i) => ({ text: `spaced ${i}` })))
  const out = await runCli(['batch', input, '-o', path.join(path.dirname(input), 'out.jsonl'), '--rpm', '120', '--concurrency', '16', '--json', '-q'], {
    env: simEnv(sim),
  })
  assert.equal(out.code, 0, out.stderr)
  const summary = summaryOf(out)
  assert.equal(summary.succeeded, n)
  // The bucket holds a minute's requests (120); the 6 past it come two a second.
  assert.ok(summary.elapsedSeconds >= 2.4, `took ${summary.elapsedSeconds} s`)
  assert.equal(summary.rpmLimit, 120)
  // Utilisation: requests sent over the limit times the elapsed minutes (the starting bucket's
  // burst puts this short run far above 100%).
  const budget = 120 * (summary.elapsedSeconds / 60)
  assert.ok(Math.abs(summary.requestUtilization - summary.attempts / budget) < 0.01, `${summary.requestUtilization}`)
  assert.equal(summary.tokenUtilization, null, 'no --tpm, no token utilisation')
})

test("the summary's numbers agree with the simulator's counters", async () => {
  const flaky = await startSimulator({ responseTokens: 5 })
  try {
    const n = 20
    // One line at a time, so the scripted faults (FIFO, one per request) meet known attempts:
    // id 0 gets 500 twice (fails), id 1 a 429 then an answer ('ok', a zero delay), id 2 503 then
    // 502 (fails), id 3 a 429 then an answer.
    const faults = [500, 500, 429, 'ok', 503, 502, 429, 'ok']
    for (const fault of faults) {
      if (fault === 'ok') flaky.enqueueFault({ kind: 'delay', delayMs: 0 })
      else if (fault === 429) flaky.enqueueFault({ kind: 'status', status: 429, code: 'rate_limit_exceeded', retryAfterMs: '5' })
      else flaky.enqueueFault({ kind: 'status', status: fault })
    }
    const input = inputFile(Array.from({ length: n }, (_, i) => ({ id: i, text: `count ${i}` })))
    const output = path.join(path.dirname(input), 'out.jsonl')
    const out = await runCli(['batch', input, '-o', output, '--max-retries', '1', '--concurrency', '1', '--json', '-q'], { env: simEnv(flaky) })
    assert.equal(out.code, 1)
    const summary = summaryOf(out)
    const stats = flaky.stats()
    const records = readRecords(output)
    const failed = records.filter((r) => r.error)
    assert.deepEqual(
      failed.map((r) => [r.id, r.error.status]),
      [
        [0, 500],
        [2, 502],
      ],
    )
    assert.equal(summary.requests, n)
    assert.equal(summary.succeeded, n - 2)
    assert.equal(summary.failed, 2)
    const byCode = {}
    for (const r of failed) byCode[r.error.code] = (byCode[r.error.code] ?? 0) + 1
    assert.deepEqual(summary.failuresByCode, byCode)
    assert.equal(summary.attempts, stats.chatRequests, 'attempts: every request the simulator received')
    assert.equal(summary.attempts, n + 4)
    assert.equal(summary.retries, stats.chatRequests - n)
    assert.equal(summary.retries, 4)
    assert.equal(summary.rateLimitedResponses, 2, 'the two scripted 429s')
    assert.equal(stats.faultsInjected, faults.length)
    assert.equal(summary.tokensIn, stats.promptTokens)
    assert.equal(summary.tokensOut, stats.completionTokens)
    assert.equal(summary.tokensOut, 5 * (n - 2))
    assert.equal(summary.errorRate, 0.1)
    assert.ok(summary.latencyMs.p50 <= summary.latencyMs.p95 && summary.latencyMs.p95 <= summary.latencyMs.p99)
  } finally {
    await flaky.close()
  }
})

test('--cache answers repeated requests once and counts the hits', async () => {
  const input = inputFile(Array.from({ length: 10 }, (_, i) => ({ id: i, text: `repeat ${i % 5}` })))
  const before = sim.stats().chatRequests
  const out = await runCli(['batch', input, '--cache', '--concurrency', '1', '--json', '-q', '-o', path.join(path.dirname(input), 'o.jsonl')], {
    env: simEnv(sim),
  })
  assert.equal(out.code, 0, out.stderr)
  assert.equal(summaryOf(out).cacheHits, 5)
  assert.equal(sim.stats().chatRequests - before, 5)
  const without = await runCli(['batch', input, '--concurrency', '1', '-q'], { env: simEnv(sim) })
  assert.equal(without.code, 0)
  assert.equal(sim.stats().chatRequests - before, 15, 'without --cache every line is sent')
})

test('off a terminal, progress is plain periodic lines on stderr; with -o stdout holds only the table', async () => {
  const slow = await startSimulator({ responseTokens: 2, ttftMs: 60 })
  try {
    const input = inputFile(Array.from({ length: 12 }, (_, i) => ({ text: `p${i}` })))
    const output = path.join(path.dirname(input), 'out.jsonl')
    const out = await runCli(['batch', input, '-o', output, '--concurrency', '1', '--progress-interval-ms', '150', '--rpm', '6000'], { env: simEnv(slow) })
    assert.equal(out.code, 0, out.stderr)
    const progress = out.stderr.trimEnd().split('\n')
    assert.ok(progress.length >= 2, out.stderr)
    for (const line of progress) assert.match(line, /^batch: \d+\/12 done, 0 failed, 0 retries, \d+ in flight, [\d,]+\/6,000 rpm, [\d,]+ tpm, eta \S+$/)
    assert.ok(!out.stderr.includes('\x1b'), 'no escape codes')
    assert.match(out.stdout, /^ {2}requests +12 of 12 lines\n/)
    for (const row of ['succeeded', 'failed', 'latency', 'QPS', 'error rate', '429s received', 'retries', 'cache hits', 'tokens in / out', 'token utilisation']) {
      assert.match(out.stdout, new RegExp(`^ {2}${row} `, 'm'))
    }
    assert.match(out.stdout, /request utilisation +\d+\.\d% of 6,000 RPM/)
    assert.equal(readRecords(output).length, 12)
  } finally {
    await slow.close()
  }
})

/** Whether util-linux `script` (a pseudo-terminal for a command) is on this machine. */
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0

test('on a terminal, batch shows a live progress bar', { skip: hasScript ? false : 'util-linux `script` is not installed: no pseudo-terminal to run the bin in' }, async () => {
  const slow = await startSimulator({ responseTokens: 2, ttftMs: 40 })
  try {
    const input = inputFile(Array.from({ length: 10 }, (_, i) => ({ text: `tty ${i}` })))
    const output = path.join(path.dirname(input), 'out.jsonl')
    const command = [process.execPath, BIN, 'batch', input, '-o', output, '--concurrency', '1', '--rpm', '600']
    const quoted = command.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
    // spawnSync blocks this thread; the simulator answers on its own threads meanwhile.
    const result = spawnSync('script', ['-qfec', quoted, '/dev/null'], { env: simEnv(slow), encoding: 'utf8', input: '' })
    assert.equal(result.status, 0, result.stdout)
    assert.match(result.stdout, /[#-]{20} \d+% \| \d+\/10 \| 0 failed \| 0 retries \| \d+ in flight \| \d+\/600 rpm \| \d+ tpm \| ETA /)
    assert.match(result.stdout, /100% \| 10\/10 \|/)
    assert.match(result.stdout, /requests +10 of 10 lines/)
    assert.equal(readRecords(output).length, 10)
  } finally {
    await slow.close()
  }
})

test('Ctrl-C stops a run (exit 130) keeping what finished; the next run completes it', async () => {
  const slow = await startSimulator({ responseTokens: 2, ttftMs: 30 })
  try {
    const n = 30
    const input = inputFile(Array.from({ length: n }, (_, i) => ({ id: `s${i}`, text: `stop ${i}` })))
    const output = path.join(path.dirname(input), 'out.jsonl')
    const args = ['batch', input, '-o', output, '--concurrency', '2', '-q']
    const child = startCli(args, { env: simEnv(slow) })
    await until(() => completeLines(output) >= 4, 'four results written', 20_000)
    child.kill('SIGINT')
    const stopped = await child.done
    assert.equal(stopped.code, 130, stopped.stderr)
    assert.match(stopped.stderr, /interrupted/)
    const kept = readRecords(output)
    assert.ok(kept.length < n)
    for (const r of kept) assert.equal(r.error, undefined, 'aborted lines are not written as failures')
    const rest = await runCli(args, { env: simEnv(slow) })
    assert.equal(rest.code, 0, rest.stderr)
    assert.equal(new Set(readRecords(output).map((r) => r.id)).size, n)
  } finally {
    await slow.close()
  }
})
