// npm's `prepublishOnly` script: `napi pre-publish` writes the platform packages (npm/<platform>/)
// into `optionalDependencies` with this version, exactly, and checks each package holds its
// binary. It publishes nothing and creates no GitHub release: each npm/<platform>/ package is
// published on its own, before this one (see README "Releasing").
//
// `npm publish --dry-run` runs this script too; then the check runs without writing anything, so a
// dry run leaves package.json as it was.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const napiCli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js')
const args = [napiCli, 'pre-publish', '-t', 'npm', '--no-gh-release', '--skip-optional-publish']
if (process.env.npm_config_dry_run === 'true') args.push('--dry-run')

const run = spawnSync(process.execPath, args, { stdio: 'inherit' })
if (run.error) throw run.error
process.exit(run.status ?? 1)
