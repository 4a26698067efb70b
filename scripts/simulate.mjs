// npm run simulate [-- --port 8080 --ttft-ms 200 --token-delay-ms 20 --response-tokens 64 --api-key sk-test
//                      --rpm 600 --tpm 60000 --failure-rate 0.05 --seed 1]
// Starts the bundled OpenAI-compatible simulator and keeps it running until Ctrl+C.
import { parseArgs } from 'node:util'
import { ChatGPTSimulator } from '../index.js'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    'ttft-ms': { type: 'string', default: '0' },
    'token-delay-ms': { type: 'string', default: '0' },
    'response-tokens': { type: 'string', default: '16' },
    'api-key': { type: 'string' },
    model: { type: 'string' },
    rpm: { type: 'string', default: '0' },
    tpm: { type: 'string', default: '0' },
    'failure-rate': { type: 'string', default: '0' },
    seed: { type: 'string', default: '0' },
  },
})

const sim = await ChatGPTSimulator.start({
  port: Number(values.port),
  ttftMs: Number(values['ttft-ms']),
  tokenDelayMs: Number(values['token-delay-ms']),
  responseTokens: Number(values['response-tokens']),
  apiKey: values['api-key'],
  model: values.model,
  rateLimitRpm: Number(values.rpm),
  rateLimitTpm: Number(values.tpm),
  failureRate: Number(values['failure-rate']),
  seed: Number(values.seed),
})
console.log(`chatgpt-native simulator listening on ${sim.url}`)
console.log(`  try: curl ${sim.url}/chat/completions -H 'content-type: application/json' -d '{"model":"sim-gpt","messages":[{"role":"user","content":"hi"}]}'`)
console.log('  faults per request: header x-sim-fault: {"kind":"status","status":429}')

// The server runs on native threads, which do not keep Node's event loop alive by themselves.
const keepAlive = setInterval(() => {}, 1 << 30)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    clearInterval(keepAlive)
    await sim.close()
    console.log('\nsimulator stopped')
    process.exit(0)
  })
}
