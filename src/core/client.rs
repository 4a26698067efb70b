//! The chat client: turns one `sendMessage` call into a request, runs it under the call's
//! deadline, idle timeout and cancellation, streams deltas to a sink, and stores both messages.
//!
//! Every await point goes through [`ChatClient::guarded`], which races it against the
//! cancellation token, the whole-call deadline and (for body reads) the idle timeout. Doing it per
//! await point rather than around the whole call keeps the text received so far, so a timeout or
//! abort mid-stream can still report `partialText`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::breaker::{BreakerState, BreakerStats, CircuitBreaker, Outcome};
use super::cache::{cache_key, is_cacheable, CachedCompletion, Flight, FlightResult, Flights, ResponseCache};
use super::chat::{
    build_body, parse_completion, AddedMax, Completion, Params, PromptMessage, RawJson, StreamState, StreamStep, Usage,
};
use super::config::ApiKey;
use super::config::{check_completion_params, default_system_message, ClientConfig};
use super::conversation::{
    build_prompt, Budget, BuiltPrompt, ConversationStore, MessageStore, StoredMessage, TokenCountCache, Truncation,
};
use super::error::{ChatError, ErrorCode};
use super::keys::{KeyPool, KeyStatus, NoKey};
use super::limits::{AcquireError, ConcurrencyLimiter, RateLimitConfig, RateLimitError, RateLimiter};
use super::metrics::{prometheus_text, Gauges, Metrics, MetricsSnapshot};
use super::redact::Redactor;
use super::retry::{decide, is_retryable, Decision};
use super::sse::{SseDecoder, SseError, SseEvent};
use super::time::instant_after;
use super::tokens::Encoding;
use super::transport::{network_error, read_capped, too_large, Transport};

/// One call's options (the `sendMessage` options minus the JS-only ones).
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub text: String,
    /// Overrides the instance's system message for this call; `Some("")` sends none.
    pub system_message: Option<String>,
    /// Merged over the instance's `completionParams`.
    pub completion_params: Option<Map<String, Value>>,
    /// Id of the user message (a UUID v4 when absent).
    pub message_id: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The user's `name` field.
    pub name: Option<String>,
    pub stream: bool,
    /// Overrides the instance's `timeoutMs` for this call.
    pub timeout: Option<Duration>,
    /// Read and write the response cache (and coalesce identical in-flight calls).
    pub cache: bool,
}

/// What a sink sees for each delta.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The completion id (`chatcmpl-...`), once the server sent one.
    pub id: &'a str,
    pub delta: &'a str,
    /// Everything received so far, this delta included.
    pub text: &'a str,
    /// The user message's id: the reply's `parentMessageId`.
    pub parent_message_id: &'a str,
    pub conversation_id: Option<&'a str>,
}

/// Receives content deltas in order. Implementations must be cheap: this runs per delta.
pub trait DeltaSink: Send {
    fn on_delta(&mut self, progress: &Progress<'_>);
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub id: String,
    pub text: String,
    pub role: String,
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
    pub detail: RawJson,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    pub request_id: Option<String>,
    /// Number of content deltas delivered (0 for non-streaming calls).
    pub deltas: u32,
    /// Ancestors sent as history, and why the walk stopped early (if it did).
    pub history_messages: u32,
    pub truncated: Option<Truncation>,
    /// Served from the response cache.
    pub cached: bool,
}

/// A request ready to send: body parameters, prompt and the model's encoding.
pub struct PreparedRequest {
    pub params: Arc<Params>,
    /// The reply cap the client adds when the parameters set none.
    pub added_max: AddedMax,
    pub encoding: Encoding,
    pub prompt: BuiltPrompt,
    pub message_id: String,
}

/// One configured client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ChatClient {
    cfg: ClientConfig,
    transport: Transport,
    store: Arc<dyn ConversationStore>,
    counts: TokenCountCache,
    concurrency: ConcurrencyLimiter,
    keys: Arc<KeyPool>,
    /// One per key when `rateLimit` is set: providers limit each key (organisation) separately.
    limiters: Vec<RateLimiter>,
    breaker: Option<CircuitBreaker>,
    metrics: Metrics,
    cache: Option<ResponseCache>,
    flights: Flights,
    /// `cfg.completion_params`, serialised once for every call that adds none of its own.
    params: Arc<Params>,
    /// `store`, when it is the built-in one: written directly, without a boxed future. It
    /// answers without waiting, so cache hits can then be served synchronously.
    builtin_store: Option<Arc<MessageStore>>,
}

/// Models that take `max_completion_tokens` and reject `max_tokens`.
fn uses_max_completion_tokens(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    m.starts_with("gpt-5") || m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4")
}

impl ChatClient {
    /// A client with the default in-memory store, or `store` when given.
    pub fn new(cfg: ClientConfig, store: Option<Arc<dyn ConversationStore>>) -> Result<Self, ChatError> {
        let transport = Transport::new(&cfg)?;
        let (store, builtin_store): (Arc<dyn ConversationStore>, _) = match store {
            Some(given) => (given, None),
            None => {
                let builtin = Arc::new(MessageStore::new(cfg.message_store_size));
                (builtin.clone(), Some(builtin))
            }
        };
        let counts = TokenCountCache::new(cfg.message_store_size);
        let concurrency = ConcurrencyLimiter::new(cfg.max_concurrency, cfg.max_queue);
        let keys = KeyPool::new(cfg.api_keys.clone());
        // A limiter per key even without `rateLimit`: it then starts unlimited but still learns
        // from 429s and `x-ratelimit-*` headers.
        let limit = cfg.rate_limit.unwrap_or(RateLimitConfig {
            requests_per_minute: None,
            tokens_per_minute: None,
        });
        let limiters = cfg.api_keys.iter().map(|_| RateLimiter::new(limit)).collect();
        let breaker = cfg.circuit_breaker.clone().map(CircuitBreaker::new);
        let cfg_cache = cfg.cache.map(ResponseCache::new);
        let params = Arc::new(Params::new(cfg.completion_params.clone()));
        Ok(ChatClient {
            params,
            builtin_store,
            cfg,
            transport,
            store,
            counts,
            concurrency,
            keys,
            limiters,
            breaker,
            metrics: Metrics::default(),
            cache: cfg_cache,
            flights: Flights::default(),
        })
    }

    /// Counters and live gauges of this client.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            metrics: self.metrics.snapshot(),
            in_flight: self.concurrency.in_flight(),
            queued: self.concurrency.queued(),
            breaker_state: self.breaker.as_ref().map(|b| b.state()),
            breaker: self.breaker.as_ref().map(|b| b.stats()).unwrap_or_default(),
            keys: self.keys.status(),
            cache_entries: self.cache.as_ref().map_or(0, |c| c.len() as u64),
            cache_bytes: self.cache.as_ref().map_or(0, ResponseCache::bytes),
        }
    }

    /// The same numbers in Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let stats = self.stats();
        let gauges = Gauges {
            in_flight: stats.in_flight as u64,
            queued: stats.queued as u64,
            breaker_state: stats.breaker_state.map_or("disabled", BreakerState::as_str),
            breaker_opened: stats.breaker.opened,
            keys_total: stats.keys.len() as u64,
            keys_cooling: stats.keys.iter().filter(|k| k.cooling).count() as u64,
            keys_disabled_now: stats.keys.iter().filter(|k| k.disabled).count() as u64,
            cache_entries: stats.cache_entries,
            cache_bytes: stats.cache_bytes,
        };
        prometheus_text(&stats.metrics, &gauges)
    }

    /// Zero the counters and histograms (gauges keep reporting the live state).
    pub fn reset_metrics(&self) {
        self.metrics.reset();
    }

    /// Open a connection to the upstream before the first real call (TCP, TLS, HTTP/2 when
    /// offered) with a `GET {apiBaseUrl}/models`; its status does not matter. Returns how long it
    /// took.
    pub async fn warmup(&self) -> Result<Duration, ChatError> {
        let started = Instant::now();
        let key = self
            .cfg
            .api_keys
            .first()
            .cloned()
            .unwrap_or_else(|| self.cfg.api_key.clone());
        let timeout = self.cfg.timeout.min(Duration::from_secs(30));
        match tokio::time::timeout(timeout, self.transport.warmup(&key)).await {
            Ok(result) => result.map(|_| started.elapsed()).map_err(|mut e| {
                self.redactor().scrub_error(&mut e);
                e
            }),
            Err(_) => Err(ChatError::new(ErrorCode::Timeout, "Warm-up timed out")),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// A client configured by `cfg` (this one's configuration with other credentials) that
    /// shares this one's conversation store, so conversations continue across the change. Limits,
    /// breaker, cache and metrics start afresh; calls in flight keep the client they started on.
    pub fn with_config(&self, cfg: ClientConfig) -> Result<ChatClient, ChatError> {
        let mut client = ChatClient::new(cfg, Some(self.store.clone()))?;
        client.builtin_store = self.builtin_store.clone();
        Ok(client)
    }

    /// Resolve parameters and build the prompt (history within the token budget) without
    /// sending anything: what `send` would send. `exact_count` counts the prompt's tokens even
    /// when an upper bound would do (see `conversation::UNCOUNTED_MAX_TOKENS`).
    pub async fn prepare(&self, req: &SendRequest, exact_count: bool) -> Result<PreparedRequest, ChatError> {
        let message_id = req
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // The client's own parameters are shared; a call's parameters make a merged set.
        let params = match &req.completion_params {
            None => self.params.clone(),
            Some(call_params) => {
                check_completion_params(call_params, "completionParams")?;
                let mut merged = self.cfg.completion_params.clone();
                merged.extend(call_params.clone());
                Arc::new(Params::new(merged))
            }
        };
        let encoding = params.encoding();

        let system = req.system_message.clone().or_else(|| self.cfg.system_message.clone());
        let system = system.unwrap_or_else(default_system_message);
        let system = (!system.is_empty()).then(|| PromptMessage {
            role: "system".into(),
            content: system,
            name: None,
        });
        let user = PromptMessage {
            role: "user".into(),
            content: req.text.clone(),
            name: req.name.clone(),
        };
        let budget = Budget {
            max_model_tokens: self.cfg.max_model_tokens,
            max_response_tokens: self.cfg.max_response_tokens,
            encoding,
            exact: exact_count,
        };
        let prompt = build_prompt(
            &*self.store,
            &self.counts,
            &budget,
            system,
            user,
            req.parent_message_id.as_deref(),
        )
        .await?;

        // The caller's own max_tokens wins, as in `chatgpt` v5's body spread.
        let added_max = if params.contains_key("max_tokens") || params.contains_key("max_completion_tokens") {
            None
        } else if uses_max_completion_tokens(params.model()) {
            Some(("max_completion_tokens", prompt.max_tokens))
        } else {
            Some(("max_tokens", prompt.max_tokens))
        };
        Ok(PreparedRequest {
            params,
            added_max,
            encoding,
            prompt,
            message_id,
        })
    }

    /// Send one message. `sink` receives deltas when `req.stream` is set.
    pub async fn send(
        self: &Arc<Self>,
        req: SendRequest,
        sink: Option<&mut dyn DeltaSink>,
        cancel: &CancellationToken,
    ) -> Result<ChatReply, ChatError> {
        Metrics::inc(&self.metrics.calls_started);
        let started = Instant::now();
        let mut timing = TimingSink {
            inner: sink,
            first_delta: None,
        };
        // A panic (a bug) fails this call only, with a code, whatever runs it: `sendMessage`, an
        // item of `sendMany`, or a test.
        let mut result = AssertUnwindSafe(self.send_inner(req, &mut timing, cancel))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(ChatError::internal(&*panic)));
        // The one place a call's errors leave the client: scrub what a server may have echoed.
        if let Err(e) = &mut result {
            self.redactor().scrub_error(e);
        }
        self.metrics.record_latency(started.elapsed());
        if let Some(first) = timing.first_delta {
            self.metrics.record_ttft(first.saturating_duration_since(started));
        }
        match &result {
            Ok(reply) => {
                Metrics::inc(&self.metrics.calls_succeeded);
                if !reply.cached {
                    self.metrics.record_usage(
                        reply.usage.prompt_tokens as u64,
                        reply.usage.completion_tokens as u64,
                        self.cfg.max_model_tokens as u64,
                    );
                }
            }
            Err(e) => self.metrics.record_failure(e.code),
        }
        result
    }

    async fn send_inner(
        self: &Arc<Self>,
        req: SendRequest,
        sink: &mut TimingSink<'_, '_>,
        cancel: &CancellationToken,
    ) -> Result<ChatReply, ChatError> {
        // An already-aborted signal must reject before anything is sent.
        if cancel.is_cancelled() {
            return Err(ChatError::aborted());
        }
        let started = Instant::now();
        let timeout = req.timeout.unwrap_or(self.cfg.timeout);
        let g = Guard {
            deadline: Deadline::Fixed(instant_after(started, timeout)),
            timeout,
            idle: self.cfg.idle_timeout,
            cancel,
            attempt: None,
        };

        // A JS store is awaited here, so the history walk is bounded by the deadline and abort too.
        // With a configured token rate the reservation must be exact: an upper bound could make a
        // request look larger than `tokensPerMinute` and fail it as too large.
        let exact_count = self.cfg.rate_limit.is_some_and(|r| r.tokens_per_minute.is_some());
        let prepared = g.run(Box::pin(self.prepare(&req, exact_count)), false).await?;
        let PreparedRequest {
            params,
            added_max,
            encoding,
            prompt,
            message_id,
        } = prepared;
        let prompt_tokens = prompt.prompt_tokens;

        let body = Bytes::from(build_body(&params, added_max, &prompt.messages, req.stream));
        // The reply's id is ours, never the server's: the store keys messages by id, and servers
        // may send the same completion id for different replies (see `new_completion_id`).
        let ids = MessageIds {
            user: message_id,
            reply: new_completion_id(),
        };
        let progress_ids = ProgressIds {
            reply: &ids.reply,
            parent: &ids.user,
            conversation: req.conversation_id.as_deref(),
        };
        // What the rate limiter reserves before sending: prompt plus the most the reply may use
        // (for a short prompt sent uncounted, its upper bound; settled with the real usage).
        let reply_cap = ["max_tokens", "max_completion_tokens"]
            .iter()
            .find_map(|k| params.get(k).and_then(Value::as_u64))
            .map_or(prompt.max_tokens, |n| n.min(u32::MAX as u64) as u32);
        let estimate = prompt_tokens.saturating_add(reply_cap);
        let use_cache = req.cache && self.cache.is_some();
        let outcome = if use_cache {
            let key = cache_key(&self.cfg.api_base_url, &params, added_max, &prompt.messages);
            Box::pin(self.send_shared(key, body, req.stream, &g, sink, progress_ids, estimate)).await
        } else {
            let delivered_sink: Option<&mut dyn DeltaSink> = Some(sink);
            Box::pin(self.execute(body, req.stream, &g, delivered_sink, progress_ids, estimate))
                .await
                .map(|(c, rid, n)| (c, rid, n, false))
        };
        if self.cfg.debug {
            self.debug_log(params.model(), req.stream, started.elapsed(), &outcome);
        }
        let (completion, request_id, deltas, cached) = outcome?;

        let (reply, user_message, reply_message) =
            self.make_reply(req, encoding, &prompt, ids, completion, request_id, deltas, cached);
        // Store both messages (awaited, as `chatgpt` v5 does) so the reply's id can be the next
        // call's parentMessageId.
        if let Some(store) = &self.builtin_store {
            store.insert(user_message);
            store.insert(reply_message);
        } else {
            g.run(self.store.upsert(user_message), false).await?;
            g.run(self.store.upsert(reply_message), false).await?;
        }
        Ok(reply)
    }

    /// The reply and the two messages to store.
    #[allow(clippy::too_many_arguments)]
    fn make_reply(
        &self,
        req: SendRequest,
        encoding: Encoding,
        prompt: &BuiltPrompt,
        ids: MessageIds,
        completion: Completion,
        request_id: Option<String>,
        deltas: u32,
        cached: bool,
    ) -> (ChatReply, StoredMessage, StoredMessage) {
        let usage = completion.usage.unwrap_or_else(|| {
            // The server sent no usage: estimate it, counting the prompt now if it was not.
            let prompt_tokens = if prompt.prompt_tokens_exact {
                prompt.prompt_tokens
            } else {
                super::tokens::prompt_tokens(encoding, &prompt.messages) as u32
            };
            let completion_tokens = encoding.count(&completion.text) as u32;
            Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                estimated: true,
            }
        });
        let reply = ChatReply {
            id: ids.reply,
            text: completion.text,
            role: completion.role,
            parent_message_id: ids.user.clone(),
            conversation_id: req.conversation_id.clone(),
            detail: completion.detail,
            usage,
            finish_reason: completion.finish_reason,
            request_id,
            deltas,
            history_messages: prompt.history_messages,
            truncated: prompt.truncated,
            cached,
        };
        let user_message = StoredMessage {
            id: ids.user,
            role: "user".into(),
            text: req.text,
            name: req.name,
            parent_message_id: req.parent_message_id,
            conversation_id: req.conversation_id.clone(),
        };
        let reply_message = StoredMessage {
            id: reply.id.clone(),
            role: reply.role.clone(),
            text: reply.text.clone(),
            name: None,
            parent_message_id: Some(reply.parent_message_id.clone()),
            conversation_id: req.conversation_id,
        };
        (reply, user_message, reply_message)
    }

    /// A non-streaming cache hit answered synchronously, on the caller's thread, without a
    /// thread hop: the fast path of `sendMessage`. `None` when it cannot be answered that way
    /// (streaming, cache off, a JavaScript store, a miss, an invalid request): the caller then
    /// takes the normal asynchronous path, which does the counting.
    pub fn try_cached(&self, req: &SendRequest) -> Option<ChatReply> {
        if req.stream || !req.cache || self.builtin_store.is_none() {
            return None;
        }
        let cache = self.cache.as_ref()?;
        let started = Instant::now();
        // The in-memory store answers at once, so the prompt is built without waiting.
        let prepared = self.prepare(req, false).now_or_never()?.ok()?;
        let key = cache_key(
            &self.cfg.api_base_url,
            &prepared.params,
            prepared.added_max,
            &prepared.prompt.messages,
        );
        let hit = cache.get(key)?;
        Metrics::inc(&self.metrics.calls_started);
        Metrics::inc(&self.metrics.cache_hits);
        let PreparedRequest {
            encoding,
            prompt,
            message_id,
            ..
        } = prepared;
        let ids = MessageIds {
            user: message_id,
            reply: new_completion_id(),
        };
        let completion = completion_from_cache(&hit);
        let (reply, user_message, reply_message) =
            self.make_reply(req.clone(), encoding, &prompt, ids, completion, None, 0, true);
        let _ = self.store.upsert(user_message).now_or_never();
        let _ = self.store.upsert(reply_message).now_or_never();
        Metrics::inc(&self.metrics.calls_succeeded);
        self.metrics.record_latency(started.elapsed());
        Some(reply)
    }

    /// A cached answer, or a share of one upstream call for identical requests in flight.
    /// Returns the completion, request id, deltas delivered to this caller, and whether it came
    /// from the cache.
    #[allow(clippy::too_many_arguments)]
    async fn send_shared(
        self: &Arc<Self>,
        key: u128,
        body: Bytes,
        stream: bool,
        g: &Guard<'_>,
        sink: &mut TimingSink<'_, '_>,
        ids: ProgressIds<'_>,
        estimate: u32,
    ) -> Result<(Completion, Option<String>, u32, bool), ChatError> {
        let Some(cache) = &self.cache else {
            return Err(ChatError::new(ErrorCode::InvalidArg, "the response cache is disabled"));
        };
        if let Some(hit) = cache.get(key) {
            Metrics::inc(&self.metrics.cache_hits);
            let mut delivered = 0u32;
            if stream {
                let mut text = String::with_capacity(hit.text.len());
                for delta in hit.deltas() {
                    text.push_str(delta);
                    delivered = delivered.saturating_add(1);
                    sink.on_delta(&Progress {
                        id: ids.reply,
                        delta,
                        text: &text,
                        parent_message_id: ids.parent,
                        conversation_id: ids.conversation,
                    });
                }
            }
            return Ok((completion_from_cache(&hit), None, delivered, true));
        }
        Metrics::inc(&self.metrics.cache_misses);

        // Coalesce with an identical call in flight; streamed and plain calls are kept apart
        // (their `detail` differs). Each caller waits with its own deadline and cancellation;
        // the shared request runs until the last of them has left.
        let flight_key = key ^ u128::from(stream);
        let joined = self.flights.join_or_create(flight_key, g.deadline());
        if joined.created {
            self.start_flight(
                joined.flight.clone(),
                FlightKeys {
                    cache: key,
                    flight: flight_key,
                },
                body,
                stream,
                g.timeout,
                estimate,
            );
        } else {
            Metrics::inc(&self.metrics.coalesced);
        }
        let flight = &joined.flight;
        let mut seen = 0usize;
        let mut text = String::new();
        let mut delivered = 0u32;
        let outcome = {
            let mut on_delta = |delta: &str| {
                text.push_str(delta);
                delivered = delivered.saturating_add(1);
                sink.on_delta(&Progress {
                    id: ids.reply,
                    delta,
                    text: &text,
                    parent_message_id: ids.parent,
                    conversation_id: ids.conversation,
                });
            };
            g.run(async { Ok(flight.next(&mut seen, &mut on_delta).await) }, false)
                .await
        };
        drop(joined.waiter);
        let result = outcome.and_then(|r| r).map_err(|e| e.with_partial_text(&text))?;
        Ok((
            completion_from_cache(&result.completion),
            result.request_id,
            delivered,
            false,
        ))
    }

    /// Run the upstream call of a flight in its own task, so no single caller's abort or deadline
    /// ends it: it is cancelled when its last waiter leaves, and bounded by the latest of their
    /// deadlines.
    fn start_flight(
        self: &Arc<Self>,
        flight: Arc<Flight>,
        keys: FlightKeys,
        body: Bytes,
        stream: bool,
        timeout: Duration,
        estimate: u32,
    ) {
        let client = self.clone();
        tokio::spawn(async move {
            let run = async {
                let g = Guard {
                    deadline: Deadline::Shared(&flight),
                    timeout,
                    idle: client.cfg.idle_timeout,
                    cancel: &flight.cancel,
                    attempt: None,
                };
                let mut recorder = FlightSink {
                    flight: &flight,
                    ends: Vec::new(),
                    len: 0,
                };
                let ids = ProgressIds {
                    reply: "",
                    parent: "",
                    conversation: None,
                };
                let outcome = client
                    .execute(body, stream, &g, Some(&mut recorder), ids, estimate)
                    .await;
                let ends = std::mem::take(&mut recorder.ends);
                let result = outcome.map(|(completion, request_id, _)| {
                    let choices = completion.choices;
                    let stored = CachedCompletion {
                        text: completion.text,
                        delta_ends: if stream { ends } else { Vec::new() },
                        role: completion.role,
                        finish_reason: completion.finish_reason,
                        usage: completion.usage,
                        detail: completion.detail,
                    };
                    if let Some(cache) = &client.cache {
                        if is_cacheable(stored.finish_reason.as_deref(), choices) {
                            cache.insert(keys.cache, stored.clone());
                        }
                    }
                    FlightResult {
                        completion: Arc::new(stored),
                        request_id,
                    }
                });
                result
            };
            // A panic inside the call must not leave the waiters waiting for an outcome that
            // would never come (until each one's own timeout): every waiter gets the error now.
            let result = AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(ChatError::internal(&*panic)));
            flight.finish(result);
            client.flights.remove(keys.flight, &flight);
        });
    }

    /// One call's attempts: a concurrency slot, the breaker, a key, the rate limiter, then the
    /// request; on failure, the retry decision. Returns the completion, its request id and the
    /// number of deltas delivered.
    async fn execute<'d>(
        &self,
        body: Bytes,
        stream: bool,
        g: &Guard<'_>,
        mut sink: Option<&mut (dyn DeltaSink + 'd)>,
        ids: ProgressIds<'_>,
        estimate: u32,
    ) -> Result<(Completion, Option<String>, u32), ChatError> {
        #[cfg(test)]
        tests::panic_if_asked(&body).await;
        let mut schedule = self.cfg.retry.schedule(None);
        let mut attempts = 0u32;
        let finish = |mut e: ChatError, attempts: u32| {
            if attempts > 1 {
                e.message = format!("{} (after {attempts} attempts)", e.message);
            }
            if attempts > 0 {
                e.attempts = Some(attempts);
            }
            e
        };
        loop {
            // A concurrency slot, FIFO; the queue is bounded by maxQueue. Held for this attempt
            // only: a call waiting out a backoff does not occupy one.
            let slot = g
                .run(
                    async {
                        self.concurrency
                            .acquire()
                            .await
                            .map_err(|AcquireError::QueueFull { max_queue }| {
                                ChatError::new(
                                    ErrorCode::QueueFull,
                                    format!("{max_queue} calls are already waiting for a slot (`maxQueue`)"),
                                )
                            })
                    },
                    false,
                )
                .await
                .map_err(|e| finish(e, attempts))?;

            let permit = match &self.breaker {
                Some(b) => Some(b.try_acquire().map_err(|open| {
                    finish(
                        ChatError::new(
                            ErrorCode::CircuitOpen,
                            format!(
                                "The circuit breaker is open after repeated upstream failures; next probe in {} ms",
                                open.retry_in.as_millis()
                            ),
                        ),
                        attempts,
                    )
                })?),
                None => None,
            };

            let lease = loop {
                match self.keys.acquire() {
                    Ok(lease) => break lease,
                    Err(NoKey::CoolingUntil(until)) if until < g.deadline() => {
                        g.run(sleep_ok(tokio::time::sleep_until(until)), false)
                            .await
                            .map_err(|e| finish(e, attempts))?;
                    }
                    Err(NoKey::CoolingUntil(until)) => {
                        let wait = until.saturating_duration_since(Instant::now());
                        let mut e = ChatError::new(
                            ErrorCode::NoKeyAvailable,
                            format!(
                                "Every API key is cooling down after 429s for another {} ms, past the call's deadline",
                                wait.as_millis()
                            ),
                        );
                        e.retry_after = Some(wait);
                        return Err(finish(e, attempts));
                    }
                    Err(NoKey::AllDisabled) => {
                        return Err(finish(
                            ChatError::new(ErrorCode::NoKeyAvailable, "Every API key was rejected (401/403)"),
                            attempts,
                        ))
                    }
                }
            };

            let limiter = self.limiters.get(lease.index);
            let rate = match limiter {
                Some(l) => Some(
                    g.run(
                        async {
                            l.acquire_before(estimate, Some(g.deadline()))
                                .await
                                .map_err(rate_limit_error)
                        },
                        false,
                    )
                    .await
                    .map_err(|e| finish(e, attempts))?,
                ),
                None => None,
            };

            attempts = attempts.saturating_add(1);
            Metrics::inc(&self.metrics.attempts);
            if attempts > 1 {
                Metrics::inc(&self.metrics.retries);
            }
            let observe = |headers: &reqwest::header::HeaderMap| {
                if let Some(l) = limiter {
                    l.observe_headers(headers);
                }
            };
            let attempt_guard = g.for_attempt(self.cfg.attempt_timeout);
            let mut delivered = 0u32;
            // Boxed: the attempt's future (reqwest's, the SSE state, the timers) is most of a
            // call's state, and an unboxed one is copied whole each time the call's future moves
            // (into its task, out of it): ~6 KB per call.
            let outcome = Box::pin(self.run(
                body.clone(),
                stream,
                &attempt_guard,
                sink.as_deref_mut(),
                ids,
                &lease.key,
                &observe,
                &mut delivered,
            ))
            .await;
            drop(slot);
            let mut e = match outcome {
                Ok((completion, request_id)) => {
                    if let Some(p) = permit {
                        p.record(Outcome::Success);
                    }
                    if let Some(r) = rate {
                        r.settle(completion.usage.map_or(estimate, |u| u.total_tokens));
                    }
                    return Ok((completion, request_id, delivered));
                }
                Err(e) => e,
            };

            if let Some(p) = permit {
                p.record(breaker_outcome(&e));
            }
            if e.code == ErrorCode::RateLimited {
                Metrics::inc(&self.metrics.rate_limited_responses);
                if let Some(l) = limiter {
                    l.pause_for(e.retry_after);
                }
                if self.keys.len() > 1 {
                    self.keys.cool_down(lease.index, e.retry_after);
                    Metrics::inc(&self.metrics.key_cool_downs);
                }
            }
            // A rejected key in a pool is disabled and the call fails over to the next key at once.
            if e.code == ErrorCode::Auth && self.keys.len() > 1 {
                if self.keys.disable(lease.index) {
                    Metrics::inc(&self.metrics.keys_disabled);
                }
                if self.keys.has_usable() && delivered == 0 {
                    continue;
                }
            }
            if delivered > 0 {
                // Deltas reached the caller: a retry would repeat them, so the call ends here.
                if is_retryable(&e) && e.code != ErrorCode::Timeout {
                    let cause = e.code;
                    e.code = ErrorCode::StreamInterrupted;
                    e.message = format!(
                        "The stream was interrupted after {delivered} deltas ({cause}): {}",
                        e.message
                    );
                }
                return Err(finish(e, attempts));
            }
            let remaining = g.deadline().saturating_duration_since(Instant::now());
            match decide(&e, &mut schedule, remaining) {
                Decision::Stop => return Err(finish(e, attempts)),
                Decision::RetryAfter(delay) => {
                    // After a 429 another key may be free right now: fail over without waiting.
                    let delay = if e.code == ErrorCode::RateLimited && self.keys.len() > 1 && self.keys.has_usable() {
                        Duration::ZERO
                    } else {
                        delay
                    };
                    if !delay.is_zero() {
                        g.run(sleep_ok(tokio::time::sleep(delay)), false)
                            .await
                            .map_err(|e| finish(e, attempts))?;
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run<'d>(
        &self,
        body: Bytes,
        stream: bool,
        g: &Guard<'_>,
        sink: Option<&mut (dyn DeltaSink + 'd)>,
        ids: ProgressIds<'_>,
        key: &ApiKey,
        observe: &(dyn Fn(&reqwest::header::HeaderMap) + Sync),
        delivered: &mut u32,
    ) -> Result<(Completion, Option<String>), ChatError> {
        let resp = g
            .run(self.transport.post_chat(body, stream, key, observe), false)
            .await?;
        let request_id = resp.request_id.clone();
        let max = self.transport.max_response_bytes();
        if !stream {
            let bytes = g
                .run(read_capped(resp.inner, max), true)
                .await
                .map_err(|e| e.with_request_id(request_id.as_deref()))?;
            let completion = parse_completion(&bytes).map_err(|e| e.with_request_id(request_id.as_deref()))?;
            return Ok((completion, request_id));
        }

        let mut body = resp.inner;
        let mut decoder = SseDecoder::new(max);
        let mut state = StreamState::default();
        let mut events: Vec<SseEvent> = Vec::new();
        let mut received = 0usize;
        let mut sink = sink;
        let fail = |e: ChatError, text: &str| e.with_partial_text(text).with_request_id(request_id.as_deref());
        'read: loop {
            let chunk = g
                .run(async { body.chunk().await.map_err(network_error) }, true)
                .await
                .map_err(|e| fail(e, &state.text))?;
            match &chunk {
                Some(bytes) => {
                    received += bytes.len();
                    if received > max {
                        return Err(fail(too_large(max), &state.text));
                    }
                    decoder
                        .feed(bytes, &mut events)
                        .map_err(|e| fail(sse_error(e, max), &state.text))?;
                }
                None => decoder.finish(&mut events),
            }
            for ev in events.drain(..) {
                match state.on_event(&ev).map_err(|e| fail(e, &state.text))? {
                    StreamStep::Delta(delta) => deliver(sink.as_deref_mut(), ids, &delta, &state.text, delivered),
                    StreamStep::Done => break 'read,
                    StreamStep::Nothing => {}
                }
            }
            if chunk.is_none() {
                break;
            }
        }
        if let Some(delta) = state.flush_held() {
            deliver(sink, ids, &delta, &state.text, delivered);
        }
        if state.done {
            // Nothing after [DONE] is processed. One non-waiting poll lets an end-of-body that has
            // already arrived complete, which returns the connection to the keep-alive pool.
            let _ = body.chunk().now_or_never();
        }
        let completion = state.finish().map_err(|e| e.with_request_id(request_id.as_deref()))?;
        Ok((completion, request_id))
    }

    fn debug_log(
        &self,
        model: &str,
        stream: bool,
        elapsed: Duration,
        outcome: &Result<(Completion, Option<String>, u32, bool), ChatError>,
    ) {
        // Never the key, never the prompt, never URL credentials: only what helps find a request
        // in server logs. The whole line is scrubbed, as the request id comes from the server.
        let line = match outcome {
            Ok((c, rid, _, _)) => format!(
                "[chatgpt-native] POST {}/chat/completions model={model} stream={stream} -> ok in {} ms, finish={} request_id={}",
                self.cfg.api_base_url,
                elapsed.as_millis(),
                c.finish_reason.as_deref().unwrap_or("-"),
                rid.as_deref().unwrap_or("-"),
            ),
            Err(e) => format!(
                "[chatgpt-native] POST {}/chat/completions model={model} stream={stream} -> {} status={} in {} ms request_id={}",
                self.cfg.api_base_url,
                e.code,
                e.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                elapsed.as_millis(),
                e.request_id.as_deref().unwrap_or("-"),
            ),
        };
        eprintln!("{}", self.redactor().scrub(&line));
    }

    /// Scrubs this client's keys (and any credentials) from text; see `core/redact.rs`. Built
    /// on demand: only failures and debug lines need it. Extra `headers` whose names say they
    /// carry a credential (`api-key`, `x-auth-token`, `cookie`, ...) count as keys too.
    fn redactor(&self) -> Redactor {
        const SECRET_HEADER_HINTS: [&str; 6] = ["auth", "key", "token", "secret", "cookie", "password"];
        let secret_headers = self.cfg.headers.iter().filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            SECRET_HEADER_HINTS
                .iter()
                .any(|hint| name.contains(hint))
                .then_some(value.as_str())
        });
        Redactor::new(
            self.cfg
                .api_keys
                .iter()
                .chain(std::iter::once(&self.cfg.api_key))
                .map(ApiKey::expose)
                .chain(secret_headers),
        )
    }
}

/// Hand one streamed delta to the sink (if any) and count it.
fn deliver(
    sink: Option<&mut (dyn DeltaSink + '_)>,
    ids: ProgressIds<'_>,
    delta: &str,
    text: &str,
    delivered: &mut u32,
) {
    *delivered = delivered.saturating_add(1);
    if let Some(s) = sink {
        s.on_delta(&Progress {
            id: ids.reply,
            delta,
            text,
            parent_message_id: ids.parent,
            conversation_id: ids.conversation,
        });
    }
}

/// The ids a call's deltas carry.
#[derive(Clone, Copy)]
struct ProgressIds<'a> {
    /// The reply's id (`MessageIds::reply`).
    reply: &'a str,
    parent: &'a str,
    conversation: Option<&'a str>,
}

/// The two messages a call stores: the user's (`messageId`, or a UUID) and the reply's.
struct MessageIds {
    user: String,
    reply: String,
}

/// The cache key of a shared request, and the key of its flight (streamed and plain calls fly
/// apart).
struct FlightKeys {
    cache: u128,
    flight: u128,
}

fn sse_error(e: SseError, max: usize) -> ChatError {
    match e {
        SseError::EventTooLarge { .. } => too_large(max),
    }
}

/// `chatcmpl-` plus a random UUID: the id of every reply. Never the server's own: some servers
/// send the same completion id for different replies, and the conversation store keys messages
/// by id, so a reused id would put one conversation's turns into another. The server's id stays
/// in `detail`.
fn new_completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// A stored answer as a completion (its id is the caller's own, see `MessageIds`).
fn completion_from_cache(c: &CachedCompletion) -> Completion {
    Completion {
        id: None,
        text: c.text.clone(),
        role: c.role.clone(),
        finish_reason: c.finish_reason.clone(),
        usage: c.usage,
        detail: c.detail.clone(),
        choices: 1,
    }
}

/// Records a flight's deltas for its waiters and the cache.
struct FlightSink<'a> {
    flight: &'a Flight,
    ends: Vec<usize>,
    len: usize,
}

impl DeltaSink for FlightSink<'_> {
    fn on_delta(&mut self, p: &Progress<'_>) {
        self.len = self.len.saturating_add(p.delta.len());
        self.ends.push(self.len);
        self.flight.push_delta(p.delta);
    }
}

/// The caller's sink, timing the first delta (time to first token).
pub struct TimingSink<'a, 'd> {
    inner: Option<&'a mut (dyn DeltaSink + 'd)>,
    first_delta: Option<Instant>,
}

impl DeltaSink for TimingSink<'_, '_> {
    fn on_delta(&mut self, p: &Progress<'_>) {
        if self.first_delta.is_none() {
            self.first_delta = Some(Instant::now());
        }
        if let Some(inner) = self.inner.as_deref_mut() {
            inner.on_delta(p);
        }
    }
}

/// When a call gives up: its own deadline, or for the shared request of coalesced calls, the
/// latest deadline of the callers waiting for it (it grows as callers join).
#[derive(Clone, Copy)]
enum Deadline<'a> {
    Fixed(Instant),
    Shared(&'a Flight),
}

impl Deadline<'_> {
    fn at(&self) -> Instant {
        match self {
            Deadline::Fixed(at) => *at,
            Deadline::Shared(flight) => flight.deadline(),
        }
    }

    /// Completes once the deadline has passed, re-reading it after each wait (a shared one may
    /// have been extended meanwhile).
    async fn passed(self) {
        loop {
            let at = self.at();
            tokio::time::sleep_until(at).await;
            if self.at() <= Instant::now() {
                return;
            }
        }
    }
}

/// Races one await point against cancellation, the call's deadline, the attempt's deadline (when
/// `attemptTimeoutMs` is set) and, for body reads, the idle timeout.
struct Guard<'a> {
    deadline: Deadline<'a>,
    timeout: Duration,
    idle: Duration,
    cancel: &'a CancellationToken,
    /// This attempt's own deadline and bound, earlier than `deadline`.
    attempt: Option<(Instant, Duration)>,
}

impl<'a> Guard<'a> {
    /// The guard for one attempt: bounded by `attempt_timeout` too, when that ends first.
    fn for_attempt(&self, attempt_timeout: Option<Duration>) -> Guard<'a> {
        let attempt = attempt_timeout
            .map(|t| (instant_after(Instant::now(), t), t))
            .filter(|(at, _)| *at < self.deadline());
        Guard {
            deadline: self.deadline,
            timeout: self.timeout,
            idle: self.idle,
            cancel: self.cancel,
            attempt,
        }
    }

    /// When the call gives up.
    fn deadline(&self) -> Instant {
        self.deadline.at()
    }

    async fn run<T>(&self, fut: impl Future<Output = Result<T, ChatError>>, idle: bool) -> Result<T, ChatError> {
        if self.cancel.is_cancelled() {
            return Err(ChatError::aborted());
        }
        // Most awaits of a call are ready at once (the in-memory store, a free concurrency slot,
        // a body that arrived with its headers): answer those without arming timers, since each
        // armed timer takes a lock on the timer wheel to register and another to deregister.
        let mut fut = std::pin::pin!(fut);
        if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
            return r;
        }
        // Boxed so the timers take room only in calls that wait.
        Box::pin(self.race(fut, idle)).await
    }

    /// `run`'s waiting half: `fut` against cancellation and the deadlines.
    async fn race<T>(
        &self,
        fut: std::pin::Pin<&mut impl Future<Output = Result<T, ChatError>>>,
        idle: bool,
    ) -> Result<T, ChatError> {
        let idle_limit = if idle { Some(self.idle) } else { None };
        let idle_sleep = async move {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let attempt = self.attempt;
        let attempt_sleep = async move {
            match attempt {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ChatError::aborted()),
            _ = self.deadline.passed() => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The request timed out after {} ms (`timeoutMs`)", self.timeout.as_millis()),
            )),
            _ = attempt_sleep => Err(ChatError::new(
                ErrorCode::Timeout,
                format!(
                    "The attempt timed out after {} ms (`attemptTimeoutMs`)",
                    self.attempt.map_or(0, |(_, t)| t.as_millis())
                ),
            )),
            _ = idle_sleep => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The stream was idle for more than {} ms (`idleTimeoutMs`)", self.idle.as_millis()),
            )),
            r = fut => r,
        }
    }
}

/// Why the rate limiter refused a call, as the call's error.
fn rate_limit_error(e: RateLimitError) -> ChatError {
    match e {
        RateLimitError::RequestTooLarge {
            estimate,
            tokens_per_minute,
        } => ChatError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "The request needs about {estimate} tokens but `rateLimit.tokensPerMinute` is {tokens_per_minute}: it could never be sent"
            ),
        ),
        RateLimitError::Paused { retry_after } => {
            let mut e = ChatError::new(
                ErrorCode::RateLimited,
                format!(
                    "The server paused requests (429 or rate-limit headers) for another {} ms, past the call's deadline",
                    retry_after.as_millis()
                ),
            );
            e.retry_after = Some(retry_after);
            e
        }
    }
}

/// A sleep as a fallible future, for `Guard::run` (which can cut it short).
async fn sleep_ok(sleep: tokio::time::Sleep) -> Result<(), ChatError> {
    sleep.await;
    Ok(())
}

/// What a failure says about the upstream's health: only failures of the server or the path to
/// it count; the caller's own mistakes (4xx), aborts and rate limiting (handled by pacing) do not.
fn breaker_outcome(e: &ChatError) -> Outcome {
    match e.code {
        ErrorCode::Network
        | ErrorCode::Timeout
        | ErrorCode::StreamError
        | ErrorCode::StreamIncomplete
        | ErrorCode::BadResponse => Outcome::Failure,
        ErrorCode::Http if e.status.is_some_and(|s| s >= 500) => Outcome::Failure,
        _ => Outcome::Ignored,
    }
}

/// Counters plus live gauges of a client.
#[derive(Debug, Clone)]
pub struct ClientStats {
    pub metrics: MetricsSnapshot,
    pub in_flight: usize,
    pub queued: usize,
    pub breaker_state: Option<BreakerState>,
    pub breaker: BreakerStats,
    pub keys: Vec<KeyStatus>,
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::ClientOptions;
    use crate::core::simulator::{Simulator, SimulatorConfig};

    /// A call whose text contains this panics inside `execute` (test builds only), to prove a
    /// panic reaches every waiter as an error.
    const PANIC_MARKER: &str = "test hook: panic inside the call";

    pub(super) async fn panic_if_asked(body: &[u8]) {
        let marker = PANIC_MARKER.as_bytes();
        if body.windows(marker.len()).any(|w| w == marker) {
            // Long enough for identical calls to join the flight first.
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::panic::panic_any("injected by a test");
        }
    }

    fn request(text: &str, cache: bool) -> SendRequest {
        SendRequest {
            text: text.into(),
            system_message: None,
            completion_params: None,
            message_id: None,
            parent_message_id: None,
            conversation_id: None,
            name: None,
            stream: false,
            timeout: None,
            cache,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inside_one_call_fails_that_call_alone_with_a_code() {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let cfg = ClientConfig::build(ClientOptions {
            api_key: Some("sk-test".into()),
            api_base_url: Some(sim.base_url()),
            ..Default::default()
        })
        .unwrap();
        let client = Arc::new(ChatClient::new(cfg, None).unwrap());
        let cancel = CancellationToken::new();
        // Side by side, as `sendMany` runs its items.
        let (panicked, fine) = futures::join!(
            client.send(request(PANIC_MARKER, false), None, &cancel),
            client.send(request("a normal call", false), None, &cancel),
        );
        assert_eq!(panicked.unwrap_err().code, ErrorCode::Internal);
        assert_eq!(fine.unwrap().finish_reason.as_deref(), Some("stop"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inside_a_shared_call_rejects_every_waiter_at_once() {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let cfg = ClientConfig::build(ClientOptions {
            api_key: Some("sk-test".into()),
            api_base_url: Some(sim.base_url()),
            ..Default::default()
        })
        .unwrap();
        let client = Arc::new(ChatClient::new(cfg, None).unwrap());
        let req = SendRequest {
            text: PANIC_MARKER.into(),
            system_message: None,
            completion_params: None,
            message_id: None,
            parent_message_id: None,
            conversation_id: None,
            name: None,
            stream: false,
            timeout: None,
            cache: true,
        };
        let started = Instant::now();
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                let req = req.clone();
                tokio::spawn(async move { client.send(req, None, &CancellationToken::new()).await })
            })
            .collect();
        // The default `timeoutMs` is 10 minutes: a waiter left hanging would show here.
        let results = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(calls))
            .await
            .expect("every waiter settles promptly");
        for r in results {
            assert_eq!(r.unwrap().unwrap_err().code, ErrorCode::Internal);
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(client.stats().metrics.coalesced, 2, "the three calls shared one flight");
        assert!(client.flights.is_empty());
    }

    #[test]
    fn reasoning_models_use_max_completion_tokens() {
        assert!(uses_max_completion_tokens("gpt-5-mini"));
        assert!(uses_max_completion_tokens("o3"));
        assert!(!uses_max_completion_tokens("gpt-4.1-mini"));
        assert!(!uses_max_completion_tokens("llama-3"));
    }

    #[tokio::test(start_paused = true)]
    async fn guard_times_out_at_the_deadline() {
        let cancel = CancellationToken::new();
        let g = Guard {
            deadline: Deadline::Fixed(Instant::now() + Duration::from_millis(50)),
            timeout: Duration::from_millis(50),
            idle: Duration::from_secs(10),
            cancel: &cancel,
            attempt: None,
        };
        let r: Result<(), _> = g.run(std::future::pending(), false).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn guard_idle_timeout_applies_only_to_body_reads() {
        let cancel = CancellationToken::new();
        let g = Guard {
            deadline: Deadline::Fixed(Instant::now() + Duration::from_secs(100)),
            timeout: Duration::from_secs(100),
            idle: Duration::from_millis(20),
            cancel: &cancel,
            attempt: None,
        };
        let r: Result<(), _> = g.run(std::future::pending(), true).await;
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.message.contains("idleTimeoutMs"));
    }

    #[tokio::test]
    async fn guard_prefers_cancellation() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let g = Guard {
            deadline: Deadline::Fixed(Instant::now()),
            timeout: Duration::ZERO,
            idle: Duration::ZERO,
            cancel: &cancel,
            attempt: None,
        };
        let r: Result<(), _> = g.run(async { Ok(()) }, true).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Aborted);
    }
}
