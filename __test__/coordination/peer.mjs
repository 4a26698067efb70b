// A second process for __test__/coordination-health.test.mjs and coordination-cache.test.mjs: one
// ChatGPTAPI built from the options JSON in argv[2]. It prints `ready`, then answers each JSON
// line on stdin with one JSON line: `{ "send": text, "opts": {...}, "stream": bool }` sends a
// message (streamed, counting its `onProgress` calls, with `stream`) and reports
// `{ ok, text, cached, deltas }` or `{ ok: false, code }`; `{ "metrics": true }` reports
// `metrics()`.
import { createInterface } from 'node:readline'

import { ChatGPTAPI } from '../../index.js'

const api = new ChatGPTAPI(JSON.parse(process.argv[2]))
const lines = createInterface({ input: process.stdin })
console.log('ready')
for await (const line of lines) {
  const command = JSON.parse(line)
  let report
  if (command.metrics) {
    report = api.metrics()
  } else {
    let deltas = 0
    try {
      const progress = command.stream ? { onProgress: () => deltas++ } : {}
      const reply = await api.sendMessage(command.send, { ...command.opts, ...progress })
      report = { ok: true, text: reply.text, cached: reply.cached ?? false, deltas }
    } catch (err) {
      report = { ok: false, code: err.code }
    }
  }
  console.log(JSON.stringify(report))
}
