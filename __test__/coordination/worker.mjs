// A second process for __test__/coordination.test.mjs: one ChatGPTAPI with `coordination`,
// configured by the JSON in argv[2]. It prints `ready`, waits for a line on stdin (so two workers
// start sending at the same moment), sends `calls` messages at once, and prints one JSON line:
// how many succeeded, the failures by code, and its `metrics().coordination`. `redis` (an object,
// e.g. `{ nodes, keyPrefix }` or `{ url, ca, keyPrefix }`) is passed as `coordination.redis`
// as is; `redisUrl` and `keyPrefix` make a plain one.
import { createInterface } from 'node:readline'

import { ChatGPTAPI } from '../../index.js'

const config = JSON.parse(process.argv[2])
const api = new ChatGPTAPI({
  apiKey: config.apiKey,
  apiBaseUrl: config.simUrl,
  systemMessage: '',
  completionParams: { model: 'sim-gpt' },
  maxRetries: 0,
  ...(config.rateLimit ? { rateLimit: config.rateLimit } : {}),
  ...(config.circuitBreaker ? { circuitBreaker: config.circuitBreaker } : {}),
  ...(config.redis ? { coordination: { redis: { operationTimeoutMs: 1000, ...config.redis } } } : {}),
  ...(config.redisUrl
    ? { coordination: { redis: { url: config.redisUrl, keyPrefix: config.keyPrefix, operationTimeoutMs: 1000 } } }
    : {}),
})

console.log('ready')
const lines = createInterface({ input: process.stdin })
await new Promise((resolve) => lines.once('line', resolve))
lines.close()

const settled = await Promise.allSettled(
  Array.from({ length: config.calls }, (_, i) => api.sendMessage(`hello ${i}`, { timeoutMs: config.timeoutMs })),
)
const failures = {}
for (const r of settled) if (r.status === 'rejected') failures[r.reason.code] = (failures[r.reason.code] ?? 0) + 1
console.log(
  JSON.stringify({
    succeeded: settled.filter((r) => r.status === 'fulfilled').length,
    failures,
    coordination: api.metrics().coordination ?? null,
  }),
)
