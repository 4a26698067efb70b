//! What the `ChatGPTAPI` methods accept: the TypeScript shapes of their options and the
//! readers that turn JavaScript values into core's [`ClientOptions`] and [`SendRequest`]s.
//!
//! An option is written in three places, each checked against the next, so adding one is one
//! edit per place and a failing test for a place forgotten:
//! - the field of its typegen-only `*Options` struct: napi's typegen writes `binding.d.ts` from
//!   it (`SendManyOptions`, which only adds `onItem` to `SendMessageOptions`, and
//!   `SendMessagesOptions`, which is `SendMessageOptions` without [`CONVERSATION_OPTIONS`], are
//!   written by hand in `index.d.ts` instead, and checked against [`SEND_MANY_OPTIONS`] and
//!   [`SEND_MESSAGES_OPTIONS`] by the tests below, so a `sendMessage` option is declared once);
//! - the struct's `NAMES`, the only names [`Opts::allow_only`] accepts: the unit tests below
//!   (`options_names_are_the_struct_fields`) compare every `*Options` struct's fields with its
//!   `NAMES`, both ways, so an option cannot be typed but rejected, or accepted but untyped;
//! - the reader (`o.string("name")` ...): `__test__/option-shapes.test.mjs` passes every option
//!   of the typings a value no option accepts and expects an error naming it, so an option
//!   cannot be accepted but never read.

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use std::sync::Arc;

use super::convert::{caught, to_json};
use super::errors::{invalid_arg, to_napi_error};
use super::options::{describe, IgnoredOption, Opts};
use crate::core::breaker::BreakerConfig;
use crate::core::cache::CacheConfig;
use crate::core::client::SendRequest;
use crate::core::config::{ClientOptions, ProxySetting, Setting};
use crate::core::content::{self, ContentPart};
use crate::core::limits::RateLimitConfig;
use crate::core::messages::OwnMessages;
use crate::core::structured::{check_reasoning_effort, check_response_format};
use crate::core::time::timeout_from_ms;
use crate::core::tools::{check_tool_choice, check_tools, read_tool_messages, read_tool_results, ToolResult};
use serde_json::{Map, Value};

/// Options of `new ChatGPTAPI(options)`. Every field is optional.
#[napi(object, js_name = "ChatGPTAPIOptions", object_from_js = false, object_to_js = false)]
pub struct ChatGPTAPIOptions {
    /// API key sent as `Authorization: Bearer ...`. Falls back to `OPENAI_API_KEY`; a missing
    /// key throws `ERR_CHATGPT_INVALID_ARG`. Never logged or included in errors.
    pub api_key: Option<String>,
    /// Base URL of any OpenAI-compatible server (vLLM, llama.cpp, LiteLLM, Ollama, the bundled
    /// simulator). Falls back to `OPENAI_BASE_URL`.
    /// @default 'https://api.openai.com/v1'
    pub api_base_url: Option<String>,
    /// Sent as the `OpenAI-Organization` header. Falls back to `OPENAI_ORG_ID`.
    pub api_org: Option<String>,
    /// Request parameters merged into every request (`model`, `temperature`, ...). `messages`,
    /// `stream` and `n` are set by the client and rejected here.
    /// @default { model: 'gpt-4.1-mini', temperature: 0.8, top_p: 1, presence_penalty: 1 }
    #[napi(ts_type = "CompletionParams")]
    pub completion_params: Option<serde_json::Value>,
    /// System message sent first; `''` sends none.
    /// @default "You are ChatGPT, a large language model trained by OpenAI. Answer as concisely as possible.\nCurrent date: <today>"
    pub system_message: Option<String>,
    /// Context window of the model, in tokens.
    /// @default 4000
    pub max_model_tokens: Option<u32>,
    /// Most tokens a reply may use; the request's `max_tokens` is what the window leaves, capped here.
    /// @default 1000
    pub max_response_tokens: Option<u32>,
    /// Bound on a whole `sendMessage` call, in milliseconds; `0` means no bound (as in the
    /// `chatgpt` package, where a falsy `timeoutMs` means none).
    /// @default 600000
    pub timeout_ms: Option<u32>,
    /// Longest silence tolerated between two reads of a response body, in milliseconds, from a
    /// stream's first token on: a stream that hangs fails instead of hanging forever. The wait for
    /// the first token is bounded by `attemptTimeoutMs` and `timeoutMs` instead, so a model that
    /// thinks long before answering is waited for rather than retried.
    /// @default 60000
    pub idle_timeout_ms: Option<u32>,
    /// Largest response body, or single stream event, accepted, in bytes.
    /// @default 33554432 (32 MiB)
    pub max_response_bytes: Option<u32>,
    /// Messages kept by the in-memory conversation store.
    /// @default 10000
    pub message_store_size: Option<u32>,
    /// Extra headers sent with every request.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<std::collections::HashMap<String, String>>,
    /// Conversation store read: `async (id) => ChatMessage | undefined` (the `chatgpt` package's
    /// hook). May be given alone, as there: writes then go to `messageStore`, else to the
    /// in-memory store. A throw or rejection fails the call with `ERR_CHATGPT_STORE`, whose
    /// `cause` is the value thrown.
    #[napi(ts_type = "GetMessageByIdFunction")]
    pub get_message_by_id: Option<serde_json::Value>,
    /// Conversation store write: `async (message) => void`, called for every sent and received
    /// message. May be given alone: reads then go to `messageStore`, else to the in-memory store.
    #[napi(ts_type = "UpsertMessageFunction")]
    pub upsert_message: Option<serde_json::Value>,
    /// A Keyv-style store (`get(id)` / `set(id, message)`), e.g. `new Keyv('redis://...')`,
    /// for the operations `getMessageById` / `upsertMessage` do not replace.
    #[napi(
        ts_type = "{ get(key: string): Promise<any> | any; set(key: string, value: any): Promise<unknown> | unknown }"
    )]
    pub message_store: Option<serde_json::Value>,
    /// Several keys instead of `apiKey`: each request uses the healthy key with the fewest
    /// requests in flight; a 429 cools a key down for its `retry-after` and the retry moves to
    /// another key at once; a 401/403 disables a key. Keys are never logged.
    pub api_keys: Option<Vec<String>>,
    /// Retries after the first attempt, for connection errors, timeouts, 408, 409, 429
    /// `rate_limit_exceeded` and 5xx (`x-should-retry` overrides). Never for 400, 401, 403, 404,
    /// 422 or 429 `insufficient_quota`. Do not wrap calls in another retry loop.
    /// @default 2
    pub max_retries: Option<u32>,
    /// First retry delay; it doubles per retry, with jitter adding up to as much again.
    /// A server's `retry-after-ms` / `retry-after` (up to 60 s) is used instead when sent.
    /// @default 500
    pub retry_base_ms: Option<u32>,
    /// Cap on the exponential retry delay (before jitter).
    /// @default 8000
    pub retry_max_ms: Option<u32>,
    /// Bound on one HTTP attempt; a timed-out attempt is retried while `timeoutMs` allows.
    /// @default no per-attempt bound (only `timeoutMs`)
    pub attempt_timeout_ms: Option<u32>,
    /// Requests in flight at once for this instance; further calls wait in a FIFO queue.
    /// @default unlimited
    pub max_concurrency: Option<u32>,
    /// Calls allowed to wait for a slot; more reject at once with `ERR_CHATGPT_QUEUE_FULL`.
    /// @default unlimited
    pub max_queue: Option<u32>,
    /// Client-side pacing per key, like OpenAI's limits: a request reserves its prompt tokens
    /// plus `max_tokens` and is sent when both budgets allow; real usage is credited back; the
    /// server's `x-ratelimit-*` headers and 429s pause new sends until the reset.
    #[napi(ts_type = "RateLimitOptions")]
    pub rate_limit: Option<serde_json::Value>,
    /// Circuit breaker for the upstream: `false` turns it off, an object tunes it.
    /// @default { windowMs: 10000, volumeThreshold: 20, errorThresholdPercentage: 50, resetTimeoutMs: 30000 }
    #[napi(ts_type = "boolean | CircuitBreakerOptions")]
    pub circuit_breaker: Option<serde_json::Value>,
    /// Response cache, off by default: `true` turns it on with the defaults (`{ maxEntries: 1024,
    /// maxBytes: 67108864, ttlMs: 3600000 }`), an object turns it on configured. When on,
    /// identical requests (same base URL, model, messages and answer-changing parameters) get
    /// the stored answer, and identical calls in flight share one request; such a reply has
    /// `cached: true` and zero `usage`, the original counts in `usage.saved`. Per call,
    /// `sendMessage(text, { cache: false })` skips it.
    /// @default false
    #[napi(ts_type = "boolean | CacheOptions")]
    pub cache: Option<serde_json::Value>,
    /// Log like the `chatgpt` package, with `console.log`: `sendMessage (N tokens)` and the
    /// request body before each call (the prompt included), the response after a non-streamed
    /// reply, and a line for a call that fails. Keys and URL credentials are scrubbed.
    /// @default false
    pub debug: Option<bool>,
    /// Functions the model may call in every request (openai-node's `ChatCompletionTool[]`), sent
    /// as `tools`; a call's own `tools` replace them. Same as `completionParams.tools`.
    #[napi(ts_type = "Array<ChatCompletionTool>")]
    pub tools: Option<serde_json::Value>,
    /// Whether and which tool the model must call, sent as `tool_choice`: `'auto'`, `'none'`,
    /// `'required'` or `{ type: 'function', function: { name } }`.
    #[napi(ts_type = "ToolChoice")]
    pub tool_choice: Option<serde_json::Value>,
    /// Accepted for code written for the `chatgpt` package, and ignored with a one-time
    /// `process.emitWarning` (code `CHATGPT_NATIVE_UNSUPPORTED_OPTION`): requests are made in Rust.
    /// @deprecated
    #[napi(ts_type = "unknown")]
    pub fetch: Option<serde_json::Value>,
    /// Azure OpenAI: requests go to `https://{resource}.openai.azure.com/openai/deployments/{deployment}/chat/completions?api-version={apiVersion}`
    /// (or under `baseUrl` instead of the resource's host), and the key is sent as the `api-key`
    /// header, never `Authorization`. Exclusive with `apiBaseUrl`.
    #[napi(ts_type = "AzureOptions")]
    pub azure: Option<serde_json::Value>,
    /// Certificates trusted in addition to the operating system's roots: a PEM string or Buffer
    /// (one or several certificates), or an array of them. The file named by
    /// `NODE_EXTRA_CA_CERTS` is trusted too (read when the instance is created; skipped, as in
    /// Node, when it cannot be read).
    #[napi(ts_type = "string | Buffer | Array<string | Buffer>")]
    pub ca: Option<serde_json::Value>,
    /// Proxy for every request (`http://host:port`, credentials in the URL if needed): https
    /// requests are tunnelled with CONNECT. Given, it replaces `HTTPS_PROXY`/`HTTP_PROXY`/
    /// `NO_PROXY`; `false` or `null` means no proxy even if those are set.
    /// @default the HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY environment variables
    #[napi(ts_type = "string | false | null")]
    pub proxy: Option<serde_json::Value>,
    /// Structured output for every request, sent as `response_format` (a call's own replaces it):
    /// `{ type: 'json_object' }` or `{ type: 'json_schema', json_schema: { name, schema, strict } }`
    /// makes every reply's text one JSON document, which `reply.parsed` holds; `{ type: 'text' }`
    /// is the default. Same as `completionParams.response_format`.
    #[napi(ts_type = "ResponseFormat")]
    pub response_format: Option<serde_json::Value>,
    /// How long a reasoning model thinks, sent as `reasoning_effort`: `'minimal'`, `'low'`,
    /// `'medium'` or `'high'`. Same as `completionParams.reasoning_effort`.
    #[napi(ts_type = "ReasoningEffort")]
    pub reasoning_effort: Option<String>,
    /// Share `rateLimit` with every process that points at the same Redis (and `keyPrefix`):
    /// the request and token buckets per key and model (and per upstream, with `upstreams`),
    /// the pause after a 429 and what `x-ratelimit-*` headers say live in Redis, updated
    /// atomically by server-side scripts. A key of `apiKeys` one process cools down (429) or
    /// disables (401/403, for 10 minutes) is skipped by every process, and with `cache` the
    /// response cache has a second level in Redis (same key, TTL and bounds).
    /// When Redis fails or is slower than `operationTimeoutMs`, calls use `localShare` of the
    /// limits in-process (one warning, `metrics().coordination.mode` is `'local'`) until it
    /// answers again. The URL's password never appears in messages or metrics.
    /// @default none (limits are per process)
    #[napi(ts_type = "CoordinationOptions")]
    pub coordination: Option<serde_json::Value>,
    /// Servers to fall back between (1 to 16), each with its own base URL, keys, model, rate
    /// limit and circuit breaker. A call goes to the first healthy one and moves to the next when
    /// that one's breaker is open, its keys are all cooling or disabled, or its retries were spent
    /// on 5xx, timeouts, connection errors or 429s; never on a failure of the request itself (400,
    /// 404, 422...), an abort, or once a stream delivered a delta. `reply.upstream` names the one
    /// that answered; `metrics().upstreams` counts each. Exclusive with `apiKey`, `apiKeys`,
    /// `apiBaseUrl` and `azure` (each upstream has its own); every other option applies to all.
    #[napi(ts_type = "Array<UpstreamOptions>")]
    pub upstreams: Option<serde_json::Value>,
}

impl ChatGPTAPIOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &[
        "apiKey",
        "apiBaseUrl",
        "apiOrg",
        "completionParams",
        "systemMessage",
        "maxModelTokens",
        "maxResponseTokens",
        "timeoutMs",
        "idleTimeoutMs",
        "maxResponseBytes",
        "messageStoreSize",
        "headers",
        "getMessageById",
        "upsertMessage",
        "messageStore",
        "apiKeys",
        "maxRetries",
        "retryBaseMs",
        "retryMaxMs",
        "attemptTimeoutMs",
        "maxConcurrency",
        "maxQueue",
        "rateLimit",
        "circuitBreaker",
        "cache",
        "debug",
        "tools",
        "toolChoice",
        "fetch",
        "azure",
        "ca",
        "proxy",
        "responseFormat",
        "reasoningEffort",
        "coordination",
        "upstreams",
    ];
}

/// Options of `sendMessage(text, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SendMessageOptions {
    /// Overrides the instance's `systemMessage` for this call; `''` sends none.
    pub system_message: Option<String>,
    /// Merged over the instance's `completionParams` for this call.
    #[napi(ts_type = "CompletionParams")]
    pub completion_params: Option<serde_json::Value>,
    /// Id of the user message being sent.
    /// @default a random UUID v4
    pub message_id: Option<String>,
    /// Id of the message this one answers (a previous reply's `id`).
    pub parent_message_id: Option<String>,
    /// Passed through to the result, for your own bookkeeping.
    pub conversation_id: Option<String>,
    /// The user's `name`, sent with the user message.
    pub name: Option<String>,
    /// Stream the reply with server-sent events.
    /// @default !!onProgress
    pub stream: Option<bool>,
    /// Called once per content delta, in order; every call has run before the Promise settles.
    /// If it throws, or returns a Promise that rejects, the request is cancelled and the Promise
    /// rejects with what it threw or rejected with. Promises it returns are awaited before the
    /// call settles, up to the call's `timeoutMs` (then it rejects with `ERR_CHATGPT_TIMEOUT`)
    /// or an abort.
    #[napi(ts_type = "(partial: PartialChatMessage) => void")]
    pub on_progress: Option<serde_json::Value>,
    /// Cancels the call: the Promise rejects with `name: 'AbortError'`, `code: 'ABORT_ERR'`.
    #[napi(ts_type = "AbortSignal")]
    pub abort_signal: Option<serde_json::Value>,
    /// Overrides the instance's `timeoutMs` for this call; `0` means no bound for this call.
    pub timeout_ms: Option<u32>,
    /// `false`: neither read nor write the instance's response cache (nor share an identical
    /// call in flight) for this call. `true` uses the instance's cache when it has one (see the
    /// constructor's `cache`); on an instance without a cache it does nothing.
    /// @default true
    pub cache: Option<bool>,
    /// Headers for this call, set over the instance's `headers` (names are case-insensitive; the
    /// call's value wins). `Authorization`, `api-key`, `Host`, `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are refused with `ERR_CHATGPT_INVALID_ARG`: the key
    /// always comes from `apiKey`/`apiKeys`. Not part of the response cache's key: calls
    /// coalesced with an identical one in flight share its request (and its headers).
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<std::collections::HashMap<String, String>>,
    /// Sent as the `Idempotency-Key` header, the same on every retry of this call, so a server
    /// that supports it answers a retried request once (openai-node's request option).
    pub idempotency_key: Option<String>,
    /// Functions the model may call (openai-node's `ChatCompletionTool[]`), sent as `tools`
    /// (replacing the instance's). A reply that calls them has `toolCalls` and `finishReason`
    /// `'tool_calls'`; `runTools` answers them for you.
    #[napi(ts_type = "Array<ChatCompletionTool>")]
    pub tools: Option<serde_json::Value>,
    /// Whether and which tool the model must call, sent as `tool_choice`.
    #[napi(ts_type = "ToolChoice")]
    pub tool_choice: Option<serde_json::Value>,
    /// The results of the tool calls of the reply `parentMessageId` names, one per call:
    /// `content` a string, or any JSON value (sent stringified). They are sent (and stored) as
    /// `tool` messages after that reply; `text` may then be `''` (no user message is sent).
    #[napi(ts_type = "Array<ToolResult>")]
    pub tool_results: Option<serde_json::Value>,
    /// Structured output, sent as `response_format` (replacing the instance's): with
    /// `{ type: 'json_object' }` or `{ type: 'json_schema', json_schema: { name, schema, strict } }`
    /// the reply's text is parsed (once complete) into `reply.parsed`; a reply that is not JSON
    /// rejects with `ERR_CHATGPT_OUTPUT_PARSE`, one cut by the token limit with
    /// `ERR_CHATGPT_OUTPUT_LENGTH`, a refusal with `ERR_CHATGPT_REFUSAL` (none is cached or stored).
    #[napi(ts_type = "ResponseFormat")]
    pub response_format: Option<serde_json::Value>,
    /// How long a reasoning model thinks, sent as `reasoning_effort`: `'minimal'`, `'low'`,
    /// `'medium'` or `'high'`.
    #[napi(ts_type = "ReasoningEffort")]
    pub reasoning_effort: Option<String>,
}

impl SendMessageOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &[
        "systemMessage",
        "completionParams",
        "messageId",
        "parentMessageId",
        "conversationId",
        "name",
        "stream",
        "onProgress",
        "abortSignal",
        "timeoutMs",
        "cache",
        "headers",
        "idempotencyKey",
        "tools",
        "toolChoice",
        "toolResults",
        "responseFormat",
        "reasoningEffort",
    ];
}

/// The `sendMessage` options that concern the conversation store, which `sendMessages` (it sends
/// the caller's messages as given) refuses. Its options are the others: [`SEND_MESSAGES_OPTIONS`],
/// typed by hand in `index.d.ts` as `SendMessagesOptions`, `Omit<SendMessageOptions, ...>` these
/// (the unit tests below check the list there against this one).
pub const CONVERSATION_OPTIONS: &[&str] = &[
    "parentMessageId",
    "messageId",
    "conversationId",
    "systemMessage",
    "name",
    "toolResults",
];

/// The names `sendMessages(messages, options)` accepts: the `sendMessage` options but
/// [`CONVERSATION_OPTIONS`].
pub const SEND_MESSAGES_OPTIONS: &[&str] = &without::<{ SendMessageOptions::NAMES.len() - CONVERSATION_OPTIONS.len() }>(
    SendMessageOptions::NAMES,
    CONVERSATION_OPTIONS,
);

/// `names` without those in `removed`, at compile time, so the shared names are written once. `N`
/// must be what is left (else the build fails: every removed name must be in `names`).
const fn without<const N: usize>(names: &[&'static str], removed: &[&'static str]) -> [&'static str; N] {
    let mut kept = 0;
    let mut rest = names;
    while let Some((name, more)) = rest.split_first() {
        if !contains(removed, name) {
            kept += 1;
        }
        rest = more;
    }
    assert!(kept == N, "N must be names.len() - removed.len()");
    let mut out = [""; N];
    let mut slots: &mut [&'static str] = &mut out;
    let mut rest = names;
    while let Some((name, more)) = rest.split_first() {
        if !contains(removed, name) {
            let Some((slot, free)) = slots.split_first_mut() else {
                break;
            };
            *slot = name;
            slots = free;
        }
        rest = more;
    }
    out
}

/// Whether `names` holds `name` (a `const fn`, for [`without`]).
const fn contains(names: &[&str], name: &str) -> bool {
    let mut rest = names;
    while let Some((first, more)) = rest.split_first() {
        if same(first.as_bytes(), name.as_bytes()) {
            return true;
        }
        rest = more;
    }
    false
}

/// `a == b` for byte strings, in a `const fn`.
const fn same(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        match (a.split_first(), b.split_first()) {
            (Some((x, a_rest)), Some((y, b_rest))) if *x == *y => {
                a = a_rest;
                b = b_rest;
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Read and validate `sendMessages(messages, options)` arguments.
pub fn read_messages_call<'env>(
    env: &'env Env,
    messages: Unknown<'env>,
    options: Option<Unknown<'env>>,
) -> Result<(SendRequest, Opts<'env>)> {
    let o = Opts::from_arg(env, options, "options")?;
    for name in CONVERSATION_OPTIONS {
        if o.raw(name)?.is_some() {
            return Err(invalid_arg(
                env,
                format!(
                    "Unknown option `{name}` of `sendMessages`: it sends the messages as given, without a system \
                     message or the conversation store (use `sendMessage` for those)"
                ),
            ));
        }
    }
    o.allow_only(SEND_MESSAGES_OPTIONS, &[])?;
    let value = to_json(env, &messages, "messages")?;
    let own = crate::core::messages::parse_messages(&value, "messages").map_err(|e| to_napi_error(env, &e))?;
    let req = read_send_request(env, &o, Prompt::Own(own))?;
    Ok((req, o))
}

/// The names `sendMany(inputs, options)` accepts in `options`: the `sendMessage` options' names
/// plus `onItem`. Its TypeScript shape, `SendManyOptions`, is written by hand in `index.d.ts` as
/// an interface extending `SendMessageOptions`, so the shared options are declared once; the unit
/// tests below check its members against these names.
pub const SEND_MANY_OPTIONS: &[&str] =
    &with_first::<{ SendMessageOptions::NAMES.len() + 1 }>("onItem", SendMessageOptions::NAMES);

/// `first` followed by `rest`: one list of option names built on another at compile time, so
/// the shared names are written once. `N` must be `rest.len() + 1` (else the build fails).
const fn with_first<const N: usize>(first: &'static str, rest: &[&'static str]) -> [&'static str; N] {
    assert!(N == rest.len() + 1, "N must be rest.len() + 1");
    let mut out = [first; N];
    let mut names = rest;
    // Every slot after the first takes the next name.
    let mut slots: &mut [&'static str] = match out.split_first_mut() {
        Some((_, tail)) => tail,
        None => &mut [],
    };
    while let Some((slot, free)) = slots.split_first_mut() {
        let Some((name, more)) = names.split_first() else { break };
        *slot = *name;
        slots = free;
        names = more;
    }
    out
}

/// `rateLimit` of `new ChatGPTAPI(options)`: per-key budgets per minute. Each is unlimited
/// when not given.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RateLimitOptions {
    /// Requests sent per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute: each request reserves its prompt tokens plus `max_tokens`.
    pub tokens_per_minute: Option<u32>,
}

/// `coordination` of `new ChatGPTAPI(options)`: where the shared budgets live.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CoordinationOptions {
    /// `'redis://[user:password@]host:port[/db]'` (`rediss://` for TLS), or an object to tune it.
    #[napi(ts_type = "string | RedisCoordinationOptions")]
    pub redis: serde_json::Value,
}

impl CoordinationOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["redis"];
}

/// `coordination.redis` as an object: `url` for one Redis, or `nodes` for a Redis Cluster.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RedisCoordinationOptions {
    /// `'redis://[user:password@]host:port[/db]'`, or `rediss://` for TLS. Give this or `nodes`.
    pub url: Option<String>,
    /// A Redis Cluster instead of one Redis: some of its nodes' URLs (1 to 64, all `redis://`
    /// or all `rediss://`), from which the client learns the others and the slots. Every
    /// script's keys share one hash tag, so each runs on one node.
    pub nodes: Option<Vec<String>>,
    /// PEM certificates (a string or Buffer, or an array of them) trusted beside the system
    /// roots for `rediss://`: a private CA. Only with `rediss://`.
    #[napi(ts_type = "string | Buffer | Array<string | Buffer>")]
    pub ca: Option<serde_json::Value>,
    /// Start of every Redis key: processes share when their Redis and prefix are the same.
    /// @default 'chatgpt-native'
    pub key_prefix: Option<String>,
    /// Budget of one Redis operation, in milliseconds (1 to 10000); a slower or failed one
    /// makes the call fall back to the local limits.
    /// @default 50
    pub operation_timeout_ms: Option<u32>,
    /// Share of `rateLimit` each process uses on its own while Redis is unavailable, greater
    /// than 0 and at most 1: `1 / processes` never exceeds the budget, 1 keeps each process
    /// at the full budget.
    /// @default 0.5
    pub local_share: Option<f64>,
    /// With `cache` on: whether the response cache has a second level in Redis, shared by every
    /// process (`false`: each process keeps its own cache only).
    /// @default true
    pub cache: Option<bool>,
}

impl RedisCoordinationOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &[
        "url",
        "nodes",
        "ca",
        "keyPrefix",
        "operationTimeoutMs",
        "localShare",
        "cache",
    ];
}

/// `azure` of `new ChatGPTAPI(options)`: an Azure OpenAI deployment. Give `resource` or `baseUrl`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct AzureOptions {
    /// The resource name: requests go to `https://{resource}.openai.azure.com`.
    pub resource: Option<String>,
    /// The resource's endpoint instead of `resource` (a custom domain, a gateway, a local server).
    pub base_url: Option<String>,
    /// The deployment's name (`/openai/deployments/{deployment}`).
    pub deployment: String,
    /// Sent as `?api-version=` on every request, e.g. `'2024-10-21'`.
    pub api_version: String,
}

impl AzureOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["resource", "baseUrl", "deployment", "apiVersion"];
}

impl RateLimitOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["requestsPerMinute", "tokensPerMinute"];
}

/// One entry of `upstreams` in `new ChatGPTAPI(options)`: a server and how to use it. Give
/// `apiBaseUrl` or `azure`, and `apiKey` or `apiKeys`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct UpstreamOptions {
    /// How `reply.upstream`, an error's `upstream` and `metrics().upstreams` name it (1 to 64
    /// characters, unique).
    /// @default its index in `upstreams`, as a string ('0', '1', ...)
    pub name: Option<String>,
    /// Base URL of an OpenAI-compatible server, as the instance's `apiBaseUrl`.
    pub api_base_url: Option<String>,
    /// Its API key (never logged or included in errors).
    pub api_key: Option<String>,
    /// Several keys instead of `apiKey`: a key pool of its own, as the instance's `apiKeys`.
    pub api_keys: Option<Vec<String>>,
    /// An Azure OpenAI deployment instead of `apiBaseUrl`, as the instance's `azure`.
    #[napi(ts_type = "AzureOptions")]
    pub azure: Option<serde_json::Value>,
    /// The model this server is asked for, replacing the request's `model` (e.g. a cheaper
    /// model on a backup provider, or a local server's own model name).
    /// @default the request's model
    pub model: Option<String>,
    /// Headers sent to this server, set over the instance's `headers`.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<std::collections::HashMap<String, String>>,
    /// Its own pacing per key, as the instance's `rateLimit`.
    /// @default the instance's `rateLimit`
    #[napi(ts_type = "RateLimitOptions")]
    pub rate_limit: Option<serde_json::Value>,
    /// Its own circuit breaker, as the instance's `circuitBreaker` (`false` turns it off).
    /// @default the instance's `circuitBreaker`
    #[napi(ts_type = "boolean | CircuitBreakerOptions")]
    pub circuit_breaker: Option<serde_json::Value>,
}

impl UpstreamOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &[
        "name",
        "apiBaseUrl",
        "apiKey",
        "apiKeys",
        "azure",
        "model",
        "headers",
        "rateLimit",
        "circuitBreaker",
    ];
}

/// `circuitBreaker` of `new ChatGPTAPI(options)`: when more than `errorThresholdPercentage`
/// of at least `volumeThreshold` calls in the last `windowMs` failed, calls fail fast with
/// `ERR_CHATGPT_CIRCUIT_OPEN` for `resetTimeoutMs`, then one trial call decides.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CircuitBreakerOptions {
    /// The rolling window failures are counted over, in milliseconds.
    /// @default 10000
    pub window_ms: Option<u32>,
    /// Calls in the window before the breaker may open.
    /// @default 20
    pub volume_threshold: Option<u32>,
    /// Failure percentage, from 0 to 100, the failures must exceed to open the breaker.
    /// @default 50
    pub error_threshold_percentage: Option<u32>,
    /// How long the breaker stays open before a trial call, in milliseconds.
    /// @default 30000
    pub reset_timeout_ms: Option<u32>,
}

impl CircuitBreakerOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &[
        "windowMs",
        "volumeThreshold",
        "errorThresholdPercentage",
        "resetTimeoutMs",
    ];
}

/// `cache` of `new ChatGPTAPI(options)`: bounds of the response cache.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CacheOptions {
    /// Most answers kept.
    /// @default 1024
    pub max_entries: Option<u32>,
    /// Most bytes of answers kept.
    /// @default 67108864 (64 MiB)
    pub max_bytes: Option<u32>,
    /// How long an answer is served, in milliseconds.
    /// @default 3600000
    pub ttl_ms: Option<u32>,
}

impl CacheOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["maxEntries", "maxBytes", "ttlMs"];
}

/// Constructor options of the `chatgpt` package (v5) that cannot be honoured: ignored with a
/// one-time warning. Every other v5 constructor and `sendMessage` option is honoured.
pub const CONSTRUCTOR_IGNORED: &[IgnoredOption] = &[IgnoredOption {
    name: "fetch",
    why: "requests are made in Rust, not through a fetch function",
}];

/// An object input of `sendMany`: `text` plus the `sendMessage` options.
const SEND_MANY_ITEM_OPTIONS: &[&str] =
    &with_first::<{ SendMessageOptions::NAMES.len() + 1 }>("text", SendMessageOptions::NAMES);

/// Most inputs of one `sendMany` call.
pub const MAX_BATCH_INPUTS: u32 = 100_000;

/// The options of `new ChatGPTAPI(options)` that become core's [`ClientOptions`]; the store
/// callbacks are read by the constructor. Unknown names are rejected first.
pub fn read_client_options(o: &Opts) -> Result<ClientOptions> {
    o.allow_only(ChatGPTAPIOptions::NAMES, CONSTRUCTOR_IGNORED)?;
    Ok(ClientOptions {
        api_key: o.secret_string("apiKey")?,
        api_base_url: o.string("apiBaseUrl")?,
        api_org: o.string("apiOrg")?,
        completion_params: with_output_options(o, with_tool_options(o, o.json_object("completionParams")?)?)?,
        system_message: o.string("systemMessage")?,
        max_model_tokens: o.positive_u32("maxModelTokens")?,
        max_response_tokens: o.positive_u32("maxResponseTokens")?,
        timeout_ms: o.non_negative_int("timeoutMs")?,
        idle_timeout_ms: o.positive_int("idleTimeoutMs")?,
        max_response_bytes: o.positive_int("maxResponseBytes")?.map(|n| n as usize),
        message_store_size: o.positive_int("messageStoreSize")?.map(|n| n as usize),
        headers: o.string_record("headers")?,
        debug: o.bool("debug")?.unwrap_or(false),
        api_keys: o.string_array("apiKeys")?.unwrap_or_default(),
        max_retries: o.non_negative_int("maxRetries")?.map(|n| n.min(100) as u32),
        retry_base_ms: o.positive_int("retryBaseMs")?,
        retry_max_ms: o.positive_int("retryMaxMs")?,
        attempt_timeout_ms: o.positive_int("attemptTimeoutMs")?,
        max_concurrency: o.positive_int("maxConcurrency")?.map(|n| n as usize),
        max_queue: o.non_negative_int("maxQueue")?.map(|n| n as usize),
        rate_limit: read_rate_limit(o)?,
        circuit_breaker: read_breaker(o)?,
        cache: read_cache(o)?,
        azure: read_azure(o)?,
        ca: read_ca(o)?,
        proxy: read_proxy(o)?,
        coordination: read_coordination(o)?,
        upstreams: read_upstreams(o)?,
    })
}

/// `coordination: { redis: url | { url | nodes, ca?, keyPrefix?, operationTimeoutMs?, localShare?, cache? } }`.
/// The URLs are read as secrets (their passwords are never echoed); core checks them and the
/// ranges.
fn read_coordination(o: &Opts) -> Result<Option<crate::core::coordination::CoordinationOptions>> {
    let Some(c) = o.nested("coordination")? else {
        return Ok(None);
    };
    c.allow_only(CoordinationOptions::NAMES, &[])?;
    let missing =
        || c.invalid("Expected `coordination.redis` to be a Redis URL or an object with `url` or `nodes`".to_owned());
    let is_string = match c.raw("redis")? {
        Some(v) => v.get_type()? == ValueType::String,
        None => return Err(missing()),
    };
    if is_string {
        return Ok(c
            .secret_string("redis")?
            .map(|url| crate::core::coordination::CoordinationOptions {
                url,
                ..Default::default()
            }));
    }
    let Some(r) = c.nested("redis")? else {
        return Err(missing());
    };
    r.allow_only(RedisCoordinationOptions::NAMES, &[])?;
    let url = r.secret_string("url")?;
    let nodes = r.string_array("nodes")?;
    if url.is_none() && nodes.is_none() {
        return Err(missing());
    }
    Ok(Some(crate::core::coordination::CoordinationOptions {
        url: url.unwrap_or_default(),
        nodes: nodes.unwrap_or_default(),
        ca: r.pem_list("ca")?,
        key_prefix: r.string("keyPrefix")?,
        operation_timeout_ms: r.non_negative_int("operationTimeoutMs")?,
        local_share: r.finite_number("localShare")?,
        cache: r.bool("cache")?,
    }))
}

/// `upstreams: [{ name?, apiBaseUrl | azure, apiKey | apiKeys, model?, headers?, rateLimit?,
/// circuitBreaker? }]`, 1 to [`MAX_UPSTREAMS`](crate::core::config::MAX_UPSTREAMS) entries;
/// `ClientConfig::build` checks the values.
fn read_upstreams(o: &Opts) -> Result<Vec<crate::core::config::UpstreamOptions>> {
    use crate::core::config::MAX_UPSTREAMS;
    let Some(entries) = o.object_array("upstreams", MAX_UPSTREAMS as u32)? else {
        return Ok(Vec::new());
    };
    entries
        .into_iter()
        .map(|u| {
            u.allow_only(UpstreamOptions::NAMES, &[])?;
            Ok(crate::core::config::UpstreamOptions {
                name: u.string("name")?,
                api_base_url: u.string("apiBaseUrl")?,
                api_key: u.secret_string("apiKey")?,
                api_keys: u.string_array("apiKeys")?.unwrap_or_default(),
                azure: read_azure(&u)?,
                model: u.string("model")?,
                headers: u.string_record("headers")?,
                rate_limit: read_rate_limit(&u)?,
                circuit_breaker: read_breaker(&u)?,
            })
        })
        .collect()
}

/// `azure: { resource?, baseUrl?, deployment, apiVersion }`.
fn read_azure(o: &Opts) -> Result<Option<crate::core::config::AzureOptions>> {
    let Some(a) = o.nested("azure")? else {
        return Ok(None);
    };
    a.allow_only(AzureOptions::NAMES, &[])?;
    let required = |name: &str| -> Result<String> {
        a.string(name)?.ok_or_else(|| {
            a.invalid(format!(
                "Expected `{}` to be a string, got undefined",
                a.option_name(name)
            ))
        })
    };
    Ok(Some(crate::core::config::AzureOptions {
        resource: a.string("resource")?,
        base_url: a.string("baseUrl")?,
        deployment: required("deployment")?,
        api_version: required("apiVersion")?,
    }))
}

/// `ca`: a PEM string or Buffer, or an array of them.
fn read_ca(o: &Opts) -> Result<Vec<Vec<u8>>> {
    o.pem_list("ca")
}

/// `proxy`: a URL, or `false`/`null` for none (`undefined`: the environment decides).
fn read_proxy(o: &Opts) -> Result<ProxySetting> {
    o.proxy_setting("proxy")
}

/// `rateLimit: { requestsPerMinute?, tokensPerMinute? }`.
fn read_rate_limit(o: &Opts) -> Result<Option<RateLimitConfig>> {
    let Some(rl) = o.nested("rateLimit")? else {
        return Ok(None);
    };
    rl.allow_only(RateLimitOptions::NAMES, &[])?;
    Ok(Some(RateLimitConfig {
        requests_per_minute: rl.positive_u32("requestsPerMinute")?,
        tokens_per_minute: rl.positive_u32("tokensPerMinute")?,
    }))
}

/// `circuitBreaker: false | true | { windowMs, volumeThreshold, errorThresholdPercentage, resetTimeoutMs }`.
fn read_breaker(o: &Opts) -> Result<Setting<BreakerConfig>> {
    match o.bool_or_object("circuitBreaker")? {
        Some(true) => return Ok(Setting::On),
        Some(false) => return Ok(Setting::Off),
        None => {}
    }
    let Some(b) = o.nested("circuitBreaker")? else {
        return Ok(Setting::Unset);
    };
    b.allow_only(CircuitBreakerOptions::NAMES, &[])?;
    let d = BreakerConfig::default();
    let percentage = b
        .non_negative_int("errorThresholdPercentage")?
        .unwrap_or(d.error_threshold_percentage as u64);
    if percentage > 100 {
        return Err(b.invalid(format!(
            "Expected `{}` to be at most 100, got {percentage}",
            b.option_name("errorThresholdPercentage")
        )));
    }
    Ok(Setting::Custom(BreakerConfig {
        window: b.positive_int("windowMs")?.map_or(d.window, Duration::from_millis),
        buckets: d.buckets,
        volume_threshold: b.positive_u32("volumeThreshold")?.unwrap_or(d.volume_threshold),
        error_threshold_percentage: percentage as u8,
        reset_timeout: b
            .positive_int("resetTimeoutMs")?
            .map_or(d.reset_timeout, Duration::from_millis),
    }))
}

/// `cache: false | true | { maxEntries, maxBytes, ttlMs }`; an object turns the cache on.
fn read_cache(o: &Opts) -> Result<Setting<CacheConfig>> {
    match o.bool_or_object("cache")? {
        Some(true) => return Ok(Setting::On),
        Some(false) => return Ok(Setting::Off),
        None => {}
    }
    let Some(c) = o.nested("cache")? else {
        return Ok(Setting::Unset);
    };
    c.allow_only(CacheOptions::NAMES, &[])?;
    let d = CacheConfig::default();
    Ok(Setting::Custom(CacheConfig {
        max_entries: c.positive_int("maxEntries")?.map_or(d.max_entries, |n| n as usize),
        max_bytes: c.positive_int("maxBytes")?.unwrap_or(d.max_bytes),
        ttl: c.positive_int("ttlMs")?.map_or(d.ttl, Duration::from_millis),
    }))
}

/// What a call sends beside its options: a conversation's new turn (`sendMessage`,
/// `buildMessages`, `sendMany`), or the caller's own messages (`sendMessages`).
enum Prompt {
    Turn(Input),
    Own(Arc<OwnMessages>),
}

/// A turn's input: `text`, content parts, or tool messages (the `toolResults` option's results,
/// given as the input instead).
enum Input {
    Text(String),
    Parts(Arc<[ContentPart]>),
    ToolResults(Vec<ToolResult>),
}

/// Read and validate `sendMessage(text, options)` arguments (shared with `buildMessages` and
/// `sendMany`). `text_name` names the text in messages (`text`, `inputs[3].text`); the caller
/// has checked `o`'s names.
pub fn read_request<'env>(
    env: &'env Env,
    text: Option<Unknown<'env>>,
    text_name: &str,
    o: &Opts<'env>,
) -> Result<SendRequest> {
    let input = read_input(env, text, text_name, Accept::ToolMessages)?;
    read_send_request(env, o, Prompt::Turn(input))
}

/// The `SendRequest` of `prompt` and the options `o`: the options `sendMessage` and
/// `sendMessages` share are read here once for both; the conversation's (`parentMessageId`, ...)
/// only for a turn (`sendMessages` has refused them already).
fn read_send_request(env: &Env, o: &Opts, prompt: Prompt) -> Result<SendRequest> {
    let has_progress = o.function("onProgress")?.is_some();
    let (text, parts, messages, tool_results) = match prompt {
        Prompt::Own(own) => (String::new(), None, Some(own), Vec::new()),
        Prompt::Turn(input) => {
            let option = match o.json("toolResults")? {
                None => None,
                Some(value) => {
                    Some(read_tool_results(&value, &o.option_name("toolResults")).map_err(|e| to_napi_error(env, &e))?)
                }
            };
            match (input, option) {
                (Input::ToolResults(_), Some(_)) => {
                    return Err(o.invalid(format!(
                        "Expected tool results either as the message (tool messages) or as `{}`, got both",
                        o.option_name("toolResults")
                    )))
                }
                // Tool messages as the input are `toolResults` with an empty text, exactly.
                (Input::ToolResults(results), None) => (String::new(), None, None, results),
                (Input::Text(text), results) => (text, None, None, results.unwrap_or_default()),
                (Input::Parts(parts), results) => (
                    content::joined_text(&parts),
                    Some(parts),
                    None,
                    results.unwrap_or_default(),
                ),
            }
        }
    };
    let conversation = messages.is_none();
    let req = SendRequest {
        text,
        parts,
        messages,
        system_message: o.string("systemMessage")?,
        completion_params: with_output_options(o, with_tool_options(o, o.json_object("completionParams")?)?)?,
        // Resolved here, not in core: the onProgress relay needs it as `parentMessageId`.
        message_id: match o.string("messageId")? {
            Some(id) => Some(id),
            None => conversation.then(|| uuid::Uuid::new_v4().to_string()),
        },
        parent_message_id: o.string("parentMessageId")?,
        conversation_id: o.string("conversationId")?,
        name: o.string("name")?,
        stream: o.bool("stream")?.unwrap_or(has_progress),
        timeout: o.non_negative_int("timeoutMs")?.map(timeout_from_ms),
        cache: o.bool("cache")?.unwrap_or(true),
        headers: crate::core::transport::call_headers(
            &o.string_record("headers")?,
            o.string("idempotencyKey")?.as_deref(),
        )
        .map_err(|e| to_napi_error(env, &e))?,
        tool_results,
    };
    if let Some(params) = &req.completion_params {
        crate::core::config::check_completion_params(params, "completionParams").map_err(|e| to_napi_error(env, &e))?;
    }
    Ok(req)
}

/// `params` with the `tools` and `toolChoice` options of `o` written in as `tools` /
/// `tool_choice` (over any there), each checked; `completionParams.tools` / `.tool_choice`
/// are checked too.
fn with_tool_options(o: &Opts, params: Option<Map<String, Value>>) -> Result<Option<Map<String, Value>>> {
    let fail = |e: crate::core::error::ChatError| o.invalid(e.message.clone());
    let tools = o.json("tools")?;
    let tool_choice = o.json("toolChoice")?;
    if tools.is_none() && tool_choice.is_none() {
        if let Some(params) = &params {
            let name = o.option_name("completionParams");
            if let Some(tools) = params.get("tools") {
                check_tools(tools, &format!("{name}.tools")).map_err(fail)?;
            }
            if let Some(choice) = params.get("tool_choice") {
                check_tool_choice(choice, &format!("{name}.tool_choice")).map_err(fail)?;
            }
        }
        return Ok(params);
    }
    let mut params = params.unwrap_or_default();
    if let Some(tools) = tools {
        check_tools(&tools, &o.option_name("tools")).map_err(fail)?;
        params.insert("tools".into(), tools);
    }
    if let Some(choice) = tool_choice {
        check_tool_choice(&choice, &o.option_name("toolChoice")).map_err(fail)?;
        params.insert("tool_choice".into(), choice);
    }
    Ok(Some(params))
}

/// `params` with the `responseFormat` and `reasoningEffort` options of `o` written in as
/// `response_format` / `reasoning_effort` (over any there), each checked. `completionParams`'
/// `response_format` is checked too (a reply is read by it); its `reasoning_effort` is sent as
/// given, so levels a server adds later can be used before this package knows them.
fn with_output_options(o: &Opts, params: Option<Map<String, Value>>) -> Result<Option<Map<String, Value>>> {
    let fail = |e: crate::core::error::ChatError| o.invalid(e.message.clone());
    let format = o.json("responseFormat")?;
    let effort = o.string("reasoningEffort")?.map(Value::String);
    if let Some(params) = &params {
        let name = o.option_name("completionParams");
        if let Some(given) = params.get("response_format").filter(|_| format.is_none()) {
            check_response_format(given, &format!("{name}.response_format")).map_err(fail)?;
        }
    }
    if format.is_none() && effort.is_none() {
        return Ok(params);
    }
    let mut params = params.unwrap_or_default();
    if let Some(format) = format {
        check_response_format(&format, &o.option_name("responseFormat")).map_err(fail)?;
        params.insert("response_format".into(), format);
    }
    if let Some(effort) = effort {
        check_reasoning_effort(&effort, &o.option_name("reasoningEffort")).map_err(fail)?;
        params.insert("reasoning_effort".into(), effort);
    }
    Ok(Some(params))
}

/// What [`read_input`] takes besides a string and content parts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Only those (a message's `content`).
    Content,
    /// Tool messages too (`sendMessage`'s input).
    ToolMessages,
}

/// A message's content: a string, or an array of content parts (then also their text, joined
/// with `'\n'`, which the stored row keeps as `text`). `name` names it in errors.
pub fn read_content<'env>(
    env: &'env Env,
    content: Option<Unknown<'env>>,
    name: &str,
) -> Result<(String, Option<Arc<[ContentPart]>>)> {
    match read_input(env, content, name, Accept::Content)? {
        Input::Parts(parts) => Ok((content::joined_text(&parts), Some(parts))),
        Input::Text(text) => Ok((text, None)),
        // Only read with `Accept::ToolMessages`.
        Input::ToolResults(_) => Err(invalid_arg(env, format!("Expected `{name}` to be content"))),
    }
}

/// A turn's input: a string, content parts, or (with `Accept::ToolMessages`) one tool message
/// `{ role: 'tool', toolCallId, content }` or an array of them. Content parts and messages are
/// told apart by `role`, which only messages have.
fn read_input<'env>(env: &'env Env, input: Option<Unknown<'env>>, name: &str, accept: Accept) -> Result<Input> {
    let to_napi = |e: crate::core::error::ChatError| to_napi_error(env, &e);
    let Some(value) = input else {
        return Err(not_an_input(env, None, name, accept));
    };
    match value.get_type()? {
        ValueType::String => return Ok(Input::Text(unsafe { value.cast::<String>() }?)),
        ValueType::Object => {}
        _ => return Err(not_an_input(env, Some(&value), name, accept)),
    }
    let array = is_array(&value)?;
    if !array && accept == Accept::Content {
        return Err(not_an_input(env, Some(&value), name, accept));
    }
    let json = to_json(env, &value, name)?;
    if accept == Accept::ToolMessages {
        if let Some(results) = read_tool_messages(&json, name) {
            return results.map(Input::ToolResults).map_err(to_napi);
        }
    }
    if !array {
        return Err(not_an_input(env, Some(&value), name, accept));
    }
    content::parse_parts(&json, name).map(Input::Parts).map_err(to_napi)
}

/// The error for an input that is none of what `accept` allows.
fn not_an_input(env: &Env, value: Option<&Unknown>, name: &str, accept: Accept) -> Error {
    let got = value.map_or_else(|| "undefined".to_owned(), |v| describe(env, v));
    let others = match accept {
        Accept::Content => "an array of content parts",
        Accept::ToolMessages => "an array of content parts, or tool messages { role: 'tool', toolCallId, content }",
    };
    invalid_arg(
        env,
        format!("Expected `{name}` to be a string, got {got} (or {others})"),
    )
}

/// Whether `value` is a JavaScript array.
pub fn is_array(value: &Unknown) -> Result<bool> {
    Ok(value.get_type()? == ValueType::Object && unsafe { value.cast::<Object>() }?.is_array()?)
}

/// `sendMessage`'s and `buildMessages`' arguments: `text` and the options object.
pub fn read_call<'env>(
    env: &'env Env,
    text: Unknown<'env>,
    options: Option<Unknown<'env>>,
) -> Result<(SendRequest, Opts<'env>)> {
    let o = Opts::from_arg(env, options, "options")?;
    o.allow_only(SendMessageOptions::NAMES, &[])?;
    let req = read_request(env, Some(text), "text", &o)?;
    Ok((req, o))
}

/// `sendMany`'s inputs: strings (sent with `options`) or `{ text, ...options }` objects.
pub fn read_inputs<'env>(env: &'env Env, inputs: Unknown<'env>, o: &Opts<'env>) -> Result<Vec<SendRequest>> {
    let is_array = inputs.get_type()? == ValueType::Object && unsafe { inputs.cast::<Object>() }?.is_array()?;
    if !is_array {
        return Err(invalid_arg(
            env,
            format!("Expected `inputs` to be an array, got {}", describe(env, &inputs)),
        ));
    }
    let array: Array = unsafe { inputs.cast() }?;
    if array.len() > MAX_BATCH_INPUTS {
        return Err(invalid_arg(
            env,
            format!(
                "Expected `inputs` to have at most {MAX_BATCH_INPUTS} items, got {}",
                array.len()
            ),
        ));
    }
    let mut requests = Vec::with_capacity(array.len() as usize);
    for i in 0..array.len() {
        let item: Option<Unknown> = array.get(i).map_err(|e| {
            let thrown = caught(env, &e);
            invalid_arg(env, format!("Reading `inputs[{i}]` threw {thrown}"))
        })?;
        let item = item.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined)));
        let req = match item.map(|v| (v.get_type(), v)) {
            Some((Ok(ValueType::String), text)) => read_request(env, Some(text), &format!("inputs[{i}]"), o)?,
            Some((Ok(ValueType::Object), object)) => {
                let item_opts =
                    Opts::from_arg(env, Some(object), &format!("inputs[{i}]"))?.with_prefix(format!("inputs[{i}]."));
                item_opts.allow_only(SEND_MANY_ITEM_OPTIONS, &[])?;
                read_request(env, item_opts.raw("text")?, &format!("inputs[{i}].text"), &item_opts)?
            }
            _ => {
                let got = item.map_or_else(|| "undefined".to_owned(), |v| describe(env, &v));
                return Err(invalid_arg(
                    env,
                    format!("Expected `inputs[{i}]` to be a string or an object, got {got}"),
                ));
            }
        };
        requests.push(req);
    }
    check_unique_message_ids(env, &requests)?;
    check_unique_idempotency_keys(env, &requests)?;
    Ok(requests)
}

/// Two items of one batch may not share an `idempotencyKey`: a server that honours it would
/// answer the second with the first's reply. (String inputs share `options.idempotencyKey`.)
fn check_unique_idempotency_keys(env: &Env, requests: &[SendRequest]) -> Result<()> {
    let mut seen: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for (i, req) in requests.iter().enumerate() {
        let Some(key) = req.headers.as_deref().and_then(|h| h.get("idempotency-key")) else {
            continue;
        };
        if let Some(first) = seen.insert(key.as_bytes(), i) {
            return Err(invalid_arg(
                env,
                format!(
                    "Expected every input of `sendMany` to have its own `idempotencyKey`, but `inputs[{first}]` and \
                     `inputs[{i}]` share one (string inputs take `options.idempotencyKey`)"
                ),
            ));
        }
    }
    Ok(())
}

/// Two items of one batch may not share a user-message id: the store keys messages by id, so the
/// second would replace the first and a follow-up to one could carry the other's turns. (String
/// inputs share `options.messageId` when it is given; every other item gets a UUID of its own.)
fn check_unique_message_ids(env: &Env, requests: &[SendRequest]) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(requests.len());
    for (i, req) in requests.iter().enumerate() {
        let Some(id) = req.message_id.as_deref() else { continue };
        if let Some(first) = seen.insert(id, i) {
            let shown: String = id.chars().take(40).collect();
            return Err(invalid_arg(
                env,
                format!(
                    "Expected every input of `sendMany` to have its own `messageId`, but `inputs[{first}]` and \
                     `inputs[{i}]` share {shown:?} (string inputs take `options.messageId`)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::options::check_option_names;

    /// Names in `wider` missing from `narrower` plus `extra`, and the reverse.
    fn difference(wider: &[&str], narrower: &[&str], extra: &[&str]) -> (Vec<String>, Vec<String>) {
        let expected: Vec<&str> = narrower.iter().chain(extra).copied().collect();
        let missing = expected
            .iter()
            .filter(|n| !wider.contains(n))
            .map(|n| n.to_string())
            .collect();
        let surplus = wider
            .iter()
            .filter(|n| !expected.contains(n))
            .map(|n| n.to_string())
            .collect();
        (missing, surplus)
    }

    #[test]
    fn options_names_are_the_struct_fields() {
        let declared: &[(&str, &[&str])] = &[
            ("ChatGPTAPIOptions", ChatGPTAPIOptions::NAMES),
            ("SendMessageOptions", SendMessageOptions::NAMES),
            ("RateLimitOptions", RateLimitOptions::NAMES),
            ("CoordinationOptions", CoordinationOptions::NAMES),
            ("RedisCoordinationOptions", RedisCoordinationOptions::NAMES),
            ("CircuitBreakerOptions", CircuitBreakerOptions::NAMES),
            ("CacheOptions", CacheOptions::NAMES),
            ("AzureOptions", AzureOptions::NAMES),
            ("UpstreamOptions", UpstreamOptions::NAMES),
        ];
        check_option_names(include_str!("requests.rs"), declared);
    }

    #[test]
    fn send_many_options_are_the_send_message_options_plus_on_item() {
        let (missing, surplus) = difference(SEND_MANY_OPTIONS, SendMessageOptions::NAMES, &["onItem"]);
        assert!(
            missing.is_empty() && surplus.is_empty(),
            "SendManyOptions lacks {missing:?} and has {surplus:?} beyond SendMessageOptions + onItem"
        );
    }

    /// The members `index.d.ts` declares in `export interface <name> ...` itself, and the text
    /// between the name and the `{` (its `extends` clause).
    fn typed_interface<'a>(typings: &'a str, name: &str) -> (&'a str, Vec<&'a str>) {
        let opening = format!("export interface {name} ");
        let start = typings
            .find(&opening)
            .unwrap_or_else(|| panic!("index.d.ts lacks {name}"));
        let rest = &typings[start + opening.len()..];
        let (heading, body) = rest.split_once("{\n").unwrap_or_else(|| panic!("{name} has no body"));
        let body = body.split("\n}").next().unwrap_or_default();
        let members = body
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter_map(|l| l.split_once(':').map(|(member, _)| member.trim_end_matches('?')))
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric()))
            .collect();
        (heading, members)
    }

    #[test]
    fn the_send_many_options_typings_are_what_send_many_accepts() {
        let (heading, own) = typed_interface(include_str!("../../index.d.ts"), "SendManyOptions");
        assert_eq!(heading.trim(), "extends SendMessageOptions", "SendManyOptions' heading");
        // The `SendMessageOptions` members are its struct's fields, checked against its `NAMES` above.
        let typed: Vec<&str> = SendMessageOptions::NAMES.iter().copied().chain(own).collect();
        let (missing, surplus) = difference(&typed, SEND_MANY_OPTIONS, &[]);
        assert!(
            missing.is_empty() && surplus.is_empty(),
            "the SendManyOptions typings lack {missing:?} and have {surplus:?} beyond what sendMany accepts"
        );
    }

    #[test]
    fn send_messages_options_are_the_send_message_options_but_the_conversations() {
        let (missing, surplus) = difference(SendMessageOptions::NAMES, SEND_MESSAGES_OPTIONS, CONVERSATION_OPTIONS);
        assert!(missing.is_empty() && surplus.is_empty(), "{missing:?} {surplus:?}");
        assert!(SEND_MESSAGES_OPTIONS.contains(&"onProgress") && !SEND_MESSAGES_OPTIONS.contains(&"messageId"));
    }

    #[test]
    fn the_send_messages_options_typings_omit_the_conversation_options() {
        let typings = include_str!("../../index.d.ts");
        let opening = "export interface SendMessagesOptions";
        let start = typings.find(opening).expect("index.d.ts declares SendMessagesOptions");
        let heading = typings[start + opening.len()..].split_once('{').map_or("", |(h, _)| h);
        let heading = heading.split_whitespace().collect::<Vec<_>>().join(" ");
        let omitted = heading
            .strip_prefix("extends Omit<SendMessageOptions,")
            .and_then(|rest| rest.strip_suffix('>'))
            .expect("SendMessagesOptions extends Omit<SendMessageOptions, ...>");
        let mut omitted: Vec<&str> = omitted.split('|').map(|name| name.trim().trim_matches('\'')).collect();
        let mut expected = CONVERSATION_OPTIONS.to_vec();
        omitted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(omitted, expected);
    }

    #[test]
    fn a_send_many_item_takes_text_and_the_send_message_options() {
        let (missing, surplus) = difference(SEND_MANY_ITEM_OPTIONS, SendMessageOptions::NAMES, &["text"]);
        assert!(missing.is_empty() && surplus.is_empty(), "{missing:?} {surplus:?}");
    }

    #[test]
    fn ignored_constructor_options_are_typed() {
        for option in CONSTRUCTOR_IGNORED {
            assert!(ChatGPTAPIOptions::NAMES.contains(&option.name), "{}", option.name);
        }
    }

    #[test]
    fn nested_shapes_list_what_their_readers_read() {
        assert_eq!(RateLimitOptions::NAMES, ["requestsPerMinute", "tokensPerMinute"]);
        assert_eq!(
            CircuitBreakerOptions::NAMES,
            [
                "windowMs",
                "volumeThreshold",
                "errorThresholdPercentage",
                "resetTimeoutMs"
            ]
        );
        assert_eq!(CacheOptions::NAMES, ["maxEntries", "maxBytes", "ttlMs"]);
    }
}
