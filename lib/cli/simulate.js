// `chatgpt-native simulate`: the bundled ChatGPTSimulator in the foreground, for pointing a
// service of one's own at. Prints its URL, serves until SIGINT or SIGTERM, then closes it and
// exits 0.
'use strict'

const { parse, integerFlag, numberFlag } = require('./args.js')

const OPTIONS = {
  port: { type: 'string', short: 'p' },
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  'fail-rate': { type: 'string' },
  'latency-ms': { type: 'string' },
  'token-delay-ms': { type: 'string' },
  'response-tokens': { type: 'string' },
  seed: { type: 'string' },
  'api-key': { type: 'string' },
  model: { type: 'string', short: 'm' },
}

const HELP = `Usage: chatgpt-native simulate [options]

Starts the bundled OpenAI-compatible simulator on 127.0.0.1 and serves until Ctrl-C (SIGINT) or
SIGTERM. Point any client at the URL it prints (POST /v1/chat/completions, GET /v1/models).

Options:
  -p, --port <n>            port (default 8080; 0 picks a free one)
  --rpm <n>                 requests per minute before OpenAI's 429 (default 0, unlimited)
  --tpm <n>                 tokens per minute before a 429 (default 0, unlimited)
  --fail-rate <f>           probability from 0 to 1 of a random 500/502/503 (default 0)
  --latency-ms <n>          delay before the first token (default 0)
  --token-delay-ms <n>      delay between streamed tokens (default 0)
  --response-tokens <n>     tokens per answer (default 16)
  --seed <n>                seed of the random failures (default 0)
  --api-key <key>           answer 401 to any other key (default: accept any)
  -m, --model <name>        the model GET /v1/models lists (default sim-gpt)
  -h, --help                this text
`

async function run(argv) {
  const { values } = parse('simulate', argv, OPTIONS, { allowPositionals: false })
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  const flag = (name, opts) => integerFlag('simulate', name, values[name], opts)
  const port = flag('port') ?? 8080
  const options = {
    port,
    rateLimitRpm: flag('rpm'),
    rateLimitTpm: flag('tpm'),
    failureRate: numberFlag('simulate', 'fail-rate', values['fail-rate'], { min: 0, max: 1 }),
    ttftMs: flag('latency-ms'),
    tokenDelayMs: flag('token-delay-ms'),
    responseTokens: flag('response-tokens'),
    seed: flag('seed'),
    apiKey: values['api-key'],
    model: values.model,
  }
  const { ChatGPTSimulator } = require('../../index.js')
  const sim = await ChatGPTSimulator.start(options)
  process.stdout.write(`chatgpt-native simulator listening on ${sim.url}\n`)

  // The server runs on native threads, which do not keep Node's event loop alive by themselves.
  const keepAlive = setInterval(() => {}, 1 << 30)
  await new Promise((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, resolve)
  })
  clearInterval(keepAlive)
  const stats = sim.stats()
  await sim.close()
  process.stdout.write(`simulator stopped after ${stats.chatRequests} chat requests\n`)
  return 0
}

module.exports = { run, HELP }
