// Goodput under rate limits: the simulator (separate process) allows 600 requests/min and 60,000
// tokens/min, fails 5% of requests with a random 5xx and answers after ~800 ms; 2,000 requests of
// mixed size are sent at once. chatgpt-native (rateLimit + retries) vs the openai client wrapped
// in p-limit and p-retry (the usual JS pile), one after the other, each against a fresh simulator.
// The load is ~10 requests/s, so the simulator runs in this process (on its own native threads)
// and its counters report the 429s each client provoked.
//   node bench/goodput.mjs [requests=2000]
import OpenAI from 'openai'
import pLimit from 'p-limit'
import pRetry from 'p-retry'
import { ChatGPTAPI, ChatGPTSimulator } from '../index.js'

const N = Number(process.argv[2] ?? 2000)
const RPM = 600
const TPM = 60000
const simOptions = { rateLimitRpm: RPM, rateLimitTpm: TPM, failureRate: 0.05, seed: 7, ttftMs: 800, responseTokens: 16 }

// Mixed sizes: prompts of 5 to 60 words, answers capped at 16 to 48 tokens.
const requests = Array.from({ length: N }, (_, i) => ({
  text: `Request ${i}: ` + 'please summarise this sentence again '.repeat(1 + (i % 12)),
  maxTokens: 16 + ((i * 7) % 33),
}))

async function runNative(url) {
  const api = new ChatGPTAPI({
    apiKey: 'sk-bench',
    apiBaseUrl: url,
    systemMessage: '',
    completionParams: { model: 'sim-gpt' },
    rateLimit: { requestsPerMinute: RPM, tokensPerMinute: TPM },
    maxRetries: 4,
    timeoutMs: 900_000,
  })
  let failed = 0
  const started = performance.now()
  await Promise.all(
    requests.map((r) =>
      api.sendMessage(r.text, { completionParams: { max_tokens: r.maxTokens } }).catch(() => {
        failed++
      }),
    ),
  )
  return { seconds: (performance.now() - started) / 1000, failed }
}

async function runOpenAI(url) {
  const client = new OpenAI({ apiKey: 'sk-bench', baseURL: url, maxRetries: 2, timeout: 900_000 })
  const limit = pLimit(50)
  let failed = 0
  const started = performance.now()
  await Promise.all(
    requests.map((r) =>
      limit(() =>
        pRetry(
          () => client.chat.completions.create({ model: 'sim-gpt', messages: [{ role: 'user', content: r.text }], max_tokens: r.maxTokens }),
          { retries: 5 },
        ),
      ).catch(() => {
        failed++
      }),
    ),
  )
  return { seconds: (performance.now() - started) / 1000, failed }
}

const rows = {}
for (const [name, run] of [['chatgpt-native', runNative], ['openai + p-limit + p-retry', runOpenAI]]) {
  const sim = await ChatGPTSimulator.start(simOptions)
  const { seconds, failed } = await run(sim.url)
  const { chatRequests, rateLimited, randomFailures } = sim.stats()
  await sim.close()
  // Requests the limiter admitted (everything but 429s) beyond the bucket's initial burst of RPM,
  // per second, against the limit: how much of the allowed rate the client actually used.
  const admitted = chatRequests - rateLimited
  const share = (admitted - RPM) / seconds / (RPM / 60)
  rows[name] = {
    seconds: seconds.toFixed(1),
    succeeded: N - failed,
    'share of the limit used': `${(share * 100).toFixed(1)}%`,
    failed,
    'HTTP requests': chatRequests,
    '429s': rateLimited,
    'requests that saw a 429': `${((rateLimited / N) * 100).toFixed(1)}%`,
    '5xx injected': randomFailures,
  }
}
console.table(rows)
