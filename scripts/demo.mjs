// npm run demo: streams one answer and prints a one-screen summary.
// With OPENAI_API_KEY set it talks to the configured server (OPENAI_BASE_URL, default OpenAI);
// without it, it starts the bundled simulator on 127.0.0.1 and streams from that.
import { ChatGPTAPI, ChatGPTSimulator, ChatGPTError } from '../index.js'

const prompt = process.argv.slice(2).join(' ') || 'Explain in three sentences why streaming makes chat UIs feel faster.'

let sim
let api
if (process.env.OPENAI_API_KEY) {
  api = new ChatGPTAPI({ completionParams: process.env.OPENAI_MODEL ? { model: process.env.OPENAI_MODEL } : undefined })
  console.log(`Streaming from ${api.apiBaseUrl} (model ${api.model})\n`)
} else {
  // A believable pace: 250 ms to the first token, then ~60 tokens/s.
  sim = await ChatGPTSimulator.start({ ttftMs: 250, tokenDelayMs: 16, responseTokens: 120 })
  api = new ChatGPTAPI({ apiKey: 'sk-demo', apiBaseUrl: sim.url, completionParams: { model: 'sim-gpt' } })
  console.log(`OPENAI_API_KEY is not set: streaming from the bundled simulator at ${sim.url}\n`)
}

console.log(`> ${prompt}\n`)
const started = performance.now()
let firstDeltaAt
let deltas = 0
try {
  const reply = await api.sendMessage(prompt, {
    onProgress: (partial) => {
      firstDeltaAt ??= performance.now()
      deltas++
      process.stdout.write(partial.delta)
    },
  })
  const total = performance.now() - started
  const u = reply.usage
  console.log('\n')
  console.log('─'.repeat(60))
  console.log(`model            ${reply.detail?.model ?? api.model}`)
  console.log(`finish reason    ${reply.finishReason}`)
  console.log(`first token      ${(firstDeltaAt - started).toFixed(0)} ms`)
  console.log(`total            ${total.toFixed(0)} ms`)
  console.log(`deltas           ${deltas} (${(deltas / (total / 1000)).toFixed(0)}/s)`)
  console.log(`tokens           ${u.promptTokens} prompt + ${u.completionTokens} completion = ${u.totalTokens}${u.estimated ? ' (estimated)' : ''}`)
  console.log(`request id       ${reply.requestId ?? '-'}`)
  console.log(`message id       ${reply.id} (pass as parentMessageId to continue)`)
} catch (err) {
  if (err instanceof ChatGPTError) {
    console.error(`\nFailed: ${err.code}${err.statusCode ? ` (HTTP ${err.statusCode})` : ''}: ${err.message}`)
    process.exitCode = 1
  } else {
    throw err
  }
} finally {
  await sim?.close()
}
