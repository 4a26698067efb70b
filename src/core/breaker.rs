//! Circuit breaker for one upstream, following the semantics of Node's `opossum`.
//!
//! When an upstream starts failing, hammering it with more requests only makes things worse for it
//! and makes every caller wait for a timeout. The breaker watches call outcomes and, once the upstream
//! looks unhealthy, fails calls fast for a while before letting a single trial call through.
//!
//! # State machine
//!
//! ```text
//! Closed   ── failure share > threshold with >= volume_threshold calls ──► Open
//! Open     ── reset_timeout passed; the first caller becomes the probe ──► HalfOpen
//! HalfOpen ── probe Success ─────────────────────────────────────────────► Closed (empty window)
//! HalfOpen ── probe Failure ─────────────────────────────────────────────► Open (fresh reset_timeout)
//! HalfOpen ── probe Ignored or dropped ──────────────────────────────────► HalfOpen (next caller probes)
//! ```
//!
//! * **Closed** — every call is admitted. Outcomes land in a rolling window of `buckets` time slots
//!   spanning `window`; a slot older than the window is forgotten. After each failure the window is
//!   checked: with at least `volume_threshold` calls and `failures * 100 > max(calls, started) *
//!   threshold` the breaker opens. Only failures trigger the check, so a success can never open the
//!   circuit.
//! * **Open** — every call is rejected with [`BreakerOpen`] carrying the time left until a probe may
//!   go. Nothing is recorded.
//! * **HalfOpen** — exactly one call (the probe) is out. Its outcome alone decides: `Success` closes
//!   the circuit with an empty window, `Failure` reopens it for a fresh `reset_timeout`. Everyone
//!   else is rejected meanwhile.
//!
//! `Outcome::Ignored` (client errors, aborts) says nothing about the upstream's health, so it is not
//! counted as a call at all.
//!
//! # Fast failures, slow successes
//!
//! A failing attempt usually ends sooner than a successful one: a 5xx or a refused connection comes
//! back at once, a completion after its first token and the whole reply. Counted over finished
//! calls alone, the first outcomes of a burst are therefore mostly failures: 600 calls sent
//! together to an upstream failing 5% of them, with replies taking 800 ms, would show 30 failures
//! and no success after 100 ms, and open the circuit on a healthy upstream. So the failure share is
//! taken over the larger of the calls finished and the calls *started* (permits issued) in the
//! window: 30 failures out of 600 started is 5%. When every call fails, starts and failures move
//! together and the share reaches 100% as before; a permit that ends `Ignored` is taken back out of
//! the starts.
//!
//! # Stale outcomes
//!
//! Calls are long (streams can last minutes), so permits taken in one state are often resolved in
//! another. Every state change bumps a generation number that each permit remembers; an outcome from
//! an older generation is discarded. This way a slow success admitted before the circuit opened cannot
//! close it, and failures from a previous closed period cannot count against a freshly closed one.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Tuning knobs; defaults match opossum's.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Length of the rolling window that failure statistics are computed over.
    pub window: Duration,
    /// Number of slots the window is split into; statistics expire one slot at a time.
    pub buckets: u32,
    /// Minimum number of counted calls in the window before the breaker may open.
    pub volume_threshold: u32,
    /// The breaker opens when `failures / calls * 100` is strictly greater than this.
    pub error_threshold_percentage: u8,
    /// How long the breaker stays open before it admits a half-open probe.
    pub reset_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            buckets: 10,
            volume_threshold: 20,
            error_threshold_percentage: 50,
            reset_timeout: Duration::from_secs(30),
        }
    }
}

/// Externally visible breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow normally and outcomes are tracked.
    Closed,
    /// Calls are rejected until `reset_timeout` has passed.
    Open,
    /// A single probe call is out, or may be sent by the next caller.
    HalfOpen,
}

impl BreakerState {
    /// Stable lowercase name, suitable for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finished call says about the upstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered properly.
    Success,
    /// The upstream misbehaved (5xx, timeout, connection error, ...).
    Failure,
    /// Says nothing about health (4xx, caller aborts); not counted as a call.
    Ignored,
}

/// Rejection returned by [`CircuitBreaker::try_acquire`] while the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    /// Time until a probe may go. Zero while a half-open probe is in flight: the circuit may close
    /// at any moment then, so there is no meaningful wait to report.
    pub retry_in: Duration,
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is open; retry in {} ms", self.retry_in.as_millis())
    }
}

impl std::error::Error for BreakerOpen {}

/// Counters of state transitions and rejections since the breaker was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Transitions into Open (from Closed or from a failed probe).
    pub opened: u64,
    /// Transitions from Open into HalfOpen, counted when the first probe is admitted.
    pub half_opened: u64,
    /// Transitions from HalfOpen into Closed.
    pub closed: u64,
    /// Calls rejected by `try_acquire`.
    pub rejected: u64,
}

/// One slot of the rolling window. `index` is the absolute slot number (time since creation divided
/// by slot width), so a slot whose index lags the current one by a full window is stale.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    /// Permits issued while closed (taken back out when one ends `Ignored`).
    started: u64,
    calls: u64,
    failures: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open {
        opened_at: Instant,
    },
    /// `probe_out` is false after a probe was dropped or ignored: the next caller becomes the probe.
    HalfOpen {
        probe_out: bool,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every phase change and every probe admission; permits carry the value they saw.
    generation: u64,
    buckets: Vec<Bucket>,
    stats: BreakerStats,
}

impl Inner {
    fn clear_buckets(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = Bucket::default());
    }

    fn bump_generation(&mut self) -> u64 {
        // Wrapping is fine: a permit would have to live through 2^64 transitions to be confused.
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open { opened_at: now };
        self.bump_generation();
        self.clear_buckets();
        self.stats.opened = self.stats.opened.saturating_add(1);
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.bump_generation();
        // The old failures led to opening; the successful probe says they no longer apply.
        self.clear_buckets();
        self.stats.closed = self.stats.closed.saturating_add(1);
    }
}

/// Thread-safe circuit breaker; share it by reference or `Arc`.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    bucket_width: Duration,
    created: Instant,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// Creates a closed breaker. `buckets == 0` is treated as 1, and a zero-width bucket as 1 ns, so
    /// odd configs degrade gracefully instead of dividing by zero.
    pub fn new(config: BreakerConfig) -> Self {
        let buckets = config.buckets.max(1);
        let bucket_width = config
            .window
            .checked_div(buckets)
            .unwrap_or(config.window)
            .max(Duration::from_nanos(1));
        Self {
            bucket_width,
            created: Instant::now(),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                buckets: vec![Bucket::default(); buckets as usize],
                stats: BreakerStats::default(),
            }),
            config,
        }
    }

    /// The configuration this breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks permission for one call.
    ///
    /// * Closed: always `Ok`.
    /// * Open: `Err` with the time left until `reset_timeout` has passed since opening. Once it has,
    ///   the first caller gets `Ok` — it becomes the single half-open probe — and the state is
    ///   HalfOpen.
    /// * HalfOpen with the probe in flight: `Err` with `retry_in == 0` (the outcome is imminent and
    ///   unknowable). HalfOpen after the probe was dropped/ignored: the caller becomes the new probe.
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, BreakerOpen> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => {
                let current = self.bucket_index(now);
                Self::update_bucket(&mut inner, current, |b| b.started = b.started.saturating_add(1));
                Ok(self.permit(inner.generation, Some(current)))
            }
            Phase::Open { opened_at } => {
                let elapsed = now.saturating_duration_since(opened_at);
                if elapsed >= self.config.reset_timeout {
                    inner.phase = Phase::HalfOpen { probe_out: true };
                    inner.stats.half_opened = inner.stats.half_opened.saturating_add(1);
                    let generation = inner.bump_generation();
                    Ok(self.permit(generation, None))
                } else {
                    inner.stats.rejected = inner.stats.rejected.saturating_add(1);
                    Err(BreakerOpen {
                        retry_in: self.config.reset_timeout.saturating_sub(elapsed),
                    })
                }
            }
            Phase::HalfOpen { probe_out: true } => {
                inner.stats.rejected = inner.stats.rejected.saturating_add(1);
                Err(BreakerOpen {
                    retry_in: Duration::ZERO,
                })
            }
            Phase::HalfOpen { probe_out: false } => {
                inner.phase = Phase::HalfOpen { probe_out: true };
                // A fresh generation per probe keeps "only the current probe decides" airtight.
                let generation = inner.bump_generation();
                Ok(self.permit(generation, None))
            }
        }
    }

    /// Current state. Reports HalfOpen only while a probe is out or would be admitted by the next
    /// `try_acquire` (Open whose `reset_timeout` has passed). Does not change state or stats.
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { opened_at } if now.saturating_duration_since(opened_at) >= self.config.reset_timeout => {
                BreakerState::HalfOpen
            }
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Snapshot of the transition and rejection counters.
    pub fn stats(&self) -> BreakerStats {
        self.lock().stats
    }

    /// The lock only guards plain counters that are never left half-updated in a way that matters,
    /// so a panic elsewhere while holding it must not take the breaker down with it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit of `generation`: a closed-state call started in bucket `started_in`, or (`None`)
    /// the half-open probe.
    fn permit(&self, generation: u64, started_in: Option<u64>) -> BreakerPermit<'_> {
        BreakerPermit {
            breaker: self,
            generation,
            started_in,
            resolved: false,
        }
    }

    /// Updates the bucket of absolute index `index` (the current one) with `update`, recycling it
    /// first if its slot still holds data from a full window ago or earlier.
    fn update_bucket(inner: &mut Inner, index: u64, update: impl FnOnce(&mut Bucket)) {
        let len = inner.buckets.len() as u64;
        let slot = usize::try_from(index.checked_rem(len).unwrap_or(0)).unwrap_or(0);
        // `new` makes at least one bucket, so the slot always exists.
        if let Some(bucket) = inner.buckets.get_mut(slot) {
            if bucket.index != index {
                *bucket = Bucket {
                    index,
                    ..Bucket::default()
                };
            }
            update(bucket);
        }
    }

    fn bucket_index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.created).as_nanos();
        let index = elapsed.checked_div(self.bucket_width.as_nanos()).unwrap_or(0);
        u64::try_from(index).unwrap_or(u64::MAX)
    }

    fn resolve(&self, generation: u64, started_in: Option<u64>, outcome: Outcome) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.generation != generation {
            // The breaker changed state since this permit was issued; its outcome is stale.
            return;
        }
        match (inner.phase, started_in) {
            (Phase::Closed, Some(started)) => self.record_closed(&mut inner, now, started, outcome),
            (Phase::HalfOpen { .. }, None) => match outcome {
                Outcome::Success => inner.close(),
                Outcome::Failure => inner.open(now),
                // The probe learned nothing (e.g. the caller aborted). Re-opening would punish the
                // upstream for the caller's behaviour, so stay HalfOpen and let the next caller probe.
                Outcome::Ignored => inner.phase = Phase::HalfOpen { probe_out: false },
            },
            // Unreachable while generations match: every phase change bumps the generation, and
            // probe/non-probe permits are only issued in HalfOpen/Closed respectively.
            _ => {}
        }
    }

    /// Books the outcome of a closed-state call that started in bucket `started`.
    fn record_closed(&self, inner: &mut Inner, now: Instant, started: u64, outcome: Outcome) {
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => {
                // Not a call after all: take it back out of the starts if its bucket is still live.
                let len = inner.buckets.len() as u64;
                let slot = usize::try_from(started.checked_rem(len).unwrap_or(0)).unwrap_or(0);
                if let Some(bucket) = inner.buckets.get_mut(slot).filter(|b| b.index == started) {
                    bucket.started = bucket.started.saturating_sub(1);
                }
                return;
            }
        };
        let current = self.bucket_index(now);
        Self::update_bucket(inner, current, |b| {
            b.calls = b.calls.saturating_add(1);
            b.failures = b.failures.saturating_add(u64::from(failed));
        });
        if !failed {
            return;
        }
        let len = inner.buckets.len() as u64;
        let totals = inner
            .buckets
            .iter()
            .filter(|b| current.saturating_sub(b.index) < len)
            .fold(Bucket::default(), |t, b| Bucket {
                index: 0,
                started: t.started.saturating_add(b.started),
                calls: t.calls.saturating_add(b.calls),
                failures: t.failures.saturating_add(b.failures),
            });
        let threshold = u64::from(self.config.error_threshold_percentage);
        let volume = totals.calls.max(totals.started);
        if totals.calls >= u64::from(self.config.volume_threshold)
            && totals.failures.saturating_mul(100) > volume.saturating_mul(threshold)
        {
            inner.open(now);
        }
    }
}

/// Permission for one call, obtained from [`CircuitBreaker::try_acquire`]; resolve it with
/// [`record`](Self::record).
///
/// Dropping it unrecorded counts as [`Outcome::Ignored`] (e.g. the caller aborted). For a half-open
/// probe that means the breaker stays HalfOpen and the *next* caller immediately becomes the probe:
/// an abort tells nothing about the upstream, so it neither closes the circuit nor re-opens it for
/// another `reset_timeout`.
#[must_use = "an unrecorded permit counts as Ignored; call `record` with the call's outcome"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    /// The bucket a closed-state call started in; `None` for the half-open probe.
    started_in: Option<u64>,
    resolved: bool,
}

impl BreakerPermit<'_> {
    /// Reports the call's outcome. Outcomes of permits issued before the breaker last changed state
    /// are discarded.
    pub fn record(mut self, outcome: Outcome) {
        self.resolved = true;
        self.breaker.resolve(self.generation, self.started_in, outcome);
    }

    /// Whether this permit is the half-open probe whose outcome decides the breaker's next state.
    pub fn is_probe(&self) -> bool {
        self.started_in.is_none()
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.breaker.resolve(self.generation, self.started_in, Outcome::Ignored);
        }
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("generation", &self.generation)
            .field("probe", &self.is_probe())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    const RESET: Duration = Duration::from_secs(30);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::default())
    }

    fn record_n(b: &CircuitBreaker, n: usize, outcome: Outcome) {
        for _ in 0..n {
            b.try_acquire().expect("closed breaker admits").record(outcome);
        }
    }

    /// Opens a default breaker with exactly the volume threshold of failures.
    fn open_breaker(b: &CircuitBreaker) {
        record_n(b, 20, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn defaults_and_names_match_opossum() {
        let c = BreakerConfig::default();
        assert_eq!(c.window, Duration::from_secs(10));
        assert_eq!(c.buckets, 10);
        assert_eq!(c.volume_threshold, 20);
        assert_eq!(c.error_threshold_percentage, 50);
        assert_eq!(c.reset_timeout, RESET);
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half-open");
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CircuitBreaker>();
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_below_volume_threshold_even_at_full_failure() {
        let b = breaker();
        record_n(&b, 19, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_ok());
        assert_eq!(b.stats(), BreakerStats::default());
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_volume_threshold_when_failure_share_exceeds_threshold() {
        let b = breaker();
        record_n(&b, 9, Outcome::Success);
        record_n(&b, 10, Outcome::Failure);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "19 calls is below the volume threshold"
        );
        record_n(&b, 1, Outcome::Failure); // 11 / 20 = 55 %
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_open_at_exactly_threshold_percentage() {
        let b = breaker();
        record_n(&b, 10, Outcome::Success);
        record_n(&b, 10, Outcome::Failure); // 10 / 20 = 50 %, not > 50 %
        assert_eq!(b.state(), BreakerState::Closed);
        record_n(&b, 1, Outcome::Failure); // 11 / 21 > 50 %
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_never_trigger_opening() {
        let b = breaker();
        record_n(&b, 19, Outcome::Failure);
        record_n(&b, 1, Outcome::Success); // 19 / 20 failed, but only failures run the check
        assert_eq!(b.state(), BreakerState::Closed);
        record_n(&b, 1, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_within_window_accumulate_across_buckets() {
        let b = breaker();
        record_n(&b, 10, Outcome::Failure);
        advance(Duration::from_secs(5)).await;
        record_n(&b, 9, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
        record_n(&b, 1, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_slide_out_of_window() {
        let b = breaker();
        record_n(&b, 19, Outcome::Failure);
        advance(Duration::from_secs(11)).await;
        record_n(&b, 19, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed, "the first 19 failures expired");
        record_n(&b, 1, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_outcomes_do_not_count_as_calls() {
        let b = breaker();
        record_n(&b, 5, Outcome::Ignored);
        for _ in 0..5 {
            drop(b.try_acquire().expect("closed"));
        }
        record_n(&b, 19, Outcome::Failure);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "ignored calls must not fill the volume"
        );
        // Nor do they dilute the failure share: 10 successes + 10 failures + ignored stays at 50 %.
        let b = breaker();
        record_n(&b, 10, Outcome::Success);
        record_n(&b, 50, Outcome::Ignored);
        record_n(&b, 10, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn fast_failures_of_a_burst_are_weighed_against_every_call_started() {
        // 600 calls go out together; 5% fail at once while the others are still being answered.
        let b = breaker();
        let in_flight: Vec<_> = (0..570).map(|_| b.try_acquire().expect("closed")).collect();
        advance(Duration::from_millis(100)).await;
        record_n(&b, 30, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed, "30 failures of 600 started is 5%");
        advance(Duration::from_millis(700)).await;
        in_flight.into_iter().for_each(|p| p.record(Outcome::Success));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.stats().opened, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_that_mostly_fails_still_opens_before_the_rest_finish() {
        let b = breaker();
        let _in_flight: Vec<_> = (0..40).map(|_| b.try_acquire().expect("closed")).collect();
        record_n(&b, 40, Outcome::Failure); // 40 failed of 80 started: 50%, not more
        assert_eq!(b.state(), BreakerState::Closed);
        record_n(&b, 1, Outcome::Failure); // 41 of 81
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_hanging_until_their_timeout_open_it_as_they_fail() {
        let b = breaker();
        let hanging: Vec<_> = (0..100).map(|_| b.try_acquire().expect("closed")).collect();
        advance(Duration::from_secs(5)).await;
        let mut hanging = hanging.into_iter();
        hanging.by_ref().take(50).for_each(|p| p.record(Outcome::Failure));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "50 of 100 started is not more than 50%"
        );
        hanging.next().expect("left").record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_calls_are_taken_back_out_of_the_starts() {
        let b = breaker();
        let aborted: Vec<_> = (0..100).map(|_| b.try_acquire().expect("closed")).collect();
        drop(aborted);
        record_n(&b, 20, Outcome::Failure);
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "aborted calls must not dilute the failure share"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn starts_slide_out_of_the_window_with_their_bucket() {
        let b = breaker();
        record_n(&b, 200, Outcome::Success);
        advance(Duration::from_secs(11)).await;
        record_n(&b, 20, Outcome::Failure);
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "the 200 earlier calls have left the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_with_time_left_until_probe() {
        let b = breaker();
        open_breaker(&b);
        assert_eq!(b.try_acquire().unwrap_err(), BreakerOpen { retry_in: RESET });
        advance(Duration::from_secs(12)).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_in, Duration::from_secs(18));
        advance(Duration::from_millis(17_999)).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_in, Duration::from_millis(1));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().rejected, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn after_reset_timeout_exactly_one_probe_is_admitted() {
        let b = breaker();
        open_breaker(&b);
        advance(RESET).await;
        assert_eq!(b.state(), BreakerState::HalfOpen, "a probe is allowed");
        assert_eq!(b.stats().half_opened, 0, "state() does not transition");
        let probe = b.try_acquire().expect("first caller probes");
        assert!(probe.is_probe());
        for _ in 0..3 {
            assert_eq!(
                b.try_acquire().unwrap_err(),
                BreakerOpen {
                    retry_in: Duration::ZERO
                }
            );
        }
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let s = b.stats();
        assert_eq!((s.half_opened, s.rejected), (1, 3));
        drop(probe);
    }

    #[tokio::test(start_paused = true)]
    async fn probe_success_closes_with_fresh_window() {
        let b = breaker();
        open_breaker(&b);
        advance(RESET).await;
        b.try_acquire().expect("probe").record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.stats().closed, 1);
        let permit = b.try_acquire().expect("closed admits");
        assert!(!permit.is_probe());
        permit.record(Outcome::Success);
        record_n(&b, 18, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed, "pre-open failures were cleared");
    }

    #[tokio::test(start_paused = true)]
    async fn probe_failure_reopens_for_fresh_reset_timeout() {
        let b = breaker();
        open_breaker(&b);
        advance(RESET).await;
        let probe = b.try_acquire().expect("probe");
        advance(Duration::from_secs(5)).await;
        probe.record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.try_acquire().unwrap_err().retry_in,
            RESET,
            "timer restarts at the failure"
        );
        advance(RESET - Duration::from_secs(1)).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_in, Duration::from_secs(1));
        advance(Duration::from_secs(1)).await;
        assert!(b.try_acquire().expect("second probe").is_probe());
        let s = b.stats();
        assert_eq!((s.opened, s.half_opened, s.closed), (2, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_or_ignored_probe_lets_next_caller_probe_immediately() {
        let b = breaker();
        open_breaker(&b);
        advance(RESET).await;
        drop(b.try_acquire().expect("probe"));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.try_acquire()
            .expect("next caller probes at once")
            .record(Outcome::Ignored);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("and again");
        assert!(b.try_acquire().is_err(), "still only one probe at a time");
        probe.record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.stats();
        assert_eq!((s.opened, s.half_opened, s.closed, s.rejected), (1, 1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_from_earlier_generation_are_ignored() {
        let b = breaker();
        let late: Vec<_> = (0..4).map(|_| b.try_acquire().expect("closed")).collect();
        open_breaker(&b);
        let mut late = late.into_iter();
        late.next().expect("permit").record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Open, "a pre-open success must not close");

        advance(RESET).await;
        let probe = b.try_acquire().expect("probe");
        late.next().expect("permit").record(Outcome::Success);
        late.next().expect("permit").record(Outcome::Failure);
        assert!(b.try_acquire().is_err(), "stale outcomes must not resolve the probe");
        probe.record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);

        // A failure from the previous closed period must not count against the new one.
        late.next().expect("permit").record(Outcome::Failure);
        record_n(&b, 19, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.stats();
        assert_eq!((s.opened, s.half_opened, s.closed), (1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn stats_count_every_transition() {
        let b = breaker();
        open_breaker(&b); // opened 1
        assert!(b.try_acquire().is_err()); // rejected 1
        advance(RESET).await;
        b.try_acquire().expect("probe").record(Outcome::Failure); // half 1, opened 2
        assert!(b.try_acquire().is_err()); // rejected 2
        advance(RESET).await;
        let probe = b.try_acquire().expect("probe"); // half 2
        assert!(b.try_acquire().is_err()); // rejected 3
        probe.record(Outcome::Success); // closed 1
        open_breaker(&b); // opened 3
        assert_eq!(
            b.stats(),
            BreakerStats {
                opened: 3,
                half_opened: 2,
                closed: 1,
                rejected: 3
            }
        );
    }

    #[test]
    fn concurrent_use_from_threads_does_not_panic() {
        let b = Arc::new(CircuitBreaker::new(BreakerConfig {
            window: Duration::from_millis(50),
            buckets: 5,
            volume_threshold: 5,
            error_threshold_percentage: 50,
            reset_timeout: Duration::from_millis(1),
        }));
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        // Brief pauses let real time pass so reset timeouts and window slots roll over.
                        if i % 64 == 0 {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                        let _ = b.state();
                        if let Ok(permit) = b.try_acquire() {
                            match (i * 7 + t) % 4 {
                                0 => drop(permit),
                                1 => permit.record(Outcome::Success),
                                2 => permit.record(Outcome::Ignored),
                                _ => permit.record(Outcome::Failure),
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread panicked");
        }
        let s = b.stats();
        assert!(s.closed <= s.half_opened && s.half_opened <= s.opened, "{s:?}");
    }
}
