//! `ChatGPTAPI`: the drop-in for the `chatgpt` package's class of the same name.
//!
//! This file only converts: JS options to core requests, AbortSignals to cancellation tokens,
//! `onProgress` to a [`ProgressSink`], and core results and errors back to JS. All HTTP, SSE and
//! protocol work happens in `crate::core` on napi's tokio runtime, off the JS thread.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use super::batch::{item_to_js, ChatMetrics, ItemSink};
use super::convert::caught;
use super::errors::{invalid_arg, promise_or_rejection, to_napi_error, type_error};
use super::init::BindingData;
use super::options::{describe, IgnoredOption, Opts};
use super::progress::{deadline_after, ProgressSink};
use super::settle;
use super::store::{JsStore, JsStoreParts};
use crate::core::breaker::BreakerConfig;
use crate::core::cache::CacheConfig;
use crate::core::chat::RawJson;
use crate::core::client::{ChatClient, ChatReply, SendRequest};
use crate::core::config::{ApiKey, ClientConfig, ClientOptions};
use crate::core::conversation::{ConversationStore, Truncation};
use crate::core::keys::fingerprint;
use crate::core::limits::RateLimitConfig;
use crate::core::redact::redact_url;
use std::sync::{Mutex, PoisonError};

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
    #[napi(ts_type = "Record<string, unknown>")]
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
    /// Bound on a whole `sendMessage` call, in milliseconds.
    /// @default 600000
    pub timeout_ms: Option<u32>,
    /// Longest silence tolerated between two reads of a response body, in milliseconds: a
    /// stream that hangs fails with `ERR_CHATGPT_TIMEOUT` instead of hanging forever.
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
    /// Conversation store: `async (id) => ChatMessage | undefined`, used with `upsertMessage`
    /// instead of the in-memory store (the `chatgpt` package's hook).
    #[napi(
        ts_type = "(id: string) => Promise<StoredChatMessage | undefined | null> | StoredChatMessage | undefined | null"
    )]
    pub get_message_by_id: Option<serde_json::Value>,
    /// Conversation store: `async (message) => void`, called for every sent and received message.
    #[napi(ts_type = "(message: StoredChatMessage) => Promise<unknown> | unknown")]
    pub upsert_message: Option<serde_json::Value>,
    /// A Keyv-style store (`get(id)` / `set(id, message)`), e.g. `new Keyv('redis://...')`.
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
    #[napi(ts_type = "{ requestsPerMinute?: number; tokensPerMinute?: number }")]
    pub rate_limit: Option<serde_json::Value>,
    /// Circuit breaker for the upstream: `false` turns it off, an object tunes it.
    /// @default { windowMs: 10000, volumeThreshold: 20, errorThresholdPercentage: 50, resetTimeoutMs: 30000 }
    #[napi(
        ts_type = "boolean | { windowMs?: number; volumeThreshold?: number; errorThresholdPercentage?: number; resetTimeoutMs?: number }"
    )]
    pub circuit_breaker: Option<serde_json::Value>,
    /// Response cache: identical requests (same base URL, model, messages and answer-changing
    /// parameters) get the stored answer, and identical calls in flight share one request.
    /// `false` turns both off; per call, `sendMessage(text, { cache: false })`.
    /// @default { maxEntries: 1024, maxBytes: 67108864, ttlMs: 3600000 }
    #[napi(ts_type = "boolean | { maxEntries?: number; maxBytes?: number; ttlMs?: number }")]
    pub cache: Option<serde_json::Value>,
    /// Log one line per request to stderr (URL, model, status, latency, request id; never the
    /// key or the prompt).
    /// @default false
    pub debug: Option<bool>,
    /// Accepted for code written for the `chatgpt` package, and ignored with a one-time
    /// `process.emitWarning` (code `CHATGPT_NATIVE_UNSUPPORTED_OPTION`): requests are made in Rust.
    /// @deprecated
    #[napi(ts_type = "unknown")]
    pub fetch: Option<serde_json::Value>,
}

/// A chunk of a reply as passed to `onProgress`: `text` so far and the new `delta`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct PartialChatMessage {
    /// The completion id (`chatcmpl-...`).
    pub id: String,
    /// Everything received so far.
    pub text: String,
    /// What this chunk added.
    pub delta: String,
    #[napi(ts_type = "'assistant'")]
    pub role: String,
    /// The id of the user message this replies to.
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
}

/// Options of `sendMessage(text, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SendMessageOptions {
    /// Overrides the instance's `systemMessage` for this call; `''` sends none.
    pub system_message: Option<String>,
    /// Merged over the instance's `completionParams` for this call.
    #[napi(ts_type = "Record<string, unknown>")]
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
    /// Overrides the instance's `timeoutMs` for this call.
    pub timeout_ms: Option<u32>,
    /// `false`: neither read nor write the response cache (nor share an identical call in
    /// flight) for this call.
    /// @default true
    pub cache: Option<bool>,
}

/// Token usage of a reply.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// True when the server sent no usage and it was counted locally with the model's tokenizer.
    pub estimated: bool,
}

/// A reply, as `chatgpt` v5's `ChatMessage` plus `usage`, `finishReason` and `requestId`.
// Reaches JavaScript as JSON (one `JSON.parse`), never through napi's per-property conversion.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The completion id (`chatcmpl-...`): pass it as the next call's `parentMessageId`.
    pub id: String,
    pub text: String,
    #[napi(ts_type = "'user' | 'assistant' | 'system'")]
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    /// The raw response, or the last chunk of a stream.
    #[napi(ts_type = "Record<string, any>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<RawJson>,
    /// The id of the user message this replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// `stop`, `length`, `content_filter`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `x-request-id` of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How the conversation history was assembled for this reply's prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<ChatHistory>,
    /// True when served from the response cache (no request was sent).
    pub cached: bool,
}

/// Options of `sendMany(inputs, options)`: the `sendMessage` options used for string inputs,
/// plus these.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SendManyOptions {
    /// Called as each item completes, in completion order; every call has run before the
    /// Promise settles. A throw, or a returned Promise that rejects, rejects the batch with that
    /// value and cancels the rest. Returned Promises are awaited before the batch settles, up to
    /// its `timeoutMs` (then it rejects with `ERR_CHATGPT_TIMEOUT`); an abort during that wait
    /// rejects the batch with `ABORT_ERR`.
    #[napi(ts_type = "(index: number, result: SendManyResult) => void")]
    pub on_item: Option<serde_json::Value>,
    /// Cancels the items not yet finished.
    #[napi(ts_type = "AbortSignal")]
    pub abort_signal: Option<serde_json::Value>,
    pub system_message: Option<String>,
    #[napi(ts_type = "Record<string, unknown>")]
    pub completion_params: Option<serde_json::Value>,
    pub timeout_ms: Option<u32>,
    pub stream: Option<bool>,
    pub cache: Option<bool>,
}

/// One item of `sendMany`'s result.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SendManyResult {
    pub ok: bool,
    /// The reply, when `ok`.
    pub message: Option<ChatMessage>,
    /// The failure, when not `ok`.
    #[napi(ts_type = "ChatGPTError")]
    pub error: Option<serde_json::Value>,
}

/// The history sent with a prompt.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistory {
    /// Earlier messages (walked through `parentMessageId`) included in the prompt.
    pub messages: u32,
    /// True when the walk stopped before the start of the conversation.
    pub truncated: bool,
    /// Why it stopped: `'budget'` (the next message did not fit `maxModelTokens -
    /// maxResponseTokens`) or `'missing-parent'` (an ancestor was not in the store).
    #[napi(ts_type = "'budget' | 'missing-parent'")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<String>,
}

/// One message of a built prompt.
#[napi(object)]
pub struct PromptMessageJs {
    #[napi(ts_type = "'system' | 'user' | 'assistant'")]
    pub role: String,
    pub content: String,
    pub name: Option<String>,
}

/// What `sendMessage` would send: the result of `buildMessages`.
#[napi(object)]
pub struct BuiltMessages {
    /// System message, history oldest first, then the new user message.
    pub messages: Vec<PromptMessageJs>,
    /// Prompt tokens as the API bills them (OpenAI's per-message overhead included).
    pub num_tokens: u32,
    /// The `max_tokens` the request would carry: what the window leaves, capped at `maxResponseTokens`.
    pub max_tokens: u32,
    pub history: ChatHistory,
}

impl From<ChatReply> for ChatMessage {
    fn from(r: ChatReply) -> Self {
        ChatMessage {
            id: r.id,
            text: r.text,
            role: r.role,
            name: None,
            delta: None,
            detail: Some(r.detail),
            parent_message_id: Some(r.parent_message_id),
            conversation_id: r.conversation_id,
            usage: Some(ChatUsage {
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                total_tokens: r.usage.total_tokens,
                estimated: r.usage.estimated,
            }),
            finish_reason: r.finish_reason,
            request_id: r.request_id,
            history: Some(history(r.history_messages, r.truncated)),
            cached: r.cached,
        }
    }
}

/// A reply as the JSON of its `ChatMessage`.
pub(crate) fn serialize_message(reply: ChatReply) -> String {
    serde_json::to_string(&ChatMessage::from(reply)).unwrap_or_else(|_| "{}".to_owned())
}

/// `JSON.parse(json)`.
pub(crate) fn message_to_js<'env>(env: &'env Env, json: &str) -> Result<Unknown<'env>> {
    let parse = BindingData::get(env)?.js(|js| js.json_parse.borrow_back(env))?;
    // ASCII is its own Latin-1 encoding: V8 then copies the bytes into a one-byte string instead of
    // decoding UTF-8 (the usual case: JSON escapes nothing, but most replies are ASCII).
    let text = if json.is_ascii() {
        env.create_string_latin1(json.as_bytes())?
    } else {
        env.create_string(json)?
    };
    parse.call(text.to_unknown())
}

/// A Promise already resolved with `value` (napi's deferred, resolved on the spot).
fn resolved_promise<'env, T: ToNapiValue>(env: &'env Env, value: T) -> Result<PromiseRaw<'env, T>> {
    let raw_env = env.raw();
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    unsafe {
        napi::check_status!(napi::sys::napi_create_promise(raw_env, &mut deferred, &mut promise))?;
        let value = T::to_napi_value(raw_env, value)?;
        napi::check_status!(napi::sys::napi_resolve_deferred(raw_env, deferred, value))?;
        Ok(PromiseRaw::new(raw_env, promise))
    }
}

/// The options `new ChatGPTAPI(options)` reads; any other name is rejected.
const CONSTRUCTOR_OPTIONS: &[&str] = &[
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
    "debug",
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
    "getMessageById",
    "upsertMessage",
    "messageStore",
];

/// Constructor options of the `chatgpt` package (v5) that cannot be honoured: ignored with a
/// one-time warning. Every other v5 constructor and `sendMessage` option is honoured.
const CONSTRUCTOR_IGNORED: &[IgnoredOption] = &[IgnoredOption {
    name: "fetch",
    why: "requests are made in Rust, not through a fetch function",
}];

/// The options `sendMessage(text, options)` and `buildMessages` read.
const SEND_MESSAGE_OPTIONS: &[&str] = &[
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
];

/// `sendMany(inputs, options)`: the `sendMessage` options for string inputs, plus `onItem`.
const SEND_MANY_OPTIONS: &[&str] = &[
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
    "onItem",
];

/// An object input of `sendMany`: `text` plus the `sendMessage` options.
const SEND_MANY_ITEM_OPTIONS: &[&str] = &[
    "text",
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
];

/// Most inputs of one `sendMany` call.
pub const MAX_BATCH_INPUTS: u32 = 100_000;

/// `rateLimit: { requestsPerMinute?, tokensPerMinute? }`.
fn read_rate_limit(o: &Opts) -> Result<Option<RateLimitConfig>> {
    let Some(rl) = o.nested("rateLimit")? else {
        return Ok(None);
    };
    rl.allow_only(&["requestsPerMinute", "tokensPerMinute"], &[])?;
    Ok(Some(RateLimitConfig {
        requests_per_minute: rl.positive_u32("requestsPerMinute")?,
        tokens_per_minute: rl.positive_u32("tokensPerMinute")?,
    }))
}

/// `circuitBreaker: false | true | { windowMs, volumeThreshold, errorThresholdPercentage, resetTimeoutMs }`.
fn read_breaker(o: &Opts) -> Result<Option<Option<BreakerConfig>>> {
    if let Some(flag) = o.bool_or_object("circuitBreaker")? {
        return Ok(Some(flag.then(BreakerConfig::default)));
    }
    let Some(b) = o.nested("circuitBreaker")? else {
        return Ok(None);
    };
    b.allow_only(
        &[
            "windowMs",
            "volumeThreshold",
            "errorThresholdPercentage",
            "resetTimeoutMs",
        ],
        &[],
    )?;
    let d = BreakerConfig::default();
    let percentage = b
        .non_negative_int("errorThresholdPercentage")?
        .unwrap_or(d.error_threshold_percentage as u64);
    if percentage > 100 {
        return Err(b.invalid(format!(
            "Expected `circuitBreaker.errorThresholdPercentage` to be at most 100, got {percentage}"
        )));
    }
    Ok(Some(Some(BreakerConfig {
        window: b.positive_int("windowMs")?.map_or(d.window, Duration::from_millis),
        buckets: d.buckets,
        volume_threshold: b.positive_u32("volumeThreshold")?.unwrap_or(d.volume_threshold),
        error_threshold_percentage: percentage as u8,
        reset_timeout: b
            .positive_int("resetTimeoutMs")?
            .map_or(d.reset_timeout, Duration::from_millis),
    })))
}

/// `cache: false | { maxEntries, maxBytes, ttlMs }`.
fn read_cache(o: &Opts) -> Result<Option<Option<CacheConfig>>> {
    if let Some(flag) = o.bool_or_object("cache")? {
        return Ok(Some(flag.then(CacheConfig::default)));
    }
    let Some(c) = o.nested("cache")? else { return Ok(None) };
    c.allow_only(&["maxEntries", "maxBytes", "ttlMs"], &[])?;
    let d = CacheConfig::default();
    Ok(Some(Some(CacheConfig {
        max_entries: c.positive_int("maxEntries")?.map_or(d.max_entries, |n| n as usize),
        max_bytes: c.positive_int("maxBytes")?.unwrap_or(d.max_bytes),
        ttl: c.positive_int("ttlMs")?.map_or(d.ttl, Duration::from_millis),
    })))
}

/// Read and validate `sendMessage(text, options)` arguments (shared with `buildMessages` and
/// `sendMany`). `text_name` names the text in messages (`text`, `inputs[3].text`); the caller
/// has checked `o`'s names.
fn read_request<'env>(
    env: &'env Env,
    text: Option<Unknown<'env>>,
    text_name: &str,
    o: &Opts<'env>,
) -> Result<SendRequest> {
    let text = match text {
        Some(text) if text.get_type()? == ValueType::String => unsafe { text.cast::<String>() }?,
        other => {
            let got = other.map_or_else(|| "undefined".to_owned(), |v| describe(env, &v));
            return Err(invalid_arg(
                env,
                format!("Expected `{text_name}` to be a string, got {got}"),
            ));
        }
    };
    let has_progress = o.function("onProgress")?.is_some();
    let req = SendRequest {
        text,
        system_message: o.string("systemMessage")?,
        completion_params: o.json_object("completionParams")?,
        // Resolved here, not in core: the onProgress relay needs it as `parentMessageId`.
        message_id: Some(
            o.string("messageId")?
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        ),
        parent_message_id: o.string("parentMessageId")?,
        conversation_id: o.string("conversationId")?,
        name: o.string("name")?,
        stream: o.bool("stream")?.unwrap_or(has_progress),
        timeout: o.positive_int("timeoutMs")?.map(Duration::from_millis),
        cache: o.bool("cache")?.unwrap_or(true),
    };
    if let Some(params) = &req.completion_params {
        crate::core::config::check_completion_params(params, "completionParams").map_err(|e| to_napi_error(env, &e))?;
    }
    Ok(req)
}

/// `sendMessage`'s and `buildMessages`' arguments: `text` and the options object.
fn read_call<'env>(
    env: &'env Env,
    text: Unknown<'env>,
    options: Option<Unknown<'env>>,
) -> Result<(SendRequest, Opts<'env>)> {
    let o = Opts::from_arg(env, options, "options")?;
    o.allow_only(SEND_MESSAGE_OPTIONS, &[])?;
    let req = read_request(env, Some(text), "text", &o)?;
    Ok((req, o))
}

/// `sendMany`'s inputs: strings (sent with `options`) or `{ text, ...options }` objects.
fn read_inputs<'env>(env: &'env Env, inputs: Unknown<'env>, o: &Opts<'env>) -> Result<Vec<SendRequest>> {
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
    Ok(requests)
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

fn history(messages: u32, truncated: Option<Truncation>) -> ChatHistory {
    ChatHistory {
        messages,
        truncated: truncated.is_some(),
        truncated_by: truncated.map(|t| t.as_str().to_owned()),
    }
}

/// Client for OpenAI-compatible chat-completions APIs; a drop-in for `chatgpt`'s `ChatGPTAPI`.
#[napi(js_name = "ChatGPTAPI")]
pub struct ChatGPTAPI {
    /// Replaced as a whole when `apiKey` or `apiOrg` is set; every call clones the `Arc` it
    /// starts with, so calls in flight are unaffected.
    client: Mutex<Arc<ChatClient>>,
}

#[napi]
impl ChatGPTAPI {
    /// Create a client. Throws `ERR_CHATGPT_INVALID_ARG` for a missing key, a bad option or an
    /// unknown option (with a did-you-mean); `fetch`, which the `chatgpt` package accepts, is
    /// ignored with a one-time warning. Called without `new`, throws a `TypeError`.
    #[napi(constructor, ts_args_type = "options?: ChatGPTAPIOptions")]
    pub fn new(env: Env, this: This, options: Option<Unknown>) -> Result<Self> {
        // Without `new`, `this` is the global object (or whatever `.call` passed): wrapping it
        // would succeed once and corrupt it. Only an object made by `new` for this class (or a
        // subclass) passes napi-rs's generated instanceof check.
        if unsafe { <&ChatGPTAPI as ValidateNapiValue>::validate(env.raw(), this.object.raw()) }.is_err() {
            return Err(type_error(
                &env,
                "Class constructor ChatGPTAPI cannot be invoked without 'new'",
            ));
        }
        let o = Opts::from_arg(&env, options, "options")?;
        o.allow_only(CONSTRUCTOR_OPTIONS, CONSTRUCTOR_IGNORED)?;
        let client_opts = ClientOptions {
            api_key: o.secret_string("apiKey")?,
            api_base_url: o.string("apiBaseUrl")?,
            api_org: o.string("apiOrg")?,
            completion_params: o.json_object("completionParams")?,
            system_message: o.string("systemMessage")?,
            max_model_tokens: o.positive_u32("maxModelTokens")?,
            max_response_tokens: o.positive_u32("maxResponseTokens")?,
            timeout_ms: o.positive_int("timeoutMs")?,
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
            rate_limit: read_rate_limit(&o)?,
            circuit_breaker: read_breaker(&o)?,
            cache: read_cache(&o)?,
        };
        let get_message_by_id = o.function("getMessageById")?;
        let upsert_message = o.function("upsertMessage")?;
        let message_store = o.object("messageStore")?;
        if get_message_by_id.is_some() != upsert_message.is_some() {
            return Err(invalid_arg(
                &env,
                "Expected `getMessageById` and `upsertMessage` to be given together",
            ));
        }
        if message_store.is_some() && get_message_by_id.is_some() {
            return Err(invalid_arg(
                &env,
                "Expected either `messageStore` or `getMessageById`/`upsertMessage`, not both",
            ));
        }
        if let Some(store) = &message_store {
            for method in ["get", "set"] {
                let f: Option<Unknown> = store.get(method).map_err(|e| {
                    let thrown = caught(&env, &e);
                    invalid_arg(&env, format!("Reading `messageStore.{method}` threw {thrown}"))
                })?;
                if !matches!(f.map(|f| f.get_type()), Some(Ok(ValueType::Function))) {
                    return Err(invalid_arg(
                        &env,
                        format!("Expected `messageStore.{method}` to be a function"),
                    ));
                }
            }
        }
        let store: Option<Arc<dyn ConversationStore>> = if get_message_by_id.is_some() || message_store.is_some() {
            Some(Arc::new(JsStore::new(
                &env,
                JsStoreParts {
                    get_message_by_id,
                    upsert_message,
                    message_store,
                },
            )?))
        } else {
            None
        };
        let client = ClientConfig::build(client_opts)
            .and_then(|cfg| ChatClient::new(cfg, store))
            .map_err(|e| to_napi_error(&env, &e))?;
        Ok(ChatGPTAPI {
            client: Mutex::new(Arc::new(client)),
        })
    }

    /// The client calls start on now.
    fn client(&self) -> Arc<ChatClient> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replace the client by one with `change` applied to its configuration.
    fn reconfigure(&self, env: &Env, change: impl FnOnce(&mut ClientConfig)) -> Result<()> {
        let current = self.client();
        let mut cfg = current.config().clone();
        change(&mut cfg);
        let next = current.with_config(cfg).map_err(|e| to_napi_error(env, &e))?;
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// `api.apiKey` (defined in `lib/api.js`): the fingerprint (`sk-…abcd`) of the key requests
    /// use, the first of `apiKeys` when several were given. Never the key itself: a getter's value
    /// shows in `util.inspect(api, { getters: true })`.
    #[napi(js_name = "__getApiKey", skip_typescript)]
    pub fn get_api_key(&self) -> String {
        fingerprint(self.client().config().api_key.expose())
    }

    /// `api.apiKey = key`: later calls use this key alone (it replaces an `apiKeys` pool too).
    #[napi(js_name = "__setApiKey", skip_typescript)]
    pub fn set_api_key(&self, env: Env, key: Unknown) -> Result<()> {
        let valid = key.get_type()? == ValueType::String;
        let key = if valid {
            unsafe { key.cast::<String>() }?
        } else {
            String::new()
        };
        // Only the kind of value is described, never the value: it is a secret.
        if key.is_empty() || key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid_arg(
                &env,
                "Expected `apiKey` to be a non-empty string without spaces or control characters",
            ));
        }
        let key = ApiKey::new(key);
        self.reconfigure(&env, |cfg| {
            cfg.api_keys = vec![key.clone()];
            cfg.api_key = key;
        })
    }

    /// `api.apiOrg`: the organisation sent as `OpenAI-Organization`, if any.
    #[napi(js_name = "__getApiOrg", skip_typescript)]
    pub fn get_api_org(&self) -> Either<String, ()> {
        match &self.client().config().api_org {
            Some(org) => Either::A(org.clone()),
            None => Either::B(()),
        }
    }

    /// `api.apiOrg = org` (`undefined` or `null` removes it), for later calls.
    #[napi(js_name = "__setApiOrg", skip_typescript)]
    pub fn set_api_org(&self, env: Env, org: Unknown) -> Result<()> {
        let org = match org.get_type()? {
            ValueType::Undefined | ValueType::Null => None,
            ValueType::String => Some(unsafe { org.cast::<String>() }?),
            _ => {
                return Err(invalid_arg(
                    &env,
                    format!("Expected `apiOrg` to be a string, got {}", describe(&env, &org)),
                ))
            }
        };
        self.reconfigure(&env, |cfg| cfg.api_org = org)
    }

    /// The base URL requests go to (without a trailing slash), for display: credentials in it
    /// (`http://user:pass@host`) show as `<redacted>`, so logging it or `util.inspect(api)`
    /// cannot leak them. Requests still use them.
    #[napi(getter)]
    pub fn api_base_url(&self) -> String {
        redact_url(&self.client().config().api_base_url).into_owned()
    }

    /// The default model (`completionParams.model`).
    #[napi(getter)]
    pub fn model(&self) -> String {
        self.client().config().model().to_owned()
    }

    /// A snapshot of this client's metrics: calls, failures by code, retries, 429s, cache,
    /// coalescing, latency and time-to-first-token percentiles, tokens, breaker and keys.
    #[napi]
    pub fn metrics(&self) -> ChatMetrics {
        self.client().stats().into()
    }

    /// The same metrics in Prometheus text exposition format (serve it at `/metrics`).
    #[napi]
    pub fn metrics_text(&self) -> String {
        self.client().prometheus()
    }

    /// Zero the counters and histograms.
    #[napi]
    pub fn reset_metrics(&self) {
        self.client().reset_metrics();
    }

    /// Open a connection to the server before the first real call (TCP, TLS, HTTP/2 when
    /// offered), with a `GET {apiBaseUrl}/models` whose status does not matter. Resolves with
    /// the milliseconds it took.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn warmup<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, f64>> {
        let client = self.client();
        settle::spawn(env, async move { client.warmup().await }, |env, r| {
            r.map(|d| d.as_secs_f64() * 1000.0).map_err(|e| to_napi_error(env, &e))
        })
    }

    /// Send many messages under this instance's concurrency, rate limits and retries. Resolves
    /// with one `{ ok: true, message }` or `{ ok: false, error }` per input, in input order; one
    /// item's failure never rejects the batch. Inputs are strings (sent with `options`' message
    /// options) or `{ text, ...sendMessage options }` (their own options; per-item `onProgress`
    /// and `abortSignal` are not used). `onItem(index, result)` reports each completion as it
    /// happens; `abortSignal` cancels what is left (those items fail with `ABORT_ERR`). At most
    /// 100,000 inputs; an invalid input or option rejects the call with `ERR_CHATGPT_INVALID_ARG`
    /// naming it (`inputs[3].timeoutMs`) before anything is sent. Never throws.
    #[napi(
        ts_args_type = "inputs: Array<string | ({ text: string } & SendMessageOptions)>, options?: SendManyOptions",
        ts_return_type = "Promise<Array<SendManyResult>>"
    )]
    pub fn send_many<'env>(
        &self,
        env: &'env Env,
        inputs: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        promise_or_rejection(env, || self.start_many(env, inputs, options))
    }

    /// `sendMany`'s body; its errors become the Promise's rejection.
    fn start_many<'env>(
        &self,
        env: &'env Env,
        inputs: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        let o = Opts::from_arg(env, options, "options")?;
        o.allow_only(SEND_MANY_OPTIONS, &[])?;
        let requests = read_inputs(env, inputs, &o)?;
        let cancel = CancellationToken::new();
        let abort = match o.object("abortSignal")? {
            Some(signal) => Some(AbortListener::attach(env, signal, cancel.clone())?),
            None => None,
        };
        let sink = match o.function("onItem")? {
            Some(f) => Some(ItemSink::new(env, f, cancel.clone())?),
            None => None,
        };
        let client = self.client();
        // Promises `onItem` returned are waited for until the latest deadline an item can have.
        let timeout = requests
            .iter()
            .map(|r| r.timeout.unwrap_or(client.config().timeout))
            .max()
            .unwrap_or_default();
        let deadline = deadline_after(timeout);
        let fut = async move {
            let sink = Mutex::new(sink);
            let calls = requests.into_iter().enumerate().map(|(i, req)| {
                let (client, cancel, sink) = (&client, &cancel, &sink);
                async move {
                    let result = client.send(req, None, cancel).await;
                    if let Ok(mut s) = sink.lock() {
                        if let Some(s) = s.as_mut() {
                            s.report(i as u32, result.clone());
                        }
                    }
                    result
                }
            });
            let results = futures::future::join_all(calls).await;
            let sink = sink.into_inner().unwrap_or_else(|e| e.into_inner());
            let drained = match &sink {
                Some(s) => Box::pin(s.barrier(deadline)).await,
                None => Ok(()),
            };
            let callback_error = sink.as_ref().and_then(ItemSink::take_error);
            (results, drained, callback_error)
        };
        settle::spawn(env, fut, move |env, (results, drained, callback_error)| {
            if let Some(listener) = abort {
                listener.detach(env);
            }
            if let Some(err) = callback_error {
                return Err(err);
            }
            if let Err(e) = drained {
                return Err(to_napi_error(env, &e));
            }
            let mut out = env.create_array(results.len() as u32)?;
            for (i, r) in results.iter().enumerate() {
                out.set(i as u32, item_to_js(env, r)?)?;
            }
            Ok(out.to_unknown())
        })
    }

    /// Build the prompt `sendMessage(text, options)` would send — system message, history walked
    /// through `parentMessageId` within the token budget, the new message — without sending it.
    /// Rejects with `ERR_CHATGPT_CONTEXT_TOO_LONG` exactly when `sendMessage` would, and with
    /// `ERR_CHATGPT_INVALID_ARG` for invalid arguments. Never throws.
    #[napi(
        ts_args_type = "text: string, options?: SendMessageOptions",
        ts_return_type = "Promise<BuiltMessages>"
    )]
    pub fn build_messages<'env>(
        &self,
        env: &'env Env,
        text: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, BuiltMessages>> {
        promise_or_rejection(env, || {
            let (req, _) = read_call(env, text, options)?;
            self.start_build(env, req)
        })
    }

    /// `buildMessages` once its arguments are read.
    fn start_build<'env>(&self, env: &'env Env, req: SendRequest) -> Result<PromiseRaw<'env, BuiltMessages>> {
        let client = self.client();
        settle::spawn(env, async move { client.prepare(&req, true).await }, |env, prepared| {
            let p = prepared.map_err(|e| to_napi_error(env, &e))?.prompt;
            Ok(BuiltMessages {
                messages: p
                    .messages
                    .into_iter()
                    .map(|m| PromptMessageJs {
                        role: m.role,
                        content: m.content,
                        name: m.name,
                    })
                    .collect(),
                num_tokens: p.prompt_tokens,
                max_tokens: p.max_tokens,
                history: history(p.history_messages, p.truncated),
            })
        })
    }

    /// Send a message and resolve with the reply. Streams when `onProgress` is given (or
    /// `stream: true`). Rejects with a `ChatGPTError`, for invalid arguments too
    /// (`ERR_CHATGPT_INVALID_ARG`): it never throws.
    #[napi(
        ts_args_type = "text: string, options?: SendMessageOptions",
        ts_return_type = "Promise<ChatMessage>"
    )]
    pub fn send_message<'env>(
        &self,
        env: &'env Env,
        text: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        promise_or_rejection(env, || self.start_message(env, text, options))
    }

    /// `sendMessage`'s body; its errors become the Promise's rejection.
    fn start_message<'env>(
        &self,
        env: &'env Env,
        text: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Unknown<'env>>> {
        let (req, o) = read_call(env, text, options)?;
        let on_progress = o.function("onProgress")?;

        let client = self.client();
        // Fast path: a non-streaming cache hit is answered right here, without a thread hop
        // (unless the signal is already aborted: that must reject).
        let already_aborted = match o.object("abortSignal")? {
            Some(signal) => signal_aborted(env, &signal)?,
            None => false,
        };
        if !already_aborted {
            if let Some(reply) = client.try_cached(&req) {
                return resolved_promise(env, message_to_js(env, &serialize_message(reply))?);
            }
        }

        let cancel = CancellationToken::new();
        let abort = match o.object("abortSignal")? {
            Some(signal) => Some(AbortListener::attach(env, signal, cancel.clone())?),
            None => None,
        };
        // Deltas only flow when streaming; a callback on a non-streaming call is never invoked.
        let sink = match (&on_progress, req.stream) {
            (Some(f), true) => Some(ProgressSink::new(
                env,
                *f,
                req.message_id.clone().unwrap_or_default(),
                req.conversation_id.clone(),
                cancel.clone(),
            )?),
            _ => None,
        };

        let deadline = deadline_after(req.timeout.unwrap_or(client.config().timeout));
        let fut = async move {
            let mut sink = sink;
            // Boxed, so the call's state machine (~2 KB) is allocated by the tokio worker that
            // first polls it, and the JavaScript thread only allocates and copies a ~0.5 KB task
            // per call. (A profile showed large aligned allocations and copies around the spawn;
            // the A/B difference in CPU per call was within the benchmark's noise.)
            let result = Box::pin(client.send(
                req,
                sink.as_mut().map(|s| s as &mut dyn crate::core::client::DeltaSink),
                &cancel,
            ))
            .await;
            // A reply is only delivered once every Promise `onProgress` returned has settled.
            let result = match &sink {
                Some(s) => match Box::pin(s.barrier(deadline)).await {
                    Ok(()) => result,
                    Err(e) => result.and(Err(e)),
                },
                None => result,
            };
            let callback_error = sink.as_ref().and_then(ProgressSink::take_error);
            // Serialised here, off the JavaScript thread; one JSON.parse there builds the object
            // far faster than setting each property through napi.
            (result.map(serialize_message), callback_error)
        };
        settle::spawn(env, fut, move |env, (result, callback_error)| {
            if let Some(listener) = abort {
                listener.detach(env);
            }
            if let Some(err) = callback_error {
                return Err(err);
            }
            match result {
                Ok(json) => message_to_js(env, &json),
                Err(e) => Err(to_napi_error(env, &e)),
            }
        })
    }
}

/// The error for a read or call on the caller's `abortSignal` that threw.
fn signal_threw(env: &Env, what: &str, e: &Error) -> Error {
    invalid_arg(env, format!("Using `abortSignal.{what}` threw {}", caught(env, e)))
}

/// `signal.aborted`, which must be a boolean (or absent).
fn signal_aborted(env: &Env, signal: &Object) -> Result<bool> {
    let aborted: Option<Unknown> = signal.get("aborted").map_err(|e| signal_threw(env, "aborted", &e))?;
    match aborted {
        None => Ok(false),
        Some(v) => match v.get_type()? {
            ValueType::Undefined => Ok(false),
            ValueType::Boolean => unsafe { v.cast::<bool>() },
            _ => Err(invalid_arg(
                env,
                format!(
                    "Expected `abortSignal.aborted` to be a boolean, got {}",
                    describe(env, &v)
                ),
            )),
        },
    }
}

/// An `abort` listener on the caller's AbortSignal, removed again when the call settles so a
/// long-lived signal does not accumulate listeners.
/// `signal.addEventListener` / `removeEventListener` as called from Rust.
type ListenerMethod<'a> = Function<'a, FnArgs<(&'a str, Function<'a, Unknown<'a>, ()>)>, Unknown<'a>>;

struct AbortListener {
    signal: ObjectRef,
    listener: FunctionRef<Unknown<'static>, ()>,
}

impl AbortListener {
    fn attach(env: &Env, signal: Object, cancel: CancellationToken) -> Result<Self> {
        if signal_aborted(env, &signal)? {
            cancel.cancel();
        }
        let listener = env.create_function_from_closure::<Unknown, (), _>("onAbort", move |_ctx| {
            cancel.cancel();
            Ok(())
        })?;
        let not_a_signal = || invalid_arg(env, "Expected `abortSignal` to be an AbortSignal");
        let add: Unknown = signal
            .get("addEventListener")
            .map_err(|e| signal_threw(env, "addEventListener", &e))?
            .ok_or_else(not_a_signal)?;
        if add.get_type()? != ValueType::Function {
            return Err(not_a_signal());
        }
        let add: ListenerMethod = unsafe { add.cast() }?;
        add.apply(signal, FnArgs::from(("abort", listener)))
            .map_err(|e| signal_threw(env, "addEventListener", &e))?;
        Ok(AbortListener {
            signal: signal.create_ref()?,
            listener: listener.create_ref()?,
        })
    }

    fn detach(self, env: &Env) {
        let _ = (|| -> Result<()> {
            let signal = self.signal.get_value(env)?;
            let listener = self.listener.borrow_back(env)?;
            let remove: ListenerMethod = signal
                .get("removeEventListener")?
                .ok_or_else(|| Error::from_reason("no removeEventListener"))?;
            remove.apply(signal, FnArgs::from(("abort", listener)))?;
            Ok(())
        })();
        let _ = self.signal.unref(env);
    }
}
