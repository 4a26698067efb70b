// npm's `prepack` / `postpack` scripts: the package.json that goes into the tarball has no
// `prepare` script, and the checkout's is put back after packing.
//
// `prepare` (scripts/prepare.mjs, which is not packed) compiles the addon in a checkout. In a
// published package it has nothing to run, and npm lists a package installed from a tarball, a
// folder or git that has one as having "install scripts not yet covered by allowScripts" and warns.
// npm reads package.json from disk after `prepack` to build the tarball, so it is edited in
// place; the original waits in package.json.prepack until `postpack`.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'

const manifestPath = new URL('../package.json', import.meta.url)
const backupPath = new URL('../package.json.prepack', import.meta.url)
const mode = process.argv[2]

if (mode === 'strip') {
  if (existsSync(backupPath)) {
    throw new Error('package.json.prepack exists: an earlier pack was interrupted. Move it back to package.json, then pack again.')
  }
  const text = readFileSync(manifestPath, 'utf8')
  const manifest = JSON.parse(text)
  if (manifest.scripts && manifest.scripts.prepare !== undefined) {
    writeFileSync(backupPath, text)
    delete manifest.scripts.prepare
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`)
  }
} else if (mode === 'restore') {
  if (existsSync(backupPath)) renameSync(backupPath, manifestPath)
} else {
  throw new Error(`usage: node scripts/pack-manifest.mjs strip|restore, got ${mode}`)
}
