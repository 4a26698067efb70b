//! The chat client: turns one `sendMessage` call into a request, runs its attempts under the
//! call's bounds (see `bounds`), streams deltas to a sink, and stores both messages.
//!
//! A call goes: [`ChatClient::prepare`] (parameters, prompt and history) → the response cache
//! and the coalescing of identical calls in flight (`flight`) → `run_attempts` (admission, one
//! attempt, the retry decision) → `attempt_once` (the HTTP exchange, streamed through
//! `stream`) → the reply and the two stored messages (`turn`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::admission::Admitted;
use super::bounds::{CallBounds, Deadline};
use super::breaker::{BreakerState, BreakerStats};
use super::cache::{cache_key, ResponseCache};
use super::call::{CallPlan, Outbound, Received};
use super::chat::{
    build_body, build_body_raw, parse_completion, requested_choices, AddedMax, Completion, Params, PromptMessage,
    ReplyCap,
};
use super::config::ApiKey;
use super::config::{check_completion_params, default_system_message, ClientConfig};
use super::content::Content;
use super::conversation::{build_prompt, Budget, BuiltPrompt, ConversationStore, MessageStore, TokenCountCache};
use super::coordination::SharedCache;
use super::debug::{DebugEntry, DebugLog, StdoutLog};
use super::error::{ChatError, ErrorCode};
use super::flight::{completion_from_cache, Sharing, Upstream};
use super::keys::KeyStatus;
use super::messages::OwnMessages;
use super::metrics::{prometheus_text, Gauges, Metrics, MetricsSnapshot};
use super::redact::Redactor;
use super::retry::{decide, Decision};
use super::stream::{read_stream, Delivery, ProgressIds};
pub use super::stream::{DeltaSink, Progress};
use super::structured::{parse_output, ChoiceOutput, OutputFormat};
use super::time::instant_after;
use super::tokens::Encoding;
use super::transport::read_capped;
use super::turn::{settle, MessageIds};
pub use super::turn::{ChatReply, SendRequest};
use super::upstreams::{chain, falls_back, routes_for, Route, RouteCounters, Routes, UpstreamStats};

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
    /// The servers calls go to, each with its transport and the gates of its attempts
    /// (concurrency, breaker, keys, rate limits): one, or one per `upstreams` entry.
    routes: Routes,
    store: Arc<dyn ConversationStore>,
    counts: TokenCountCache,
    metrics: Metrics,
    /// The response cache and the identical calls in flight (when the cache is on).
    sharing: Option<Arc<Sharing>>,
    /// `cfg.completion_params`, serialised once for every call that adds none of its own.
    params: Arc<Params>,
    /// `store`, when it is the built-in one: written directly, without a boxed future. It
    /// answers without waiting, so cache hits can then be served synchronously.
    builtin_store: Option<Arc<MessageStore>>,
    /// Where `debug: true` prints (`None` without `debug`).
    debug_log: Option<Arc<dyn DebugLog>>,
}

/// What one HTTP exchange brought back.
struct Fetched {
    completion: Completion,
    /// `x-request-id` of the response.
    request_id: Option<String>,
}

/// Models that take `max_completion_tokens` and reject `max_tokens`.
fn uses_max_completion_tokens(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    m.starts_with("gpt-5") || m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4")
}

impl ChatClient {
    /// A client with the default in-memory store, or `store` when given.
    pub fn new(cfg: ClientConfig, store: Option<Arc<dyn ConversationStore>>) -> Result<Self, ChatError> {
        let routes = routes_for(&cfg)?;
        let (store, builtin_store): (Arc<dyn ConversationStore>, _) = match store {
            Some(given) => (given, None),
            None => {
                let builtin = Arc::new(MessageStore::new(cfg.message_store_size));
                (builtin.clone(), Some(builtin))
            }
        };
        let counts = TokenCountCache::new(cfg.message_store_size);
        // With `coordination`, the cache has a second level in Redis, bounded by the same settings.
        let shared_cache = match (cfg.cache, routes.coordinator()) {
            (Some(cache), Some(c)) if c.config().shared_cache => {
                Some(SharedCache::new(Arc::clone(c), cache, cfg.upstreams.len()))
            }
            _ => None,
        };
        let cfg_cache = cfg.cache.map(ResponseCache::new);
        let params = Arc::new(Params::new(cfg.completion_params.clone()));
        let debug_log: Option<Arc<dyn DebugLog>> = cfg.debug.then(|| Arc::new(StdoutLog) as Arc<dyn DebugLog>);
        Ok(ChatClient {
            debug_log,
            params,
            builtin_store,
            cfg,
            routes,
            store,
            counts,
            metrics: Metrics::default(),
            sharing: cfg_cache.map(|cache| Sharing::new(cache, shared_cache)),
        })
    }

    /// Counters and live gauges of this client.
    /// The breaker and keys reported at the top level are the first upstream's; with `upstreams`,
    /// `upstreams` has every one's.
    pub fn stats(&self) -> ClientStats {
        let first = self.routes.first();
        let admission = &first.admission;
        ClientStats {
            metrics: self.metrics.snapshot(),
            in_flight: admission.concurrency().in_flight(),
            queued: admission.concurrency().queued(),
            breaker_state: admission.breaker_state(),
            breaker: admission.breaker_stats(),
            keys: admission.keys().status(),
            cache_entries: self.sharing.as_ref().map_or(0, |s| s.cache().len() as u64),
            cache_bytes: self.sharing.as_ref().map_or(0, |s| s.cache().bytes()),
            coordination: self.routes.coordinator().map(|c| c.stats()),
            upstreams: self.upstream_stats(),
        }
    }

    /// Every upstream's counters and state; empty without `upstreams`.
    fn upstream_stats(&self) -> Vec<UpstreamStats> {
        if self.cfg.upstreams.is_empty() {
            return Vec::new();
        }
        self.routes.iter().enumerate().map(|(i, r)| r.stats(i)).collect()
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
        let mut text = prometheus_text(&stats.metrics, &gauges);
        super::metrics::upstreams_text(&mut text, &stats.upstreams);
        if let Some(c) = &stats.coordination {
            text.push_str(&super::metrics::coordination_text(c));
            text.push_str(&super::metrics::coordination_sharing_text(&stats.metrics));
        }
        text
    }

    /// Zero the counters and histograms (gauges keep reporting the live state).
    pub fn reset_metrics(&self) {
        self.metrics.reset();
        for route in self.routes.iter() {
            route.counters.reset();
        }
        if let Some(c) = self.routes.coordinator() {
            c.reset_stats();
        }
    }

    /// The one-time warning that shared rate limits fell back to local ones (Redis failed or
    /// was slow), the first time it is asked for after that happened; else `None`.
    pub fn take_coordination_warning(&self) -> Option<String> {
        self.routes.coordinator()?.take_warning()
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
        match tokio::time::timeout(timeout, self.routes.first().transport.warmup(&key)).await {
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
        if client.debug_log.is_some() {
            client.debug_log = self.debug_log.clone();
        }
        Ok(client)
    }

    /// This client, printing its `debug` output through `log` instead of to stdout (no effect
    /// without `debug`).
    pub fn with_debug_log(mut self, log: Arc<dyn DebugLog>) -> Self {
        if self.debug_log.is_some() {
            self.debug_log = Some(log);
        }
        self
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
        let budget = Budget {
            max_model_tokens: self.cfg.max_model_tokens,
            max_response_tokens: self.cfg.max_response_tokens,
            encoding,
            exact: exact_count,
        };
        let prompt = match &req.messages {
            Some(own) => own_prompt(own, &budget)?,
            None => self.conversation_prompt(req, &budget).await?,
        };

        // The caller's own max_tokens wins, as in `chatgpt` v5's body spread.
        let added_max = if params.contains_key("max_tokens") || params.contains_key("max_completion_tokens") {
            None
        } else if uses_max_completion_tokens(params.model()) {
            Some(ReplyCap {
                field: "max_completion_tokens",
                tokens: prompt.max_tokens,
            })
        } else {
            Some(ReplyCap {
                field: "max_tokens",
                tokens: prompt.max_tokens,
            })
        };
        Ok(PreparedRequest {
            params,
            added_max,
            encoding,
            prompt,
            message_id,
        })
    }

    /// `sendMessage`'s prompt: the system message, the history walked from `parentMessageId`
    /// within the budget, and the new user message.
    async fn conversation_prompt(&self, req: &SendRequest, budget: &Budget) -> Result<BuiltPrompt, ChatError> {
        let system = req.system_message.clone().or_else(|| self.cfg.system_message.clone());
        let system = system.unwrap_or_else(default_system_message);
        let system = (!system.is_empty()).then(|| PromptMessage {
            role: "system".into(),
            content: Content::Text(system),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        });
        // Tool results go first, after the history that ends with the reply they answer.
        let tool_results = req.tool_results.iter().map(|r| PromptMessage {
            role: "tool".into(),
            content: Content::Text(r.content.clone()),
            name: None,
            tool_calls: None,
            tool_call_id: Some(r.tool_call_id.clone()),
        });
        // `sendMessage('')` sends the system message and the history only, as the `chatgpt`
        // package does; the empty user message is still stored (unless tool results were sent).
        let content = match &req.parts {
            Some(parts) => Some(Content::Parts(parts.clone())),
            None => (!req.text.is_empty()).then(|| Content::Text(req.text.clone())),
        };
        let user = content.map(|content| PromptMessage {
            role: "user".into(),
            content,
            name: req.name.clone(),
            tool_calls: None,
            tool_call_id: None,
        });
        build_prompt(
            &*self.store,
            &self.counts,
            budget,
            system,
            tool_results.chain(user),
            req.parent_message_id.as_deref(),
        )
        .await
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
        let mut result = AssertUnwindSafe(self.send_prepared(req, &mut timing, cancel))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(ChatError::internal(&*panic)));
        // The one place a call's errors leave the client: scrub what a server may have echoed.
        if let Err(e) = &mut result {
            self.redactor().scrub_error(e);
        }
        self.record_call(started, timing.first_delta, &result);
        result
    }

    /// The metrics of a finished call: its latency, time to first token, and outcome (usage
    /// for answers that sent a request, saved tokens for those that did not).
    fn record_call(&self, started: Instant, first_delta: Option<Instant>, result: &Result<ChatReply, ChatError>) {
        self.metrics.record_latency(started.elapsed());
        if let Some(first) = first_delta {
            self.metrics.record_ttft(first.saturating_duration_since(started));
        }
        match result {
            Ok(reply) => {
                Metrics::inc(&self.metrics.calls_succeeded);
                match reply.saved {
                    // Answered without a request of its own: its tokens were counted once, by
                    // the call that sent the request.
                    Some(saved) => self
                        .metrics
                        .record_saved(saved.prompt_tokens as u64, saved.completion_tokens as u64),
                    None => self.metrics.record_usage(
                        reply.usage.prompt_tokens as u64,
                        reply.usage.completion_tokens as u64,
                        self.cfg.max_model_tokens as u64,
                    ),
                }
            }
            Err(e) => self.metrics.record_failure(e.code),
        }
    }

    /// Prepare the call, get its completion (from the cache, a shared flight or upstream), and
    /// store both messages.
    async fn send_prepared(
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
        let bounds = CallBounds::new(
            Deadline::Fixed(instant_after(started, timeout)),
            timeout,
            self.cfg.idle_timeout,
            cancel,
        );

        // A JS store is awaited here, so the history walk is bounded by the deadline and abort too.
        // With a configured token rate the reservation must be exact: an upper bound could make a
        // request look larger than `tokensPerMinute` and fail it as too large.
        // `debug` logs the prompt's exact count, as the `chatgpt` package does.
        let paces_tokens =
            |r: &Option<super::limits::RateLimitConfig>| r.is_some_and(|r| r.tokens_per_minute.is_some());
        let exact_count = self.cfg.debug
            || paces_tokens(&self.cfg.rate_limit)
            || self.cfg.upstreams.iter().any(|u| paces_tokens(&u.rate_limit));
        let prepared = bounds.wait(Box::pin(self.prepare(&req, exact_count))).await?;
        let PreparedRequest {
            params,
            added_max,
            encoding,
            prompt,
            message_id,
        } = prepared;

        // The reply's id is ours, never the server's: the store keys messages by id, and servers
        // may send the same completion id for different replies (see `new_completion_id`).
        let ids = user_ids(&req, message_id);
        // What the rate limiter reserves before sending: prompt plus the most the reply may use
        // (for a short prompt sent uncounted, its upper bound; settled with the real usage).
        let reply_cap = ["max_tokens", "max_completion_tokens"]
            .iter()
            .find_map(|k| params.get(k).and_then(Value::as_u64))
            .map_or(prompt.max_tokens, |n| n.min(u32::MAX as u64) as u32);
        // Each choice may use the whole reply budget.
        let choices = requested_choices(&params);
        let reply_cap = reply_cap.saturating_mul(u32::try_from(choices).unwrap_or(u32::MAX));
        let body = Bytes::from(match &req.messages {
            Some(own) => build_body_raw(&params, added_max, &own.json, req.stream),
            None => build_body(&params, added_max, &prompt.messages, req.stream),
        });
        if let Some(log) = &self.debug_log {
            let entry = DebugEntry::Request {
                prompt_tokens: prompt.prompt_tokens,
                body: self.redactor().scrub(&String::from_utf8_lossy(&body)).into_owned(),
            };
            bounds.wait(log.log(entry).map(Ok)).await?;
        }
        let plan = CallPlan {
            request: Outbound {
                body,
                stream: req.stream,
                estimate: prompt.prompt_tokens.saturating_add(reply_cap),
                // Only shared buckets are per model; the in-process limiter is per key.
                model: match self.routes.coordinator() {
                    Some(_) => params
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or(self.cfg.model())
                        .to_owned(),
                    None => String::new(),
                },
                headers: req.headers.clone(),
                choices,
                output: OutputFormat::of(&params),
            },
            bounds: &bounds,
            delivery: Delivery::new(
                sink,
                ProgressIds {
                    reply: &ids.reply,
                    parent: &ids.user,
                    conversation: req.conversation_id.as_deref(),
                },
            ),
            attempts: None,
        };
        let outcome = match &self.sharing {
            Some(sharing) if req.cache => {
                let key = self.cache_key_of(&req, &params, added_max, &prompt);
                Box::pin(sharing.send(self, &self.metrics, key, plan)).await
            }
            _ => Box::pin(self.run_attempts(plan)).await,
        };
        if let Some(log) = &self.debug_log {
            let entry = self.debug_outcome(params.model(), req.stream, started.elapsed(), &outcome);
            if let Some(entry) = entry {
                bounds.wait(log.log(entry).map(Ok)).await?;
            }
        }
        let received = outcome?;
        let upstream = self.upstream_name(received.upstream);
        // A JSON reply that is not JSON (cut, refused, malformed) rejects, and nothing is stored.
        let parsed = match read_output(&params, &received) {
            Ok(parsed) => parsed,
            Err(e) => {
                // The model answered, and what it used is billed: counted though the call rejects
                // (once, by the call that sent the request).
                if let (false, Some(usage)) = (received.cached, received.completion.usage) {
                    self.metrics.record_usage(
                        u64::from(usage.prompt_tokens),
                        u64::from(usage.completion_tokens),
                        u64::from(self.cfg.max_model_tokens),
                    );
                }
                return Err(e);
            }
        };
        let stores = req.messages.is_none();
        let (mut reply, messages) = settle(req, encoding, &prompt, ids, received).into_stored();
        parsed.apply_to(&mut reply);
        reply.upstream = upstream;
        // Store the messages (awaited, as `chatgpt` v5 does) so the reply's id can be the next
        // call's parentMessageId. A caller's own messages are not stored.
        if !stores {
            return Ok(reply);
        }
        if let Some(store) = &self.builtin_store {
            for message in messages {
                store.insert(message);
            }
        } else {
            let stored = async {
                for message in messages {
                    bounds.wait(self.store.upsert(message)).await?;
                }
                Ok(())
            };
            stored.await.map_err(|e: ChatError| e.with_attempts(reply.attempts))?;
        }
        Ok(reply)
    }

    /// A non-streaming cache hit answered synchronously, on the caller's thread, without a
    /// thread hop: the fast path of `sendMessage`. `None` when it cannot be answered that way
    /// (streaming, cache off, a JavaScript store, a miss, an invalid request): the caller then
    /// takes the normal asynchronous path, which does the counting.
    pub fn try_cached(&self, req: &SendRequest) -> Option<ChatReply> {
        // With `debug`, the asynchronous path logs the call.
        if req.stream || !req.cache || self.debug_log.is_some() {
            return None;
        }
        let store = self.builtin_store.as_ref()?;
        let cache = self.sharing.as_ref()?.cache();
        let started = Instant::now();
        // The in-memory store answers at once, so the prompt is built without waiting.
        let prepared = self.prepare(req, false).now_or_never()?.ok()?;
        let key = self.cache_key_of(req, &prepared.params, prepared.added_max, &prepared.prompt);
        let hit = cache.get(key)?;
        Metrics::inc(&self.metrics.calls_started);
        Metrics::inc(&self.metrics.cache_hits);
        let PreparedRequest {
            params,
            encoding,
            prompt,
            message_id,
            ..
        } = prepared;
        let ids = user_ids(req, message_id);
        let received = Received {
            completion: completion_from_cache(&hit),
            request_id: None,
            deltas: 0,
            attempts: 0,
            cached: true,
            upstream: hit.upstream,
        };
        // Only answers `response_format` accepts are cached; the async path reports any other.
        let parsed = read_output(&params, &received).ok()?;
        let stores = req.messages.is_none();
        let upstream = self.upstream_name(received.upstream);
        let (mut reply, messages) = settle(req.clone(), encoding, &prompt, ids, received).into_stored();
        parsed.apply_to(&mut reply);
        reply.upstream = upstream;
        if stores {
            for message in messages {
                store.insert(message);
            }
        }
        let result = Ok(reply);
        self.record_call(started, None, &result);
        result.ok()
    }

    /// The name of the upstream at `index`, for `reply.upstream`: `None` without `upstreams`, so
    /// a plain client's replies keep their shape.
    fn upstream_name(&self, index: Option<usize>) -> Option<String> {
        if self.cfg.upstreams.is_empty() {
            return None;
        }
        self.cfg.upstreams.get(index?).map(|u| u.name.clone())
    }

    /// The response cache's key of a prepared call: for a caller's own messages, over the JSON
    /// sent, which carries fields (`tool_call_id`, ...) the prompt's messages leave out.
    fn cache_key_of(&self, req: &SendRequest, params: &Params, added_max: AddedMax, prompt: &BuiltPrompt) -> u128 {
        match &req.messages {
            Some(own) => {
                let sent = PromptMessage {
                    role: String::new(),
                    content: Content::Text(own.json.clone()),
                    name: None,
                    tool_calls: None,
                    tool_call_id: None,
                };
                cache_key(&self.cfg.api_base_url, params, added_max, std::slice::from_ref(&sent))
            }
            None => cache_key(&self.cfg.api_base_url, params, added_max, &prompt.messages),
        }
    }

    /// One call's attempts: on each upstream in turn (one without `upstreams`), its attempts
    /// there (`route_attempts`), moving on while the failure is one another server could answer
    /// ([`falls_back`]). A call that fails everywhere rejects with the last upstream's error, the
    /// earlier ones in its `cause` chain.
    async fn run_attempts(&self, plan: CallPlan<'_, '_>) -> Result<Received, ChatError> {
        let CallPlan {
            request,
            bounds,
            mut delivery,
            attempts: published,
        } = plan;
        #[cfg(test)]
        tests::panic_if_asked(&request.body).await;
        let mut tally = AttemptTally { attempts: 0, published };
        let finish = |mut e: ChatError, attempts: u32| {
            if attempts > 1 {
                e.message = format!("{} (after {attempts} attempts)", e.message);
            }
            if attempts > 0 {
                e.attempts = Some(attempts);
            }
            e
        };
        let last = self.routes.len().saturating_sub(1);
        let mut earlier: Option<ChatError> = None;
        for (index, route) in self.routes.iter().enumerate() {
            let body = route.body_for(&request.body).map_err(|e| finish(e, tally.attempts))?;
            let leg = RouteLeg {
                route,
                body,
                falls_back: index < last,
            };
            let outcome = self
                .route_attempts(&leg, &request, bounds, &mut delivery, &mut tally)
                .await;
            match outcome {
                Ok(mut received) => {
                    RouteCounters::inc(&route.counters.successes);
                    received.upstream = Some(index);
                    return Ok(received);
                }
                Err(e) => {
                    RouteCounters::inc(&route.counters.failures);
                    let e = route.tag(e);
                    let time_left = bounds.deadline() > Instant::now();
                    if !leg.falls_back || !falls_back(&e, delivery.delivered(), time_left) {
                        return Err(finish(chain(e, earlier), tally.attempts));
                    }
                    RouteCounters::inc(&route.counters.fallbacks);
                    earlier = Some(chain(e, earlier));
                }
            }
        }
        // Unreachable: the last route returns either way. Said as an error, not a panic.
        Err(finish(
            earlier.unwrap_or_else(|| ChatError::new(ErrorCode::Internal, "No upstream to send to")),
            tally.attempts,
        ))
    }

    /// A call's attempts on one upstream: admission (a concurrency slot, the breaker, a key, the
    /// rate limiter), the request, and on failure the retry decision. With an upstream to fall
    /// back to, keys that are all cooling or disabled end it at once instead of being waited for.
    async fn route_attempts(
        &self,
        leg: &RouteLeg<'_>,
        request: &Outbound,
        bounds: &CallBounds<'_>,
        delivery: &mut Delivery<'_, '_>,
        tally: &mut AttemptTally<'_>,
    ) -> Result<Received, ChatError> {
        let route = leg.route;
        let admission = &route.admission;
        let mut schedule = self.cfg.retry.schedule(None);
        loop {
            if leg.falls_back {
                if let Some(e) = route.unusable_keys() {
                    return Err(e);
                }
            }
            // A shared bucket is per model: the one this upstream is sent (its own `model`, else the
            // request's). `request.model` is empty without `coordination` (no buckets per model).
            let model = match &route.model {
                Some(model) if !request.model.is_empty() => model.as_str(),
                _ => request.model.as_str(),
            };
            let mut admitted = admission
                .acquire_for(bounds, request.estimate, model, &self.metrics)
                .await?;
            tally.attempts = tally.attempts.saturating_add(1);
            if let Some(published) = tally.published {
                published.store(tally.attempts, Ordering::Relaxed);
            }
            Metrics::inc(&self.metrics.attempts);
            RouteCounters::inc(&route.counters.requests);
            if tally.attempts > 1 {
                Metrics::inc(&self.metrics.retries);
            }
            let attempt_bounds = bounds.for_attempt(self.cfg.attempt_timeout);
            let exchange = Exchange {
                request,
                body: &leg.body,
                route,
                bounds: &attempt_bounds,
                admitted: &admitted,
            };
            // Boxed: the attempt's future (reqwest's, the SSE state, the timers) is most of a
            // call's state, and an unboxed one is copied whole each time the call's future moves
            // (into its task, out of it): ~6 KB per call.
            let outcome = Box::pin(self.attempt_once(exchange, delivery)).await;
            admitted.end_attempt();
            let mut e = match outcome {
                Ok(fetched) => {
                    admitted.succeeded(fetched.completion.usage.map_or(request.estimate, |u| u.total_tokens));
                    return Ok(Received {
                        completion: fetched.completion,
                        request_id: fetched.request_id,
                        deltas: delivery.delivered(),
                        attempts: tally.attempts,
                        cached: false,
                        upstream: None,
                    });
                }
                Err(e) => e,
            };
            admitted.failed(&e, admission, &self.metrics);
            let delivered = delivery.delivered();
            // A rejected key in a pool fails over to the next key at once.
            if e.code == ErrorCode::Auth && delivered == 0 && admission.can_fail_over() {
                continue;
            }
            if delivered > 0 {
                // Deltas reached the caller: a retry would repeat them, so the call ends here, as
                // one code whatever the failure (an abort is the caller's own doing and stays one).
                if e.code != ErrorCode::Aborted {
                    e = e.interrupted_after(delivered);
                }
                return Err(e);
            }
            let remaining = bounds.deadline().saturating_duration_since(Instant::now());
            match decide(&e, &mut schedule, remaining) {
                Decision::Stop => return Err(e),
                Decision::RetryAfter(delay) => {
                    // After a 429 another key may be free right now: fail over without waiting.
                    let fail_over = e.code == ErrorCode::RateLimited && admission.can_fail_over();
                    // Every key cooling: the next upstream answers sooner than waiting here.
                    if leg.falls_back && !admission.keys().has_usable() {
                        return Err(e);
                    }
                    if !fail_over && !delay.is_zero() {
                        bounds.sleep_until(instant_after(Instant::now(), delay)).await?;
                    }
                }
            }
        }
    }

    /// One HTTP exchange: send the body with the admitted key, then read the whole response or
    /// stream it to `delivery`.
    async fn attempt_once(
        &self,
        exchange: Exchange<'_>,
        delivery: &mut Delivery<'_, '_>,
    ) -> Result<Fetched, ChatError> {
        let Exchange {
            request,
            body,
            route,
            bounds,
            admitted,
        } = exchange;
        let observe = |headers: &reqwest::header::HeaderMap| admitted.observe_headers(headers);
        let resp = bounds
            .wait(route.transport.post_chat(
                super::transport::ChatPost {
                    body: body.clone(),
                    stream: request.stream,
                    headers: request.headers.as_deref(),
                },
                admitted.key(),
                &observe,
            ))
            .await?;
        let request_id = resp.request_id;
        let max = route.transport.max_response_bytes();
        let completion = if request.stream {
            read_stream(resp.inner, bounds, max, request.choices, delivery).await
        } else {
            match bounds.read_body(read_capped(resp.inner, max)).await {
                Ok(bytes) => parse_completion(&bytes).map(|c| c.for_choices(request.choices)),
                Err(e) => Err(e),
            }
        };
        match completion {
            Ok(completion) => Ok(Fetched { completion, request_id }),
            Err(e) => Err(e.with_request_id(request_id.as_deref())),
        }
    }

    /// What `debug` logs once a call has its outcome: the response of a non-streamed reply (as
    /// the `chatgpt` package logs it), a line for a failure, nothing for a streamed reply. Never
    /// the key or URL credentials: everything is scrubbed, as the server wrote part of it.
    fn debug_outcome(
        &self,
        model: &str,
        stream: bool,
        elapsed: Duration,
        outcome: &Result<Received, ChatError>,
    ) -> Option<DebugEntry> {
        let redactor = self.redactor();
        match outcome {
            Ok(_) if stream => None,
            Ok(received) => Some(DebugEntry::Response {
                body: redactor.scrub(received.completion.detail.get()).into_owned(),
            }),
            Err(e) => {
                // With `upstreams`, the server of the last failure.
                let base = e
                    .upstream
                    .as_ref()
                    .and_then(|name| self.cfg.upstreams.iter().find(|u| &u.name == name))
                    .map_or(&self.cfg.api_base_url, |u| &u.api_base_url);
                let line = format!(
                    "[chatgpt-native] POST {base}/chat/completions model={model} stream={stream} -> {} status={} in {} ms request_id={}",
                    e.code,
                    e.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    elapsed.as_millis(),
                    e.request_id.as_deref().unwrap_or("-"),
                );
                Some(DebugEntry::Line(redactor.scrub(&line).into_owned()))
            }
        }
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
        let upstream_keys = self.cfg.upstreams.iter().flat_map(|u| u.api_keys.iter());
        let upstream_headers = self.cfg.upstreams.iter().flat_map(|u| u.headers.iter());
        let secret_headers = secret_headers.chain(upstream_headers.filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            SECRET_HEADER_HINTS
                .iter()
                .any(|hint| name.contains(hint))
                .then_some(value.as_str())
        }));
        Redactor::new(
            self.cfg
                .api_keys
                .iter()
                .chain(std::iter::once(&self.cfg.api_key))
                .chain(upstream_keys)
                .map(ApiKey::expose)
                .chain(secret_headers),
        )
    }
}

impl Upstream for ChatClient {
    fn send_upstream(&self, plan: CallPlan<'_, '_>) -> impl Future<Output = Result<Received, ChatError>> + Send {
        self.run_attempts(plan)
    }

    fn idle_timeout(&self) -> Duration {
        self.cfg.idle_timeout
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The JSON values of a reply whose `response_format` asked for JSON: the first choice's, and
/// with several choices each one's.
#[derive(Debug, Default)]
struct ParsedOutput {
    first: Option<Value>,
    choices: Vec<Option<Value>>,
}

impl ParsedOutput {
    /// Sets `reply.parsed` and each of its choices' `parsed`.
    fn apply_to(self, reply: &mut ChatReply) {
        reply.parsed = self.first;
        for (choice, parsed) in reply.choices.iter_mut().zip(self.choices) {
            choice.parsed = parsed;
        }
    }
}

/// The values of a reply whose `response_format` asked for JSON (none for a text reply, or a
/// choice that only called tools), or the error it rejects with: the model's answer, not a
/// transport fault, so it is never retried. With several choices, every choice must pass (as
/// openai-node's `parse` requires of each); the first that fails is the error.
fn read_output(params: &Params, received: &Received) -> Result<ParsedOutput, ChatError> {
    if OutputFormat::of(params) == OutputFormat::Text {
        return Ok(ParsedOutput::default());
    }
    let fail = |e: ChatError| {
        e.with_attempts(received.attempts)
            .with_request_id(received.request_id.as_deref())
    };
    let completion = &received.completion;
    if !completion.all_choices.is_empty() {
        let choices = completion
            .all_choices
            .iter()
            .map(|c| parse_output(c.output()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let first = choices.first().cloned().flatten();
        return Ok(ParsedOutput { first, choices });
    }
    let choice = ChoiceOutput {
        text: &completion.text,
        finish_reason: completion.finish_reason.as_deref(),
        refusal: completion.refusal.as_deref(),
        tool_calls: !completion.tool_calls.is_empty(),
    };
    let first = parse_output(choice).map_err(fail)?;
    Ok(ParsedOutput {
        first,
        choices: Vec::new(),
    })
}

/// The ids of a call's user message and reply; a caller's own messages have no user message
/// (its id is empty, and the reply's `parentMessageId` absent).
fn user_ids(req: &SendRequest, message_id: String) -> MessageIds {
    match req.messages {
        Some(_) => MessageIds::for_user(String::new()),
        None => MessageIds::for_user(message_id),
    }
}

/// The prompt of a caller's own messages, within the same window as a conversation's.
fn own_prompt(own: &OwnMessages, budget: &Budget) -> Result<BuiltPrompt, ChatError> {
    let limit = budget.max_model_tokens.saturating_sub(budget.max_response_tokens);
    let used = u32::try_from(own.tokens(budget.encoding)).unwrap_or(u32::MAX);
    if used > limit {
        let mut e = ChatError::new(
            ErrorCode::ContextTooLong,
            format!(
                "The messages need {used} tokens but only {limit} fit (`maxModelTokens` {} - `maxResponseTokens` {})",
                budget.max_model_tokens, budget.max_response_tokens
            ),
        );
        e.prompt_tokens = Some(used);
        e.max_prompt_tokens = Some(limit);
        return Err(e);
    }
    Ok(BuiltPrompt {
        messages: own.prompt.clone(),
        prompt_tokens: used,
        prompt_tokens_exact: true,
        max_tokens: budget
            .max_model_tokens
            .saturating_sub(used)
            .min(budget.max_response_tokens)
            .max(1),
        history_messages: 0,
        truncated: None,
    })
}

/// One attempt's view of its call: the request, where it goes, the attempt's bounds, and what
/// admission gave.
struct Exchange<'a> {
    request: &'a Outbound,
    /// What this upstream is sent: `request.body`, or with its `model`.
    body: &'a Bytes,
    route: &'a Route,
    bounds: &'a CallBounds<'a>,
    admitted: &'a Admitted<'a>,
}

/// One upstream's part of a call.
struct RouteLeg<'a> {
    route: &'a Route,
    /// The request's body as this upstream is sent it.
    body: Bytes,
    /// Another upstream follows this one.
    falls_back: bool,
}

/// The HTTP attempts of a call so far, over every upstream it tried.
struct AttemptTally<'a> {
    attempts: u32,
    /// Where they are published for the waiters of a shared call (see [`CallPlan::attempts`]).
    published: Option<&'a std::sync::atomic::AtomicU32>,
}

/// The caller's sink, timing the first delta (time to first token).
struct TimingSink<'a, 'd> {
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
    /// Redis use, with `coordination`.
    pub coordination: Option<super::coordination::CoordinationStats>,
    /// Each upstream's counters and state, in order; empty without `upstreams`.
    pub upstreams: Vec<UpstreamStats>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cache::CacheConfig;
    use crate::core::chat::Usage;
    use crate::core::config::{ClientOptions, Setting};
    use crate::simulator::{Simulator, SimulatorConfig};

    /// A call whose text contains this panics inside `run_attempts` (test builds only), to prove a
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
            parts: None,
            messages: None,
            system_message: None,
            completion_params: None,
            message_id: None,
            parent_message_id: None,
            conversation_id: None,
            name: None,
            stream: false,
            timeout: None,
            cache,
            headers: None,
            tool_results: Vec::new(),
        }
    }

    /// A client with default options and the given `cache`, talking to a fresh simulator
    /// configured by `sim` (kept alive by the caller).
    async fn simulated_client(sim: SimulatorConfig, cache: Setting<CacheConfig>) -> (Simulator, Arc<ChatClient>) {
        let sim = Simulator::start(sim).await.unwrap();
        let cfg = ClientConfig::build(ClientOptions {
            api_key: Some("sk-test".into()),
            api_base_url: Some(sim.base_url()),
            cache,
            ..Default::default()
        })
        .unwrap();
        (sim, Arc::new(ChatClient::new(cfg, None).unwrap()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inside_one_call_fails_that_call_alone_with_a_code() {
        let (_sim, client) = simulated_client(SimulatorConfig::default(), Setting::Unset).await;
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
        let (_sim, client) = simulated_client(SimulatorConfig::default(), Setting::On).await;
        let req = request(PANIC_MARKER, true);
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
        assert!(client.sharing.as_ref().is_some_and(|s| s.is_idle()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_cache_identical_calls_each_send_a_request() {
        let (sim, client) = simulated_client(SimulatorConfig::default(), Setting::Unset).await;
        let cancel = CancellationToken::new();
        let (a, b) = futures::join!(
            client.send(request("same", true), None, &cancel),
            client.send(request("same", true), None, &cancel),
        );
        let again = client.send(request("same", true), None, &cancel).await.unwrap();
        for reply in [a.unwrap(), b.unwrap(), again] {
            assert!(!reply.cached && reply.saved.is_none());
            assert!(reply.usage.total_tokens > 0);
        }
        assert_eq!(sim.stats().chat_requests, 3);
        assert!(client.sharing.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_reply_of_a_shared_request_accounts_for_it_and_the_others_saved_it() {
        let slow = SimulatorConfig {
            ttft: Duration::from_millis(200),
            ..SimulatorConfig::default()
        };
        let (sim, client) = simulated_client(slow, Setting::On).await;
        let cancel = CancellationToken::new();
        let (a, b, c) = futures::join!(
            client.send(request("shared", true), None, &cancel),
            client.send(request("shared", true), None, &cancel),
            client.send(request("shared", true), None, &cancel),
        );
        let mut replies = vec![a.unwrap(), b.unwrap(), c.unwrap()];
        // And a later one from the cache.
        replies.push(client.send(request("shared", true), None, &cancel).await.unwrap());
        assert_eq!(sim.stats().chat_requests, 1);
        let (paid, saved): (Vec<_>, Vec<_>) = replies.into_iter().partition(|r| !r.cached);
        assert_eq!(paid.len(), 1, "exactly one reply reports the request");
        let usage = paid[0].usage;
        assert!(usage.total_tokens > 0 && paid[0].saved.is_none());
        for reply in &saved {
            assert_eq!(reply.usage, Usage::default());
            assert_eq!(reply.saved, Some(usage));
        }
        let m = client.stats().metrics;
        assert_eq!(m.prompt_tokens, u64::from(usage.prompt_tokens), "counted once");
        assert_eq!(m.completion_tokens, u64::from(usage.completion_tokens));
        assert_eq!(
            m.cache_tokens_saved,
            3 * u64::from(usage.prompt_tokens + usage.completion_tokens)
        );
        assert_eq!((m.coalesced, m.cache_hits), (2, 1));
    }

    /// Keeps what a client logs.
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<DebugEntry>>);

    impl DebugLog for Recorded {
        fn log(&self, entry: DebugEntry) -> futures::future::BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(entry);
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn debug_logs_the_scrubbed_request_with_its_exact_tokens_then_the_response() {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let key = "sk-debug-test-key-0123456789";
        let cfg = ClientConfig::build(ClientOptions {
            api_key: Some(key.into()),
            api_base_url: Some(sim.base_url()),
            debug: true,
            cache: crate::core::config::Setting::Custom(crate::core::cache::CacheConfig::default()),
            ..Default::default()
        })
        .unwrap();
        let log = Arc::new(Recorded::default());
        let client = Arc::new(ChatClient::new(cfg, None).unwrap().with_debug_log(log.clone()));
        let text = format!("a prompt quoting {key}");
        let reply = client
            .send(request(&text, true), None, &CancellationToken::new())
            .await
            .unwrap();
        // A cache hit is logged too: with `debug`, the synchronous fast path (which could not
        // wait for the log) stands aside.
        let again = client
            .send(request(&text, true), None, &CancellationToken::new())
            .await
            .unwrap();
        assert!(again.cached);
        let entries = log.0.lock().unwrap().clone();
        assert_eq!(entries.len(), 4, "{entries:?}");
        let DebugEntry::Request { prompt_tokens, body } = &entries[0] else {
            panic!("{:?}", entries[0]);
        };
        assert_eq!(*prompt_tokens, reply.usage.prompt_tokens, "the count the server billed");
        assert!(!body.contains(key) && body.contains("a prompt quoting sk-"), "{body}");
        assert!(serde_json::from_str::<Value>(body).is_ok(), "still JSON: {body}");
        assert_eq!(
            entries[1],
            DebugEntry::Response {
                body: reply.detail.get().to_owned()
            }
        );
        assert!(client.try_cached(&request(&text, true)).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_json_reply_is_counted_but_neither_cached_nor_stored() {
        let (sim, client) = simulated_client(SimulatorConfig::default(), Setting::On).await;
        let mut params = serde_json::Map::new();
        params.insert("response_format".into(), serde_json::json!({ "type": "json_object" }));
        // The simulator cuts its answer at `max_tokens` with `finish_reason: 'length'`.
        params.insert("max_tokens".into(), 1.into());
        let req = SendRequest {
            completion_params: Some(params),
            ..request("json please", true)
        };
        let cancel = CancellationToken::new();
        for _ in 0..2 {
            let e = client.send(req.clone(), None, &cancel).await.unwrap_err();
            assert_eq!((e.code, e.attempts), (ErrorCode::OutputLength, Some(1)));
            assert!(e.text.is_some());
        }
        assert_eq!(sim.stats().chat_requests, 2, "the second call asked again");
        assert_eq!(client.stats().cache_entries, 0);
        assert!(client.try_cached(&req).is_none());
        assert_eq!(
            client.builtin_store.as_ref().map(|s| s.len()),
            Some(0),
            "nothing stored"
        );
        let m = client.stats().metrics;
        assert_eq!(m.completion_tokens, 2, "both billed answers are counted");
        assert!(m.prompt_tokens > 0);
        assert_eq!(m.failed_by_code, vec![(ErrorCode::OutputLength, 2)]);
    }

    #[test]
    fn reasoning_models_use_max_completion_tokens() {
        assert!(uses_max_completion_tokens("gpt-5-mini"));
        assert!(uses_max_completion_tokens("o3"));
        for model in [
            "o1",
            "o1-mini",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5.1",
            "openai/o4-mini",
        ] {
            assert!(uses_max_completion_tokens(model), "{model}");
        }
        assert!(!uses_max_completion_tokens("gpt-4.1-mini"));
        assert!(!uses_max_completion_tokens("llama-3"));
    }
}
