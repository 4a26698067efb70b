// The GitHub Actions workflows: actionlint (with ShellCheck for `run:` scripts) finds nothing in
// them, it does find the mistakes it is there for, and the release workflow's build matrix agrees
// with package.json's napi config, which `napi artifacts` checks only when a release is published.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseTriple } from '@napi-rs/cli'
import { actionlint, ensureActionlint, formatProblem, workflowFiles } from '../scripts/actionlint.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const release = readFileSync(join(root, '.github', 'workflows', 'release.yml'), 'utf8')
const napiCli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

// The first use installs actionlint from PyPI (a few seconds); later runs reuse .tools/.
const INSTALL_TIMEOUT_MS = 330_000

/** The text of job `name` in a workflow: from its `  name:` line to the next job's. */
function job(workflow, name) {
  const lines = workflow.split('\n')
  const start = lines.indexOf(`  ${name}:`)
  assert.ok(start >= 0, `the workflow has no job ${name}`)
  const end = lines.findIndex((line, i) => i > start && /^ {2}[\w-]+:\s*$/.test(line))
  return lines.slice(start, end < 0 ? undefined : end).join('\n')
}

/** The values of `key:` entries in a job's text, in order. */
function values(text, key) {
  return [...text.matchAll(new RegExp(`^\\s*(?:- )?${key}: (\\S+)\\s*$`, 'gm'))].map((m) => m[1])
}

test('actionlint and shellcheck find no problem in any workflow', { timeout: INSTALL_TIMEOUT_MS }, () => {
  const files = workflowFiles()
  assert.ok(files.includes(join('.github', 'workflows', 'release.yml')))
  const { problems } = actionlint(files)
  assert.deepEqual(problems.map(formatProblem), [])
})

test('actionlint reports an undefined matrix key, a missing needed job and an unquoted variable', { timeout: INSTALL_TIMEOUT_MS }, () => {
  ensureActionlint()
  const dir = mkdtempSync(join(tmpdir(), 'workflows-test-'))
  try {
    mkdirSync(join(dir, '.github', 'workflows'), { recursive: true })
    const file = join('.github', 'workflows', 'broken.yml')
    writeFileSync(
      join(dir, file),
      [
        'name: Broken',
        'on: push',
        'jobs:',
        '  build:',
        '    strategy:',
        '      matrix:',
        '        target: [x86_64-unknown-linux-gnu]',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - run: echo ${{ matrix.targte }}',
        '      - run: ls $OUT_DIR/*.node',
        '  publish:',
        '    needs: [biuld]',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - run: echo publish',
        '',
      ].join('\n'),
    )
    const { problems } = actionlint([file], { cwd: dir })
    const kinds = new Set(problems.map((p) => p.kind))
    for (const kind of ['expression', 'job-needs', 'shellcheck']) {
      assert.ok(kinds.has(kind), `expected a ${kind} problem, got:\n${problems.map(formatProblem).join('\n')}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the release workflow builds every target in napi.targets and tests each build on its platform', () => {
  const built = values(job(release, 'build'), 'target')
  assert.equal(new Set(built).size, built.length, `a target is built twice: ${built}`)
  for (const target of pkg.napi.targets) assert.ok(built.includes(target), `${target} is in napi.targets but not built`)
  const tested = new Set([
    ...values(job(release, 'test-macos-windows'), 'target'),
    ...values(job(release, 'test-linux'), 'target'),
  ])
  assert.deepEqual([...tested].sort(), [...built].sort())
})

test('the release workflow uploads the binaries napi builds, named after napi.binaryName', () => {
  assert.deepEqual(values(release.split('\njobs:')[0], 'APP_NAME'), [pkg.napi.binaryName])
  assert.match(job(release, 'build'), /path: \$\{\{ env\.APP_NAME \}\}\.\*\.node$/m)
})

test('the smoke tests the release workflow runs on each platform exist and need no compiler', () => {
  const files = pkg.scripts['test:smoke'].split(' ').filter((arg) => arg.startsWith('__test__/'))
  assert.ok(files.length > 0)
  for (const file of files) {
    const source = readFileSync(join(root, file), 'utf8')
    assert.doesNotMatch(source, /child_process|cargo|tsc/, `${file} runs a tool that may be missing`)
  }
})

test('the release workflow publishes only on a version tag, with provenance and without a GitHub release', () => {
  const publish = job(release, 'publish')
  assert.match(publish, /^ {4}if: \$\{\{ startsWith\(github\.ref, 'refs\/tags\/v'\) \}\}$/m)
  assert.match(publish, /^ {6}id-token: write$/m)
  assert.match(publish, /npx napi pre-publish -t npm --no-gh-release$/m)
  // The main package is published with its lifecycle scripts: `prepack` strips `prepare` from the
  // published package.json, which --ignore-scripts would skip.
  assert.match(publish, /^ {10}npm publish --access public --tag "\$DIST_TAG"$/m)
  assert.doesNotMatch(publish, /npm publish --ignore-scripts/)
  assert.equal((publish.match(/NPM_CONFIG_PROVENANCE: 'true'/g) ?? []).length, 2)
  assert.match(publish, /\$\{\{ secrets\.NPM_TOKEN \}\}/)
  assert.doesNotMatch(release, /contents: write/)
})

test('napi artifacts puts each binary the build matrix uploads into its platform package', { timeout: 60_000 }, () => {
  // The publish job's steps in a scratch copy of the package: create-npm-dirs, the binaries laid
  // out as download-artifact does (one bindings-<target> folder each, the file named as napi
  // build names it), then napi artifacts.
  const built = values(job(release, 'build'), 'target')
  // The publish job downloads every build where `napi artifacts` looks by default.
  const publish = job(release, 'publish')
  assert.match(publish, /^ {10}path: artifacts$/m)
  assert.match(publish, /^ {8}run: npx napi artifacts$/m)
  const dir = mkdtempSync(join(tmpdir(), 'release-artifacts-'))
  try {
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, napi: { ...pkg.napi, targets: built } }))
    const napi = (...args) => {
      const run = spawnSync(process.execPath, [napiCli, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
      assert.equal(run.status, 0, `napi ${args.join(' ')}: ${run.stderr}`)
    }
    napi('create-npm-dirs')
    const binaries = built.map((target) => {
      const platform = parseTriple(target).platformArchABI
      const folder = join(dir, 'artifacts', `bindings-${target}`)
      mkdirSync(folder, { recursive: true })
      writeFileSync(join(folder, `${pkg.napi.binaryName}.${platform}.node`), `binary for ${target}`)
      return { target, platform }
    })
    napi('artifacts')
    for (const { target, platform } of binaries) {
      const { main } = JSON.parse(readFileSync(join(dir, 'npm', platform, 'package.json'), 'utf8'))
      const file = join(dir, 'npm', platform, main)
      assert.ok(existsSync(file), `${target}'s binary is not in npm/${platform}/`)
      assert.equal(readFileSync(file, 'utf8'), `binary for ${target}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
