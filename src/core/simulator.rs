//! A local, OpenAI-compatible chat-completions server for tests, the demo and
//! benchmarks — and for users who want to test their own code against
//! realistic failures without spending tokens.
//!
//! The simulator listens on `127.0.0.1` only and speaks the OpenAI wire format
//! for `GET /v1/models` and `POST /v1/chat/completions` (streaming and
//! non-streaming). Answers are deterministic: the text is drawn from a fixed
//! vocabulary whose every entry is exactly one token in both `cl100k_base` and
//! `o200k_base`, seeded from a hash of the request's messages, so the same
//! messages always produce the same answer and `usage.completion_tokens` is
//! exact by construction. `usage.prompt_tokens` follows OpenAI's chat formula
//! counted with `o200k_base`.
//!
//! # Scripting faults
//!
//! A [`Fault`] applies to exactly one chat request. It is taken from the
//! request header `x-sim-fault: <json>` when present (this lets a single
//! request script its own failure, and does not touch the queue), otherwise
//! from a FIFO queue filled with [`Simulator::enqueue_fault`]. The JSON form is
//! camelCase, e.g. `{"kind":"status","status":429,"retryAfter":"2"}` or
//! `{"kind":"disconnect","afterChunks":3}`; see [`Fault`] and [`FaultKind`]
//! for every field and its effect on streaming and non-streaming requests.
//! A chat request that is rejected before it is answered (401, 400) does not
//! consume a queued fault.
//!
//! Timing follows what a client would see from a real server: `status`,
//! `reset` (and `errorEvent` without streaming) answer at once; a mid-stream
//! fault fires when the next content delta would have been due (after `ttft`
//! or `token_delay`); non-streaming `disconnect`, `malformed` and `truncate`
//! arrive after the time a complete answer would have taken.
//!
//! The length of an answer can be chosen per request with the header
//! `x-sim-response-tokens: <n>`; timing comes from [`SimulatorConfig`].
//!
//! # Rate limits and random failures
//!
//! [`SimulatorConfig::rate_limit_rpm`] and [`SimulatorConfig::rate_limit_tpm`]
//! model OpenAI's limits as two continuous token buckets: each holds up to its
//! per-minute limit, starts full and refills at limit/60 per second. A chat
//! request costs one request and, like OpenAI's up-front estimate, its prompt
//! tokens plus its `max_completion_tokens`/`max_tokens` (without a cap, the
//! length of the answer it is going to get). A request takes both amounts or
//! nothing: a rejected request is not charged, so a client that waits the
//! advertised `retry-after-ms` gets through unless others used the budget in
//! the meantime. The rejection is a 429 with OpenAI's `rate_limit_exceeded`
//! body, whose `type` (`requests` or `tokens`) names the limit that keeps the
//! request waiting longest, plus `retry-after-ms` and `retry-after`. A request
//! costing more than the whole TPM limit can never pass: it gets OpenAI's
//! "Request too large" 429 without retry headers, since waiting cannot help.
//! Every response to a chat request that reached the limiter (200 or 429,
//! streaming or not, and scripted or random failures) carries the
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers of the
//! limits that are on, the resets being Go durations (`12ms`, `1.5s`, `6m0s`)
//! like OpenAI's. [`Simulator::set_limits`] changes the limits at runtime.
//!
//! [`SimulatorConfig::failure_rate`] makes that share of the chat requests
//! fail at once with a 500, 502 or 503 and an OpenAI `server_error` body. The
//! verdicts come from a PRNG seeded with [`SimulatorConfig::seed`] that is
//! rolled exactly once per request the limiter admits, so the n-th admitted
//! request gets the same verdict in every run (with concurrent requests, the
//! n-th to reach the limiter).
//!
//! A valid chat request meets these in order: the rate limiter (a 429 there
//! consumes no queued fault), then a scripted fault, then the random failure,
//! which applies only when no scripted fault did. A request failed by either
//! has still used its rate budget, as it would upstream. Requests rejected
//! earlier (401, 400, 413) meet none of them.
//!
//! Nothing in here may panic: it runs inside a Node process, so every failure
//! is mapped to an HTTP error or a closed connection. API keys are never
//! echoed in responses and nothing is logged.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Largest request body accepted; anything bigger gets a 413 instead of
/// letting a runaway test exhaust memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Largest answer length accepted from `x-sim-response-tokens`; the
/// non-streaming answer is built in memory, so the value must be bounded.
const MAX_RESPONSE_TOKENS: u64 = 1_000_000;

/// Frames buffered between a stream's producer task and hyper. Small, so a
/// slow reader applies backpressure to the producer like a real server would.
const STREAM_CHANNEL_CAPACITY: usize = 32;

/// Owner reported by `GET /v1/models`.
const OWNER: &str = "chatgpt-native-simulator";

const HEADER_FAULT: &str = "x-sim-fault";
const HEADER_RESPONSE_TOKENS: &str = "x-sim-response-tokens";
const HEADER_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HEADER_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const HEADER_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
/// `x-ratelimit-{limit,remaining,reset}-requests`, in that order.
const HEADERS_RATE_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
/// `x-ratelimit-{limit,remaining,reset}-tokens`, in that order.
const HEADERS_RATE_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// The limits are per minute; buckets refill continuously over this window.
const RATE_WINDOW_MS: f64 = 60_000.0;

/// Slack for floating-point refills: an amount this close to being available
/// counts as available, so a client that waited exactly the advertised
/// `retry-after-ms` is not turned away by rounding.
const BUCKET_EPSILON: f64 = 1e-6;

/// Organization named in rate-limit messages, where OpenAI names the caller's.
const RATE_LIMIT_ORGANIZATION: &str = "org-simulator";
const RATE_LIMIT_HELP: &str = "Visit https://platform.openai.com/account/rate-limits to learn more.";

const QUOTA_MESSAGE: &str = "You exceeded your current quota, please check your plan and billing details.";

/// Words the answers are made of. Every entry, with its leading space and
/// without it, is exactly one token in both `cl100k_base` and `o200k_base`
/// (checked by a unit test), so an answer of `n` streamed deltas is exactly
/// `n` tokens whichever of the two tokenizers a client uses to check it.
const VOCABULARY: &[&str] = &[
    " the",
    " model",
    " answer",
    " quick",
    " simple",
    " data",
    " system",
    " time",
    " world",
    " test",
    " value",
    " result",
    " stream",
    " server",
    " client",
    " request",
    " response",
    " fast",
    " small",
    " large",
    " good",
    " new",
    " first",
    " last",
    " long",
    " great",
    " little",
    " right",
    " old",
    " big",
    " high",
    " different",
    " important",
    " public",
    " able",
    " water",
    " light",
    " house",
    " point",
    " number",
    " people",
    " place",
    " work",
    " part",
    " case",
    " week",
    " company",
    " group",
    " problem",
    " fact",
    " hand",
    " day",
    " way",
    " thing",
    " year",
    " order",
    " state",
    " city",
    " story",
    " level",
    " sound",
    " river",
    " green",
    " blue",
];

/// Final token of a complete answer (one token in both encodings).
const FULL_STOP: &str = ".";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration of a [`Simulator`].
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// TCP port to listen on; 0 picks a free port. The simulator always binds
    /// `127.0.0.1`.
    pub port: u16,
    /// When set, every request must send `Authorization: Bearer <key>`,
    /// otherwise it gets OpenAI's 401 `invalid_api_key` error.
    pub api_key: Option<String>,
    /// Model listed by `/v1/models` and reported in answers to requests that
    /// do not name a model (a request's own model is echoed back).
    pub model: String,
    /// Time to first token: delay before the first content delta of a stream,
    /// and part of the delay before a non-streaming response.
    pub ttft: Duration,
    /// Delay between two content deltas (a non-streaming response waits
    /// `ttft + n * token_delay`).
    pub token_delay: Duration,
    /// Default answer length in tokens, overridable per request with the
    /// `x-sim-response-tokens` header.
    pub response_tokens: u32,
    /// Requests per minute allowed (0 = unlimited). The starting value: see
    /// [`Simulator::set_limits`] to change it while running.
    pub rate_limit_rpm: u32,
    /// Tokens per minute allowed (0 = unlimited). A request costs its prompt
    /// tokens plus its `max_tokens`/`max_completion_tokens` (or the generated
    /// length if none), like OpenAI's estimate. The starting value: see
    /// [`Simulator::set_limits`] to change it while running.
    pub rate_limit_tpm: u32,
    /// Probability in [0,1] that a chat request fails with a random
    /// 500/502/503 (OpenAI error body, type `server_error`), decided by a
    /// PRNG seeded with [`SimulatorConfig::seed`] so runs are reproducible.
    /// Values outside the range are clamped; NaN means 0.
    pub failure_rate: f64,
    /// Seed for the PRNG behind [`SimulatorConfig::failure_rate`].
    pub seed: u64,
}

impl Default for SimulatorConfig {
    /// Port 0, no API key, model `sim-gpt`, no delays, 16-token answers, no
    /// rate limits and no random failures (seed 0).
    fn default() -> Self {
        Self {
            port: 0,
            api_key: None,
            model: "sim-gpt".to_string(),
            ttft: Duration::ZERO,
            token_delay: Duration::ZERO,
            response_tokens: 16,
            rate_limit_rpm: 0,
            rate_limit_tpm: 0,
            failure_rate: 0.0,
            seed: 0,
        }
    }
}

/// What a scripted [`Fault`] does to the one request it applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// Reply at once (no ttft) with [`Fault::status`] (default 500) and an
    /// OpenAI error body, plus the retry headers the fault names.
    #[default]
    Status,
    /// Close the connection without sending a single response byte.
    Reset,
    /// Streaming: send the role chunk and `afterChunks` deltas, then abort the
    /// connection mid-body. Non-streaming: send the headers and part of the
    /// body, then abort.
    Disconnect,
    /// Streaming: send the role chunk and `afterChunks` deltas, then nothing
    /// more until the client goes away or the simulator closes.
    /// Non-streaming: never send the headers.
    Stall,
    /// Streaming: after `afterChunks` deltas send a frame whose JSON is
    /// invalid, then `[DONE]`. Non-streaming: a 200 whose body is invalid JSON.
    Malformed,
    /// Streaming: after `afterChunks` deltas send an OpenAI error payload as
    /// an SSE frame (see [`Fault::sse_event`]) and end the body cleanly
    /// without `[DONE]`. Non-streaming: like `status` with status 500.
    ErrorEvent,
    /// Streaming: after `afterChunks` deltas end the body cleanly with neither
    /// a finish chunk nor `[DONE]`. Non-streaming: a 200 with truncated JSON.
    Truncate,
    /// Streaming: a complete stream (finish chunk, usage chunk if requested)
    /// without the final `data: [DONE]`. Non-streaming: a normal answer.
    NoDone,
    /// Wait [`Fault::delay_ms`] before the response headers, then answer
    /// normally.
    Delay,
}

/// A scripted failure for one chat request, deserialized from the camelCase
/// JSON of the `x-sim-fault` header or passed to [`Simulator::enqueue_fault`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// What happens to the request.
    pub kind: FaultKind,
    /// `status` kind: the HTTP status to reply with (default 500).
    pub status: Option<u16>,
    /// Error body `message` (default depends on the status).
    pub message: Option<String>,
    /// Error body `type` (default depends on the status).
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// Error body `code` (default depends on the status).
    pub code: Option<String>,
    /// Error body `param` (default null).
    pub param: Option<String>,
    /// `status` kind: value of the `retry-after` header, sent as given.
    #[serde(default, deserialize_with = "string_or_number")]
    pub retry_after: Option<String>,
    /// `status` kind: value of the `retry-after-ms` header, sent as given.
    #[serde(default, deserialize_with = "string_or_number")]
    pub retry_after_ms: Option<String>,
    /// `status` kind: when set, sent as `x-should-retry: true|false`.
    pub should_retry: Option<bool>,
    /// Streaming `disconnect`/`stall`/`malformed`/`errorEvent`/`truncate`:
    /// number of content deltas sent before the fault (default 0; the role
    /// chunk always comes first).
    #[serde(default)]
    pub after_chunks: u32,
    /// `errorEvent` kind: when true the error is sent as
    /// `event: error\ndata: {...}`, otherwise as a bare `data: {...}` frame.
    #[serde(default)]
    pub sse_event: bool,
    /// `delay` kind: extra milliseconds before the response headers.
    #[serde(default)]
    pub delay_ms: u64,
}

/// Accepts `"2"` as well as `2` for header-valued fields, since a JSON
/// author can hardly be blamed for writing a number of seconds as a number.
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }
    Ok(
        Option::<StringOrNumber>::deserialize(deserializer)?.map(|value| match value {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }),
    )
}

/// Counters of a [`Simulator`] since start or the last [`Simulator::reset_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatorStats {
    /// All HTTP requests received, on any path.
    pub requests: u64,
    /// `POST /v1/chat/completions` requests received.
    pub chat_requests: u64,
    /// Chat requests currently being answered (until the response body is
    /// finished or dropped).
    pub in_flight: u64,
    /// High-water mark of `in_flight`.
    pub max_in_flight: u64,
    /// Sum of `prompt_tokens` of all completed answers (counted whether or
    /// not a stream asked for its usage chunk).
    pub prompt_tokens: u64,
    /// Sum of `completion_tokens` of all completed answers.
    pub completion_tokens: u64,
    /// Number of scripted faults applied to requests (from the header or the
    /// queue); random failures are counted in `random_failures` instead.
    pub faults_injected: u64,
    /// 429s sent by the rate limiter (including "request too large").
    pub rate_limited: u64,
    /// Requests failed by [`SimulatorConfig::failure_rate`].
    pub random_failures: u64,
}

/// State shared by the handle and every connection task.
struct Shared {
    config: SimulatorConfig,
    faults: Mutex<VecDeque<Fault>>,
    stats: Mutex<SimulatorStats>,
    limiter: Mutex<RateLimiter>,
    dice: Mutex<FailureDice>,
}

impl Shared {
    /// A poisoned lock only means another task panicked while holding it;
    /// the counters are still usable, and refusing to serve would be worse.
    fn stats(&self) -> MutexGuard<'_, SimulatorStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, VecDeque<Fault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dice(&self) -> MutexGuard<'_, FailureDice> {
        self.dice.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a chat request as in flight for as long as this value lives; it
/// travels inside the response body so that the count drops only when hyper
/// has finished or dropped the body.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let mut stats = shared.stats();
        stats.in_flight += 1;
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        drop(stats);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut stats = self.0.stats();
        stats.in_flight = stats.in_flight.saturating_sub(1);
    }
}

/// A running simulator. Dropping it stops the server as well, but
/// [`Simulator::close`] lets the caller wait until it is down.
pub struct Simulator {
    port: u16,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    /// Taken by the first `close()`; an async mutex so that a concurrent
    /// second `close()` also waits until the server is down.
    server: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Simulator {
    /// Binds `127.0.0.1:{config.port}` and starts serving in the background
    /// on the current tokio runtime.
    pub async fn start(config: SimulatorConfig) -> io::Result<Simulator> {
        // tokio's spawn functions panic outside a runtime; report it instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "Simulator::start must be called from within a tokio runtime",
            ));
        }
        // Building the tokenizer takes a while; do it once, off the async
        // threads, and turn a (theoretical) failure into an error here rather
        // than a panic inside a request later.
        tokio::task::spawn_blocking(|| {
            let _ = tiktoken_rs::o200k_base_singleton();
        })
        .await
        .map_err(|_| io::Error::other("could not load the o200k_base tokenizer"))?;

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let port = listener.local_addr()?.port();
        let limiter = RateLimiter::new(config.rate_limit_rpm, config.rate_limit_tpm, Instant::now());
        let dice = FailureDice::new(config.seed, config.failure_rate);
        let shared = Arc::new(Shared {
            config,
            faults: Mutex::new(VecDeque::new()),
            stats: Mutex::new(SimulatorStats::default()),
            limiter: Mutex::new(limiter),
            dice: Mutex::new(dice),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        Ok(Simulator {
            port,
            shared,
            shutdown,
            server: tokio::sync::Mutex::new(Some(server)),
        })
    }

    /// The port the simulator listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Base URL for OpenAI clients: `http://127.0.0.1:{port}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Queues a fault; the next chat request without an `x-sim-fault` header
    /// takes the oldest queued fault.
    pub fn enqueue_fault(&self, fault: Fault) {
        self.shared.faults().push_back(fault);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Number of queued faults not yet taken by a request.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults().len()
    }

    /// Replaces the rate limits (0 turns a limit off) with full buckets, as
    /// if the simulator had just started with them. Requests already admitted
    /// are not affected.
    pub fn set_limits(&self, rpm: u32, tpm: u32) {
        *self.shared.limiter() = RateLimiter::new(rpm, tpm, Instant::now());
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimulatorStats {
        *self.shared.stats()
    }

    /// Zeroes the counters; `in_flight` keeps counting the requests still
    /// being answered and `max_in_flight` restarts from it.
    pub fn reset_stats(&self) {
        let mut stats = self.shared.stats();
        let in_flight = stats.in_flight;
        *stats = SimulatorStats {
            in_flight,
            max_in_flight: in_flight,
            ..SimulatorStats::default()
        };
    }

    /// Stops accepting connections and drops the open ones (including
    /// stalled streams), then returns. Idempotent.
    pub async fn close(&self) {
        self.shutdown.send_replace(true);
        let mut server = self.server.lock().await;
        if let Some(handle) = server.take() {
            // The accept loop only ends after aborting every connection task,
            // so awaiting it means nothing is served any more.
            let _ = handle.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Dropping the sender would also stop the loop; being explicit keeps
        // that from depending on field order.
        self.shutdown.send_replace(true);
    }
}

/// Accepts connections until shutdown, then aborts every connection task so
/// that stalled responses cannot keep `close()` waiting.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Any change (or the handle being dropped) means shutdown.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Transient errors (EMFILE, ECONNABORTED, ...): back off a
                // little instead of spinning on a listener that keeps failing.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            // Reap finished connection tasks so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Streams are many tiny writes; Nagle would distort measured latencies.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
    // No timer is configured on purpose: hyper's header-read timeout would
    // then close idle keep-alive connections after 30 s, racing clients that
    // reuse pooled connections. Errors just mean the connection is gone.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Routes one request. Returning `Err` makes hyper close the connection
/// without writing anything, which is how the `reset` fault works.
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<SimBody>, BoxError> {
    let is_chat = request.method() == Method::POST && request.uri().path() == "/v1/chat/completions";
    let in_flight = {
        let mut stats = shared.stats();
        stats.requests += 1;
        if is_chat {
            stats.chat_requests += 1;
        }
        drop(stats);
        is_chat.then(|| InFlight::enter(&shared))
    };

    if !authorized(&shared.config, request.headers()) {
        let body = error_json(
            "Incorrect API key provided.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        );
        return Ok(json_response(StatusCode::UNAUTHORIZED, body, in_flight));
    }

    match (request.method(), request.uri().path(), in_flight) {
        (_, _, Some(in_flight)) => chat_completions(shared, request, in_flight).await,
        (&Method::GET, "/v1/models", None) => Ok(models(&shared.config)),
        (method, path, None) => {
            let message = format!("Invalid URL ({method} {path})");
            let body = error_json(&message, "invalid_request_error", None, None);
            Ok(json_response(StatusCode::NOT_FOUND, body, None))
        }
    }
}

fn authorized(config: &SimulatorConfig, headers: &HeaderMap) -> bool {
    let Some(key) = &config.api_key else {
        return true;
    };
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|sent| sent.trim() == key)
}

fn models(config: &SimulatorConfig) -> Response<SimBody> {
    let body = json!({
        "object": "list",
        "data": [{
            "id": config.model,
            "object": "model",
            "created": unix_now(),
            "owned_by": OWNER,
        }],
    });
    json_response(StatusCode::OK, to_bytes(&body), None)
}

/// A validated chat request, reduced to what the simulator uses.
struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    name: Option<String>,
}

/// The optional top-level fields; unknown fields are ignored like OpenAI's
/// compatible servers do.
#[derive(Deserialize)]
struct ChatOptions {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

fn bad_request(message: &str, param: Option<&str>) -> Bytes {
    error_json(message, "invalid_request_error", param, None)
}

fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, Bytes> {
    const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
        means you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
        payload, but what was sent was not valid JSON.)";
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_request(NOT_JSON, None))?;
    let Value::Object(mut object) = value else {
        return Err(bad_request(NOT_JSON, None));
    };
    let messages = object
        .remove("messages")
        .ok_or_else(|| bad_request("Missing required parameter: 'messages'.", Some("messages")))?;
    let messages: Vec<ChatMessage> = serde_json::from_value(messages)
        .map_err(|e| bad_request(&format!("Invalid 'messages': {e}."), Some("messages")))?;
    if messages.is_empty() {
        return Err(bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            Some("messages"),
        ));
    }
    let options: ChatOptions = serde_json::from_value(Value::Object(object))
        .map_err(|e| bad_request(&format!("Invalid request body: {e}."), None))?;
    Ok(ChatRequest {
        model: options.model.filter(|model| !model.is_empty()),
        messages,
        stream: options.stream.unwrap_or(false),
        include_usage: options.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        max_tokens: options.max_completion_tokens.or(options.max_tokens),
    })
}

/// Reads the per-request simulator headers; `Err` is a ready 400 body.
fn simulator_headers(headers: &HeaderMap, default_tokens: u32) -> Result<(Option<Fault>, u64), Bytes> {
    let fault = match headers.get(HEADER_FAULT) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| bad_request("Invalid x-sim-fault header: not text.", None))?;
            let fault = serde_json::from_str::<Fault>(text)
                .map_err(|e| bad_request(&format!("Invalid x-sim-fault header: {e}."), None))?;
            Some(fault)
        }
    };
    let tokens = match headers.get(HEADER_RESPONSE_TOKENS) {
        None => u64::from(default_tokens),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|n| *n <= MAX_RESPONSE_TOKENS)
            .ok_or_else(|| {
                bad_request(
                    &format!(
                        "Invalid x-sim-response-tokens header: expected an integer from 0 to \
                         {MAX_RESPONSE_TOKENS}."
                    ),
                    None,
                )
            })?,
    };
    Ok((fault, tokens))
}

async fn chat_completions(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let (header_fault, wanted_tokens) = match simulator_headers(&parts.headers, shared.config.response_tokens) {
        Ok(found) => found,
        Err(body) => return Ok(json_response(StatusCode::BAD_REQUEST, body, Some(in_flight))),
    };
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let body = bad_request("Request body too large.", None);
            return Ok(json_response(StatusCode::PAYLOAD_TOO_LARGE, body, Some(in_flight)));
        }
        // The client went away while sending; there is nobody to answer.
        Err(error) => return Err(error),
    };
    let chat = match parse_chat_request(&body) {
        Ok(chat) => chat,
        Err(body) => return Ok(json_response(StatusCode::BAD_REQUEST, body, Some(in_flight))),
    };

    let answer = Answer::new(&shared.config, &chat, wanted_tokens);
    // OpenAI's up-front estimate: the prompt plus the most the answer may use.
    let cost = answer
        .prompt_tokens
        .saturating_add(chat.max_tokens.unwrap_or(wanted_tokens));
    // A statement of its own, so the lock is released before any await.
    let admission = shared.limiter().admit(cost, Instant::now());
    let (mut result, snapshot) = match admission {
        Ok(snapshot) => (respond(shared, chat, answer, header_fault, in_flight).await, snapshot),
        Err(rejection) => {
            shared.stats().rate_limited += 1;
            let response = rate_limited_response(&rejection.reason, &answer.model, in_flight);
            (Ok(response), rejection.snapshot)
        }
    };
    if let Ok(response) = &mut result {
        snapshot.apply(response.headers_mut());
    }
    result
}

/// Answers a request the rate limiter admitted: with its scripted fault if it
/// has one, else with a random failure if the dice say so, else normally.
async fn respond(
    shared: Arc<Shared>,
    chat: ChatRequest,
    answer: Answer,
    header_fault: Option<Fault>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    // Only now, with a request we would answer, is a queued fault consumed.
    let fault = header_fault.or_else(|| shared.faults().pop_front());
    // Rolled for every admitted request, even one with a scripted fault, so
    // that the n-th admitted request gets the same verdict whatever faults
    // are scripted around it.
    let random_failure = shared.dice().roll();
    let Some(fault) = fault else {
        if let Some(status) = random_failure {
            shared.stats().random_failures += 1;
            let fault = Fault {
                status: Some(status),
                ..Fault::default()
            };
            return Ok(fault_status_response(&fault, in_flight));
        }
        return answer_normally(shared, answer, chat, None, in_flight).await;
    };
    shared.stats().faults_injected += 1;
    match fault.kind {
        FaultKind::Status => Ok(fault_status_response(&fault, in_flight)),
        FaultKind::Reset => Err("simulated connection reset".into()),
        // Without a stream there is no event to break: answer like a
        // `status` fault, whose status defaults to 500.
        FaultKind::ErrorEvent if !chat.stream => Ok(fault_status_response(&fault, in_flight)),
        FaultKind::Delay => {
            sleep_if_needed(Duration::from_millis(fault.delay_ms)).await;
            answer_normally(shared, answer, chat, None, in_flight).await
        }
        FaultKind::NoDone if !chat.stream => answer_normally(shared, answer, chat, None, in_flight).await,
        _ if chat.stream => answer_normally(shared, answer, chat, Some(fault), in_flight).await,
        FaultKind::Stall => {
            // Never answer; hyper drops this future when the client hangs
            // up, and close() aborts the connection task.
            let never = std::future::pending::<std::convert::Infallible>().await;
            match never {}
        }
        // Non-streaming disconnect, malformed, truncate: a 200 that breaks,
        // sent after the time a real answer would have taken.
        kind => {
            sleep_if_needed(answer.total_delay(&shared.config)).await;
            let full = answer.completion_json();
            let half = full.slice(..full.len() / 2);
            match kind {
                FaultKind::Disconnect => {
                    // Promise the full length, deliver half, then abort.
                    let (tx, body) = SimBody::channel(Some(full.len() as u64), in_flight);
                    tokio::spawn(async move {
                        if tx.send(Chunk::Data(half)).await.is_ok() {
                            let _ = tx.send(Chunk::Abort).await;
                        }
                    });
                    Ok(with_json_headers(StatusCode::OK, body))
                }
                FaultKind::Malformed => Ok(json_response(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"id\": \"broken\""),
                    Some(in_flight),
                )),
                _ => Ok(json_response(StatusCode::OK, half, Some(in_flight))),
            }
        }
    }
}

/// The normal answer, possibly with a streaming fault applied to the stream.
async fn answer_normally(
    shared: Arc<Shared>,
    answer: Answer,
    chat: ChatRequest,
    stream_fault: Option<Fault>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    if !chat.stream {
        sleep_if_needed(answer.total_delay(&shared.config)).await;
        answer.record_usage(&shared);
        let body = answer.completion_json();
        return Ok(json_response(StatusCode::OK, body, Some(in_flight)));
    }
    let (tx, body) = SimBody::channel(None, in_flight);
    tokio::spawn(async move {
        // `Err` only means the client is gone; the task just ends.
        let _ = produce_stream(&shared, &answer, chat.include_usage, stream_fault, &tx).await;
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    insert_request_id(headers);
    Ok(response)
}

/// The client stopped reading (the body was dropped).
struct Gone;

/// Sends one SSE frame, waiting for room in the channel (backpressure).
async fn send(tx: &mpsc::Sender<Chunk>, frame: Bytes) -> Result<(), Gone> {
    tx.send(Chunk::Data(frame)).await.map_err(|_| Gone)
}

/// Sleeps unless the client goes away first, so an abandoned slow stream
/// does not keep its task alive for the rest of the answer.
async fn pause(tx: &mpsc::Sender<Chunk>, duration: Duration) -> Result<(), Gone> {
    if duration.is_zero() {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => Ok(()),
        _ = tx.closed() => Err(Gone),
    }
}

async fn produce_stream(
    shared: &Shared,
    answer: &Answer,
    include_usage: bool,
    fault: Option<Fault>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), Gone> {
    let config = &shared.config;
    // The role chunk goes out with the headers, before ttft, like OpenAI's.
    let role = json!({"role": "assistant", "content": ""});
    send(tx, answer.chunk(role, None, include_usage)).await?;

    let delivered = answer.tokens.len();
    // Where a mid-stream fault fires: where delta number `after_chunks` would
    // have been sent (or at the end if the answer is shorter).
    let fault_at = fault
        .as_ref()
        .filter(|f| f.kind != FaultKind::NoDone)
        .map(|f| usize::try_from(f.after_chunks).map_or(delivered, |n| n.min(delivered)));
    let delay_before = |index: usize| {
        if index == 0 {
            config.ttft
        } else {
            config.token_delay
        }
    };

    // Without a delay between tokens, frames are written in batches of up to 16 KiB (several SSE
    // events per body frame, as a busy real server's TCP stream delivers them): one write per
    // token would make the simulator, not the client under test, the bottleneck of a stream.
    let mut batch: Vec<u8> = Vec::new();
    for (index, token) in answer.tokens.iter().enumerate() {
        if fault_at == Some(index) {
            break;
        }
        let delay = delay_before(index);
        if !delay.is_zero() && !batch.is_empty() {
            send(tx, Bytes::from(std::mem::take(&mut batch))).await?;
        }
        pause(tx, delay).await?;
        let delta = json!({ "content": token });
        let frame = answer.chunk(delta, None, include_usage);
        if config.token_delay.is_zero() {
            batch.extend_from_slice(&frame);
            if batch.len() >= 16 * 1024 {
                send(tx, Bytes::from(std::mem::take(&mut batch))).await?;
            }
        } else {
            send(tx, frame).await?;
        }
    }
    if !batch.is_empty() {
        send(tx, Bytes::from(batch)).await?;
    }

    if let (Some(at), Some(fault)) = (fault_at, &fault) {
        pause(tx, delay_before(at)).await?;
        match fault.kind {
            FaultKind::Disconnect => {
                let _ = tx.send(Chunk::Abort).await;
            }
            FaultKind::Stall => {
                // Keep the connection open and silent until the client hangs
                // up or close() aborts the connection (which drops the body).
                tx.closed().await;
            }
            FaultKind::Malformed => {
                send(tx, Bytes::from_static(b"data: {\"id\": \"broken\", \"choices\": [\n\n")).await?;
                send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await?;
            }
            FaultKind::ErrorEvent => {
                let error = error_value(&fault_error(fault, 500));
                let frame = if fault.sse_event {
                    format!("event: error\ndata: {error}\n\n")
                } else {
                    format!("data: {error}\n\n")
                };
                send(tx, Bytes::from(frame)).await?;
            }
            // Truncate (and anything else): end the body cleanly right here.
            _ => {}
        }
        return Ok(());
    }

    if delivered == 0 {
        pause(tx, config.ttft).await?;
    }
    let finish = answer.chunk(json!({}), Some(answer.finish_reason), include_usage);
    send(tx, finish).await?;
    answer.record_usage(shared);
    if include_usage {
        let usage = json!({
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "choices": [],
            "usage": answer.usage(),
        });
        send(tx, sse(&usage)).await?;
    }
    let no_done = fault.is_some_and(|f| f.kind == FaultKind::NoDone);
    if !no_done {
        send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await?;
    }
    Ok(())
}

/// Everything about one generated answer.
struct Answer {
    id: String,
    created: u64,
    model: String,
    /// The tokens actually delivered (already cut to the request's cap).
    tokens: Vec<&'static str>,
    finish_reason: &'static str,
    prompt_tokens: u64,
}

impl Answer {
    fn new(config: &SimulatorConfig, chat: &ChatRequest, wanted: u64) -> Self {
        let (delivered, finish_reason) = match chat.max_tokens {
            Some(cap) if cap < wanted => (cap, "length"),
            _ => (wanted, "stop"),
        };
        // `wanted` is bounded by MAX_RESPONSE_TOKENS, so these fit a usize.
        let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
        let delivered = usize::try_from(delivered).unwrap_or(usize::MAX);
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: chat.model.clone().unwrap_or_else(|| config.model.clone()),
            tokens: answer_tokens(messages_seed(&chat.messages), wanted, delivered),
            finish_reason,
            prompt_tokens: prompt_tokens(&chat.messages),
        }
    }

    fn completion_tokens(&self) -> u64 {
        self.tokens.len() as u64
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens(),
            "total_tokens": self.prompt_tokens + self.completion_tokens(),
        })
    }

    fn record_usage(&self, shared: &Shared) {
        let mut stats = shared.stats();
        stats.prompt_tokens += self.prompt_tokens;
        stats.completion_tokens += self.completion_tokens();
    }

    /// How long a non-streaming answer takes: `ttft + n * token_delay`.
    fn total_delay(&self, config: &SimulatorConfig) -> Duration {
        let n = u32::try_from(self.tokens.len()).unwrap_or(u32::MAX);
        config.ttft.saturating_add(config.token_delay.saturating_mul(n))
    }

    fn completion_json(&self) -> Bytes {
        to_bytes(&json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.tokens.concat()},
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage(),
        }))
    }

    /// One `chat.completion.chunk` frame. With `include_usage`, OpenAI sends
    /// `"usage": null` on every chunk but the last; clients must cope.
    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if include_usage {
            if let Some(object) = chunk.as_object_mut() {
                object.insert("usage".to_string(), Value::Null);
            }
        }
        sse(&chunk)
    }
}

/// FNV-1a over the messages: stable across runs, platforms and Rust
/// versions, unlike `std`'s hashers.
fn messages_seed(messages: &[ChatMessage]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for message in messages {
        feed(message.role.as_bytes());
        match &message.content {
            Some(Value::String(text)) => feed(text.as_bytes()),
            Some(other) => feed(other.to_string().as_bytes()),
            None => feed(b""),
        }
        feed(message.name.as_deref().unwrap_or("").as_bytes());
    }
    hash
}

/// SplitMix64: tiny, fast and good enough to pick words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first `delivered` tokens of the `wanted`-token answer for `seed`: the
/// first word has no leading space and a complete answer ends with ".", so a
/// capped answer is visibly cut mid-sentence.
fn answer_tokens(seed: u64, wanted: usize, delivered: usize) -> Vec<&'static str> {
    let mut state = seed;
    let len = VOCABULARY.len() as u64;
    (0..delivered.min(wanted))
        .map(|index| {
            if index + 1 == wanted && wanted >= 2 {
                return FULL_STOP;
            }
            let pick = usize::try_from(splitmix64(&mut state) % len).unwrap_or(0);
            let word = VOCABULARY.get(pick).copied().unwrap_or(" the");
            if index == 0 {
                word.trim_start()
            } else {
                word
            }
        })
        .collect()
}

/// Tokens of `text` in `o200k_base`. `encode_ordinary` treats special-token
/// text such as `<|endoftext|>` as plain text, which is how the API counts
/// user content, and never fails on it.
fn count_tokens(text: &str) -> u64 {
    // Through the project tokenizer wrapper: it survives whitespace runs that crash tiktoken.
    crate::core::tokens::Encoding::O200kBase.count(text) as u64
}

/// OpenAI's chat formula: 3 per message + role + content (+ 1 + name), plus
/// 3 for priming the reply. Array content counts its text parts only.
fn prompt_tokens(messages: &[ChatMessage]) -> u64 {
    let content_tokens = |content: &Option<Value>| match content {
        Some(Value::String(text)) => count_tokens(text),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(count_tokens)
            .sum(),
        _ => 0,
    };
    let per_message: u64 = messages
        .iter()
        .map(|message| {
            let name = message.name.as_deref().map_or(0, |name| 1 + count_tokens(name));
            3 + count_tokens(&message.role) + content_tokens(&message.content) + name
        })
        .sum();
    per_message + 3
}

/// The OpenAI error for a fault, with per-status defaults for the fields the
/// fault leaves out.
fn fault_error(fault: &Fault, default_status: u16) -> ErrorFields {
    let status = fault.status.unwrap_or(default_status);
    let quota = status == 429 && fault.code.as_deref() == Some("insufficient_quota");
    let (message, error_type, code) = if quota {
        (QUOTA_MESSAGE, "insufficient_quota", Some("insufficient_quota"))
    } else {
        default_error(status)
    };
    ErrorFields {
        message: fault.message.clone().unwrap_or_else(|| message.to_string()),
        error_type: fault.error_type.clone().unwrap_or_else(|| error_type.to_string()),
        param: fault.param.clone(),
        code: fault.code.clone().or_else(|| code.map(str::to_string)),
    }
}

/// Messages, types and codes modelled on what OpenAI sends for each status.
fn default_error(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
    match status {
        400 => ("Invalid request.", "invalid_request_error", None),
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => ("You are not allowed to access this resource.", "permission_error", None),
        404 => (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        408 => ("Request timed out.", "timeout_error", None),
        409 => ("Conflict.", "invalid_request_error", None),
        413 => ("Request too large.", "invalid_request_error", None),
        422 => ("Unprocessable entity.", "invalid_request_error", None),
        429 => (
            "Rate limit reached for requests per min (RPM). Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        502 => ("Bad gateway.", "server_error", None),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        504 => ("Gateway timeout.", "server_error", None),
        501 | 505..=599 => ("The server had an error.", "server_error", None),
        _ => ("Request failed.", "invalid_request_error", None),
    }
}

struct ErrorFields {
    message: String,
    error_type: String,
    param: Option<String>,
    code: Option<String>,
}

fn error_value(fields: &ErrorFields) -> Value {
    json!({
        "error": {
            "message": fields.message,
            "type": fields.error_type,
            "param": fields.param,
            "code": fields.code,
        }
    })
}

fn error_json(message: &str, error_type: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    to_bytes(&error_value(&ErrorFields {
        message: message.to_string(),
        error_type: error_type.to_string(),
        param: param.map(str::to_string),
        code: code.map(str::to_string),
    }))
}

fn fault_status_response(fault: &Fault, in_flight: InFlight) -> Response<SimBody> {
    // An out-of-range status in a scripted fault still yields an error
    // response rather than a panic or a success.
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = to_bytes(&error_value(&fault_error(fault, status.as_u16())));
    let mut response = json_response(status, body, Some(in_flight));
    let headers = response.headers_mut();
    // Values that are not valid header text are skipped, not fatal.
    let mut set = |name: HeaderName, value: Option<&str>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    };
    set(RETRY_AFTER, fault.retry_after.as_deref());
    set(HEADER_RETRY_AFTER_MS, fault.retry_after_ms.as_deref());
    set(
        HEADER_SHOULD_RETRY,
        fault.should_retry.map(|r| if r { "true" } else { "false" }),
    );
    response
}

/// Which of the two limits a rejected request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    /// The error `type` OpenAI sends for this limit.
    fn error_type(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }

    /// How OpenAI's messages name the limit.
    fn per_minute(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests per min (RPM)",
            LimitKind::Tokens => "tokens per min (TPM)",
        }
    }
}

/// One continuous token bucket: holds up to `limit` and refills at `limit`
/// per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: u32,
    level: f64,
}

/// What the `x-ratelimit-*` headers report about one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BucketState {
    limit: u32,
    remaining: u64,
    /// Milliseconds until the bucket is full again.
    reset_ms: u64,
}

impl Bucket {
    /// A full bucket, or `None` when the limit is off (0).
    fn new(limit: u32) -> Option<Self> {
        (limit > 0).then(|| Self {
            limit,
            level: f64::from(limit),
        })
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limit)
    }

    fn refill(&mut self, elapsed_ms: f64) {
        let refilled = self.level + elapsed_ms * self.capacity() / RATE_WINDOW_MS;
        self.level = refilled.min(self.capacity());
    }

    /// Milliseconds until the bucket holds `amount`; 0 when it already does.
    fn ms_until(&self, amount: f64) -> f64 {
        let missing = amount - self.level;
        if missing <= BUCKET_EPSILON {
            0.0
        } else {
            missing * RATE_WINDOW_MS / self.capacity()
        }
    }

    /// Tokens (or requests) taken and not yet refilled, as OpenAI's "Used".
    fn used(&self) -> u64 {
        (self.capacity() - self.level).max(0.0).ceil() as u64
    }

    fn state(&self) -> BucketState {
        BucketState {
            limit: self.limit,
            // Whole units only, like OpenAI; the level may dip a hair below 0
            // because of BUCKET_EPSILON.
            remaining: self.level.max(0.0).floor() as u64,
            reset_ms: ceil_ms(self.ms_until(self.capacity())),
        }
    }
}

/// Rounds milliseconds up, ignoring floating-point noise (so 100.000000001
/// is 100, not 101).
fn ceil_ms(ms: f64) -> u64 {
    (ms - BUCKET_EPSILON).ceil().max(0.0) as u64
}

/// The state of both buckets for the `x-ratelimit-*` headers; a limit that is
/// off has no headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RateSnapshot {
    requests: Option<BucketState>,
    tokens: Option<BucketState>,
}

impl RateSnapshot {
    fn apply(&self, headers: &mut HeaderMap) {
        for (state, names) in [
            (self.requests, &HEADERS_RATE_REQUESTS),
            (self.tokens, &HEADERS_RATE_TOKENS),
        ] {
            let Some(state) = state else { continue };
            let [limit, remaining, reset] = names;
            headers.insert(limit.clone(), HeaderValue::from(state.limit));
            headers.insert(remaining.clone(), HeaderValue::from(state.remaining));
            if let Ok(value) = HeaderValue::from_str(&go_duration(state.reset_ms)) {
                headers.insert(reset.clone(), value);
            }
        }
    }
}

/// Why the limiter turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RejectReason {
    /// Not enough budget yet; there will be in `retry_ms` (at least 1).
    Wait {
        kind: LimitKind,
        limit: u32,
        used: u64,
        requested: u64,
        retry_ms: u64,
    },
    /// The request costs more tokens than the TPM limit ever allows.
    TooLarge { limit: u32, requested: u64 },
}

#[derive(Debug)]
struct Rejection {
    reason: RejectReason,
    /// The buckets as they are (a rejected request takes nothing).
    snapshot: RateSnapshot,
}

/// The RPM and TPM buckets, refilled lazily whenever a request arrives.
struct RateLimiter {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// When the buckets were last refilled.
    updated: Instant,
}

impl RateLimiter {
    fn new(rpm: u32, tpm: u32, now: Instant) -> Self {
        Self {
            requests: Bucket::new(rpm),
            tokens: Bucket::new(tpm),
            updated: now,
        }
    }

    fn snapshot(&self) -> RateSnapshot {
        RateSnapshot {
            requests: self.requests.as_ref().map(Bucket::state),
            tokens: self.tokens.as_ref().map(Bucket::state),
        }
    }

    /// Takes one request and `cost` tokens if both buckets hold them at
    /// `now`, otherwise takes nothing and says why and for how long.
    fn admit(&mut self, cost: u64, now: Instant) -> Result<RateSnapshot, Rejection> {
        let elapsed_ms = now.saturating_duration_since(self.updated).as_secs_f64() * 1000.0;
        // `max` keeps the clock monotonic even if a caller's `now` is stale.
        self.updated = self.updated.max(now);
        for bucket in self.requests.iter_mut().chain(self.tokens.iter_mut()) {
            bucket.refill(elapsed_ms);
        }
        // Precision beyond 2^53 tokens is irrelevant: such a request is far
        // over any u32 limit either way.
        let cost_f = cost as f64;
        if let Some(tokens) = &self.tokens {
            if cost_f > tokens.capacity() {
                let reason = RejectReason::TooLarge {
                    limit: tokens.limit,
                    requested: cost,
                };
                return Err(Rejection {
                    reason,
                    snapshot: self.snapshot(),
                });
            }
        }
        // The limit that keeps the request waiting longest is the one to
        // report (requests on a tie), and its wait is when both are enough.
        let blocked = [
            (LimitKind::Requests, self.requests, 1),
            (LimitKind::Tokens, self.tokens, cost),
        ]
        .into_iter()
        .filter_map(|(kind, bucket, requested)| {
            let bucket = bucket?;
            let wait_ms = bucket.ms_until(requested as f64);
            (wait_ms > 0.0).then_some((kind, bucket, requested, wait_ms))
        })
        .reduce(|worst, next| if next.3 > worst.3 { next } else { worst });
        if let Some((kind, bucket, requested, wait_ms)) = blocked {
            let reason = RejectReason::Wait {
                kind,
                limit: bucket.limit,
                used: bucket.used(),
                requested,
                retry_ms: ceil_ms(wait_ms).max(1),
            };
            return Err(Rejection {
                reason,
                snapshot: self.snapshot(),
            });
        }
        if let Some(requests) = &mut self.requests {
            requests.level -= 1.0;
        }
        if let Some(tokens) = &mut self.tokens {
            tokens.level -= cost_f;
        }
        Ok(self.snapshot())
    }
}

/// Decides the random failures: SplitMix64 from the configured seed, rolled
/// once per admitted request.
struct FailureDice {
    state: u64,
    rate: f64,
}

impl FailureDice {
    fn new(seed: u64, rate: f64) -> Self {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        Self { state: seed, rate }
    }

    /// The status this request fails with, or `None` if it does not fail.
    fn roll(&mut self) -> Option<u16> {
        if self.rate <= 0.0 {
            return None;
        }
        let value = splitmix64(&mut self.state);
        // The top 53 bits as a uniform float in [0, 1), so a rate of 1.0
        // always fails.
        let unit = (value >> 11) as f64 / (1_u64 << 53) as f64;
        (unit < self.rate).then_some(match value % 3 {
            0 => 500,
            1 => 502,
            _ => 503,
        })
    }
}

/// OpenAI's 429 for a request the limiter turned away: `rate_limit_exceeded`
/// with the retry headers, except for a request that can never pass.
fn rate_limited_response(reason: &RejectReason, model: &str, in_flight: InFlight) -> Response<SimBody> {
    let (message, error_type, retry_ms) = match *reason {
        RejectReason::Wait {
            kind,
            limit,
            used,
            requested,
            retry_ms,
        } => (
            format!(
                "Rate limit reached for {model} in organization {RATE_LIMIT_ORGANIZATION} on {}: \
                 Limit {limit}, Used {used}, Requested {requested}. Please try again in {}. {RATE_LIMIT_HELP}",
                kind.per_minute(),
                go_duration(retry_ms),
            ),
            kind.error_type(),
            Some(retry_ms),
        ),
        RejectReason::TooLarge { limit, requested } => (
            format!(
                "Request too large for {model} in organization {RATE_LIMIT_ORGANIZATION} on {}: \
                 Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order \
                 to run successfully. {RATE_LIMIT_HELP}",
                LimitKind::Tokens.per_minute(),
            ),
            LimitKind::Tokens.error_type(),
            None,
        ),
    };
    let body = error_json(&message, error_type, None, Some("rate_limit_exceeded"));
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body, Some(in_flight));
    if let Some(retry_ms) = retry_ms {
        let headers = response.headers_mut();
        headers.insert(HEADER_RETRY_AFTER_MS, HeaderValue::from(retry_ms));
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_ms.div_ceil(1000)));
    }
    response
}

/// Formats whole milliseconds like Go's `time.Duration.String()`, which is
/// what OpenAI's `x-ratelimit-reset-*` headers and "try again in" messages
/// use: `0s`, `12ms`, `1.5s`, `6m0s`, `1h2m3.004s`.
fn go_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let fraction = match ms % 1000 {
        0 => String::new(),
        millis => format!(".{}", format!("{millis:03}").trim_end_matches('0')),
    };
    match (hours, minutes) {
        (0, 0) => format!("{seconds}{fraction}s"),
        (0, minutes) => format!("{minutes}m{seconds}{fraction}s"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}{fraction}s"),
    }
}

fn insert_request_id(headers: &mut HeaderMap) {
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER_REQUEST_ID, value);
    }
}

fn with_json_headers(status: StatusCode, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    insert_request_id(headers);
    response
}

fn json_response(status: StatusCode, body: Bytes, in_flight: Option<InFlight>) -> Response<SimBody> {
    with_json_headers(status, SimBody::full(body, in_flight))
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn sleep_if_needed(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// What a stream producer hands to the response body.
enum Chunk {
    Data(Bytes),
    /// Abort the connection mid-body (the `disconnect` fault).
    Abort,
}

/// The response body type: either a complete buffer or frames from a
/// producer task. It carries the request's [`InFlight`] marker so that the
/// in-flight count drops exactly when hyper finishes or drops the body.
struct SimBody {
    inner: BodyInner,
    exact_len: Option<u64>,
    _in_flight: Option<InFlight>,
}

enum BodyInner {
    Full(Option<Bytes>),
    Channel { rx: mpsc::Receiver<Chunk>, aborting: bool },
}

impl SimBody {
    fn full(bytes: Bytes, in_flight: Option<InFlight>) -> Self {
        Self {
            exact_len: Some(bytes.len() as u64),
            inner: BodyInner::Full(Some(bytes)),
            _in_flight: in_flight,
        }
    }

    /// A body fed through a channel; `exact_len` makes hyper send a
    /// `content-length` instead of chunked encoding.
    fn channel(exact_len: Option<u64>, in_flight: InFlight) -> (mpsc::Sender<Chunk>, Self) {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CAPACITY);
        let body = Self {
            inner: BodyInner::Channel { rx, aborting: false },
            exact_len,
            _in_flight: Some(in_flight),
        };
        (tx, body)
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            BodyInner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyInner::Channel { rx, aborting } => {
                if *aborting {
                    return Poll::Ready(Some(Err("simulated disconnect".into())));
                }
                match ready!(rx.poll_recv(cx)) {
                    Some(Chunk::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    Some(Chunk::Abort) => {
                        // hyper discards bytes it has buffered but not yet
                        // written when a body errors. Returning Pending once
                        // (with an immediate wake-up) makes it flush the
                        // frames sent so far, so the client really receives
                        // them before the connection dies.
                        *aborting = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, BodyInner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact_len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const KEY: &str = "sk-sim-secret-key-0123456789";

    async fn start(config: SimulatorConfig) -> Simulator {
        Simulator::start(config).await.expect("simulator starts")
    }

    async fn start_default() -> Simulator {
        start(SimulatorConfig::default()).await
    }

    fn client() -> reqwest::Client {
        // The project builds reqwest with `rustls-no-provider`; building a
        // client panics unless a crypto provider is installed (once per
        // process: later calls just report "already installed").
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_proxy().build().expect("client builds")
    }

    fn chat_request(content: &str, extra: Value) -> Value {
        let mut body = json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": content},
            ],
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    /// Builds the request eagerly so the returned future borrows nothing.
    fn post(
        sim: &Simulator,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static {
        let mut request = client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    }

    async fn post_ok(sim: &Simulator, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        post(sim, body, headers).await.expect("request succeeds")
    }

    async fn json_body(response: reqwest::Response) -> Value {
        let bytes = response.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    /// The payloads of the `data:` lines of an SSE text, in order.
    fn data_frames(text: &str) -> Vec<String> {
        text.split("\n\n")
            .filter_map(|frame| {
                frame
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .map(str::to_string)
            })
            .collect()
    }

    fn content_deltas(frames: &[String]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|frame| serde_json::from_str::<Value>(frame).ok())
            .filter_map(|chunk| {
                let delta = chunk.pointer("/choices/0/delta")?;
                if delta.get("role").is_some() {
                    return None;
                }
                delta.get("content")?.as_str().map(str::to_string)
            })
            .collect()
    }

    /// Reads a streamed body until it ends, errors or goes quiet for `idle`.
    /// Returns the text received and how the read ended.
    async fn read_stream(response: reqwest::Response, idle: Duration) -> (String, StreamEnd) {
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        loop {
            match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => return (text, StreamEnd::TimedOut),
                Ok(None) => return (text, StreamEnd::Clean),
                Ok(Some(Err(_))) => return (text, StreamEnd::Error),
                Ok(Some(Ok(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum StreamEnd {
        Clean,
        Error,
        TimedOut,
    }

    async fn wait_until_idle(sim: &Simulator) {
        for _ in 0..200 {
            if sim.stats().in_flight == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("in_flight did not return to 0: {:?}", sim.stats());
    }

    fn o200k_len(text: &str) -> usize {
        tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len()
    }

    #[test]
    fn vocabulary_entries_are_single_tokens_in_both_encodings() {
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let o200k = tiktoken_rs::o200k_base_singleton();
        let mut entries: Vec<&str> = VOCABULARY.to_vec();
        entries.extend(VOCABULARY.iter().map(|w| w.trim_start()));
        entries.push(FULL_STOP);
        for entry in entries {
            assert_eq!(cl100k.encode_ordinary(entry).len(), 1, "cl100k: {entry:?}");
            assert_eq!(o200k.encode_ordinary(entry).len(), 1, "o200k: {entry:?}");
        }
    }

    #[test]
    fn generated_text_tokenizes_to_exactly_the_generated_count() {
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let o200k = tiktoken_rs::o200k_base_singleton();
        for (seed, n) in [(1_u64, 1_usize), (2, 2), (3, 16), (42, 300), (u64::MAX, 1000)] {
            let text = answer_tokens(seed, n, n).concat();
            assert_eq!(cl100k.encode_ordinary(&text).len(), n, "{text}");
            assert_eq!(o200k.encode_ordinary(&text).len(), n, "{text}");
        }
    }

    #[test]
    fn fault_json_parses_camel_case_fields() {
        let fault: Fault = serde_json::from_str(
            r#"{"kind":"errorEvent","status":429,"type":"requests","retryAfter":2,
                "retryAfterMs":"150","shouldRetry":false,"afterChunks":3,"sseEvent":true,
                "delayMs":5}"#,
        )
        .expect("parses");
        assert_eq!(fault.kind, FaultKind::ErrorEvent);
        assert_eq!(fault.status, Some(429));
        assert_eq!(fault.error_type.as_deref(), Some("requests"));
        assert_eq!(fault.retry_after.as_deref(), Some("2"));
        assert_eq!(fault.retry_after_ms.as_deref(), Some("150"));
        assert_eq!(fault.should_retry, Some(false));
        assert_eq!((fault.after_chunks, fault.sse_event, fault.delay_ms), (3, true, 5));
        let no_done: Fault = serde_json::from_str(r#"{"kind":"noDone"}"#).expect("parses");
        assert_eq!(no_done.kind, FaultKind::NoDone);
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"bogus"}"#).is_err());
    }

    #[test]
    fn simulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Simulator>();
    }

    #[tokio::test]
    async fn models_endpoint_lists_the_configured_model() {
        let sim = start(SimulatorConfig {
            model: "my-model".into(),
            ..SimulatorConfig::default()
        })
        .await;
        let response = client()
            .get(format!("{}/models", sim.base_url()))
            .send()
            .await
            .expect("models");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["id"], "my-model");
        assert_eq!(body["data"][0]["object"], "model");
        assert_eq!(body["data"][0]["owned_by"], OWNER);
        assert!(body["data"][0]["created"].as_u64().is_some());
    }

    #[tokio::test]
    async fn non_streaming_completion_has_the_openai_shape() {
        let sim = start_default().await;
        let response = post_ok(&sim, &chat_request("Hello", json!({})), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        let id = body["id"].as_str().expect("id");
        assert!(id.starts_with("chatcmpl-") && id.len() == "chatcmpl-".len() + 32);
        assert_eq!(body["object"], "chat.completion");
        assert!(body["created"].as_u64().is_some());
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["choices"][0]["index"], 0);
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert!(body["choices"][0]["message"]["content"].is_string());
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert!(body["choices"][0]["logprobs"].is_null());
        assert_eq!(body["usage"]["completion_tokens"], 16);

        // Without a model in the request the configured one is reported.
        let mut no_model = chat_request("Hello", json!({}));
        no_model.as_object_mut().map(|o| o.remove("model"));
        let body = json_body(post_ok(&sim, &no_model, &[]).await).await;
        assert_eq!(body["model"], "sim-gpt");
    }

    #[tokio::test]
    async fn same_messages_give_the_same_text_and_different_messages_differ() {
        let sim = start_default().await;
        let text = |body: Value| body["choices"][0]["message"]["content"].clone();
        let first = text(json_body(post_ok(&sim, &chat_request("Hi", json!({})), &[]).await).await);
        let again = text(json_body(post_ok(&sim, &chat_request("Hi", json!({})), &[]).await).await);
        let other = text(json_body(post_ok(&sim, &chat_request("Ho", json!({})), &[]).await).await);
        assert_eq!(first, again);
        assert_ne!(first, other);
        let first = first.as_str().expect("text");
        assert!(!first.starts_with(' ') && first.ends_with('.'), "{first}");
    }

    #[tokio::test]
    async fn usage_counts_generated_tokens_and_follows_the_prompt_formula() {
        let sim = start_default().await;
        // Known value: a single "Hello" user message is 8 prompt tokens at OpenAI.
        let hello = json!({"messages": [{"role": "user", "content": "Hello"}]});
        let body = json_body(post_ok(&sim, &hello, &[("x-sim-response-tokens", "7")]).await).await;
        assert_eq!(body["usage"]["prompt_tokens"], 8);
        assert_eq!(body["usage"]["completion_tokens"], 7);
        assert_eq!(body["usage"]["total_tokens"], 15);
        let content = body["choices"][0]["message"]["content"].as_str().expect("text");
        assert_eq!(o200k_len(content), 7);
        assert_eq!(content.split(' ').count(), 6, "six words and a full stop: {content}");

        // Names cost 1 + their tokens; special-token text counts as plain text.
        let special = "say <|endoftext|> please";
        let named = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "bob", "content": special},
        ]});
        let body = json_body(post_ok(&sim, &named, &[]).await).await;
        let expected = (3 + o200k_len("system") + o200k_len("Be brief."))
            + (3 + o200k_len("user") + o200k_len(special) + 1 + o200k_len("bob"))
            + 3;
        assert!(o200k_len(special) > 3);
        assert_eq!(body["usage"]["prompt_tokens"], expected as u64);

        let stats = sim.stats();
        assert_eq!(stats.prompt_tokens, 8 + expected as u64);
        assert_eq!(stats.completion_tokens, 7 + 16);
    }

    #[tokio::test]
    async fn max_tokens_below_the_answer_length_cuts_it_with_finish_reason_length() {
        let sim = start_default().await;
        for cap_field in ["max_tokens", "max_completion_tokens"] {
            let request = chat_request("Hi", json!({ cap_field: 5 }));
            let body = json_body(post_ok(&sim, &request, &[]).await).await;
            assert_eq!(body["choices"][0]["finish_reason"], "length");
            assert_eq!(body["usage"]["completion_tokens"], 5);
            let content = body["choices"][0]["message"]["content"].as_str().expect("text");
            assert_eq!(o200k_len(content), 5);
            assert!(!content.ends_with('.'));
        }
        let roomy = chat_request("Hi", json!({"max_tokens": 100}));
        let body = json_body(post_ok(&sim, &roomy, &[]).await).await;
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["completion_tokens"], 16);
    }

    #[tokio::test]
    async fn streaming_frames_come_in_openai_order() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({"stream": true, "stream_options": {"include_usage": true}}));
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "4")]).await;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 4 + 1 + 1 + 1, "{text}");
        assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = frames[..frames.len() - 1]
            .iter()
            .map(|f| serde_json::from_str(f).expect("chunk json"))
            .collect();
        let id = &chunks[0]["id"];
        assert!(chunks.iter().all(|c| &c["id"] == id));
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        for chunk in &chunks[1..5] {
            assert!(chunk["choices"][0]["delta"]["content"].is_string());
            assert!(chunk["choices"][0]["finish_reason"].is_null());
            assert!(chunk["usage"].is_null());
        }
        assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 4);
        assert_eq!(
            chunks[6]["usage"]["total_tokens"],
            chunks[6]["usage"]["prompt_tokens"].as_u64().expect("prompt") + 4
        );

        // Without include_usage there is no usage chunk.
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "4")]).await;
        let (text, _) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(data_frames(&text).len(), 1 + 4 + 1 + 1);
        assert!(!text.contains("usage"));
    }

    #[tokio::test]
    async fn streamed_content_equals_the_non_streaming_content() {
        let sim = start_default().await;
        let plain = json_body(post_ok(&sim, &chat_request("Compare", json!({})), &[]).await).await;
        let streamed = post_ok(&sim, &chat_request("Compare", json!({"stream": true})), &[]).await;
        let (text, _) = read_stream(streamed, Duration::from_secs(5)).await;
        let deltas = content_deltas(&data_frames(&text));
        assert_eq!(deltas.len(), 16);
        assert_eq!(json!(deltas.concat()), plain["choices"][0]["message"]["content"]);
    }

    #[tokio::test]
    async fn streaming_respects_ttft_and_token_delay() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_millis(100),
            token_delay: Duration::from_millis(20),
            ..SimulatorConfig::default()
        })
        .await;
        let started = tokio::time::Instant::now();
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-response-tokens", "5")]).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(response);

        let started = tokio::time::Instant::now();
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-response-tokens", "5")]).await;
        // Headers and the role chunk come before ttft has passed.
        assert!(started.elapsed() < Duration::from_millis(100));
        let (text, _) = read_stream(response, Duration::from_secs(5)).await;
        assert!(started.elapsed() >= Duration::from_millis(180));
        assert_eq!(content_deltas(&data_frames(&text)).len(), 5);
    }

    #[tokio::test]
    async fn wrong_or_missing_api_key_gets_401_without_echoing_any_key() {
        let sim = start(SimulatorConfig {
            api_key: Some(KEY.into()),
            ..SimulatorConfig::default()
        })
        .await;
        let wrong_key = "sk-wrong-key-987654321";
        let authorization = format!("Bearer {wrong_key}");
        for headers in [vec![], vec![("authorization", authorization.as_str())]] {
            let response = post_ok(&sim, &chat_request("Hi", json!({})), &headers).await;
            assert_eq!(response.status(), 401);
            let text = response.text().await.expect("body");
            assert!(!text.contains(KEY) && !text.contains(wrong_key), "{text}");
            let body: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["message"], "Incorrect API key provided.");
        }
        let good = format!("Bearer {KEY}");
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("authorization", &good)]).await;
        assert_eq!(response.status(), 200);
        let models = client()
            .get(format!("{}/models", sim.base_url()))
            .send()
            .await
            .expect("models");
        assert_eq!(models.status(), 401);
    }

    #[tokio::test]
    async fn invalid_requests_get_400_with_openai_error_bodies() {
        let sim = start_default().await;
        let url = format!("{}/chat/completions", sim.base_url());
        let response = client().post(&url).body("{not json").send().await.expect("sent");
        assert_eq!(response.status(), 400);
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["param"].is_null());
        assert!(body["error"]["code"].is_null());

        for bad in [
            json!({"model": "m"}),
            json!({"messages": []}),
            json!({"messages": "hi"}),
        ] {
            let body = json_body(post_ok(&sim, &bad, &[]).await).await;
            assert_eq!(body["error"]["param"], "messages", "{bad}");
        }
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", "{oops")]).await;
        assert_eq!(response.status(), 400);
        let response = post_ok(
            &sim,
            &chat_request("Hi", json!({})),
            &[("x-sim-response-tokens", "many")],
        )
        .await;
        assert_eq!(response.status(), 400);
        assert_eq!(sim.stats().faults_injected, 0);
    }

    #[tokio::test]
    async fn unknown_paths_get_404() {
        let sim = start_default().await;
        let response = client()
            .get(format!("{}/engines", sim.base_url()))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sim = start_default().await;
        let mut socket = TcpStream::connect(("127.0.0.1", sim.port())).await.expect("connect");
        let body = chat_request("Hi", json!({"stream": true})).to_string();
        let chat = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let models = "GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n";
        for (request, end) in [
            (chat.as_str(), "data: [DONE]\n\n\r\n0\r\n\r\n"),
            (models, "\"object\":\"list\"}"),
            (chat.as_str(), "data: [DONE]\n\n\r\n0\r\n\r\n"),
        ] {
            socket.write_all(request.as_bytes()).await.expect("write");
            let mut received = Vec::new();
            let mut buffer = [0_u8; 4096];
            while !String::from_utf8_lossy(&received).ends_with(end) {
                let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
                    .await
                    .unwrap_or_else(|_| panic!("timed out after {:?}", String::from_utf8_lossy(&received)))
                    .expect("read");
                assert!(read > 0, "connection closed early");
                received.extend_from_slice(&buffer[..read]);
            }
            assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
        assert_eq!(sim.stats().requests, 3);
    }

    #[tokio::test]
    async fn every_response_has_a_unique_request_id() {
        let sim = start_default().await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let response = post_ok(&sim, &chat_request("Hi", json!({})), &[]).await;
            let id = response.headers()["x-request-id"].to_str().expect("text").to_string();
            assert!(id.starts_with("req_") && id.len() == 36, "{id}");
            assert!(id["req_".len()..].chars().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
        let missing = client()
            .get(format!("{}/nope", sim.base_url()))
            .send()
            .await
            .expect("sent");
        assert!(missing.headers().contains_key("x-request-id"));
    }

    #[tokio::test]
    async fn status_fault_sends_the_status_retry_headers_and_error_code() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_secs(10),
            ..SimulatorConfig::default()
        })
        .await;
        sim.enqueue_fault(Fault {
            kind: FaultKind::Status,
            status: Some(429),
            retry_after: Some("2".into()),
            retry_after_ms: Some("150".into()),
            should_retry: Some(true),
            ..Fault::default()
        });
        // ttft is 10 s: a status fault must answer at once.
        let response = tokio::time::timeout(
            Duration::from_secs(2),
            post(&sim, &chat_request("Hi", json!({"stream": true})), &[]),
        )
        .await
        .expect("answered at once")
        .expect("response");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["retry-after-ms"], "150");
        assert_eq!(response.headers()["x-should-retry"], "true");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "requests");

        let quota = r#"{"kind":"status","status":429,"code":"insufficient_quota"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", quota)]).await;
        assert!(!response.headers().contains_key("retry-after"));
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["message"], QUOTA_MESSAGE);

        let server = r#"{"kind":"status"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", server)]).await;
        assert_eq!(response.status(), 500);
        assert_eq!(json_body(response).await["error"]["type"], "server_error");
        assert_eq!(sim.stats().faults_injected, 3);
    }

    #[tokio::test]
    async fn reset_fault_gives_a_connection_error_instead_of_a_status() {
        let sim = start_default().await;
        for stream in [false, true] {
            sim.enqueue_fault(Fault {
                kind: FaultKind::Reset,
                ..Fault::default()
            });
            let error = post(&sim, &chat_request("Hi", json!({"stream": stream})), &[])
                .await
                .expect_err("no response");
            assert!(error.status().is_none());
            assert!(error.is_request() || error.is_connect() || error.is_body(), "{error:?}");
        }
        wait_until_idle(&sim).await;
        // The server keeps serving afterwards.
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[]).await;
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn disconnect_fault_breaks_the_body_after_the_given_chunks() {
        let sim = start_default().await;
        let fault = r#"{"kind":"disconnect","afterChunks":3}"#;
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-fault", fault)]).await;
        assert_eq!(response.status(), 200);
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Error);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 3, "{text}");
        assert_eq!(content_deltas(&frames).len(), 3);

        let fault = r#"{"kind":"disconnect"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]).await;
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.is_err());
        wait_until_idle(&sim).await;
    }

    #[tokio::test]
    async fn stall_fault_goes_silent_until_the_client_gives_up() {
        let sim = start_default().await;
        let fault = r#"{"kind":"stall","afterChunks":2}"#;
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-fault", fault)]).await;
        let (text, end) = read_stream(response, Duration::from_millis(300)).await;
        assert_eq!(end, StreamEnd::TimedOut);
        assert_eq!(content_deltas(&data_frames(&text)).len(), 2);
        // Dropping the response closed the connection; the server notices.
        wait_until_idle(&sim).await;

        let fault = r#"{"kind":"stall"}"#;
        let pending = post(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]);
        assert!(tokio::time::timeout(Duration::from_millis(300), pending).await.is_err());
        wait_until_idle(&sim).await;
    }

    #[tokio::test]
    async fn malformed_fault_sends_invalid_json() {
        let sim = start_default().await;
        let fault = r#"{"kind":"malformed","afterChunks":1}"#;
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-fault", fault)]).await;
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 1 + 1 + 1, "{text}");
        assert!(serde_json::from_str::<Value>(&frames[2]).is_err());
        assert_eq!(frames[3], "[DONE]");

        let fault = r#"{"kind":"malformed"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("complete body");
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }

    #[tokio::test]
    async fn error_event_fault_sends_an_error_payload_in_both_forms() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({"stream": true}));
        for sse_event in [false, true] {
            let fault = json!({"kind": "errorEvent", "afterChunks": 2, "sseEvent": sse_event,
                "message": "boom", "code": "oops"})
            .to_string();
            let response = post_ok(&sim, &request, &[("x-sim-fault", &fault)]).await;
            let (text, end) = read_stream(response, Duration::from_secs(5)).await;
            assert_eq!(end, StreamEnd::Clean);
            assert!(!text.contains("[DONE]"));
            assert_eq!(text.contains("event: error\n"), sse_event, "{text}");
            let frames = data_frames(&text);
            assert_eq!(frames.len(), 1 + 2 + 1);
            let error: Value = serde_json::from_str(&frames[3]).expect("error json");
            assert_eq!(error["error"]["message"], "boom");
            assert_eq!(error["error"]["type"], "server_error");
            assert_eq!(error["error"]["code"], "oops");
            assert!(error["error"]["param"].is_null());
        }
        let fault = r#"{"kind":"errorEvent"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]).await;
        assert_eq!(response.status(), 500);
        assert_eq!(json_body(response).await["error"]["type"], "server_error");
    }

    #[tokio::test]
    async fn truncate_fault_ends_without_finish_or_done() {
        let sim = start_default().await;
        let fault = r#"{"kind":"truncate","afterChunks":4}"#;
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[("x-sim-fault", fault)]).await;
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        assert!(!text.contains("[DONE]") && !text.contains("\"finish_reason\":\"stop\""));
        assert_eq!(content_deltas(&data_frames(&text)).len(), 4);

        let fault = r#"{"kind":"truncate"}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("complete body");
        assert!(!bytes.is_empty());
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }

    #[tokio::test]
    async fn no_done_fault_omits_only_the_done_marker() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({"stream": true, "stream_options": {"include_usage": true}}));
        let response = post_ok(&sim, &request, &[("x-sim-fault", r#"{"kind":"noDone"}"#)]).await;
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        assert!(!text.contains("[DONE]"));
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 16 + 1 + 1);
        assert!(frames[17].contains("\"finish_reason\":\"stop\""));
        assert!(frames[18].contains("\"completion_tokens\":16"));
    }

    #[tokio::test]
    async fn delay_fault_postpones_a_normal_answer() {
        let sim = start_default().await;
        let started = tokio::time::Instant::now();
        let fault = r#"{"kind":"delay","delayMs":250}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", fault)]).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(json_body(response).await["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn header_fault_overrides_the_queue_without_consuming_it() {
        let sim = start_default().await;
        sim.enqueue_fault(Fault {
            kind: FaultKind::Status,
            status: Some(503),
            ..Fault::default()
        });
        let header = r#"{"kind":"status","status":418}"#;
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-fault", header)]).await;
        assert_eq!(response.status(), 418);
        assert_eq!(sim.pending_faults(), 1);
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[]).await;
        assert_eq!(response.status(), 503);
        assert_eq!(sim.pending_faults(), 0);
    }

    #[tokio::test]
    async fn queued_faults_are_taken_in_order_once_each() {
        let sim = start_default().await;
        for status in [500, 502, 429] {
            sim.enqueue_fault(Fault {
                kind: FaultKind::Status,
                status: Some(status),
                ..Fault::default()
            });
        }
        assert_eq!(sim.pending_faults(), 3);
        // Non-chat requests and rejected chat requests do not consume faults.
        client()
            .get(format!("{}/models", sim.base_url()))
            .send()
            .await
            .expect("models");
        post_ok(&sim, &json!({"messages": []}), &[]).await;
        assert_eq!(sim.pending_faults(), 3);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                post_ok(&sim, &chat_request("Hi", json!({})), &[])
                    .await
                    .status()
                    .as_u16(),
            );
        }
        assert_eq!(statuses, [500, 502, 429, 200]);
        assert_eq!(sim.stats().faults_injected, 3);

        sim.enqueue_fault(Fault::default());
        sim.enqueue_fault(Fault::default());
        sim.clear_faults();
        assert_eq!(sim.pending_faults(), 0);
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[]).await;
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn stats_count_requests_and_concurrency() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_millis(200),
            ..SimulatorConfig::default()
        })
        .await;
        client()
            .get(format!("{}/models", sim.base_url()))
            .send()
            .await
            .expect("models");
        let requests = (0..5).map(|i| {
            let sim = &sim;
            async move {
                let request = chat_request(&format!("q{i}"), json!({}));
                json_body(post_ok(sim, &request, &[]).await).await
            }
        });
        let answers = futures::future::join_all(requests).await;
        assert!(answers.iter().all(|a| a["usage"]["completion_tokens"] == 16));
        wait_until_idle(&sim).await;
        let stats = sim.stats();
        assert_eq!(stats.requests, 6);
        assert_eq!(stats.chat_requests, 5);
        assert_eq!(stats.max_in_flight, 5);
        assert_eq!(stats.in_flight, 0);
        assert_eq!(stats.completion_tokens, 5 * 16);
        assert_eq!(stats.faults_injected, 0);

        sim.reset_stats();
        assert_eq!(sim.stats(), SimulatorStats::default());
    }

    #[tokio::test]
    async fn close_refuses_new_connections_and_does_not_wait_for_stalled_streams() {
        let sim = start_default().await;
        let url = format!("{}/models", sim.base_url());
        let request = chat_request("Hi", json!({"stream": true}));
        let stalled = post_ok(&sim, &request, &[("x-sim-fault", r#"{"kind":"stall"}"#)]).await;
        let waiting = tokio::spawn(post(
            &sim,
            &chat_request("Hi", json!({})),
            &[("x-sim-fault", r#"{"kind":"stall"}"#)],
        ));
        // Let the non-streaming stall reach the server.
        for _ in 0..100 {
            if sim.stats().in_flight == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sim.stats().in_flight, 2);

        tokio::time::timeout(Duration::from_secs(2), sim.close())
            .await
            .expect("close does not hang");
        sim.close().await; // idempotent
        assert!(client().get(&url).send().await.is_err());
        let (_, end) = read_stream(stalled, Duration::from_secs(2)).await;
        assert_eq!(end, StreamEnd::Error);
        let waited = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("stalled request ends")
            .expect("task");
        assert!(waited.is_err());
        assert_eq!(sim.stats().in_flight, 0);
    }

    /// `chat_request("Hi", ..)`'s prompt tokens by OpenAI's formula.
    fn hi_prompt_tokens() -> u64 {
        let system = 3 + o200k_len("system") + o200k_len("You are terse.");
        let user = 3 + o200k_len("user") + o200k_len("Hi");
        (system + user + 3) as u64
    }

    /// Like `post`, but on a given client, for loops of many requests.
    async fn post_with(client: &reqwest::Client, sim: &Simulator, body: &Value) -> reqwest::Response {
        client
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request succeeds")
    }

    fn header(response: &reqwest::Response, name: &str) -> String {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
            .to_string()
    }

    fn header_u64(response: &reqwest::Response, name: &str) -> u64 {
        header(response, name).parse().expect("integer header")
    }

    fn has_rate_headers(response: &reqwest::Response, kind: &str) -> bool {
        ["limit", "remaining", "reset"]
            .iter()
            .any(|what| response.headers().contains_key(format!("x-ratelimit-{what}-{kind}")))
    }

    #[test]
    fn go_durations_are_formatted_like_go() {
        for (ms, expected) in [
            (0, "0s"),
            (1, "1ms"),
            (12, "12ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (8640, "8.64s"),
            (59_999, "59.999s"),
            (60_000, "1m0s"),
            (90_500, "1m30.5s"),
            (360_000, "6m0s"),
            (3_600_000, "1h0m0s"),
            (3_723_004, "1h2m3.004s"),
            (90_000_000, "25h0m0s"),
        ] {
            assert_eq!(go_duration(ms), expected, "{ms} ms");
        }
    }

    #[test]
    fn rate_limiter_refills_continuously_and_charges_nothing_on_rejection() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // 1 request per second, 10 tokens per second.
        let mut limiter = RateLimiter::new(60, 600, start);
        let first = limiter.admit(300, start).expect("full buckets");
        let requests = BucketState {
            limit: 60,
            remaining: 59,
            reset_ms: 1000,
        };
        let tokens = BucketState {
            limit: 600,
            remaining: 300,
            reset_ms: 30_000,
        };
        assert_eq!(first.requests, Some(requests));
        assert_eq!(first.tokens, Some(tokens));
        limiter.admit(300, start).expect("the rest of the tokens");

        // One second later 10 tokens are back; 50 more take 4 more seconds.
        let rejection = limiter.admit(50, at(1000)).expect_err("tokens exhausted");
        let reason = RejectReason::Wait {
            kind: LimitKind::Tokens,
            limit: 600,
            used: 590,
            requested: 50,
            retry_ms: 4000,
        };
        assert_eq!(rejection.reason, reason);
        assert_eq!(rejection.snapshot.tokens.map(|t| t.remaining), Some(10));
        // The rejected request took nothing, so waiting retry_ms is enough.
        let admitted = limiter.admit(50, at(5000)).expect("refilled");
        let tokens = BucketState {
            limit: 600,
            remaining: 0,
            reset_ms: 60_000,
        };
        assert_eq!(admitted.tokens, Some(tokens));
        // 58 requests left + 5 refilled, capped at 60, then one taken.
        assert_eq!(admitted.requests.map(|r| (r.remaining, r.reset_ms)), Some((59, 1000)));

        // Requests alone: 2 per minute, the third waits 30 s.
        let mut limiter = RateLimiter::new(2, 0, start);
        limiter.admit(1_000_000, start).expect("no token limit");
        let snapshot = limiter.admit(0, at(10)).expect("second request");
        assert!(snapshot.tokens.is_none());
        let rejection = limiter.admit(0, at(10)).expect_err("third request");
        let reason = RejectReason::Wait {
            kind: LimitKind::Requests,
            limit: 2,
            used: 2,
            requested: 1,
            retry_ms: 29_990,
        };
        assert_eq!(rejection.reason, reason);
        limiter.admit(0, at(30_000)).expect("refilled");

        // No limits: everything passes and there is nothing to report.
        let mut limiter = RateLimiter::new(0, 0, start);
        assert_eq!(limiter.admit(u64::MAX, start).ok(), Some(RateSnapshot::default()));
    }

    #[test]
    fn rate_limiter_rejects_requests_larger_than_the_tpm_limit() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 100, start);
        for _ in 0..3 {
            let rejection = limiter.admit(101, start).expect_err("too large");
            let reason = RejectReason::TooLarge {
                limit: 100,
                requested: 101,
            };
            assert_eq!(rejection.reason, reason);
        }
        let snapshot = limiter.admit(100, start).expect("exactly the limit fits");
        assert_eq!(snapshot.requests.map(|r| r.remaining), Some(9));
        assert_eq!(snapshot.tokens.map(|t| t.remaining), Some(0));
    }

    #[test]
    fn failure_dice_follow_the_seed_and_the_rate() {
        let rolls = |seed: u64, rate: f64| {
            let mut dice = FailureDice::new(seed, rate);
            (0..1000).map(|_| dice.roll()).collect::<Vec<_>>()
        };
        assert_eq!(rolls(9, 0.3), rolls(9, 0.3));
        assert_ne!(rolls(9, 0.3), rolls(10, 0.3));
        let failures = rolls(9, 0.3).iter().flatten().count();
        assert!((240..=360).contains(&failures), "{failures}");
        for status in [500, 502, 503] {
            assert!(rolls(9, 0.3).contains(&Some(status)));
        }
        for off in [0.0, -1.0, f64::NAN] {
            assert!(rolls(9, off).iter().all(Option::is_none));
        }
        for always in [1.0, 7.0, f64::INFINITY] {
            assert!(rolls(9, always).iter().all(Option::is_some));
        }
    }

    #[tokio::test]
    async fn rpm_limit_answers_429_with_retry_headers_until_the_bucket_refills() {
        let sim = start(SimulatorConfig {
            rate_limit_rpm: 60,
            ..SimulatorConfig::default()
        })
        .await;
        let client = client();
        let request = chat_request("Hi", json!({}));
        let started = std::time::Instant::now();
        for i in 0..60 {
            let response = post_with(&client, &sim, &request).await;
            assert_eq!(response.status(), 200, "request {i}");
        }
        let limited = post_with(&client, &sim, &request).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        assert_eq!(limited.status(), 429);
        // The bucket refills one request per second and has been refilling
        // since the first request, at most `elapsed_ms` ago.
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!(
            retry_ms <= 1000 && retry_ms >= 1000_u64.saturating_sub(elapsed_ms),
            "{retry_ms}"
        );
        assert_eq!(header(&limited, "retry-after"), "1");
        assert_eq!(header(&limited, "x-ratelimit-limit-requests"), "60");
        assert_eq!(header(&limited, "x-ratelimit-remaining-requests"), "0");
        assert!(!has_rate_headers(&limited, "tokens"));
        let body = json_body(limited).await;
        assert_eq!(body["error"]["type"], "requests");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(body["error"]["param"].is_null());
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with(
                "Rate limit reached for gpt-test in organization org-simulator on requests per min (RPM): \
                 Limit 60, Used 60, Requested 1. Please try again in "
            ),
            "{message}"
        );

        tokio::time::sleep(Duration::from_millis(retry_ms)).await;
        let response = post_with(&client, &sim, &request).await;
        assert_eq!(response.status(), 200);
        let stats = sim.stats();
        assert_eq!((stats.chat_requests, stats.rate_limited), (62, 1));
        assert_eq!((stats.faults_injected, stats.random_failures), (0, 0));
    }

    #[tokio::test]
    async fn tpm_limit_charges_prompt_tokens_plus_the_completion_cap() {
        // 100 tokens per second.
        let sim = start(SimulatorConfig {
            rate_limit_tpm: 6000,
            ..SimulatorConfig::default()
        })
        .await;
        let prompt = hi_prompt_tokens();
        let started = std::time::Instant::now();

        // The bucket is full, so the first request's numbers are exact.
        let capped = chat_request("Hi", json!({"max_tokens": 3000}));
        let response = post_ok(&sim, &capped, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "6000");
        assert_eq!(header_u64(&response, "x-ratelimit-remaining-tokens"), 3000 - prompt);
        // (prompt + 3000) tokens at 100 per second, in milliseconds.
        let reset = go_duration((prompt + 3000) * 10);
        assert_eq!(header(&response, "x-ratelimit-reset-tokens"), reset);
        assert!(!has_rate_headers(&response, "requests"));
        // Only 16 tokens were generated, but the cap is what was charged.
        assert_eq!(json_body(response).await["usage"]["completion_tokens"], 16);

        // About 3000 - prompt left: too few for prompt + 3000.
        let capped = chat_request("Hi", json!({"max_completion_tokens": 3000}));
        let limited = post_ok(&sim, &capped, &[]).await;
        assert_eq!(limited.status(), 429);
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!(retry_ms > 0 && retry_ms <= 2 * prompt * 10, "{retry_ms}");
        assert_eq!(header_u64(&limited, "retry-after"), retry_ms.div_ceil(1000));
        let body = json_body(limited).await;
        assert_eq!(body["error"]["type"], "tokens");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let message = body["error"]["message"].as_str().expect("message");
        // "Used" is read from the bucket at that moment: the clock is real, so on a loaded
        // machine a token or two may have refilled since the first request.
        let used: u64 = message
            .split("Used ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .expect("a Used count");
        let refilled = started.elapsed().as_millis() as u64 / 10 + 1;
        assert!(
            message.contains("on tokens per min (TPM): Limit 6000, Used "),
            "{message}"
        );
        assert!(used <= prompt + 3000 && used + refilled >= prompt + 3000, "{message}");
        assert!(message.contains(&format!("Requested {}.", prompt + 3000)), "{message}");

        // Without a cap the cost is the prompt plus the answer's length, and
        // the rejected request above took nothing.
        let response = post_ok(&sim, &chat_request("Hi", json!({})), &[("x-sim-response-tokens", "5")]).await;
        assert_eq!(response.status(), 200);
        let remaining = header_u64(&response, "x-ratelimit-remaining-tokens");
        let expected = 3000 - prompt - (prompt + 5);
        let refilled = started.elapsed().as_millis() as u64 / 10 + 1;
        assert!(remaining >= expected && remaining <= expected + refilled, "{remaining}");
        assert_eq!(json_body(response).await["usage"]["completion_tokens"], 5);
        assert_eq!(sim.stats().rate_limited, 1);
    }

    #[tokio::test]
    async fn request_larger_than_the_tpm_limit_always_gets_429() {
        let sim = start(SimulatorConfig {
            rate_limit_rpm: 10,
            rate_limit_tpm: 100,
            ..SimulatorConfig::default()
        })
        .await;
        let prompt = hi_prompt_tokens();
        let huge = chat_request("Hi", json!({"max_tokens": 200}));
        for _ in 0..3 {
            let response = post_ok(&sim, &huge, &[]).await;
            assert_eq!(response.status(), 429);
            // Waiting cannot help, so no retry hint is given.
            assert!(!response.headers().contains_key("retry-after"));
            assert!(!response.headers().contains_key("retry-after-ms"));
            // Nothing was charged.
            assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "10");
            assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), "100");
            assert_eq!(header(&response, "x-ratelimit-reset-tokens"), "0s");
            let body = json_body(response).await;
            assert_eq!(body["error"]["type"], "tokens");
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            let message = body["error"]["message"].as_str().expect("message");
            let expected = format!(
                "Request too large for gpt-test in organization org-simulator on tokens per min (TPM): \
                 Limit 100, Requested {}.",
                prompt + 200
            );
            assert!(message.starts_with(&expected), "{message}");
        }
        let small = chat_request("Hi", json!({"max_tokens": 10}));
        let response = post_ok(&sim, &small, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining-tokens"), 100 - prompt - 10);
        assert_eq!(sim.stats().rate_limited, 3);
    }

    #[tokio::test]
    async fn rate_limit_headers_use_go_durations_on_streaming_and_429_responses() {
        // One request per minute; 1000 tokens per second.
        let sim = start(SimulatorConfig {
            rate_limit_rpm: 1,
            rate_limit_tpm: 60_000,
            ..SimulatorConfig::default()
        })
        .await;
        let prompt = hi_prompt_tokens();
        let request = chat_request("Hi", json!({"stream": true}));
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "1");
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(header(&response, "x-ratelimit-reset-requests"), "1m0s");
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "60000");
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining-tokens"),
            60_000 - prompt - 16
        );
        assert_eq!(
            header(&response, "x-ratelimit-reset-tokens"),
            format!("{}ms", prompt + 16)
        );
        let (_, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);

        let limited = post_ok(&sim, &chat_request("Hi", json!({})), &[]).await;
        assert_eq!(limited.status(), 429);
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!((55_000..=60_000).contains(&retry_ms), "{retry_ms}");
        assert_eq!(header_u64(&limited, "retry-after"), retry_ms.div_ceil(1000));
        assert_eq!(header(&limited, "x-ratelimit-remaining-requests"), "0");
        // The one request refills in what is left of the minute: `59.987s`
        // (or `1m0s` if less than a millisecond went by).
        let reset = header(&limited, "x-ratelimit-reset-requests");
        assert_eq!(reset, go_duration(retry_ms));
        assert!(
            reset == "1m0s" || (reset.starts_with('5') && !reset.ends_with("ms")),
            "{reset}"
        );
        assert!(has_rate_headers(&limited, "tokens"));
        let message = json_body(limited).await["error"]["message"].clone();
        let expected = format!("Please try again in {reset}.");
        assert!(message.as_str().is_some_and(|m| m.contains(&expected)), "{message}");
    }

    #[tokio::test]
    async fn random_failures_follow_the_seed() {
        async fn run(seed: u64) -> (Vec<u16>, SimulatorStats) {
            let sim = start(SimulatorConfig {
                failure_rate: 0.5,
                seed,
                ..SimulatorConfig::default()
            })
            .await;
            let client = client();
            let request = chat_request("Hi", json!({}));
            let mut statuses = Vec::new();
            for _ in 0..200 {
                let response = post_with(&client, &sim, &request).await;
                let status = response.status().as_u16();
                let body = json_body(response).await;
                if status != 200 {
                    assert_eq!(body["error"]["type"], "server_error", "{body}");
                    assert!(body["error"]["code"].is_null());
                }
                statuses.push(status);
            }
            (statuses, sim.stats())
        }
        let (first, stats) = run(7).await;
        let (again, _) = run(7).await;
        let (other, _) = run(8).await;
        assert_eq!(first, again);
        assert_ne!(first, other);

        let failures = first.iter().filter(|status| **status != 200).count() as u64;
        assert!((70..=130).contains(&failures), "{failures}");
        for status in [500, 502, 503] {
            assert!(first.contains(&status), "{first:?}");
        }
        assert!(first.iter().all(|s| [200, 500, 502, 503].contains(s)));
        let mut dice = FailureDice::new(7, 0.5);
        let predicted: Vec<u16> = (0..200).map(|_| dice.roll().unwrap_or(200)).collect();
        assert_eq!(first, predicted);
        assert_eq!(stats.random_failures, failures);
        assert_eq!(
            (stats.chat_requests, stats.faults_injected, stats.rate_limited),
            (200, 0, 0)
        );
        // A failed request produced no answer, so only the others add usage.
        assert_eq!(stats.completion_tokens, (200 - failures) * 16);
    }

    #[tokio::test]
    async fn rate_limit_comes_first_then_scripted_faults_then_random_failures() {
        let sim = start(SimulatorConfig {
            rate_limit_rpm: 2,
            failure_rate: 1.0,
            seed: 1,
            ..SimulatorConfig::default()
        })
        .await;
        sim.enqueue_fault(Fault {
            kind: FaultKind::Status,
            status: Some(418),
            ..Fault::default()
        });
        let request = chat_request("Hi", json!({}));
        // A scripted fault wins over the (certain) random failure.
        let scripted = post_ok(&sim, &request, &[]).await;
        assert_eq!(scripted.status(), 418);
        assert_eq!(header(&scripted, "x-ratelimit-remaining-requests"), "1");
        // Without one the random failure applies, after taking rate budget.
        let random = post_ok(&sim, &request, &[]).await;
        assert!([500, 502, 503].contains(&random.status().as_u16()));
        assert_eq!(header(&random, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(json_body(random).await["error"]["type"], "server_error");
        // Both failed requests used the budget: the limiter answers first and
        // leaves the queued fault alone.
        sim.enqueue_fault(Fault::default());
        let limited = post_ok(&sim, &request, &[("x-sim-fault", r#"{"kind":"reset"}"#)]).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(sim.pending_faults(), 1);
        let stats = sim.stats();
        assert_eq!(
            (stats.faults_injected, stats.random_failures, stats.rate_limited),
            (1, 1, 1)
        );
        sim.reset_stats();
        assert_eq!(sim.stats(), SimulatorStats::default());
    }

    #[tokio::test]
    async fn set_limits_replaces_the_limits_with_full_buckets() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({}));
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert!(!has_rate_headers(&response, "requests") && !has_rate_headers(&response, "tokens"));

        sim.set_limits(1, 0);
        // Invalid requests are rejected before the limiter and cost nothing.
        let invalid = post_ok(&sim, &json!({"messages": []}), &[]).await;
        assert_eq!(invalid.status(), 400);
        assert!(!has_rate_headers(&invalid, "requests"));
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "1");
        assert!(!has_rate_headers(&response, "tokens"));
        assert_eq!(post_ok(&sim, &request, &[]).await.status(), 429);

        sim.set_limits(1, 0);
        assert_eq!(post_ok(&sim, &request, &[]).await.status(), 200);
        sim.set_limits(0, 0);
        for _ in 0..3 {
            let response = post_ok(&sim, &request, &[]).await;
            assert_eq!(response.status(), 200);
            assert!(!has_rate_headers(&response, "requests"));
        }
        assert_eq!(sim.stats().rate_limited, 1);
    }
}
