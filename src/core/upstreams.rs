//! Upstream fallbacks: the servers a client sends to, in order, and when a call moves from one to
//! the next.
//!
//! Each upstream is a [`Route`]: its own transport (endpoint, key header, headers), key pool, rate
//! limiters and circuit breaker (an [`Admission`] sharing the client's concurrency slots and, with
//! `coordination`, its one Redis link, in which each upstream's buckets have keys of their own),
//! and the model it answers with. A client without `upstreams` has one unnamed route made from its own
//! options, so there is one attempt loop whatever the configuration (`ChatClient::run_attempts`).
//!
//! A call goes to the first route. It moves to the next ([`falls_back`]) only when the failure
//! says that server cannot answer now: its breaker is open, its keys are all cooling or disabled,
//! or its retries were spent on failures of the server or the path to it (5xx, timeouts,
//! connection errors, 429s). A failure caused by the request (400, 404, 422, a context too long)
//! would fail the same way anywhere, an abort is the caller's, and a stream that already
//! delivered deltas cannot be restarted elsewhere without mixing two answers: those end the call.
//! The call's deadline covers the whole chain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::admission::{Admission, ClientGates};
use super::breaker::{BreakerState, CircuitBreaker};
use super::config::{ClientConfig, UpstreamConfig};
use super::coordination::Coordinator;
use super::error::{ChatError, ErrorCode};
use super::keys::KeyStatus;
use super::transport::Transport;

/// One server a client sends to, with the state of its own gates.
pub struct Route {
    /// `None` for the single server of a client without `upstreams` (its replies name none).
    pub name: Option<String>,
    pub transport: Transport,
    pub admission: Admission,
    /// Replaces the request's `model` (`upstreams[i].model`).
    pub model: Option<String>,
    pub counters: RouteCounters,
}

/// What happened on one route since the client was created (or its metrics reset).
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// HTTP attempts sent to it.
    pub requests: AtomicU64,
    /// Calls it answered.
    pub successes: AtomicU64,
    /// Calls that failed on it (moved on to the next upstream, or ended there).
    pub failures: AtomicU64,
    /// Of those, calls that moved on to the next upstream.
    pub fallbacks: AtomicU64,
}

impl RouteCounters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for c in [&self.requests, &self.successes, &self.failures, &self.fallbacks] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One upstream's counters and live state (`metrics().upstreams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStats {
    pub name: String,
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub fallbacks: u64,
    /// `None` when it has no breaker.
    pub breaker_state: Option<BreakerState>,
    pub breaker_opened: u64,
    pub keys: Vec<KeyStatus>,
}

/// A client's routes, in the order calls try them: never empty.
pub struct Routes {
    first: Route,
    rest: Vec<Route>,
    /// The client's one Redis link (with `coordination`), shared by every route.
    coordinator: Option<Arc<Coordinator>>,
}

impl Routes {
    /// The first upstream (the only one of a client without `upstreams`).
    pub fn first(&self) -> &Route {
        &self.first
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    pub fn len(&self) -> usize {
        self.rest.len().saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        match index.checked_sub(1) {
            None => Some(&self.first),
            Some(i) => self.rest.get(i),
        }
    }

    /// The Redis link every route's shared rate limits use, with `coordination`.
    pub fn coordinator(&self) -> Option<&Arc<Coordinator>> {
        self.coordinator.as_ref()
    }
}

/// What names an upstream in the keys of its shared rate buckets: its name and base URL, so
/// two upstreams of one client never share a bucket (names are unique), and processes share one
/// only when they name the same server alike.
fn bucket_scope(u: &UpstreamConfig) -> String {
    format!("{}\n{}", u.name, u.api_base_url)
}

/// The routes of a client configured by `cfg`: one per upstream, or one made from `cfg` itself.
/// Every route shares the client's concurrency slots and its one Redis link.
pub fn routes_for(cfg: &ClientConfig) -> Result<Routes, ChatError> {
    let gates = ClientGates::for_client(cfg);
    let route = |route_cfg: &ClientConfig, upstream: Option<&UpstreamConfig>| -> Result<Route, ChatError> {
        let breaker = route_cfg.circuit_breaker.clone().map(CircuitBreaker::new);
        let scope = upstream.map(bucket_scope);
        Ok(Route {
            name: upstream.map(|u| u.name.clone()),
            transport: Transport::new(route_cfg)?,
            admission: Admission::sharing(route_cfg, breaker, &gates, scope.as_deref()),
            model: upstream.and_then(|u| u.model.clone()),
            counters: RouteCounters::default(),
        })
    };
    let mut routes = cfg.upstreams.iter().map(|u| route(&cfg.for_upstream(u), Some(u)));
    let first = match routes.next() {
        Some(first) => first?,
        None => route(cfg, None)?,
    };
    let rest = routes.collect::<Result<_, _>>()?;
    Ok(Routes {
        first,
        rest,
        coordinator: gates.coordinator.clone(),
    })
}

impl Route {
    /// The body this route sends: `body` itself, or with `model` replaced.
    pub fn body_for(&self, body: &Bytes) -> Result<Bytes, ChatError> {
        match &self.model {
            None => Ok(body.clone()),
            Some(model) => with_model(body, model),
        }
    }

    /// Its counters and live state, named `index` when it has no name of its own.
    pub fn stats(&self, index: usize) -> UpstreamStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UpstreamStats {
            name: self.name.clone().unwrap_or_else(|| index.to_string()),
            requests: get(&self.counters.requests),
            successes: get(&self.counters.successes),
            failures: get(&self.counters.failures),
            fallbacks: get(&self.counters.fallbacks),
            breaker_state: self.admission.breaker_state(),
            breaker_opened: self.admission.breaker_stats().opened,
            keys: self.admission.keys().status(),
        }
    }

    /// The error that sends a call on to the next upstream before it is admitted here: every key
    /// is cooling down (after 429s) or disabled (after 401/403). `None` while one is usable.
    pub fn unusable_keys(&self) -> Option<ChatError> {
        if self.admission.keys().has_usable() {
            return None;
        }
        Some(ChatError::new(
            ErrorCode::NoKeyAvailable,
            "Every API key of this upstream is cooling down after 429s or was rejected (401/403)",
        ))
    }

    /// `e` marked as this route's failure (no mark on the single server of a plain client).
    pub fn tag(&self, mut e: ChatError) -> ChatError {
        if e.upstream.is_none() {
            e.upstream = self.name.clone();
        }
        e
    }
}

/// Whether a call whose attempts on one upstream ended with `e` moves on to the next.
/// `delivered`: content deltas already delivered to the caller; `time_left`: whether the call's
/// deadline has not passed.
pub fn falls_back(e: &ChatError, delivered: u32, time_left: bool) -> bool {
    if delivered > 0 || !time_left {
        return false;
    }
    match e.code {
        // This server cannot take the request now, or its account cannot.
        ErrorCode::CircuitOpen
        | ErrorCode::NoKeyAvailable
        | ErrorCode::Auth
        | ErrorCode::InsufficientQuota
        | ErrorCode::RateLimited
        | ErrorCode::RequestTooLarge => true,
        // The server or the path to it failed (after its retries).
        ErrorCode::Network | ErrorCode::Timeout | ErrorCode::StreamIncomplete | ErrorCode::BadResponse => true,
        ErrorCode::StreamError => e.error_type.as_deref() != Some("invalid_request_error"),
        ErrorCode::Http => e.status.is_some_and(|s| s >= 500 || s == 408 || s == 409),
        // The request itself (400, 404, 422, content filter, context too long), the caller (an
        // abort), the instance (a full queue) or the answer: the same anywhere.
        _ => false,
    }
}

/// `body` (a chat-completions request this client wrote) with its `model` replaced.
pub fn with_model(body: &Bytes, model: &str) -> Result<Bytes, ChatError> {
    let mut json: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ChatError::new(
            ErrorCode::Internal,
            format!("Could not rewrite the request's model: {e}"),
        )
    })?;
    json.insert("model".into(), Value::from(model));
    serde_json::to_vec(&json).map(Bytes::from).map_err(|e| {
        ChatError::new(
            ErrorCode::Internal,
            format!("Could not rewrite the request's model: {e}"),
        )
    })
}

/// `last` (the final upstream's error) with `earlier` (the previous upstreams' errors, latest
/// first) as the end of its `cause` chain.
pub fn chain(mut last: ChatError, earlier: Option<ChatError>) -> ChatError {
    if let Some(earlier) = earlier {
        append_cause(&mut last, earlier);
    }
    last
}

/// Sets `cause` as the cause of the deepest error of `e`'s chain. The recursion is shallow: at
/// most one cause (a stream interruption's) per upstream, and at most `MAX_UPSTREAMS` upstreams.
fn append_cause(e: &mut ChatError, cause: ChatError) {
    match e.cause.as_mut() {
        Some(inner) => append_cause(inner, cause),
        None => e.cause = Some(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{ClientOptions, UpstreamOptions};

    fn err(code: ErrorCode, status: Option<u16>) -> ChatError {
        let mut e = ChatError::new(code, "x");
        e.status = status;
        e
    }

    #[test]
    fn failures_of_the_server_fall_back() {
        for (code, status) in [
            (ErrorCode::CircuitOpen, None),
            (ErrorCode::NoKeyAvailable, None),
            (ErrorCode::RateLimited, Some(429)),
            (ErrorCode::InsufficientQuota, Some(429)),
            (ErrorCode::Auth, Some(401)),
            (ErrorCode::Network, None),
            (ErrorCode::Timeout, None),
            (ErrorCode::StreamIncomplete, None),
            (ErrorCode::BadResponse, None),
            (ErrorCode::StreamError, None),
            (ErrorCode::Http, Some(500)),
            (ErrorCode::Http, Some(503)),
            (ErrorCode::Http, Some(408)),
        ] {
            assert!(falls_back(&err(code, status), 0, true), "{code:?} {status:?}");
        }
    }

    #[test]
    fn failures_of_the_request_or_the_caller_never_fall_back() {
        let mut invalid_stream = err(ErrorCode::StreamError, None);
        invalid_stream.error_type = Some("invalid_request_error".into());
        for e in [
            err(ErrorCode::Http, Some(400)),
            err(ErrorCode::Http, Some(404)),
            err(ErrorCode::Http, Some(422)),
            err(ErrorCode::ContextTooLong, None),
            err(ErrorCode::Aborted, None),
            err(ErrorCode::QueueFull, None),
            err(ErrorCode::InvalidArg, None),
            err(ErrorCode::ResponseTooLarge, None),
            err(ErrorCode::StreamInterrupted, None),
            invalid_stream,
        ] {
            assert!(!falls_back(&e, 0, true), "{:?} {:?}", e.code, e.status);
        }
    }

    #[test]
    fn nothing_falls_back_after_a_delta_or_past_the_deadline() {
        let e = err(ErrorCode::Http, Some(503));
        assert!(!falls_back(&e, 1, true));
        assert!(!falls_back(&e, 0, false));
    }

    #[test]
    fn the_model_is_replaced_and_everything_else_kept() {
        let body = Bytes::from_static(br#"{"model":"a","messages":[{"role":"user","content":"hi"}],"stream":true}"#);
        let out: Value = serde_json::from_slice(&with_model(&body, "b").unwrap()).unwrap();
        assert_eq!(out["model"], "b");
        assert_eq!(out["messages"][0]["content"], "hi");
        assert_eq!(out["stream"], true);
    }

    #[test]
    fn earlier_upstreams_errors_end_the_cause_chain() {
        let first = err(ErrorCode::Http, Some(500));
        let second = chain(err(ErrorCode::Network, None), Some(first));
        let interrupted = err(ErrorCode::Timeout, None).interrupted_after(2);
        let last = chain(interrupted, Some(second));
        assert_eq!(last.code, ErrorCode::StreamInterrupted);
        let causes: Vec<ErrorCode> = std::iter::successors(last.cause.as_ref(), |e| e.cause.as_ref())
            .map(|e| e.code)
            .collect();
        assert_eq!(causes, [ErrorCode::Timeout, ErrorCode::Network, ErrorCode::Http]);
    }

    #[test]
    fn a_plain_client_has_one_unnamed_route_and_upstreams_one_each() {
        let plain = ClientConfig::build(ClientOptions {
            api_key: Some("sk-a".into()),
            api_base_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        })
        .unwrap();
        let routes = routes_for(&plain).unwrap();
        assert_eq!(routes.len(), 1);
        assert!(routes.first().name.is_none() && routes.first().model.is_none());
        let upstream = |name: Option<&str>, model: Option<&str>| UpstreamOptions {
            name: name.map(Into::into),
            api_base_url: Some("http://127.0.0.1:9/v1".into()),
            api_keys: vec!["sk-1".into(), "sk-2".into()],
            model: model.map(Into::into),
            ..Default::default()
        };
        let cfg = ClientConfig::build(ClientOptions {
            upstreams: vec![upstream(Some("main"), None), upstream(None, Some("backup-model"))],
            ..Default::default()
        })
        .unwrap();
        let routes = routes_for(&cfg).unwrap();
        let names: Vec<String> = routes.iter().enumerate().map(|(i, r)| r.stats(i).name).collect();
        assert_eq!(names, ["main", "1"]);
        assert_eq!(routes.get(1).unwrap().model.as_deref(), Some("backup-model"));
        assert_eq!(routes.first().stats(0).keys.len(), 2);
        assert_eq!(
            cfg.api_base_url, "http://127.0.0.1:9/v1",
            "the instance's is the first upstream's"
        );
    }

    /// Two upstreams at an address nothing is sent to: `pool` with two keys and a breaker that
    /// opens on one failure, then `backup`.
    fn two_routes() -> Routes {
        let breaker = crate::core::breaker::BreakerConfig {
            volume_threshold: 1,
            error_threshold_percentage: 0,
            reset_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        let cfg = ClientConfig::build(ClientOptions {
            upstreams: vec![
                UpstreamOptions {
                    name: Some("pool".into()),
                    api_base_url: Some("http://127.0.0.1:9".into()),
                    api_keys: vec!["sk-1".into(), "sk-2".into()],
                    circuit_breaker: crate::core::config::Setting::Custom(breaker),
                    ..Default::default()
                },
                UpstreamOptions {
                    name: Some("backup".into()),
                    api_base_url: Some("http://127.0.0.1:9".into()),
                    api_key: Some("sk-3".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .unwrap();
        routes_for(&cfg).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_whose_keys_all_cool_falls_back_until_one_is_back() {
        let routes = two_routes();
        let pool = routes.first();
        assert!(pool.unusable_keys().is_none());
        pool.admission
            .keys()
            .cool_down(0, Some(std::time::Duration::from_secs(5)));
        assert!(pool.unusable_keys().is_none(), "one key is still usable");
        pool.admission
            .keys()
            .cool_down(1, Some(std::time::Duration::from_secs(10)));
        let e = pool.tag(pool.unusable_keys().expect("every key cooling"));
        assert_eq!(
            (e.code, e.upstream.as_deref()),
            (ErrorCode::NoKeyAvailable, Some("pool"))
        );
        assert!(falls_back(&e, 0, true));
        assert!(
            routes.get(1).unwrap().unusable_keys().is_none(),
            "the backup's keys are its own"
        );
        tokio::time::advance(std::time::Duration::from_secs(6)).await;
        assert!(pool.unusable_keys().is_none(), "the first key is back");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_falls_back_until_its_probe_may_go() {
        let routes = two_routes();
        let pool = routes.first();
        let cancel = tokio_util::sync::CancellationToken::new();
        let bounds = crate::core::bounds::CallBounds::from_now(
            std::time::Duration::from_secs(600),
            std::time::Duration::from_secs(60),
            &cancel,
        );
        let metrics = crate::core::metrics::Metrics::default();
        let mut admitted = pool.admission.acquire(&bounds, 10).await.unwrap();
        admitted.failed(&err(ErrorCode::Http, Some(503)), &pool.admission, &metrics);
        drop(admitted);
        let refused = pool.admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::CircuitOpen);
        assert!(falls_back(&refused, 0, true));
        // The backup has a breaker of its own (the instance's default), still closed.
        assert!(routes.get(1).unwrap().admission.acquire(&bounds, 10).await.is_ok());
        tokio::time::advance(std::time::Duration::from_secs(30)).await;
        assert!(
            pool.admission.acquire(&bounds, 10).await.is_ok(),
            "the half-open probe goes"
        );
    }

    /// A client of two upstreams, `a` and `b`, that share Redis at `url` for one request per
    /// minute: the same key and server, so only the upstream tells their buckets apart.
    fn coordinated_routes(url: &str) -> Routes {
        let upstream = |name: &str| UpstreamOptions {
            name: Some(name.into()),
            api_base_url: Some("http://127.0.0.1:9/v1".into()),
            api_key: Some("sk-same-key".into()),
            ..Default::default()
        };
        let cfg = ClientConfig::build(ClientOptions {
            upstreams: vec![upstream("a"), upstream("b")],
            rate_limit: Some(crate::core::limits::RateLimitConfig {
                requests_per_minute: Some(1),
                tokens_per_minute: None,
            }),
            coordination: Some(crate::core::coordination::CoordinationOptions {
                url: url.into(),
                key_prefix: Some("routes".into()),
                operation_timeout_ms: Some(2_000),
                local_share: None,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        routes_for(&cfg).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_coordinated_upstreams_never_share_a_bucket_and_share_one_redis_link() {
        let redis = crate::core::coordination::test_redis::TestRedis::start();
        let routes = coordinated_routes(&redis.url());
        let (a, b) = (routes.first(), routes.get(1).unwrap());
        let link = routes.coordinator().expect("coordination is on");
        for route in [a, b] {
            let own = route.admission.coordinator().expect("coordination is on");
            assert!(Arc::ptr_eq(own, link), "one Redis link per client");
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        let bounds = || {
            crate::core::bounds::CallBounds::from_now(
                std::time::Duration::from_millis(300),
                std::time::Duration::from_secs(60),
                &cancel,
            )
        };
        let held_a = a
            .admission
            .acquire_for(&bounds(), 1, "m", &crate::core::metrics::Metrics::default())
            .await
            .unwrap();
        // `a`'s minute is spent (its next request waits ~60 s)...
        let refused = a
            .admission
            .acquire_for(&bounds(), 1, "m", &crate::core::metrics::Metrics::default())
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code, ErrorCode::Timeout);
        // ...but `b`, with the same key and model, has a bucket of its own.
        let held_b = b
            .admission
            .acquire_for(&bounds(), 1, "m", &crate::core::metrics::Metrics::default())
            .await
            .unwrap();
        let stats = link.stats();
        assert_eq!(stats.mode, crate::core::coordination::CoordinationMode::Shared);
        assert_eq!(stats.fallbacks, 0, "{stats:?}");
        assert!(stats.operations >= 3, "both upstreams count in one set: {stats:?}");
        drop((held_a, held_b));
    }
}
