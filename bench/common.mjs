// Shared benchmark helpers: a simulator in a separate process, timing and median.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Start `chatgpt-native simulate` in a child process; resolves with { url, stop }. */
export async function startSimulatorProcess(args = []) {
  const child = spawn(process.execPath, ['bin/chatgpt-native.js', 'simulate', '--port', '0', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d) => {
      buf += d
      const m = buf.match(/listening on (http:\/\/\S+)/)
      if (m) resolve(m[1])
    })
    child.on('exit', (code) => reject(new Error(`simulator exited with ${code}`)))
  })
  return { url, stop: () => child.kill('SIGTERM') }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Run `fn` `runs` times after `warmup` runs; returns the per-run durations in ms. */
export async function time(fn, { runs = 5, warmup = 1 } = {}) {
  for (let i = 0; i < warmup; i++) await fn()
  const out = []
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    await fn()
    out.push(performance.now() - t)
  }
  return out
}

const EN_WORDS = 'the of and to in is that it was for on are as with his they at be this from have or by one had not but what all were when we there can an your which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know'.split(' ')
const ZH_CHARS = '的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理'.split('')

/** Deterministic prose: English and Chinese paragraphs, about `bytes` UTF-8 bytes. */
export function mixedText(bytes, seed = 42) {
  let s = seed >>> 0
  const rand = (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s >>> 8) % n
  }
  const parts = []
  let size = 0
  while (size < bytes) {
    let para = ''
    const sentences = 2 + rand(6)
    const chinese = rand(2) === 0
    for (let i = 0; i < sentences; i++) {
      if (chinese) {
        const n = 8 + rand(30)
        let sentence = ''
        for (let j = 0; j < n; j++) sentence += ZH_CHARS[rand(ZH_CHARS.length)] + (rand(9) === 0 ? '，' : '')
        para += sentence + '。！？；'[rand(4)]
      } else {
        const n = 5 + rand(30)
        const words = []
        for (let j = 0; j < n; j++) words.push(EN_WORDS[rand(EN_WORDS.length)] + (rand(10) === 0 ? ',' : ''))
        const sentence = words.join(' ')
        para += (i ? ' ' : '') + sentence[0].toUpperCase() + sentence.slice(1) + '.?!'[rand(3)]
      }
    }
    parts.push(para)
    size += Buffer.byteLength(para) + 2
  }
  return parts.join('\n\n')
}
