// npm's `prepare` script: compiles the addon (dev build) when `npm install` / `npm ci` runs in
// this checkout, so the Quick start leaves a working package; does nothing otherwise.
//
// npm runs `prepare` at other times too, where a build is wrong:
// - before `npm pack` / `npm publish`: the main package carries no .node file (each platform's
//   release binary is its own package under npm/), so a build would be minutes spent on a dev
//   build that is left out. npm names the command it runs in `npm_command`. (The `prepack` script
//   also takes `prepare` out of the manifest being packed; this check does not rely on it.)
// - when another project installs this checkout as a folder (`npm install <path>`, the way to use
//   a build from source): there a dev build would overwrite the release build made for it. npm
//   sets `INIT_CWD` to where it was started, which is then outside this checkout.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const command = process.env.npm_command
if (command === 'pack' || command === 'publish') process.exit(0)
const startedIn = process.env.INIT_CWD
const fromHere = startedIn ? path.relative(root, path.resolve(startedIn)) : ''
if (fromHere.startsWith('..') || path.isAbsolute(fromHere)) process.exit(0)
// No Rust sources (not a checkout): there is nothing to build.
if (!existsSync(path.join(root, 'Cargo.toml'))) process.exit(0)

const npmCli = process.env.npm_execpath
const run = npmCli
  ? spawnSync(process.execPath, [npmCli, 'run', 'build:dev'], { stdio: 'inherit' })
  : spawnSync('npm', ['run', 'build:dev'], { stdio: 'inherit', shell: process.platform === 'win32' })
if (run.error) throw run.error
process.exit(run.status ?? 1)
