// The two OpenAI-compatible servers `npm run test:interop` runs the client suite against, neither
// written by this project: the LiteLLM proxy (PyPI `litellm[proxy]`, answering from
// `mock_response` models) and aimock (npm `@copilotkit/aimock`, answering from
// interop/fixtures/chat.json). Their pinned versions, how scripts/interop.mjs starts them, and
// what interop/client.test.mjs sends each of them and expects back. The suite is one piece of
// code; everything that differs between the servers is a field of a profile here.
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))

/** The exact versions installed (the LiteLLM line must match interop/litellm-requirements.txt). */
export const LITELLM_VERSION = '1.106.12'
export const AIMOCK_VERSION = '1.43.0'

export const AIMOCK_FIXTURES = join(HERE, 'fixtures', 'chat.json')
export const LITELLM_REQUIREMENTS = join(HERE, 'litellm-requirements.txt')

const fixtures = JSON.parse(readFileSync(AIMOCK_FIXTURES, 'utf8')).fixtures
/** The text an aimock fixture answers the prompt `userMessage` with. */
function fixtureText(userMessage) {
  const found = fixtures.find((f) => f.match.userMessage === userMessage && typeof f.response.content === 'string')
  if (!found) throw new Error(`interop/fixtures/chat.json has no text fixture for ${JSON.stringify(userMessage)}`)
  return found.response.content
}

/** The tool the suite offers, and the call both servers answer it with. */
export const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string' } },
      required: ['city'],
    },
  },
}
export const WEATHER_ARGS = { city: 'Paris', unit: 'celsius' }

const LITELLM_TEXT = {
  plain: 'Hello from LiteLLM: plain and simple, with an emoji 🎉 inside.',
  flaky: 'Recovered after a 429.',
}

/**
 * The LiteLLM proxy's config (JSON, which its YAML loader reads). Every model answers from
 * `mock_response`, except `upstream-tools`, which LiteLLM forwards to aimock: LiteLLM's mock
 * streams only text (a `mock_tool_calls` model streams no tool call, a `mock_response` object
 * fails a streamed request with a 500), so a streamed tool call through LiteLLM has to come from
 * an upstream, and what the suite then checks is how LiteLLM re-streams it.
 *
 * `mock-flaky` is how LiteLLM answers a 429 and then, to the same request retried, a success:
 * two deployments, the `order: 1` one failing with a mock `RateLimitError`. A request sent with
 * `disable_fallbacks: true` gets the 429 itself (LiteLLM does not fall back to `order: 2` inside
 * the request), and the failure puts that deployment in cooldown (`allowed_fails: 0`, 60 s), so
 * the retry is routed to the `order: 2` deployment, which answers.
 */
export function litellmConfig({ aimockUrl }) {
  const mock = (name, extra) => ({
    model_name: name,
    litellm_params: { model: `openai/${name}`, api_key: 'unused', ...extra },
  })
  return {
    model_list: [
      mock('mock-plain', { mock_response: LITELLM_TEXT.plain }),
      mock('mock-tools', {
        mock_response: '',
        mock_tool_calls: [
          { id: 'call_interop_1', type: 'function', function: { name: 'get_weather', arguments: JSON.stringify(WEATHER_ARGS) } },
        ],
      }),
      {
        model_name: 'upstream-tools',
        // The key aimock accepts, which scripts/interop.mjs passes in the environment.
        litellm_params: { model: 'openai/interop-upstream', api_base: `${aimockUrl}/v1`, api_key: 'os.environ/INTEROP_UPSTREAM_KEY' },
      },
      mock('mock-flaky', { model: 'openai/mock-flaky-first', mock_response: 'litellm.RateLimitError', order: 1 }),
      mock('mock-flaky', { model: 'openai/mock-flaky-second', mock_response: LITELLM_TEXT.flaky, order: 2 }),
    ],
    router_settings: { num_retries: 0, allowed_fails: 0, cooldown_time: 60 },
    litellm_settings: { num_retries: 0, request_timeout: 30 },
  }
}

/**
 * What the suite sends each server and expects back. `model`s name a LiteLLM model from
 * litellmConfig (aimock answers any model; its fixtures match the prompt).
 */
export const PROFILES = {
  litellm: {
    name: 'LiteLLM proxy',
    plain: { model: 'mock-plain', prompt: 'interop plain', text: LITELLM_TEXT.plain },
    // LiteLLM's mock streams 3 characters a chunk, in code points: its emoji are never split.
    emoji: { model: 'mock-plain', prompt: 'interop emoji', text: LITELLM_TEXT.plain },
    tools: { model: 'mock-tools', prompt: 'interop weather', finishReason: 'stop' },
    // Forwarded to aimock (see litellmConfig), which matches the prompt.
    toolsStreamed: { model: 'upstream-tools', prompt: 'interop weather', finishReason: 'tool_calls' },
    flaky: {
      model: 'mock-flaky',
      prompt: 'interop flaky',
      text: LITELLM_TEXT.flaky,
      completionParams: { disable_fallbacks: true },
    },
    // An unknown model is LiteLLM's 400 (`invalid_request_error`).
    badRequest: { model: 'no-such-model', prompt: 'interop plain', statusCode: 400 },
    // Without a database, LiteLLM answers a key that is not the master key with 400
    // `no_db_connection`, never 401: the suite checks that is not mistaken for an auth failure.
    wrongKey: { model: 'mock-plain', prompt: 'interop plain', statusCode: 400, code: 'ERR_CHATGPT_HTTP' },
    usageChunkHasChoices: true,
    splitsSurrogates: false,
  },
  aimock: {
    name: 'aimock',
    plain: { model: 'gpt-4o-mini', prompt: 'interop plain', text: fixtureText('interop plain') },
    emoji: { model: 'gpt-4o-mini', prompt: 'interop emoji', text: fixtureText('interop emoji') },
    tools: { model: 'gpt-4o-mini', prompt: 'interop weather', finishReason: 'tool_calls' },
    toolsStreamed: { model: 'gpt-4o-mini', prompt: 'interop weather', finishReason: 'tool_calls' },
    // sequenceIndex 0 of the fixture is a 429, sequenceIndex 1 the answer. aimock's 429 always
    // carries, beside `Retry-After: 1`, fixed headers saying the key's tokens are spent for six
    // minutes (`x-ratelimit-remaining-tokens: 0`, `x-ratelimit-reset-tokens: 6m0s`). The
    // `Retry-After` of the same response wins, so with one key the retry goes out after 1 s.
    flaky: { model: 'gpt-4o-mini', prompt: 'interop flaky', text: fixtureText('interop flaky') },
    // The same 429 with a second key: the retry goes to the other key at once.
    keyPool: { model: 'gpt-4o-mini', prompt: 'interop key pool', text: fixtureText('interop key pool'), keyPool: true },
    badRequest: { model: 'gpt-4o-mini', prompt: 'interop bad request', statusCode: 400 },
    // aimock runs with AIMOCK_API_KEYS set to the suite's key: any other key is a 401.
    wrongKey: { model: 'gpt-4o-mini', prompt: 'interop plain', statusCode: 401, code: 'ERR_CHATGPT_AUTH' },
    // A prompt no fixture matches is aimock's 404 `no_fixture_match`.
    notFound: { model: 'gpt-4o-mini', prompt: 'no fixture answers this', statusCode: 404 },
    usageChunkHasChoices: false,
    splitsSurrogates: true,
    // GET /__aimock/journal?requestId= returns a request as it was received.
    journal: true,
  },
}
