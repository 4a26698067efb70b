// Helpers for the `chatgpt-native` command's tests: the bin run as a child process, with the
// connection given through the environment (as a user would), and waits on its output.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { API_KEY } from './helpers.mjs'

export const BIN = fileURLToPath(new URL('../bin/chatgpt-native.js', import.meta.url))

/** The environment the bin runs with: no OPENAI_* of the machine's, NO_COLOR unset, `extra` added. */
export function cliEnv(extra = {}) {
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('OPENAI_') && key !== 'NO_COLOR' && key !== 'FORCE_COLOR') env[key] = value
  }
  return { ...env, ...extra }
}

/** The environment pointing the bin at simulator `sim` with the test key. */
export function simEnv(sim, extra = {}) {
  return cliEnv({ OPENAI_API_KEY: API_KEY, OPENAI_BASE_URL: sim.url, OPENAI_MODEL: 'sim-gpt', ...extra })
}

/**
 * Starts the bin with `args`; `child.output()` gives what it printed so far and `child.done`
 * resolves with `{ code, signal, stdout, stderr }` when it exits.
 */
export function startCli(args, { env = cliEnv(), input, cwd, nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
  if (input !== undefined) child.stdin.end(input)
  child.output = () => ({ stdout, stderr })
  child.done = new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return child
}

/** Runs the bin to its end: `{ code, signal, stdout, stderr }`. Stdin is closed (or `input`). */
export function runCli(args, options = {}) {
  return startCli(args, { input: '', ...options }).done
}

/** A fresh temporary directory. */
export function tempDir() {
  return mkdtempSync(path.join(tmpdir(), 'chatgpt-native-cli-'))
}

/** The JSON records of a JSONL file (none when it does not exist). */
export function readRecords(file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line))
}

/** Complete lines of a JSONL file so far (a line still being written is left out). */
export function completeLines(file) {
  if (!existsSync(file)) return 0
  return readFileSync(file, 'utf8').split('\n').length - 1
}
