//! The server: the [`Simulator`] handle, its configuration and counters, the listener and the
//! connection tasks, shutdown, and the route every request takes (authorization, then the chat
//! pipeline of `request` → `rate` → `faults` → `stream`, or `/v1/models`, or a 404).

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::answer::Answer;
use super::faults::{fault_from_headers, respond, FailureDice, Fault};
use super::logprobs::MAX_LOGPROB_VALUES;
use super::rate::{rate_limited_response, SimRateLimits};
use super::request::{bad_request, parse_chat_request, response_tokens_from_headers};
use super::response::{error_json, json_response, to_bytes, unix_now, BoxError, SimBody};

/// Largest request body accepted; anything bigger gets a 413 instead of
/// letting a runaway test exhaust memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Owner reported by `GET /v1/models`.
const OWNER: &str = "chatgpt-native-simulator";

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
    /// length if none) times its `n`, like OpenAI's estimate. The starting value: see
    /// [`Simulator::set_limits`] to change it while running.
    pub rate_limit_tpm: u32,
    /// Probability from 0 to 1 that a chat request fails with a random
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
pub(super) struct Shared {
    pub(super) config: SimulatorConfig,
    faults: Mutex<VecDeque<Fault>>,
    stats: Mutex<SimulatorStats>,
    rate_limits: Mutex<SimRateLimits>,
    dice: Mutex<FailureDice>,
}

impl Shared {
    /// A poisoned lock only means another task panicked while holding it;
    /// the counters are still usable, and refusing to serve would be worse.
    pub(super) fn stats(&self) -> MutexGuard<'_, SimulatorStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn faults(&self) -> MutexGuard<'_, VecDeque<Fault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rate_limits(&self) -> MutexGuard<'_, SimRateLimits> {
        self.rate_limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn dice(&self) -> MutexGuard<'_, FailureDice> {
        self.dice.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a chat request as in flight for as long as this value lives; it
/// travels inside the response body so that the count drops only when hyper
/// has finished or dropped the body.
pub(super) struct InFlight(Arc<Shared>);

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
        let rate_limits = SimRateLimits::new(config.rate_limit_rpm, config.rate_limit_tpm, Instant::now());
        let dice = FailureDice::new(config.seed, config.failure_rate);
        let shared = Arc::new(Shared {
            config,
            faults: Mutex::new(VecDeque::new()),
            stats: Mutex::new(SimulatorStats::default()),
            rate_limits: Mutex::new(rate_limits),
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
        *self.shared.rate_limits() = SimRateLimits::new(rpm, tpm, Instant::now());
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
    let path = route_path(request.uri().path());
    let is_chat = request.method() == Method::POST && path == "/v1/chat/completions";
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

    match (request.method(), path, in_flight) {
        (_, _, Some(in_flight)) => chat_completions(shared, request, in_flight).await,
        (&Method::GET, "/v1/models", None) => Ok(models(&shared.config)),
        (method, path, None) => {
            let message = format!("Invalid URL ({method} {path})");
            let body = error_json(&message, "invalid_request_error", None, None);
            Ok(json_response(StatusCode::NOT_FOUND, body, None))
        }
    }
}

/// Azure OpenAI's deployment paths (`/openai/deployments/{deployment}/chat/completions`,
/// `.../models`) answer as OpenAI's `/v1/...`; the `api-version` query is accepted and ignored.
fn route_path(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/openai/deployments/") else {
        return path;
    };
    match rest.split_once('/') {
        Some((deployment, "chat/completions")) if !deployment.is_empty() => "/v1/chat/completions",
        Some((deployment, "models")) if !deployment.is_empty() => "/v1/models",
        _ => path,
    }
}

/// The key as OpenAI sends it (`Authorization: Bearer`) or as Azure does (`api-key`).
fn authorized(config: &SimulatorConfig, headers: &HeaderMap) -> bool {
    let Some(key) = &config.api_key else {
        return true;
    };
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let api_key = headers.get("api-key").and_then(|value| value.to_str().ok());
    bearer.or(api_key).is_some_and(|sent| sent.trim() == key)
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

/// `POST /v1/chat/completions`: reads the request, then the rate limiter, then the fault or
/// answer; every response that reached the limiter carries its `x-ratelimit-*` headers.
async fn chat_completions(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let header_fault = fault_from_headers(&parts.headers);
    let wanted_tokens = response_tokens_from_headers(&parts.headers, shared.config.response_tokens);
    let (header_fault, wanted_tokens) = match (header_fault, wanted_tokens) {
        (Ok(fault), Ok(tokens)) => (fault, tokens),
        (Err(body), _) | (_, Err(body)) => return Ok(json_response(StatusCode::BAD_REQUEST, body, Some(in_flight))),
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
    let chat = match parse_chat_request(&body, &shared.config.model) {
        Ok(chat) => chat,
        Err(body) => return Ok(json_response(StatusCode::BAD_REQUEST, body, Some(in_flight))),
    };

    let answer = Answer::new(&shared.config, &chat, wanted_tokens);
    if answer.logprob_values() > MAX_LOGPROB_VALUES {
        let message = format!(
            "Too many logprobs: n × answer tokens × (1 + top_logprobs) is more than the \
             simulator's {MAX_LOGPROB_VALUES}; ask for fewer (x-sim-response-tokens, n or top_logprobs)."
        );
        let body = bad_request(&message, Some("logprobs"));
        return Ok(json_response(StatusCode::BAD_REQUEST, body, Some(in_flight)));
    }
    // OpenAI's up-front estimate: the prompt plus the most the answer may use, for each choice.
    let cost = answer.prompt_tokens.saturating_add(
        chat.max_tokens
            .unwrap_or(wanted_tokens)
            .saturating_mul(u64::from(chat.n)),
    );
    // A statement of its own, so the lock is released before any await.
    let admission = shared.rate_limits().admit(cost, Instant::now());
    let (mut result, snapshot) = match admission {
        Ok(snapshot) => (respond(shared, chat, answer, header_fault, in_flight).await, snapshot),
        Err(rejection) => {
            shared.stats().rate_limited += 1;
            let response = rate_limited_response(&rejection, &answer.model, in_flight);
            (Ok(response), rejection.snapshot)
        }
    };
    if let Ok(response) = &mut result {
        snapshot.apply(response.headers_mut());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
        let response = get_ok(&sim, "/models").await;
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
    async fn azure_deployment_paths_answer_with_the_api_key_header() {
        let sim = start(SimulatorConfig {
            api_key: Some(KEY.into()),
            ..SimulatorConfig::default()
        })
        .await;
        let url = |path: &str| {
            format!(
                "http://127.0.0.1:{}/openai/deployments/dep-1/{path}?api-version=2024-10-21",
                sim.port()
            )
        };
        let chat = |key: &str| {
            client()
                .post(url("chat/completions"))
                .header("content-type", "application/json")
                .header("api-key", key)
                .body(hi_request().to_string())
                .send()
        };
        let answered = chat(KEY).await.expect("answered");
        assert_eq!(answered.status(), 200);
        assert_eq!(json_body(answered).await["object"], "chat.completion");
        assert_eq!(chat("sk-wrong").await.expect("answered").status(), 401);
        let models = client()
            .get(url("models"))
            .header("api-key", KEY)
            .send()
            .await
            .expect("answered");
        assert_eq!(models.status(), 200);
        let elsewhere = client()
            .post(format!(
                "http://127.0.0.1:{}/openai/deployments//chat/completions",
                sim.port()
            ))
            .header("api-key", KEY)
            .send()
            .await
            .expect("answered");
        assert_eq!(elsewhere.status(), 404);
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
            let response = post_ok(&sim, &hi_request(), &headers).await;
            assert_eq!(response.status(), 401);
            let text = response.text().await.expect("body");
            assert!(!text.contains(KEY) && !text.contains(wrong_key), "{text}");
            let body: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["message"], "Incorrect API key provided.");
        }
        let good = format!("Bearer {KEY}");
        let response = post_ok(&sim, &hi_request(), &[("authorization", &good)]).await;
        assert_eq!(response.status(), 200);
        let models = get_ok(&sim, "/models").await;
        assert_eq!(models.status(), 401);
    }

    #[tokio::test]
    async fn unknown_paths_get_404() {
        let sim = start_default().await;
        let response = get_ok(&sim, "/engines").await;
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
        let body = hi_stream_request().to_string();
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
    async fn stats_count_requests_and_concurrency() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_millis(200),
            ..SimulatorConfig::default()
        })
        .await;
        get_ok(&sim, "/models").await;
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
        let request = hi_stream_request();
        let stalled = post_fault(&sim, &request, r#"{"kind":"stall"}"#).await;
        let waiting = tokio::spawn(post(&sim, &hi_request(), &[("x-sim-fault", r#"{"kind":"stall"}"#)]));
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
        let request = hi_request();
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
        let limited = post_fault(&sim, &request, r#"{"kind":"reset"}"#).await;
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
}
