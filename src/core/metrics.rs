//! Counters every client keeps: calls, attempts, retries, 429s, failures by code, key failover,
//! cache and coalescing hits, token usage, plus latency and time-to-first-token histograms.
//!
//! Counters are plain atomics, bumped on the request path (a relaxed increment each), read as a
//! snapshot. Latencies go into HDR histograms behind a mutex: a record is a few arithmetic ops, so
//! the lock is held for nanoseconds and contention is negligible next to an HTTP round trip. The
//! gauges (in flight, queued, breaker state, keys cooling, cache size) are read live from the
//! components that own them (see `ChatClient::stats`) and passed to [`prometheus_text`] as
//! [`Gauges`].

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::error::ErrorCode;

/// Lowest latency the histograms track, in microseconds; shorter durations are clamped up to it.
const HIST_LOW_US: u64 = 1;
/// Highest latency the histograms track (one hour), in microseconds; longer ones are clamped down.
const HIST_HIGH_US: u64 = 3_600_000_000;
/// Three significant figures keeps quantile error under 0.1% at a few tens of KiB per histogram.
const HIST_SIGFIG: u8 = 3;

/// Process-wide counters and latency histograms of one client.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Calls accepted (one per `chat`/`stream` invocation, however many attempts it takes).
    pub calls_started: AtomicU64,
    /// Calls that ended with a result.
    pub calls_succeeded: AtomicU64,
    /// Calls that ended with an error (also counted per code, see [`Metrics::record_failure`]).
    pub calls_failed: AtomicU64,
    /// HTTP attempts sent (first tries and retries).
    pub attempts: AtomicU64,
    /// Attempts that were retries after a failure.
    pub retries: AtomicU64,
    /// 429 responses (and rate-limit stream errors) received.
    pub rate_limited_responses: AtomicU64,
    /// Times a key was cooled down after a 429.
    pub key_cool_downs: AtomicU64,
    /// Times a key was disabled after a 401/403.
    pub keys_disabled: AtomicU64,
    /// With `coordination`: times a key was skipped as cooling down because another process
    /// said so (learned anew; not counted in `key_cool_downs`).
    pub peer_key_cool_downs: AtomicU64,
    /// With `coordination`: times a key was skipped as disabled because another process said so.
    pub peer_keys_disabled: AtomicU64,
    /// With `cache` and `coordination`: local misses answered from the cache in Redis.
    pub shared_cache_hits: AtomicU64,
    /// Local misses not found in Redis either (or not looked up: Redis unavailable).
    pub shared_cache_misses: AtomicU64,
    /// Answers stored in Redis.
    pub shared_cache_stores: AtomicU64,
    /// Entries read from Redis that were refused (too big, or not a stored answer): each is
    /// also a miss.
    pub shared_cache_rejected: AtomicU64,
    /// Calls answered from the response cache.
    pub cache_hits: AtomicU64,
    /// Cacheable calls that were not in the cache.
    pub cache_misses: AtomicU64,
    /// Calls that joined an identical in-flight request instead of sending their own.
    pub coalesced: AtomicU64,
    /// Prompt plus completion tokens of the replies answered without a request of their own
    /// (cache hits, and coalesced calls that did not report the shared request's usage).
    pub cache_tokens_saved: AtomicU64,
    /// Prompt tokens reported (or estimated) for finished calls.
    pub prompt_tokens: AtomicU64,
    /// Completion tokens reported (or estimated) for finished calls.
    pub completion_tokens: AtomicU64,
    failed_by_code: Mutex<HashMap<ErrorCode, u64>>,
    latency: LatencyHistogram,
    ttft: LatencyHistogram,
    utilization: Mutex<UtilizationAcc>,
}

/// Running sum and count of per-call context-window utilization, so the mean can be reported
/// without keeping every sample. A mutex rather than atomics because the sum is an f64 and the
/// pair must move together.
#[derive(Debug, Default)]
struct UtilizationAcc {
    sum: f64,
    count: u64,
}

/// A microsecond HDR histogram behind a poison-tolerant mutex.
///
/// Creation with constant, valid bounds cannot fail in practice, but the constructor returns a
/// `Result` and this code runs inside Node where a panic aborts the process; so a (theoretical)
/// creation failure leaves `None` and recordings are dropped instead.
struct LatencyHistogram(Mutex<Option<Histogram<u64>>>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(Mutex::new(
            Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG).ok(),
        ))
    }
}

// The derived Debug of `Histogram` dumps every bucket (thousands of numbers); a count is enough.
impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |h| h.len());
        f.debug_struct("LatencyHistogram").field("count", &count).finish()
    }
}

impl LatencyHistogram {
    fn record(&self, d: Duration) {
        // Clamp explicitly: a zero duration (coarse clocks) or a runaway call must still count.
        let us = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(HIST_LOW_US, HIST_HIGH_US);
        if let Some(h) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            h.saturating_record(us);
        }
    }

    fn reset(&self) {
        if let Some(h) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            h.reset();
        }
    }

    fn percentiles(&self) -> Percentiles {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = guard.as_ref().filter(|h| !h.is_empty()) else {
            return Percentiles::default();
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Latency distribution summary in milliseconds; all zero when nothing was recorded.
///
/// Values come from a 3-significant-figure histogram, so each is within 0.1% of the exact value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Number of recorded durations.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest recorded duration.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// A point-in-time copy of the counters and histogram summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// See [`Metrics::calls_started`].
    pub calls_started: u64,
    /// See [`Metrics::calls_succeeded`].
    pub calls_succeeded: u64,
    /// See [`Metrics::calls_failed`].
    pub calls_failed: u64,
    /// See [`Metrics::attempts`].
    pub attempts: u64,
    /// See [`Metrics::retries`].
    pub retries: u64,
    /// See [`Metrics::rate_limited_responses`].
    pub rate_limited_responses: u64,
    /// See [`Metrics::key_cool_downs`].
    pub key_cool_downs: u64,
    /// See [`Metrics::keys_disabled`].
    pub keys_disabled: u64,
    /// See [`Metrics::peer_key_cool_downs`].
    pub peer_key_cool_downs: u64,
    /// See [`Metrics::peer_keys_disabled`].
    pub peer_keys_disabled: u64,
    /// See [`Metrics::shared_cache_hits`].
    pub shared_cache_hits: u64,
    /// See [`Metrics::shared_cache_misses`].
    pub shared_cache_misses: u64,
    /// See [`Metrics::shared_cache_stores`].
    pub shared_cache_stores: u64,
    /// See [`Metrics::shared_cache_rejected`].
    pub shared_cache_rejected: u64,
    /// Failed calls per error code, sorted by code string.
    pub failed_by_code: Vec<(ErrorCode, u64)>,
    /// See [`Metrics::cache_hits`].
    pub cache_hits: u64,
    /// See [`Metrics::cache_misses`].
    pub cache_misses: u64,
    /// See [`Metrics::coalesced`].
    pub coalesced: u64,
    /// See [`Metrics::cache_tokens_saved`].
    pub cache_tokens_saved: u64,
    /// See [`Metrics::prompt_tokens`].
    pub prompt_tokens: u64,
    /// See [`Metrics::completion_tokens`].
    pub completion_tokens: u64,
    /// Mean of (prompt + completion) / context window over calls with usage; 0.0 when none.
    pub token_utilization: f64,
    /// Whole-call latency, successful or not.
    pub latency: Percentiles,
    /// Time to first delta of streamed calls.
    pub ttft: Percentiles,
}

impl Metrics {
    /// Bumps a counter by one (relaxed: counters need no ordering with other memory).
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed call, in total and under its error code.
    pub fn record_failure(&self, code: ErrorCode) {
        Self::inc(&self.calls_failed);
        let mut map = self.failed_by_code.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(code).or_insert(0) += 1;
    }

    /// Records the duration of a whole call (successful or not), clamped to 1 µs ..= 1 h.
    pub fn record_latency(&self, d: Duration) {
        self.latency.record(d);
    }

    /// Records the time to the first delta of a streamed call, clamped to 1 µs ..= 1 h.
    pub fn record_ttft(&self, d: Duration) {
        self.ttft.record(d);
    }

    /// Adds a call's token usage and its utilization of the model's context window (`window`,
    /// i.e. maxModelTokens). A zero window adds the tokens but no utilization sample, since the
    /// ratio would be meaningless.
    pub fn record_usage(&self, prompt: u64, completion: u64, window: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion, Ordering::Relaxed);
        if window == 0 {
            return;
        }
        let ratio = prompt.saturating_add(completion) as f64 / window as f64;
        let mut acc = self.utilization.lock().unwrap_or_else(|e| e.into_inner());
        acc.sum += ratio;
        acc.count += 1;
    }

    /// Adds the tokens a reply answered without a request of its own did not use again.
    pub fn record_saved(&self, prompt: u64, completion: u64) {
        self.cache_tokens_saved
            .fetch_add(prompt.saturating_add(completion), Ordering::Relaxed);
    }

    /// Zeroes every counter, the per-code failures, both histograms and the utilization mean.
    ///
    /// Not atomic as a whole: a call finishing concurrently may land partly before and partly
    /// after the reset, which is acceptable for monitoring counters.
    pub fn reset(&self) {
        for c in [
            &self.calls_started,
            &self.calls_succeeded,
            &self.calls_failed,
            &self.attempts,
            &self.retries,
            &self.rate_limited_responses,
            &self.key_cool_downs,
            &self.keys_disabled,
            &self.peer_key_cool_downs,
            &self.peer_keys_disabled,
            &self.shared_cache_hits,
            &self.shared_cache_misses,
            &self.shared_cache_stores,
            &self.shared_cache_rejected,
            &self.cache_hits,
            &self.cache_misses,
            &self.coalesced,
            &self.cache_tokens_saved,
            &self.prompt_tokens,
            &self.completion_tokens,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.failed_by_code.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.latency.reset();
        self.ttft.reset();
        *self.utilization.lock().unwrap_or_else(|e| e.into_inner()) = UtilizationAcc::default();
    }

    /// Copies the current values out.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut failed_by_code: Vec<(ErrorCode, u64)> = self
            .failed_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        failed_by_code.sort_by_key(|(k, _)| k.as_str());
        let token_utilization = {
            let acc = self.utilization.lock().unwrap_or_else(|e| e.into_inner());
            if acc.count == 0 {
                0.0
            } else {
                acc.sum / acc.count as f64
            }
        };
        MetricsSnapshot {
            calls_started: get(&self.calls_started),
            calls_succeeded: get(&self.calls_succeeded),
            calls_failed: get(&self.calls_failed),
            attempts: get(&self.attempts),
            retries: get(&self.retries),
            rate_limited_responses: get(&self.rate_limited_responses),
            key_cool_downs: get(&self.key_cool_downs),
            keys_disabled: get(&self.keys_disabled),
            peer_key_cool_downs: get(&self.peer_key_cool_downs),
            peer_keys_disabled: get(&self.peer_keys_disabled),
            shared_cache_hits: get(&self.shared_cache_hits),
            shared_cache_misses: get(&self.shared_cache_misses),
            shared_cache_stores: get(&self.shared_cache_stores),
            shared_cache_rejected: get(&self.shared_cache_rejected),
            failed_by_code,
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            coalesced: get(&self.coalesced),
            cache_tokens_saved: get(&self.cache_tokens_saved),
            prompt_tokens: get(&self.prompt_tokens),
            completion_tokens: get(&self.completion_tokens),
            token_utilization,
            latency: self.latency.percentiles(),
            ttft: self.ttft.percentiles(),
        }
    }
}

/// Live gauges owned by other components, read at scrape time and passed to [`prometheus_text`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Requests currently being sent or awaiting a response.
    pub in_flight: u64,
    /// Requests waiting for a concurrency slot.
    pub queued: u64,
    /// Circuit breaker state: "closed", "open", "half-open" or "disabled" (empty is read as
    /// "disabled").
    pub breaker_state: &'static str,
    /// Times the breaker has opened.
    pub breaker_opened: u64,
    /// API keys configured.
    pub keys_total: u64,
    /// API keys currently cooling down after a 429.
    pub keys_cooling: u64,
    /// API keys currently disabled after a 401/403.
    pub keys_disabled_now: u64,
    /// Entries in the response cache.
    pub cache_entries: u64,
    /// Approximate bytes held by the response cache.
    pub cache_bytes: u64,
}

/// Known breaker states, all exported so each series exists (0 or 1) and never goes stale.
const BREAKER_STATES: [&str; 4] = ["closed", "open", "half-open", "disabled"];

/// Renders counters and gauges in the Prometheus text exposition format, version 0.0.4.
///
/// Every family gets `# HELP` and `# TYPE` lines before its samples; names are prefixed
/// `chatgpt_native_`, counters end in `_total`, latencies are `summary` families in seconds.
pub fn prometheus_text(snapshot: &MetricsSnapshot, gauges: &Gauges) -> String {
    let s = snapshot;
    let mut out = Exposition(String::with_capacity(4096));

    // Families with one sample per value of a label: (family, label, [(label value, sample)]).
    let labelled: [(Family, &str, &[_]); 4] = [
        (
            Family::new("calls_total", "counter", "Chat calls by outcome."),
            "outcome",
            &[
                ("started", s.calls_started as f64),
                ("succeeded", s.calls_succeeded as f64),
                ("failed", s.calls_failed as f64),
            ],
        ),
        (
            Family::new("cache_requests_total", "counter", "Response cache lookups by result."),
            "result",
            &[("hit", s.cache_hits as f64), ("miss", s.cache_misses as f64)],
        ),
        (
            Family::new("tokens_total", "counter", "Tokens used by finished calls, by kind."),
            "kind",
            &[
                ("prompt", s.prompt_tokens as f64),
                ("completion", s.completion_tokens as f64),
            ],
        ),
        (
            Family::new("keys", "gauge", "API keys by current state."),
            "state",
            &[
                ("total", gauges.keys_total as f64),
                ("cooling", gauges.keys_cooling as f64),
                ("disabled", gauges.keys_disabled_now as f64),
            ],
        ),
    ];
    for (family, label, samples) in labelled {
        out.labelled(family, label, samples);
    }

    out.family("failures_total", "counter", "Failed chat calls by error code.");
    for (code, n) in &s.failed_by_code {
        out.sample("failures_total", &[("code", code.as_str())], *n as f64);
    }

    let counters: [(&str, &str, u64); 7] = [
        (
            "attempts_total",
            "HTTP attempts sent, first tries and retries.",
            s.attempts,
        ),
        (
            "retries_total",
            "HTTP attempts that were retries after a failure.",
            s.retries,
        ),
        (
            "rate_limited_responses_total",
            "Rate-limit (429) responses received.",
            s.rate_limited_responses,
        ),
        (
            "coalesced_total",
            "Calls that joined an identical in-flight request.",
            s.coalesced,
        ),
        (
            "cache_tokens_saved_total",
            "Prompt plus completion tokens of replies answered without a request of their own.",
            s.cache_tokens_saved,
        ),
        (
            "key_cool_downs_total",
            "Times an API key was cooled down after a 429.",
            s.key_cool_downs,
        ),
        (
            "keys_disabled_total",
            "Times an API key was disabled after a 401/403.",
            s.keys_disabled,
        ),
    ];
    for (name, help, v) in counters {
        out.single(Family::new(name, "counter", help), v as f64);
    }

    let state = if gauges.breaker_state.is_empty() {
        "disabled"
    } else {
        gauges.breaker_state
    };
    let singles: [(Family, f64); 6] = [
        (
            Family::new(
                "circuit_breaker_opened_total",
                "counter",
                "Times the circuit breaker opened.",
            ),
            gauges.breaker_opened as f64,
        ),
        (
            Family::new("in_flight", "gauge", "Requests currently in flight."),
            gauges.in_flight as f64,
        ),
        (
            Family::new("queued", "gauge", "Requests waiting for a concurrency slot."),
            gauges.queued as f64,
        ),
        (
            Family::new("cache_entries", "gauge", "Entries in the response cache."),
            gauges.cache_entries as f64,
        ),
        (
            Family::new("cache_bytes", "gauge", "Approximate bytes held by the response cache."),
            gauges.cache_bytes as f64,
        ),
        (
            Family::new("circuit_open", "gauge", "1 while the circuit breaker is open, else 0."),
            if state == "open" { 1.0 } else { 0.0 },
        ),
    ];
    for (family, v) in singles {
        out.single(family, v);
    }
    out.family(
        "circuit_state",
        "gauge",
        "Circuit breaker state: 1 for the current state, 0 for the others.",
    );
    for known in BREAKER_STATES {
        out.sample(
            "circuit_state",
            &[("state", known)],
            if known == state { 1.0 } else { 0.0 },
        );
    }
    if !BREAKER_STATES.contains(&state) {
        // An unexpected state still shows up rather than vanishing from the dashboard.
        out.sample("circuit_state", &[("state", state)], 1.0);
    }

    out.single(
        Family::new(
            "token_utilization",
            "gauge",
            "Mean fraction of the model context window used per call (prompt + completion) / window.",
        ),
        s.token_utilization,
    );

    out.summary(
        "request_duration_seconds",
        "Whole chat call duration, successful or not.",
        &s.latency,
    );
    out.summary(
        "time_to_first_token_seconds",
        "Time from call start to the first streamed delta.",
        &s.ttft,
    );

    out.0
}

/// Appends the per-upstream families (`upstream` label) of a client with `upstreams`; nothing
/// for one without.
pub fn upstreams_text(out: &mut String, upstreams: &[super::upstreams::UpstreamStats]) {
    if upstreams.is_empty() {
        return;
    }
    let mut text = Exposition(std::mem::take(out));
    type Read = fn(&super::upstreams::UpstreamStats) -> f64;
    let families: [(&str, &str, &str, Read); 5] = [
        (
            "upstream_requests_total",
            "counter",
            "HTTP attempts sent to each upstream.",
            |u| u.requests as f64,
        ),
        (
            "upstream_successes_total",
            "counter",
            "Calls each upstream answered.",
            |u| u.successes as f64,
        ),
        (
            "upstream_failures_total",
            "counter",
            "Calls that failed on each upstream (fell back from it, or ended there).",
            |u| u.failures as f64,
        ),
        (
            "upstream_fallbacks_total",
            "counter",
            "Calls that fell back from each upstream to the next.",
            |u| u.fallbacks as f64,
        ),
        (
            "upstream_circuit_open",
            "gauge",
            "1 while the upstream's circuit breaker is open, else 0.",
            |u| {
                if u.breaker_state == Some(super::breaker::BreakerState::Open) {
                    1.0
                } else {
                    0.0
                }
            },
        ),
    ];
    for (name, kind, help, read) in families {
        text.family(name, kind, help);
        for u in upstreams {
            text.sample(name, &[("upstream", &u.name)], read(u));
        }
    }
    *out = text.0;
}

/// Metric name prefix shared by every family.
const PREFIX: &str = "chatgpt_native_";

/// The `coordination` families, for a client that shares its limits through Redis (appended
/// to [`prometheus_text`]'s output; absent without `coordination`).
pub fn coordination_text(stats: &crate::core::coordination::CoordinationStats) -> String {
    let mut out = Exposition(String::with_capacity(768));
    let shared = stats.mode == crate::core::coordination::CoordinationMode::Shared;
    out.single(
        Family::new(
            "coordination_shared",
            "gauge",
            "1 while rate limits are shared through Redis, 0 while they fall back to local limits.",
        ),
        if shared { 1.0 } else { 0.0 },
    );
    let counters: [(&str, &str, u64); 3] = [
        (
            "coordination_operations_total",
            "Redis operations started.",
            stats.operations,
        ),
        (
            "coordination_redis_errors_total",
            "Redis operations that failed or outlasted operationTimeoutMs.",
            stats.redis_errors,
        ),
        (
            "coordination_fallbacks_total",
            "Rate-limit admissions that used the local limits because Redis was unavailable.",
            stats.fallbacks,
        ),
    ];
    for (name, help, v) in counters {
        out.single(Family::new(name, "counter", help), v as f64);
    }
    out.0
}

/// The `coordination` families of key health learned from other processes and of the response
/// cache in Redis (appended after [`coordination_text`]'s; absent without `coordination`).
pub fn coordination_sharing_text(m: &MetricsSnapshot) -> String {
    let mut out = Exposition(String::with_capacity(1024));
    let counters: [(&str, &str, u64); 6] = [
        (
            "coordination_peer_key_cool_downs_total",
            "Keys skipped as cooling down because another process said so through Redis.",
            m.peer_key_cool_downs,
        ),
        (
            "coordination_peer_keys_disabled_total",
            "Keys skipped as disabled because another process said so through Redis.",
            m.peer_keys_disabled,
        ),
        (
            "coordination_cache_hits_total",
            "Local cache misses answered from the cache in Redis.",
            m.shared_cache_hits,
        ),
        (
            "coordination_cache_misses_total",
            "Local cache misses not answered from Redis either.",
            m.shared_cache_misses,
        ),
        (
            "coordination_cache_stores_total",
            "Answers stored in the cache in Redis.",
            m.shared_cache_stores,
        ),
        (
            "coordination_cache_rejected_total",
            "Entries read from the cache in Redis that were refused (too big or undecodable).",
            m.shared_cache_rejected,
        ),
    ];
    for (name, help, v) in counters {
        out.single(Family::new(name, "counter", help), v as f64);
    }
    out.0
}

/// Output buffer with helpers for the text format. `write!` to a `String` cannot fail, so its
/// `fmt::Result` is discarded.
struct Exposition(String);

/// A metric family's name (without [`PREFIX`]), type and help text.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

impl<'a> Family<'a> {
    fn new(name: &'a str, kind: &'a str, help: &'a str) -> Self {
        Self { name, kind, help }
    }
}

impl Exposition {
    /// A family with one unlabelled sample.
    fn single(&mut self, f: Family, value: f64) {
        self.family(f.name, f.kind, f.help);
        self.sample(f.name, &[], value);
    }

    /// A family with one sample per value of `label`, in the order given.
    fn labelled(&mut self, f: Family, label: &str, samples: &[(&str, f64)]) {
        self.family(f.name, f.kind, f.help);
        for &(value, v) in samples {
            self.sample(f.name, &[(label, value)], v);
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label_value(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", format_value(value));
    }

    fn summary(&mut self, name: &str, help: &str, p: &Percentiles) {
        self.family(name, "summary", help);
        let secs = |ms: f64| ms / 1000.0;
        for (q, v) in [("0.5", p.p50_ms), ("0.95", p.p95_ms), ("0.99", p.p99_ms)] {
            self.sample(name, &[("quantile", q)], secs(v));
        }
        // The histogram keeps no exact sum; mean * count reconstructs it to within its precision.
        self.sample(&format!("{name}_sum"), &[], secs(p.mean_ms) * p.count as f64);
        self.sample(&format!("{name}_count"), &[], p.count as f64);
    }
}

/// Escapes a label value per the text format: backslash, double quote and line feed.
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes HELP text per the text format: backslash and line feed (quotes are literal there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a sample value. Rust's `Display` for f64 never uses exponent notation or a trailing
/// `.0` for integers, which Prometheus parses; non-finite values (which our math should never
/// produce) are exported as 0 rather than NaN/Inf, so an empty series reads as zero.
fn format_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_code() {
        let m = Metrics::default();
        Metrics::inc(&m.calls_started);
        m.record_failure(ErrorCode::RateLimited);
        m.record_failure(ErrorCode::RateLimited);
        m.record_failure(ErrorCode::Http);
        let s = m.snapshot();
        assert_eq!(s.calls_started, 1);
        assert_eq!(s.calls_failed, 3);
        assert_eq!(
            s.failed_by_code,
            vec![(ErrorCode::Http, 1), (ErrorCode::RateLimited, 2)]
        );
    }

    fn assert_close(actual: f64, expected: f64, rel: f64) {
        assert!(
            (actual - expected).abs() <= expected.abs() * rel,
            "{actual} not within {rel} of {expected}"
        );
    }

    #[test]
    fn percentiles_from_known_values() {
        let m = Metrics::default();
        for ms in 1..=100u64 {
            m.record_latency(Duration::from_millis(ms));
        }
        let p = m.snapshot().latency;
        assert_eq!(p.count, 100);
        assert_close(p.p50_ms, 50.0, 0.01);
        assert_close(p.p95_ms, 95.0, 0.01);
        assert_close(p.p99_ms, 99.0, 0.01);
        assert_close(p.max_ms, 100.0, 0.01);
        assert_close(p.mean_ms, 50.5, 0.01);
        // TTFT is a separate histogram.
        assert_eq!(m.snapshot().ttft, Percentiles::default());
    }

    #[test]
    fn empty_histograms_are_all_zero() {
        let s = Metrics::default().snapshot();
        assert_eq!(s.latency, Percentiles::default());
        assert_eq!(s.ttft, Percentiles::default());
        assert_eq!(s.token_utilization, 0.0);
    }

    #[test]
    fn durations_are_clamped_into_range() {
        let m = Metrics::default();
        m.record_ttft(Duration::ZERO);
        let p = m.snapshot().ttft;
        assert_eq!(p.count, 1);
        assert_close(p.max_ms, 0.001, 0.001);

        m.record_ttft(Duration::from_secs(2 * 3600));
        m.record_ttft(Duration::MAX);
        let p = m.snapshot().ttft;
        assert_eq!(p.count, 3);
        assert_close(p.max_ms, 3_600_000.0, 0.001);
    }

    #[test]
    fn usage_and_mean_utilization() {
        let m = Metrics::default();
        m.record_usage(100, 50, 1000); // 0.15
        m.record_usage(300, 150, 1000); // 0.45
        m.record_usage(7, 3, 0); // tokens only, no utilization sample
        let s = m.snapshot();
        assert_eq!(s.prompt_tokens, 407);
        assert_eq!(s.completion_tokens, 203);
        assert_close(s.token_utilization, 0.3, 1e-9);
    }

    #[test]
    fn saved_tokens_add_up_apart_from_the_usage() {
        let m = Metrics::default();
        m.record_saved(100, 50);
        m.record_saved(7, 3);
        let s = m.snapshot();
        assert_eq!(s.cache_tokens_saved, 160);
        assert_eq!(
            (s.prompt_tokens, s.completion_tokens),
            (0, 0),
            "saved tokens are not usage"
        );
        assert_eq!(s.token_utilization, 0.0);
    }

    #[test]
    fn reset_zeroes_everything() {
        let m = Metrics::default();
        for c in [
            &m.calls_started,
            &m.calls_succeeded,
            &m.attempts,
            &m.retries,
            &m.rate_limited_responses,
            &m.key_cool_downs,
            &m.keys_disabled,
            &m.cache_hits,
            &m.cache_misses,
            &m.coalesced,
        ] {
            Metrics::inc(c);
        }
        m.record_failure(ErrorCode::Timeout);
        m.record_usage(10, 20, 100);
        m.record_saved(10, 20);
        m.record_latency(Duration::from_millis(5));
        m.record_ttft(Duration::from_millis(1));
        assert_ne!(m.snapshot(), MetricsSnapshot::default());

        m.reset();
        assert_eq!(m.snapshot(), MetricsSnapshot::default());
        // Still usable afterwards.
        m.record_latency(Duration::from_millis(5));
        assert_eq!(m.snapshot().latency.count, 1);
    }

    /// Hand-written equivalent of the sample-line regex
    /// `^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+$`
    /// (the crate has no regex dependency). Returns the metric name on a match.
    fn match_sample_line(line: &str) -> Option<&str> {
        let b = line.as_bytes();
        let mut i = 0;
        let name_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
        let name_cont = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if !b.first().is_some_and(|&c| name_start(c)) {
            return None;
        }
        while i < b.len() && name_cont(b[i]) {
            i += 1;
        }
        let name = &line[..i];
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    break;
                }
                // label name
                if !b.get(i).is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_') {
                    return None;
                }
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if b.get(i..i + 2) != Some(b"=\"".as_slice()) {
                    return None;
                }
                i += 2;
                // value: ([^"\\]|\\.)* then a closing quote
                loop {
                    match b.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            if b.get(i + 1).is_none_or(|&c| c == b'\n') {
                                return None;
                            }
                            i += 2;
                        }
                        b'\n' => return None,
                        _ => i += 1,
                    }
                }
                i += 1;
                if b.get(i) == Some(&b',') {
                    i += 1;
                }
            }
        }
        if b.get(i) != Some(&b' ') {
            return None;
        }
        i += 1;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let value = &b[i..];
        let ok = !value.is_empty() && value.iter().all(|c| c.is_ascii_digit() || b".eE+-".contains(c));
        ok.then_some(name)
    }

    #[test]
    fn line_matcher_rejects_malformed_lines() {
        assert_eq!(match_sample_line("a_b:c{x=\"1\",y=\"a\\\"b\"} -1.5e+3"), Some("a_b:c"));
        for bad in [
            "1abc 1",
            "abc",
            "abc NaN",
            "abc{x=\"1} 1",
            "abc{1x=\"1\"} 1",
            "abc{x=\"a\"b\"} 1",
            "abc{x=1} 1",
            "abc  1",
            "abc 1 ",
        ] {
            assert_eq!(match_sample_line(bad), None, "{bad:?}");
        }
    }

    fn busy_snapshot() -> MetricsSnapshot {
        let m = Metrics::default();
        Metrics::inc(&m.calls_started);
        Metrics::inc(&m.calls_succeeded);
        Metrics::inc(&m.cache_hits);
        m.record_failure(ErrorCode::RateLimited);
        m.record_failure(ErrorCode::Timeout);
        m.record_usage(1234, 567, 8192);
        m.record_saved(1234, 567);
        for ms in [3, 40, 500, 7000] {
            m.record_latency(Duration::from_millis(ms));
            m.record_ttft(Duration::from_micros(ms * 7));
        }
        m.snapshot()
    }

    /// Checks the regex on every sample, that each family has HELP then TYPE (once) before its
    /// samples, and that every value parses as a finite f64. Returns the sample lines.
    fn check_exposition(text: &str) -> Vec<&str> {
        use std::collections::HashSet;
        assert!(text.ends_with('\n'));
        let mut helped = HashSet::new();
        let mut typed: HashMap<&str, &str> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(helped.insert(name), "duplicate HELP for {name}");
                assert!(!typed.contains_key(name), "HELP after TYPE for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap_or_default();
                let kind = parts.next().unwrap_or_default();
                assert!(["counter", "gauge", "summary"].contains(&kind), "bad type in {line}");
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(typed.insert(name, kind).is_none(), "duplicate TYPE for {name}");
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line}");
                let name = match_sample_line(line).unwrap_or_else(|| panic!("bad sample line: {line:?}"));
                assert!(name.starts_with(PREFIX), "{name}");
                let family = if typed.contains_key(name) {
                    name
                } else {
                    let base = name.strip_suffix("_sum").or_else(|| name.strip_suffix("_count"));
                    base.filter(|b| typed.get(b) == Some(&"summary")).unwrap_or(name)
                };
                assert!(typed.contains_key(family), "sample before HELP/TYPE: {line}");
                if typed[family] == "counter" {
                    assert!(family.ends_with("_total"), "{family}");
                }
                let value = line.rsplit(' ').next().unwrap_or_default();
                assert!(value.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
                samples.push(line);
            }
        }
        samples
    }

    #[test]
    fn prometheus_output_is_well_formed() {
        let gauges = Gauges {
            in_flight: 3,
            queued: 1,
            breaker_state: "half-open",
            breaker_opened: 2,
            keys_total: 4,
            keys_cooling: 1,
            keys_disabled_now: 1,
            cache_entries: 10,
            cache_bytes: 2048,
        };
        let text = prometheus_text(&busy_snapshot(), &gauges);
        let samples = check_exposition(&text);
        for expected in [
            "chatgpt_native_calls_total{outcome=\"started\"} 1",
            "chatgpt_native_calls_total{outcome=\"succeeded\"} 1",
            "chatgpt_native_calls_total{outcome=\"failed\"} 2",
            "chatgpt_native_failures_total{code=\"ERR_CHATGPT_RATE_LIMITED\"} 1",
            "chatgpt_native_failures_total{code=\"ERR_CHATGPT_TIMEOUT\"} 1",
            "chatgpt_native_cache_requests_total{result=\"hit\"} 1",
            "chatgpt_native_cache_requests_total{result=\"miss\"} 0",
            "chatgpt_native_tokens_total{kind=\"prompt\"} 1234",
            "chatgpt_native_tokens_total{kind=\"completion\"} 567",
            "chatgpt_native_cache_tokens_saved_total 1801",
            "chatgpt_native_in_flight 3",
            "chatgpt_native_queued 1",
            "chatgpt_native_circuit_open 0",
            "chatgpt_native_circuit_state{state=\"half-open\"} 1",
            "chatgpt_native_circuit_state{state=\"open\"} 0",
            "chatgpt_native_keys{state=\"cooling\"} 1",
            "chatgpt_native_cache_bytes 2048",
            "chatgpt_native_request_duration_seconds_count 4",
            "chatgpt_native_time_to_first_token_seconds_count 4",
        ] {
            assert!(samples.contains(&expected), "missing {expected:?} in\n{text}");
        }
        let value_of = |prefix: &str| {
            samples
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        assert_close(
            value_of("chatgpt_native_request_duration_seconds{quantile=\"0.99\"}"),
            7.0,
            0.001,
        );
        assert_close(value_of("chatgpt_native_request_duration_seconds_sum"), 7.543, 0.001);
        assert_close(value_of("chatgpt_native_token_utilization"), 1801.0 / 8192.0, 1e-9);
    }

    #[test]
    fn prometheus_output_for_empty_metrics() {
        let text = prometheus_text(&MetricsSnapshot::default(), &Gauges::default());
        let samples = check_exposition(&text);
        assert!(samples.contains(&"chatgpt_native_request_duration_seconds{quantile=\"0.5\"} 0"));
        assert!(samples.contains(&"chatgpt_native_token_utilization 0"));
        // An empty breaker state reads as "disabled".
        assert!(samples.contains(&"chatgpt_native_circuit_state{state=\"disabled\"} 1"));
        assert!(text.contains("# TYPE chatgpt_native_failures_total counter"));
        assert!(!samples.iter().any(|l| l.starts_with("chatgpt_native_failures_total")));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let gauges = Gauges {
            breaker_state: "we\"ird\\\nstate}, x=\"1",
            ..Gauges::default()
        };
        let text = prometheus_text(&MetricsSnapshot::default(), &gauges);
        let samples = check_exposition(&text);
        assert!(
            samples.contains(&"chatgpt_native_circuit_state{state=\"we\\\"ird\\\\\\nstate}, x=\\\"1\"} 1"),
            "{text}"
        );
        assert!(samples.contains(&"chatgpt_native_circuit_state{state=\"disabled\"} 0"));
    }

    #[test]
    fn values_are_formatted_for_prometheus() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.0125), "0.0125");
        assert_eq!(format_value(f64::NAN), "0");
        assert_eq!(format_value(f64::INFINITY), "0");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
