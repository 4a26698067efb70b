//! Client-side admission control: how many calls may run at once, and how fast calls may start.
//!
//! Two independent pieces, both shared (`Send + Sync`) by every call of a client:
//!
//! * [`ConcurrencyLimiter`] caps in-flight calls and bounds the number of callers waiting for a
//!   slot. It is a thin layer over tokio's fair (FIFO) [`Semaphore`]; the waiting count is kept by
//!   a drop guard so a caller whose future is dropped while queued (JS abort, timeout, `select!`)
//!   leaves the queue and the count at once. A full queue rejects immediately with
//!   [`AcquireError::QueueFull`] instead of letting memory and latency grow without bound.
//!
//! * [`RateLimiter`] paces calls against requests-per-minute and tokens-per-minute budgets, the
//!   way the OpenAI cookbook's `api_request_parallel_processor.py` does, with its known problems
//!   fixed:
//!   - Buckets are continuous: capacity equals the per-minute limit, they start full and refill
//!     at `limit / 60` per second (`level = min(level + limit * dt / 60, limit)`), which is how
//!     the server meters too, so a burst of one minute's budget is allowed and then calls are
//!     spread evenly.
//!   - Capacity is handed out in arrival order: a waiter first takes an async (FIFO) gate mutex
//!     and holds it while it sleeps for capacity, so later callers queue behind it. Without that,
//!     a 6000-token request could wait forever while a stream of 100-token requests each grab the
//!     capacity as soon as it trickles in (the cookbook polls, so the smallest request wins).
//!   - An estimate larger than the whole token budget fails at once with
//!     [`RateLimitError::RequestTooLarge`]: no amount of waiting could satisfy it (the cookbook
//!     loops forever).
//!   - Tokens are taken on an *estimate* (prompt + `max_tokens`) and corrected with
//!     [`RateLease::settle`] once the real usage is known, so over-estimates are not wasted.
//!   - The server's own view is learned from `x-ratelimit-*` response headers
//!     ([`RateLimiter::observe_headers`]), and a 429 pauses every new acquisition until its
//!     retry-after ([`RateLimiter::pause_for`]) so a fleet of concurrent callers does not turn one
//!     429 into a storm of them (the cookbook pauses a fixed 15 s). A server-imposed pause is
//!     capped at [`SERVER_WAIT_CAP`](super::time::SERVER_WAIT_CAP), and a caller whose deadline falls before the pause ends is
//!     refused at once ([`RateLimitError::Paused`]) instead of sleeping into its timeout.
//!
//! Both are cancel-safe: nothing is taken unless the `acquire` future completes, because every
//! take happens synchronously after the last `.await`.
//!
//! All timing uses [`tokio::time::Instant`] and [`tokio::time::sleep_until`], so the behaviour is
//! tested deterministically with tokio's paused clock.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::time::{cap_server_wait, duration_from_secs_f64, instant_after};
use super::transport::parse_retry_after;

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Caps the number of calls in flight and the number of callers waiting for a slot.
///
/// Slots are granted in FIFO order. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ConcurrencyLimiter {
    /// `None` when concurrency is unlimited: `acquire` then never waits.
    semaphore: Option<Arc<Semaphore>>,
    max_concurrency: Option<usize>,
    max_queue: Option<usize>,
    /// Callers currently parked in `acquire`. Kept by [`QueueSlot`] so dropped futures count down.
    waiting: AtomicUsize,
    /// Live permits. Counted separately from the semaphore so the unlimited case reports too.
    in_flight: Arc<AtomicUsize>,
}

/// Why [`ConcurrencyLimiter::acquire`] refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// `max_queue` callers were already waiting for a slot.
    QueueFull {
        /// The configured queue bound.
        max_queue: usize,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { max_queue } => {
                write!(
                    f,
                    "too many requests waiting for a concurrency slot (maxQueue {max_queue})"
                )
            }
        }
    }
}

impl std::error::Error for AcquireError {}

impl ConcurrencyLimiter {
    /// Creates a limiter. `max_concurrency` `None` = unlimited (acquire never waits);
    /// `max_queue` `None` = unbounded waiting, `Some(0)` = never wait (reject when no slot is free).
    ///
    /// `max_concurrency` `Some(0)` is treated as unlimited: a limit of zero slots would hang every
    /// call forever, which is never what a configuration means.
    pub fn new(max_concurrency: Option<usize>, max_queue: Option<usize>) -> Self {
        let max_concurrency = max_concurrency
            .filter(|&n| n > 0)
            .map(|n| n.min(Semaphore::MAX_PERMITS));
        Self {
            semaphore: max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            max_concurrency,
            max_queue,
            waiting: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits (FIFO) for a slot. Rejects at once with [`AcquireError::QueueFull`] when `max_queue`
    /// callers are already waiting.
    ///
    /// Cancel-safe: dropping the future while queued removes the caller from the queue (and from
    /// [`queued`](Self::queued)) and takes no slot.
    pub async fn acquire(&self) -> Result<ConcurrencyPermit, AcquireError> {
        let Some(semaphore) = &self.semaphore else {
            return Ok(self.permit(None));
        };
        // Fast path. tokio hands released permits directly to queued waiters, so a successful
        // `try_acquire` never jumps the queue: FIFO order is preserved.
        match Arc::clone(semaphore).try_acquire_owned() {
            Ok(permit) => return Ok(self.permit(Some(permit))),
            Err(TryAcquireError::NoPermits) => {}
            // Never closed by this module; fall through to the slow path, which reports it.
            Err(TryAcquireError::Closed) => {}
        }
        let max_queue = self.max_queue;
        // Reserve a queue place atomically (check-and-increment in one step, so concurrent callers
        // cannot all see "one place left").
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match max_queue {
                Some(max) if n >= max => None,
                _ => n.checked_add(1),
            })
            .map_err(|_| AcquireError::QueueFull {
                max_queue: max_queue.unwrap_or(0),
            })?;
        let _slot = QueueSlot(&self.waiting);
        match Arc::clone(semaphore).acquire_owned().await {
            Ok(permit) => Ok(self.permit(Some(permit))),
            // The semaphore is private and never closed, so this cannot happen; reporting it as a
            // rejection is the non-panicking answer if that ever changes.
            Err(_) => Err(AcquireError::QueueFull {
                max_queue: max_queue.unwrap_or(0),
            }),
        }
    }

    /// Calls currently holding a permit.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Callers currently waiting in [`acquire`](Self::acquire).
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The effective concurrency limit (`None` = unlimited).
    pub fn max_concurrency(&self) -> Option<usize> {
        self.max_concurrency
    }

    /// The configured queue bound (`None` = unbounded).
    pub fn max_queue(&self) -> Option<usize> {
        self.max_queue
    }

    fn permit(&self, permit: Option<OwnedSemaphorePermit>) -> ConcurrencyPermit {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ConcurrencyPermit {
            _permit: permit,
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("max_concurrency", &self.max_concurrency)
            .field("max_queue", &self.max_queue)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

/// Decrements the waiting count when `acquire` finishes *or is dropped*, so cancelled waiters
/// never leave a phantom entry that would make the queue look full.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A concurrency slot. Owned (`'static`, `Send`) so it can move into a spawned task or a stream;
/// the slot is released when it is dropped.
#[must_use = "the concurrency slot is released as soon as the permit is dropped"]
pub struct ConcurrencyPermit {
    /// `None` when the limiter is unlimited. Released (to the next FIFO waiter) when dropped.
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        // Runs before the semaphore permit (a field) is released, so `in_flight` never briefly
        // exceeds the limit as seen by an observer.
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Rate
// ---------------------------------------------------------------------------------------------

/// Per-minute budgets for a [`RateLimiter`]. `None` (or `Some(0)`) leaves that budget unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (prompt + completion, as the server counts them).
    pub tokens_per_minute: Option<u32>,
}

impl RateLimitConfig {
    /// `share` (0 to 1) of each budget, rounded up so a configured budget never becomes
    /// unlimited (0): what one process may use on its own when the shared budget is unreachable.
    pub fn scaled(self, share: f64) -> Self {
        let scale = |limit: Option<u32>| {
            limit.filter(|&l| l > 0).map(|l| {
                let scaled = (f64::from(l) * share.clamp(0.0, 1.0)).ceil();
                // In range: at most `l`, at least 1 (float-to-int casts saturate in any case).
                (scaled as u32).clamp(1, l)
            })
        };
        RateLimitConfig {
            requests_per_minute: scale(self.requests_per_minute),
            tokens_per_minute: scale(self.tokens_per_minute),
        }
    }
}

/// How long a 429 pauses new sends: its `retry-after`, 1 s when it has none, capped at
/// [`SERVER_WAIT_CAP`](super::time::SERVER_WAIT_CAP).
pub fn server_pause(retry_after: Option<Duration>) -> Duration {
    cap_server_wait(retry_after.unwrap_or(DEFAULT_PAUSE))
}

/// Why [`RateLimiter::acquire`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitError {
    /// The token estimate exceeds a whole minute's budget, so waiting could never satisfy it.
    RequestTooLarge {
        /// The request's token estimate.
        estimate: u32,
        /// The configured tokens-per-minute budget.
        tokens_per_minute: u32,
    },
    /// The server paused sending (a 429's `retry-after`, or a rate-limit header reporting
    /// nothing left) until after the caller's deadline.
    Paused {
        /// Time until the pause ends.
        retry_after: Duration,
    },
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestTooLarge {
                estimate,
                tokens_per_minute,
            } => write!(
                f,
                "request needs an estimated {estimate} tokens, more than the whole tokensPerMinute budget \
                 ({tokens_per_minute})"
            ),
            Self::Paused { retry_after } => write!(
                f,
                "the server paused requests for another {} ms, past the call's deadline",
                retry_after.as_millis()
            ),
        }
    }
}

impl std::error::Error for RateLimitError {}

/// Paces requests against requests-per-minute and tokens-per-minute budgets.
///
/// Share one per client (or per API key: the server's limits are per organisation/key). Waiters
/// are served in arrival order. See the module docs for the algorithm.
pub struct RateLimiter {
    inner: Arc<RateInner>,
}

struct RateInner {
    config: RateLimitConfig,
    state: Mutex<RateState>,
    /// FIFO hand-out: the waiter holding this is the only one sleeping for capacity; everyone
    /// else queues on the (fair) lock in arrival order. Held across awaits, hence tokio's mutex.
    gate: tokio::sync::Mutex<()>,
    /// Woken by [`RateLease::settle`] when it credits tokens back, so the head waiter re-checks
    /// instead of sleeping out a deadline computed before the credit.
    credited: Notify,
}

struct RateState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    last_refill: Instant,
    paused_until: Option<Instant>,
}

/// One continuous token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Capacity and per-minute refill amount.
    limit: f64,
    /// Current capacity; negative after an under-estimate was settled.
    level: f64,
}

/// Float slack when comparing a level with a need: a refill computed from a sleep of exactly the
/// right length may land a hair short (e.g. 0.9999999 of 1), and sleeping again for nanoseconds
/// would only add wake-ups.
const EPSILON: f64 = 1e-6;

/// Longest single sleep in the wait loop. Keeps `Duration`/`Instant` arithmetic far from overflow;
/// the loop simply re-checks when it wakes.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Pause used when a 429 (or `remaining: 0`) arrives without a usable reset time.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The `x-ratelimit-*` header names of one bucket.
struct BucketHeaders {
    limit: &'static str,
    reset: &'static str,
}

const REQUEST_HEADERS: BucketHeaders = BucketHeaders {
    limit: "x-ratelimit-limit-requests",
    reset: "x-ratelimit-reset-requests",
};

const TOKEN_HEADERS: BucketHeaders = BucketHeaders {
    limit: "x-ratelimit-limit-tokens",
    reset: "x-ratelimit-reset-tokens",
};

impl Bucket {
    fn new(limit: Option<u32>) -> Option<Self> {
        // Some(0) means "no budget configured", not "never send": see `RateLimitConfig`.
        limit.filter(|&l| l > 0).map(|l| Self {
            limit: f64::from(l),
            level: f64::from(l),
        })
    }

    fn refill(&mut self, elapsed_secs: f64) {
        // Float arithmetic saturates at infinity and `min` brings it back to the limit.
        self.level = (self.level + self.limit * elapsed_secs / 60.0).min(self.limit);
    }

    /// How long until `need` is available at the refill rate (zero when it already is).
    fn wait_for(&self, need: f64) -> Duration {
        let deficit = need - self.level;
        if deficit <= EPSILON {
            return Duration::ZERO;
        }
        let secs = deficit * 60.0 / self.limit;
        Duration::try_from_secs_f64(secs).map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
    }
}

impl RateState {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_refill).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        self.last_refill = now;
        for bucket in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
            bucket.refill(elapsed);
        }
    }

    fn pause_until(&mut self, until: Instant) {
        // Keep the later pause: a short retry-after must not cut a longer one short.
        if self.paused_until.is_none_or(|current| until > current) {
            self.paused_until = Some(until);
        }
    }
}

impl RateLimiter {
    /// Creates a limiter with full buckets.
    pub fn new(config: RateLimitConfig) -> Self {
        let state = RateState {
            requests: Bucket::new(config.requests_per_minute),
            tokens: Bucket::new(config.tokens_per_minute),
            last_refill: Instant::now(),
            paused_until: None,
        };
        Self {
            inner: Arc::new(RateInner {
                config,
                state: Mutex::new(state),
                gate: tokio::sync::Mutex::new(()),
                credited: Notify::new(),
            }),
        }
    }

    /// The configuration this limiter was built with.
    pub fn config(&self) -> RateLimitConfig {
        self.inner.config
    }

    /// Waits until both buckets hold 1 request and `estimated_tokens`, then takes them.
    ///
    /// Waiters are served strictly in arrival order, so a large request is never starved by a
    /// stream of small ones (the price is head-of-line blocking, which is what fairness means
    /// here). Also waits while a pause from [`pause_for`](Self::pause_for) or
    /// [`observe_headers`](Self::observe_headers) is in force.
    ///
    /// Fails at once with [`RateLimitError::RequestTooLarge`] when the estimate exceeds the whole
    /// tokens-per-minute budget. Cancel-safe: dropping the future while it waits takes nothing.
    pub async fn acquire(&self, estimated_tokens: u32) -> Result<RateLease, RateLimitError> {
        self.acquire_before(estimated_tokens, None).await
    }

    /// [`acquire`](Self::acquire) for a caller that gives up at `deadline`: fails at once with
    /// [`RateLimitError::Paused`] when a server-imposed pause ends after it, whether the pause is
    /// in force on arrival or arrives while the caller waits. (Waits for the buckets to refill do
    /// not fail early: a settled lease may credit tokens back sooner than the refill would.)
    pub async fn acquire_before(
        &self,
        estimated_tokens: u32,
        deadline: Option<Instant>,
    ) -> Result<RateLease, RateLimitError> {
        let tokens_per_minute = self.inner.config.tokens_per_minute.filter(|&l| l > 0);
        if let Some(tpm) = tokens_per_minute {
            if estimated_tokens > tpm {
                return Err(RateLimitError::RequestTooLarge {
                    estimate: estimated_tokens,
                    tokens_per_minute: tpm,
                });
            }
        }
        let need_tokens = f64::from(estimated_tokens);
        // A caller that the pause outlasts need not queue behind the others to find that out.
        self.check_pause(deadline)?;
        // Queue in arrival order. The guard lives until we return, so nobody behind us can take
        // capacity that trickles in while we sleep.
        let _turn = self.inner.gate.lock().await;
        loop {
            // Register for credit notifications *before* reading the state, so a settle between
            // the read and the sleep is not missed.
            let credited = self.inner.credited.notified();
            let mut credited = std::pin::pin!(credited);
            credited.as_mut().enable();

            let deadline = {
                let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                state.refill(now);
                let paused = state.paused_until.filter(|&until| until > now);
                if paused.is_none() {
                    state.paused_until = None;
                }
                let wait = state
                    .requests
                    .map_or(Duration::ZERO, |b| b.wait_for(1.0))
                    .max(state.tokens.map_or(Duration::ZERO, |b| b.wait_for(need_tokens)));
                match paused {
                    None if wait.is_zero() => {
                        // The only place capacity is taken: synchronous, after the last await,
                        // which is what makes dropping the future safe.
                        if let Some(b) = state.requests.as_mut() {
                            b.level -= 1.0;
                        }
                        if let Some(b) = state.tokens.as_mut() {
                            b.level -= need_tokens;
                        }
                        return Ok(RateLease {
                            inner: Arc::clone(&self.inner),
                            estimate: estimated_tokens,
                        });
                    }
                    None => instant_after(now, wait),
                    Some(until) if deadline.is_some_and(|d| until > d) => {
                        return Err(RateLimitError::Paused {
                            retry_after: until.saturating_duration_since(now),
                        });
                    }
                    Some(until) => until.max(instant_after(now, wait)),
                }
            };
            // Sleep until capacity should be there, until a settle credits tokens back, or until
            // a new pause is announced. Whichever comes first, the loop re-checks.
            let _ = tokio::time::timeout_at(deadline, credited).await;
        }
    }

    /// `Err(Paused)` when a pause in force ends after `deadline`.
    fn check_pause(&self, deadline: Option<Instant>) -> Result<(), RateLimitError> {
        let Some(deadline) = deadline else {
            return Ok(());
        };
        match self.paused_until() {
            Some(until) if until > deadline => Err(RateLimitError::Paused {
                retry_after: until.saturating_duration_since(Instant::now()),
            }),
            _ => Ok(()),
        }
    }

    /// Learns from a response's `x-ratelimit-*` headers.
    ///
    /// `x-ratelimit-remaining-requests` / `-tokens` lower the matching bucket when the server
    /// reports less than we believe we have (other processes may share the key); they never raise
    /// it, because a response reflects the server at an earlier moment than our own accounting.
    /// When no limit is configured for a bucket but the server sends `x-ratelimit-limit-*`, that
    /// limit is adopted (level = remaining), so pacing starts from the server's own numbers.
    /// A remaining count of 0 pauses new acquisitions, whatever the configured budget (refilling at
    /// a configured rate would send too early): for the response's `retry-after` when it has one,
    /// else until the bucket's first unit is back, its `x-ratelimit-reset-requests` / `-tokens`
    /// (Go durations such as `"6m0s"`, or plain seconds) divided by its `x-ratelimit-limit-*`, or
    /// the whole reset when no limit is sent (see [`RateHeaders::pause`]; 1 s if no reset is
    /// given, [`SERVER_WAIT_CAP`](super::time::SERVER_WAIT_CAP) at most). Missing or unparsable
    /// headers are ignored.
    pub fn observe_headers(&self, headers: &http::HeaderMap) {
        if let Some(reading) = RateHeaders::read(headers) {
            self.observe(&reading);
        }
    }

    /// [`observe_headers`](Self::observe_headers) for headers already read.
    pub fn observe(&self, reading: &RateHeaders) {
        let paused = {
            let mut guard = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let state = &mut *guard;
            let now = Instant::now();
            state.refill(now);
            for (remaining, stated, bucket) in [
                (reading.remaining_requests, reading.limit_requests, &mut state.requests),
                (reading.remaining_tokens, reading.limit_tokens, &mut state.tokens),
            ] {
                let Some(remaining) = remaining else { continue };
                match (bucket.as_mut(), stated) {
                    (Some(bucket), _) => bucket.level = bucket.level.min(remaining),
                    // No limit configured but the server states its own: adopt it as a learned
                    // bucket, so later sends are paced smoothly instead of bursting into 429s.
                    (None, Some(limit)) => {
                        *bucket = Some(Bucket {
                            limit,
                            level: remaining.min(limit),
                        })
                    }
                    (None, None) => {}
                }
            }
            if let Some(pause) = reading.pause {
                state.pause_until(instant_after(now, pause));
            }
            reading.pause.is_some()
        };
        if paused {
            // The head waiter recomputes its wake-up (and may fail at once if its deadline is
            // now before the pause ends).
            self.inner.credited.notify_waiters();
        }
    }

    /// A 429 arrived: pauses all new acquisitions until now + `retry_after` (1 s when unknown,
    /// [`SERVER_WAIT_CAP`](super::time::SERVER_WAIT_CAP) at most), so a fleet of concurrent callers backs off together instead
    /// of producing a 429 storm. An existing later pause is kept.
    pub fn pause_for(&self, retry_after: Option<Duration>) {
        {
            let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let until = instant_after(Instant::now(), server_pause(retry_after));
            state.pause_until(until);
        }
        self.inner.credited.notify_waiters();
    }

    /// When the current pause ends, or `None` if acquisitions are not paused.
    pub fn paused_until(&self) -> Option<Instant> {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.paused_until.filter(|&until| until > Instant::now())
    }

    /// Current request and token capacity after refill, for metrics. An unlimited bucket reports
    /// `f64::INFINITY`; a bucket overdrawn by an under-estimate reports a negative value.
    pub fn available(&self) -> (f64, f64) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.refill(Instant::now());
        let level = |b: Option<Bucket>| b.map_or(f64::INFINITY, |b| b.level);
        (level(state.requests), level(state.tokens))
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, tokens) = self.available();
        f.debug_struct("RateLimiter")
            .field("config", &self.inner.config)
            .field("available_requests", &requests)
            .field("available_tokens", &tokens)
            .field("paused_until", &self.paused_until())
            .finish()
    }
}

/// Capacity taken by [`RateLimiter::acquire`] on an estimate.
///
/// Call [`settle`](Self::settle) once the real usage is known. Dropping the lease without
/// settling (the request failed before usage was reported, or the stream was aborted) keeps the
/// whole estimate spent: the server may well have counted the request, and over-counting only
/// costs a little pacing whereas under-counting costs 429s.
pub struct RateLease {
    inner: Arc<RateInner>,
    estimate: u32,
}

impl RateLease {
    /// The token estimate this lease took.
    pub fn estimated_tokens(&self) -> u32 {
        self.estimate
    }

    /// The real usage is known: returns `estimate - actual_tokens` to the token bucket (never
    /// above capacity), or, when `actual_tokens` exceeds the estimate, takes the extra, possibly
    /// driving the bucket negative so the next acquirers wait for it to refill.
    pub fn settle(self, actual_tokens: u32) {
        let credit = f64::from(self.estimate) - f64::from(actual_tokens);
        let credited = {
            let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            state.refill(Instant::now());
            match state.tokens.as_mut() {
                Some(bucket) => {
                    bucket.level = (bucket.level + credit).min(bucket.limit);
                    credit > 0.0
                }
                None => false,
            }
        };
        if credited {
            // Only the head waiter listens (everyone else waits on the gate), so wake it to use
            // the credit now rather than at its precomputed deadline.
            self.inner.credited.notify_waiters();
        }
    }
}

impl fmt::Debug for RateLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLease")
            .field("estimate", &self.estimate)
            .finish_non_exhaustive()
    }
}

/// What a response's `x-ratelimit-*` headers say, read once and shared by the in-process limiter
/// and the Redis-shared one (`core/coordination`), so both follow the same rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateHeaders {
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<f64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<f64>,
    /// `x-ratelimit-limit-requests`, when positive: adopted when no budget is configured.
    pub limit_requests: Option<f64>,
    /// `x-ratelimit-limit-tokens`, when positive.
    pub limit_tokens: Option<f64>,
    /// How long to pause new sends (capped at [`SERVER_WAIT_CAP`](super::time::SERVER_WAIT_CAP)):
    /// set when a remaining count is 0. A `retry-after` on the same response is the server's
    /// explicit answer to "when may I send again" and wins; else the time the bucket's first unit
    /// is back: its `x-ratelimit-reset-*` divided by its `x-ratelimit-limit-*` (the reset gives
    /// when the bucket is full again, OpenAI: "resets to its initial state", and it refills
    /// evenly), or the whole reset when no limit is sent (the later of the two buckets when both
    /// are 0); else 1 s.
    pub pause: Option<Duration>,
}

impl RateHeaders {
    /// `None` when the response has neither remaining count (nothing to learn). Unparsable
    /// values are ignored.
    pub fn read(headers: &http::HeaderMap) -> Option<Self> {
        let number = |name: &str| -> Option<f64> {
            let text = headers.get(name)?.to_str().ok()?.trim();
            text.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
        };
        let remaining_requests = number("x-ratelimit-remaining-requests");
        let remaining_tokens = number("x-ratelimit-remaining-tokens");
        if remaining_requests.is_none() && remaining_tokens.is_none() {
            return None;
        }
        let duration = |name: &str| headers.get(name)?.to_str().ok().and_then(parse_go_duration);
        let retry_after = parse_retry_after(headers);
        let mut pause: Option<Duration> = None;
        for (remaining, names) in [(remaining_requests, REQUEST_HEADERS), (remaining_tokens, TOKEN_HEADERS)] {
            if remaining.is_some_and(|r| r <= 0.0) {
                let limit = number(names.limit).filter(|l| *l >= 1.0);
                let wait = match (retry_after, duration(names.reset)) {
                    (Some(retry_after), _) => retry_after,
                    // The reset is when the whole bucket (`limit`) is back; it refills evenly, so
                    // the first unit is back after reset / limit. Pausing until the reset would
                    // leave the budget idle (all of it, a minute at a time, for a per-minute limit).
                    (None, Some(reset)) => match limit {
                        Some(limit) => duration_from_secs_f64(reset.as_secs_f64() / limit).unwrap_or(reset),
                        None => reset,
                    },
                    (None, None) => DEFAULT_PAUSE,
                };
                let wait = cap_server_wait(wait);
                pause = Some(pause.map_or(wait, |p| p.max(wait)));
            }
        }
        Some(RateHeaders {
            remaining_requests,
            remaining_tokens,
            limit_requests: number(REQUEST_HEADERS.limit).filter(|l| *l > 0.0),
            limit_tokens: number(TOKEN_HEADERS.limit).filter(|l| *l > 0.0),
            pause,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Go durations
// ---------------------------------------------------------------------------------------------

/// Parses a Go-style duration as sent in OpenAI's `x-ratelimit-reset-*` headers (`"1m30.5s"`,
/// `"6m0s"`, `"12ms"`, `"1s"`, `"0s"`, `"2h"`; units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`) or plain
/// non-negative seconds (`"20"`, `"1.5"`). Returns `None` for anything else, including negative
/// or non-finite values; absurdly long ones saturate (see [`duration_from_secs_f64`]).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (value, rest) = split_number(s)?;
    if rest.is_empty() {
        // Plain seconds, e.g. a `retry-after`-style "20" or "1.5".
        return duration_from_secs_f64(value);
    }
    let mut total_secs = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let (value, after_number) = split_number(rest)?;
        // Longest unit first: "ms" must not be read as "m" followed by garbage "s".
        let (scale, after_unit) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("μs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find_map(|(unit, scale)| after_number.strip_prefix(unit).map(|tail| (scale, tail)))?;
        // Float arithmetic: a huge value becomes infinity, which saturates below.
        total_secs += value * scale;
        rest = after_unit;
    }
    duration_from_secs_f64(total_secs)
}

/// Splits a leading unsigned decimal (`12`, `1.5`, `.5`, `3.`) off `s`. `None` if there is none.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    // `end` is a char boundary: it is where `find` stopped, or the end.
    let (number, rest) = s.split_at(end);
    if number.matches('.').count() > 1 || !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // A run of hundreds of digits parses as infinity: a very long time, saturated by the caller.
    let value = number.parse::<f64>().ok()?;
    Some((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::SERVER_WAIT_CAP;
    use tokio::time::{sleep, timeout};

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn limiters_and_permits_are_send_sync_and_static() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        fn assert_send<T: Send + 'static>() {}
        assert_send_sync::<ConcurrencyLimiter>();
        assert_send_sync::<RateLimiter>();
        assert_send::<ConcurrencyPermit>();
        assert_send::<RateLease>();
    }

    #[test]
    fn parse_go_duration_accepts_go_and_plain_seconds_and_rejects_garbage() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1m30.5s", Some(90.5)),
            ("6m0s", Some(360.0)),
            ("12ms", Some(0.012)),
            ("1s", Some(1.0)),
            ("1.5s", Some(1.5)),
            ("0s", Some(0.0)),
            ("20", Some(20.0)),
            ("1.5", Some(1.5)),
            ("2h", Some(7200.0)),
            ("1h2m3s", Some(3723.0)),
            ("250us", Some(0.00025)),
            ("250µs", Some(0.00025)),
            ("100ns", Some(0.0000001)),
            (" 7s ", Some(7.0)),
            ("bad", None),
            ("1x", None),
            ("", None),
            ("s", None),
            ("-1s", None),
            ("1..5s", None),
            ("1s2", None),
            ("inf", None),
            ("NaN", None),
            ("1e9s", None),
        ];
        for &(input, expected) in cases {
            let got = parse_go_duration(input).map(secs);
            match (got, expected) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{input:?}: got {g}, expected {e}"),
                (g, e) => assert_eq!(g, e, "{input:?}"),
            }
        }
        // Absurd values saturate instead of failing (or panicking).
        let nines = "9".repeat(400);
        for input in [nines.as_str(), "99999999999999999999h", "18446744073709551616s"] {
            assert!(
                parse_go_duration(input).unwrap() > Duration::from_secs(1 << 40),
                "{input}"
            );
        }
    }

    // --- concurrency ---

    #[tokio::test(start_paused = true)]
    async fn concurrency_never_exceeds_the_limit_with_20_tasks() {
        let limiter = Arc::new(ConcurrencyLimiter::new(Some(3), None));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let limiter = Arc::clone(&limiter);
            let peak = Arc::clone(&peak);
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire().await.unwrap();
                peak.fetch_max(limiter.in_flight(), Ordering::SeqCst);
                sleep(Duration::from_millis(5 + i % 4)).await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(limiter.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_concurrency_never_waits_but_counts_in_flight() {
        let limiter = ConcurrencyLimiter::new(None, Some(0));
        let permits: Vec<_> = acquire_n(&limiter, 100).await;
        assert_eq!(limiter.in_flight(), 100);
        drop(permits);
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(ConcurrencyLimiter::new(Some(0), None).max_concurrency(), None);
    }

    async fn acquire_n(limiter: &ConcurrencyLimiter, n: usize) -> Vec<ConcurrencyPermit> {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(timeout(Duration::ZERO, limiter.acquire()).await.unwrap().unwrap());
        }
        permits
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_rejects_at_once_and_a_dropped_waiter_leaves_the_queue() {
        let limiter = Arc::new(ConcurrencyLimiter::new(Some(1), Some(2)));
        let held = limiter.acquire().await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..2 {
            let limiter = Arc::clone(&limiter);
            waiters.push(tokio::spawn(async move { limiter.acquire().await.map(drop) }));
        }
        tokio::task::yield_now().await;
        assert_eq!(limiter.queued(), 2);
        assert_eq!(
            limiter.acquire().await.unwrap_err(),
            AcquireError::QueueFull { max_queue: 2 }
        );

        // Cancel one queued waiter: its place is given back immediately.
        waiters.pop().unwrap().abort();
        tokio::task::yield_now().await;
        assert_eq!(limiter.queued(), 1);
        // A timed-out (dropped) acquire leaves no trace either.
        assert!(timeout(Duration::from_millis(10), limiter.acquire()).await.is_err());
        assert_eq!(limiter.queued(), 1);

        drop(held);
        waiters.pop().unwrap().await.unwrap().unwrap();
        assert_eq!(limiter.queued(), 0);
        assert_eq!(limiter.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_queue_rejects_whenever_no_slot_is_free() {
        let limiter = ConcurrencyLimiter::new(Some(1), Some(0));
        let held = limiter.acquire().await.unwrap();
        assert_eq!(
            limiter.acquire().await.unwrap_err(),
            AcquireError::QueueFull { max_queue: 0 }
        );
        drop(held);
        assert!(limiter.acquire().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_granted_in_fifo_order() {
        let limiter = Arc::new(ConcurrencyLimiter::new(Some(1), None));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = limiter.acquire().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let limiter = Arc::clone(&limiter);
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                sleep(Duration::from_millis(1)).await;
            }));
            // Let task i enqueue before task i + 1 is spawned.
            tokio::task::yield_now().await;
        }
        assert_eq!(limiter.queued(), 6);
        // A fresh caller arriving now must not overtake the queue either.
        let late = {
            let limiter = Arc::clone(&limiter);
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                let _permit = limiter.acquire().await.unwrap();
                order.lock().unwrap().push(99);
            })
        };
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        late.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 99]);
    }

    // --- rate ---

    fn rate(rpm: Option<u32>, tpm: Option<u32>) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        })
    }

    /// A 60-requests-per-minute limiter whose 60 requests of the minute are all taken.
    async fn drained_rpm_60() -> Arc<RateLimiter> {
        let limiter = Arc::new(rate(Some(60), None));
        for _ in 0..60 {
            limiter.acquire(0).await.unwrap();
        }
        limiter
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_rate_limiter_returns_at_once() {
        let limiter = rate(None, None);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire(u32::MAX).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(limiter.available(), (f64::INFINITY, f64::INFINITY));
    }

    #[tokio::test(start_paused = true)]
    async fn rpm_60_allows_60_at_once_then_the_61st_waits_one_second() {
        let start = Instant::now();
        let limiter = drained_rpm_60().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(0).await.unwrap();
        let waited = secs(start.elapsed());
        assert!((waited - 1.0).abs() < 0.01, "waited {waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn tpm_pacing_gives_six_at_once_then_one_every_ten_seconds() {
        let limiter = rate(None, Some(6000));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..9 {
            limiter.acquire(1000).await.unwrap();
            times.push(secs(start.elapsed()));
        }
        let expected = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 20.0, 30.0];
        for (got, want) in times.iter().zip(expected) {
            assert!((got - want).abs() < 0.01, "times {times:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn estimate_above_tpm_fails_at_once_with_request_too_large() {
        let limiter = rate(Some(10), Some(5000));
        assert_eq!(
            limiter.acquire(5001).await.unwrap_err(),
            RateLimitError::RequestTooLarge {
                estimate: 5001,
                tokens_per_minute: 5000
            }
        );
        // Nothing was taken, and exactly the budget is fine.
        assert_eq!(limiter.available(), (10.0, 5000.0));
        assert!(limiter.acquire(5000).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn settle_credits_back_the_unused_estimate_but_never_above_capacity() {
        let limiter = rate(None, Some(6000));
        let lease = limiter.acquire(1000).await.unwrap();
        assert_eq!(limiter.available().1, 5000.0);
        lease.settle(100);
        assert_eq!(limiter.available().1, 5900.0);

        // Time refills the bucket to full; a later settle cannot push it beyond.
        let lease = limiter.acquire(1000).await.unwrap();
        sleep(Duration::from_secs(60)).await;
        lease.settle(0);
        assert_eq!(limiter.available().1, 6000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_with_more_than_the_estimate_takes_the_extra_and_makes_others_wait() {
        let limiter = rate(None, Some(6000));
        let lease = limiter.acquire(6000).await.unwrap();
        lease.settle(7200); // 1200 over: the bucket goes to -1200.
        assert_eq!(limiter.available().1, -1200.0);
        let start = Instant::now();
        limiter.acquire(600).await.unwrap();
        // 1800 tokens short at 100 tokens/s.
        let waited = secs(start.elapsed());
        assert!((waited - 18.0).abs() < 0.01, "waited {waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_lease_keeps_the_estimate_spent() {
        let limiter = rate(None, Some(6000));
        drop(limiter.acquire(1000).await.unwrap());
        assert_eq!(limiter.available().1, 5000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_wakes_the_head_waiter_early() {
        let limiter = Arc::new(rate(None, Some(6000)));
        let lease = limiter.acquire(6000).await.unwrap();
        let start = Instant::now();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.acquire(3000).await.unwrap();
                start.elapsed()
            })
        };
        sleep(Duration::from_secs(1)).await;
        lease.settle(2000); // 4000 back: enough for the waiter right now, not in 30 s.
        let waited = secs(waiter.await.unwrap());
        assert!((waited - 1.0).abs() < 0.01, "waited {waited}");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for &(name, value) in pairs {
            map.insert(name, http::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// How long `acquire(estimate)` waits once the limiter has seen `pairs` as a response's
    /// headers (measured from just before it sees them).
    async fn wait_after_headers(limiter: &RateLimiter, pairs: &[(&'static str, &str)], estimate: u32) -> Duration {
        let start = Instant::now();
        limiter.observe_headers(&headers(pairs));
        limiter.acquire(estimate).await.unwrap();
        start.elapsed()
    }

    /// [`wait_after_headers`] for a response saying no tokens remain until `reset`.
    async fn wait_after_token_reset(limiter: &RateLimiter, reset: &str, estimate: u32) -> Duration {
        let pairs = [
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", reset),
        ];
        wait_after_headers(limiter, &pairs, estimate).await
    }

    #[tokio::test(start_paused = true)]
    async fn observe_headers_lowers_the_bucket_but_never_raises_it() {
        let limiter = rate(Some(60), Some(6000));
        limiter.observe_headers(&headers(&[
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-remaining-tokens", "2500"),
        ]));
        assert_eq!(limiter.available(), (10.0, 2500.0));
        limiter.observe_headers(&headers(&[
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-remaining-tokens", "garbage"),
        ]));
        assert_eq!(limiter.available(), (10.0, 2500.0));
        assert_eq!(limiter.paused_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_zero_waits_for_the_servers_reset_even_when_the_configured_rate_is_higher() {
        // A configured 600/min would refill one request in 0.1 s; the server said it refuses
        // until its reset in 2.5 s, so the next request waits for that.
        let limiter = rate(Some(600), Some(100_000));
        let reset = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2.5s"),
            ("x-ratelimit-remaining-tokens", "5000"),
            ("x-ratelimit-reset-tokens", "1m30s"),
        ];
        let waited = secs(wait_after_headers(&limiter, &reset, 100).await);
        assert!((waited - 2.5).abs() < 0.01, "waited {waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_tokens_zero_waits_for_the_token_reset() {
        let limiter = rate(Some(6000), Some(1_000_000));
        assert_eq!(wait_after_token_reset(&limiter, "1s", 10).await, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_zero_with_a_stated_limit_waits_for_one_unit_not_the_full_reset() {
        // 600 a minute, none left, the bucket full again in a minute: the next request fits
        // after a tenth of a second (the bucket refills evenly), not after the whole minute.
        for configured in [None, Some(600)] {
            let limiter = rate(configured, None);
            let pairs = [
                ("x-ratelimit-limit-requests", "600"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1m0s"),
            ];
            let waited = secs(wait_after_headers(&limiter, &pairs, 10).await);
            assert!(
                (waited - 0.1).abs() < 0.01,
                "configured {configured:?}: waited {waited}"
            );
        }
        // Tokens too: 60,000 a minute, none left; one token is back after 1 ms, and the bucket
        // (learned from the limit) paces the 100 the request needs: 0.1 s.
        let limiter = rate(None, None);
        let pairs = [
            ("x-ratelimit-limit-tokens", "60000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1m0s"),
        ];
        let waited = secs(wait_after_headers(&limiter, &pairs, 100).await);
        assert!((waited - 0.1).abs() < 0.01, "waited {waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_on_the_same_response_wins_over_a_later_reset() {
        // A 429 whose reset headers say the bucket is full again in 6 minutes but whose
        // `retry-after` says 1 s: the server's retry instruction is what the pause follows.
        let limiter = rate(Some(6000), Some(1_000_000));
        let pairs = [
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("retry-after", "1"),
        ];
        assert_eq!(wait_after_headers(&limiter, &pairs, 10).await, Duration::from_secs(1));
        let ms = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "30s"),
            ("retry-after-ms", "250"),
        ];
        assert_eq!(wait_after_headers(&limiter, &ms, 10).await, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn server_pauses_are_capped_at_a_minute() {
        let limiter = rate(None, None);
        let start = Instant::now();
        limiter.pause_for(Some(Duration::from_secs(3600)));
        assert_eq!(limiter.paused_until(), Some(start + SERVER_WAIT_CAP));
        limiter.pause_for(Some(Duration::MAX));
        assert_eq!(limiter.paused_until(), Some(start + SERVER_WAIT_CAP));
        let nines = "9".repeat(400);
        for reset in ["3600s", "1e400", nines.as_str(), "99999999999999999999h"] {
            let limiter = rate(Some(60), None);
            limiter.observe_headers(&headers(&[
                ("x-ratelimit-limit-requests", "0"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", reset),
            ]));
            let until = limiter.paused_until();
            assert!(
                until.is_some_and(|u| u <= start + SERVER_WAIT_CAP),
                "{reset}: {until:?}"
            );
        }
        limiter.acquire(0).await.unwrap();
        assert_eq!(start.elapsed(), SERVER_WAIT_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_deadline_fails_at_once_with_the_time_left() {
        let limiter = rate(None, None);
        let start = Instant::now();
        limiter.pause_for(Some(Duration::from_secs(3600)));
        let err = limiter
            .acquire_before(1, Some(start + Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            RateLimitError::Paused {
                retry_after: SERVER_WAIT_CAP
            }
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A caller whose deadline the pause fits in waits it out.
        limiter
            .acquire_before(1, Some(start + Duration::from_secs(61)))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), SERVER_WAIT_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_arriving_while_waiting_fails_a_waiter_whose_deadline_is_earlier() {
        let limiter = drained_rpm_60().await;
        let start = Instant::now();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let r = limiter.acquire_before(0, Some(start + Duration::from_secs(5))).await;
                (r.map(drop), start.elapsed())
            })
        };
        sleep(Duration::from_millis(500)).await;
        limiter.observe_headers(&headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "30s"),
        ]));
        let (result, elapsed) = waiter.await.unwrap();
        assert!(matches!(result, Err(RateLimitError::Paused { .. })), "{result:?}");
        assert_eq!(elapsed, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_stated_limit_is_adopted_when_none_is_configured() {
        let limiter = rate(None, None);
        let stated = [
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "1"),
            ("x-ratelimit-reset-requests", "59s"),
        ];
        assert_eq!(wait_after_headers(&limiter, &stated, 1).await, Duration::ZERO);
        let start = Instant::now();
        limiter.acquire(1).await.unwrap();
        let waited = secs(start.elapsed());
        assert!(
            (waited - 1.0).abs() < 0.01,
            "one request per second at 60/min, waited {waited}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_zero_pauses_an_unlimited_limiter_too() {
        let limiter = rate(None, None);
        assert_eq!(
            wait_after_token_reset(&limiter, "12ms", 1).await,
            Duration::from_millis(12)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pause_for_blocks_acquisitions_and_keeps_the_later_pause() {
        let limiter = rate(None, None);
        let start = Instant::now();
        limiter.pause_for(Some(Duration::from_secs(5)));
        limiter.pause_for(Some(Duration::from_secs(2))); // shorter: ignored
        assert_eq!(limiter.paused_until(), Some(start + Duration::from_secs(5)));
        limiter.acquire(0).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        limiter.pause_for(None); // unknown retry-after: 1 s
        limiter.acquire(0).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_arriving_while_waiting_extends_the_wait() {
        let limiter = drained_rpm_60().await;
        let start = Instant::now();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.acquire(0).await.unwrap();
                start.elapsed()
            })
        };
        sleep(Duration::from_millis(500)).await;
        limiter.pause_for(Some(Duration::from_secs(3)));
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_big_request_is_not_starved_by_a_stream_of_small_ones() {
        let limiter = Arc::new(rate(None, Some(6000)));
        let order = Arc::new(Mutex::new(Vec::new()));
        drop(limiter.acquire(6000).await.unwrap()); // empty bucket
        let mut tasks = Vec::new();
        let spawn = |name: &'static str, tokens: u32| {
            let limiter = Arc::clone(&limiter);
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                limiter.acquire(tokens).await.unwrap();
                order.lock().unwrap().push(name);
            })
        };
        tasks.push(spawn("big", 6000));
        tokio::task::yield_now().await;
        // Small requests keep arriving; any one of them could be served from the trickle long
        // before 6000 tokens accumulate, but they must all wait behind the big one.
        for _ in 0..10 {
            sleep(Duration::from_secs(1)).await;
            tasks.push(spawn("small", 100));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.first(), Some(&"big"), "{order:?}");
        assert_eq!(order.len(), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_waiting_acquire_takes_no_capacity() {
        let limiter = rate(Some(60), Some(6000));
        drop(limiter.acquire(6000).await.unwrap());
        let start = Instant::now();
        // Needs 30 s of refill; give up after 5 s.
        assert!(timeout(Duration::from_secs(5), limiter.acquire(3000)).await.is_err());
        let (requests, tokens) = limiter.available();
        assert!(requests == 60.0 && (tokens - 500.0).abs() < 0.01, "{requests} {tokens}");
        // The next caller is not charged for the abandoned one (and is not blocked by its turn).
        limiter.acquire(1000).await.unwrap();
        let waited = secs(start.elapsed());
        assert!((waited - 10.0).abs() < 0.01, "waited {waited}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn rate_limiter_is_usable_from_many_threads() {
        let limiter = Arc::new(rate(Some(1_000), Some(1_000_000)));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    limiter.acquire(100).await.unwrap().settle(50);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // 640 requests taken from 1000; refill is ~17/s, so even a very slow machine stays far below.
        let (requests, _) = limiter.available();
        assert!(requests < 600.0, "{requests}");
    }
}
