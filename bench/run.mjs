// Runs the benchmarks one after another: `npm run bench` for all of them, or
// `npm run bench -- throughput cache` for some. Build first: `npm run build`.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.mjs') && !['run.mjs', 'common.mjs'].includes(f))
  .map((f) => f.slice(0, -4))
const chosen = process.argv.slice(2)
const unknown = chosen.filter((name) => !all.includes(name))
if (unknown.length > 0) {
  console.error(`Unknown benchmark ${unknown.join(', ')}; choose from: ${all.join(', ')}`)
  process.exit(2)
}
let failed = false
for (const name of chosen.length > 0 ? chosen : all) {
  console.log(`\n## ${name}\n`)
  const { status } = spawnSync(process.execPath, [`${dir}${name}.mjs`], { stdio: 'inherit' })
  failed ||= status !== 0
}
process.exit(failed ? 1 : 0)
