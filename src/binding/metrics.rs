//! The objects `api.metrics()` returns: a snapshot of a client's counters, latency
//! percentiles, breaker and key states, converted from core's [`ClientStats`].

use napi_derive::napi;

use crate::core::client::ClientStats;
use crate::core::metrics::Percentiles;

/// Latency percentiles, in milliseconds.
#[napi(object)]
pub struct LatencyPercentiles {
    pub count: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<Percentiles> for LatencyPercentiles {
    fn from(p: Percentiles) -> Self {
        LatencyPercentiles {
            count: p.count as f64,
            p50: p.p50_ms,
            p95: p.p95_ms,
            p99: p.p99_ms,
            max: p.max_ms,
            mean: p.mean_ms,
        }
    }
}

/// One API key's state; never the key itself.
#[napi(object)]
pub struct KeyMetrics {
    pub index: u32,
    /// `sk-…abcd`.
    pub fingerprint: String,
    pub in_flight: u32,
    pub cooling: bool,
    pub disabled: bool,
    pub requests: f64,
    pub cool_downs: f64,
    /// With `coordination`: `cooling` or `disabled` holds because another process sharing the
    /// same Redis and `keyPrefix` said so, not because of a 429/401/403 this instance received.
    pub from_peer: bool,
}

/// How a client with `coordination` is using Redis.
#[napi(object)]
pub struct CoordinationMetrics {
    /// `'shared'` while rate limits are shared through Redis, `'local'` after an operation
    /// failed or was slow, until one succeeds again.
    #[napi(ts_type = "'shared' | 'local'")]
    pub mode: String,
    /// Redis operations started (one reservation per attempt, plus reconciling and learning).
    pub operations: f64,
    /// Operations that failed or outlasted `operationTimeoutMs`.
    pub redis_errors: f64,
    /// Attempts admitted by the local limits because Redis was unavailable.
    pub fallbacks: f64,
    /// Keys skipped as cooling down because another process got a 429 with them.
    pub peer_key_cool_downs: f64,
    /// Keys skipped as disabled because another process got a 401/403 with them.
    pub peer_keys_disabled: f64,
    /// With `cache`: local cache misses answered from the cache in Redis.
    pub cache_hits: f64,
    /// Local cache misses not answered from Redis either (also when Redis was unavailable).
    pub cache_misses: f64,
    /// Answers stored in the cache in Redis.
    pub cache_stores: f64,
    /// Entries read from the cache in Redis that were refused (too big or undecodable); each
    /// is also a miss.
    pub cache_rejected: f64,
}

/// One upstream's counters and state (`metrics().upstreams`).
#[napi(object)]
pub struct UpstreamMetrics {
    /// Its `name` (its index as a string when it has none).
    pub name: String,
    /// HTTP attempts sent to it.
    pub requests: f64,
    /// Calls it answered.
    pub successes: f64,
    /// Calls that failed on it: moved on to the next upstream, or ended there.
    pub failures: f64,
    /// Of those, calls that moved on to the next upstream.
    pub fallbacks: f64,
    /// `'closed' | 'open' | 'half-open' | 'disabled'`.
    pub breaker_state: String,
    pub breaker_opened: f64,
    pub keys: Vec<KeyMetrics>,
}

/// A snapshot of a client's metrics (`api.metrics()`).
#[napi(object)]
pub struct ChatMetrics {
    /// `sendMessage` calls started, succeeded and failed (each item of `sendMany` is a call).
    pub calls_started: f64,
    pub calls_succeeded: f64,
    pub calls_failed: f64,
    /// Failed calls by error code.
    pub failures_by_code: std::collections::HashMap<String, f64>,
    /// HTTP attempts (first tries and retries) and retries alone.
    pub attempts: f64,
    pub retries: f64,
    /// 429 responses received.
    pub rate_limited_responses: f64,
    pub cache_hits: f64,
    pub cache_misses: f64,
    pub cache_entries: f64,
    pub cache_bytes: f64,
    /// Calls that shared an identical request already in flight.
    pub coalesced: f64,
    /// Prompt plus completion tokens not spent again: the `usage.saved` totals of the replies
    /// answered without a request of their own (cache hits and shared in-flight requests).
    pub cache_tokens_saved: f64,
    /// Requests in flight and calls waiting for a slot, now.
    pub in_flight: f64,
    pub queued: f64,
    /// Whole-call latency, successful or not.
    pub latency_ms: LatencyPercentiles,
    /// Time to the first delta of streamed calls.
    pub time_to_first_token_ms: LatencyPercentiles,
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
    /// Mean of (prompt + completion tokens) / `maxModelTokens` over answered calls.
    pub token_utilization: f64,
    /// `'closed' | 'open' | 'half-open' | 'disabled'`.
    pub breaker_state: String,
    pub breaker_opened: f64,
    pub key_cool_downs: f64,
    pub keys_disabled: f64,
    /// The first upstream's keys (the only one's without `upstreams`).
    pub keys: Vec<KeyMetrics>,
    /// Redis use, with the `coordination` option (absent without it).
    pub coordination: Option<CoordinationMetrics>,
    /// With the `upstreams` option: each upstream's counters and state, in order (`breakerState`,
    /// `breakerOpened` and `keys` above are the first's). Absent without `upstreams`.
    pub upstreams: Option<Vec<UpstreamMetrics>>,
}

fn key_metrics(keys: Vec<crate::core::keys::KeyStatus>) -> Vec<KeyMetrics> {
    keys.into_iter()
        .map(|k| KeyMetrics {
            index: k.index as u32,
            fingerprint: k.fingerprint,
            in_flight: k.in_flight,
            cooling: k.cooling,
            disabled: k.disabled,
            requests: k.requests as f64,
            cool_downs: k.cool_downs as f64,
            from_peer: k.from_peer,
        })
        .collect()
}

impl From<ClientStats> for ChatMetrics {
    fn from(s: ClientStats) -> Self {
        let m = s.metrics;
        let coordination = s.coordination.map(|c| CoordinationMetrics {
            mode: c.mode.as_str().to_owned(),
            operations: c.operations as f64,
            redis_errors: c.redis_errors as f64,
            fallbacks: c.fallbacks as f64,
            peer_key_cool_downs: m.peer_key_cool_downs as f64,
            peer_keys_disabled: m.peer_keys_disabled as f64,
            cache_hits: m.shared_cache_hits as f64,
            cache_misses: m.shared_cache_misses as f64,
            cache_stores: m.shared_cache_stores as f64,
            cache_rejected: m.shared_cache_rejected as f64,
        });
        ChatMetrics {
            calls_started: m.calls_started as f64,
            calls_succeeded: m.calls_succeeded as f64,
            calls_failed: m.calls_failed as f64,
            failures_by_code: m
                .failed_by_code
                .iter()
                .map(|(c, n)| (c.as_str().to_owned(), *n as f64))
                .collect(),
            attempts: m.attempts as f64,
            retries: m.retries as f64,
            rate_limited_responses: m.rate_limited_responses as f64,
            cache_hits: m.cache_hits as f64,
            cache_misses: m.cache_misses as f64,
            cache_entries: s.cache_entries as f64,
            cache_bytes: s.cache_bytes as f64,
            coalesced: m.coalesced as f64,
            cache_tokens_saved: m.cache_tokens_saved as f64,
            in_flight: s.in_flight as f64,
            queued: s.queued as f64,
            latency_ms: m.latency.into(),
            time_to_first_token_ms: m.ttft.into(),
            prompt_tokens: m.prompt_tokens as f64,
            completion_tokens: m.completion_tokens as f64,
            token_utilization: m.token_utilization,
            breaker_state: s.breaker_state.map_or("disabled", |b| b.as_str()).to_owned(),
            breaker_opened: s.breaker.opened as f64,
            key_cool_downs: m.key_cool_downs as f64,
            keys_disabled: m.keys_disabled as f64,
            keys: key_metrics(s.keys),
            coordination,
            upstreams: (!s.upstreams.is_empty()).then(|| {
                s.upstreams
                    .into_iter()
                    .map(|u| UpstreamMetrics {
                        name: u.name,
                        requests: u.requests as f64,
                        successes: u.successes as f64,
                        failures: u.failures as f64,
                        fallbacks: u.fallbacks as f64,
                        breaker_state: u.breaker_state.map_or("disabled", |b| b.as_str()).to_owned(),
                        breaker_opened: u.breaker_opened as f64,
                        keys: key_metrics(u.keys),
                    })
                    .collect()
            }),
        }
    }
}
