// npm's `prepare` script: compiles the addon (dev build) when npm installs this checkout, so the
// Quick start's `npm install` leaves a working package; does nothing when npm packs or publishes.
//
// npm runs `prepare` both after `npm install`/`npm ci` in a checkout and before `npm pack` /
// `npm publish`. A package never carries a .node file (each platform's release binary is its own
// package under npm/), so building before a pack would only spend minutes on a dev build that is
// then left out. npm names the command it is running in `npm_command`.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const command = process.env.npm_command
if (command === 'pack' || command === 'publish') process.exit(0)
// Installed from a tarball (no Rust sources): there is nothing to build.
if (!existsSync(new URL('../Cargo.toml', import.meta.url))) process.exit(0)

const npmCli = process.env.npm_execpath
const run = npmCli
  ? spawnSync(process.execPath, [npmCli, 'run', 'build:dev'], { stdio: 'inherit' })
  : spawnSync('npm', ['run', 'build:dev'], { stdio: 'inherit', shell: process.platform === 'win32' })
if (run.error) throw run.error
process.exit(run.status ?? 1)
