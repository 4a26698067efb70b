//! Admission of one HTTP attempt: the four gates an attempt passes before it is sent, in order,
//! and what a failed attempt teaches them.
//!
//! 1. a concurrency slot (FIFO, the queue bounded by `maxQueue`), held for the attempt only, so a
//!    call waiting out a backoff does not occupy one;
//! 2. a circuit-breaker permit, refused at once while the circuit is open (with `coordination`,
//!    the breaker kept in Redis, shared by the processes; the in-process one while Redis is
//!    unavailable);
//! 3. a key from the pool, waiting for a cooling key when it is free before the call's deadline;
//! 4. the key's rate lease (its requests and tokens per minute), refused at once when a
//!    server-imposed pause outlasts the call's deadline. With `coordination`, the reservation
//!    also says when another process cooled the key down or disabled it: the pool learns it and
//!    the attempt goes back to step 3 for another key.
//!
//! Every wait runs under the call's [`CallBounds`], so admission is cut short by abort and
//! deadline like any other await point.

use std::sync::Arc;

use tokio::time::Instant;

use super::bounds::CallBounds;
use super::breaker::{BreakerOpen, BreakerPermit, BreakerState, BreakerStats, CircuitBreaker, Outcome};
use super::config::{ApiKey, ClientConfig};
use super::coordination::{
    CoordinationMode, Coordinator, HealthMark, KeyHealth, SharedAdmit, SharedBreaker, SharedBucket, SharedGrant,
    SharedLease, SharedLimiter, SharedPermit, SHARED_DISABLE,
};
use super::error::{ChatError, ErrorCode};
use super::keys::{cool_down_wait, KeyLease, KeyPool, NoKey};
use super::limits::{
    AcquireError, ConcurrencyLimiter, ConcurrencyPermit, RateHeaders, RateLease, RateLimitConfig, RateLimitError,
    RateLimiter,
};
use super::metrics::Metrics;

/// The gates of one server a client sends to (one per upstream), shared by all its calls.
pub struct Admission {
    /// Shared by every upstream of a client (see `upstreams`): `maxConcurrency` bounds the
    /// instance, whichever server an attempt goes to.
    concurrency: Arc<ConcurrencyLimiter>,
    /// The in-process breaker; with `coordination`, the fallback while Redis is unavailable.
    breaker: Option<CircuitBreaker>,
    /// With `coordination` and a breaker: the breaker every process shares.
    shared_breaker: Option<SharedBreaker>,
    keys: Arc<KeyPool>,
    /// One per key: providers limit each key (organisation) separately. With `coordination`,
    /// the fallback used while Redis is unavailable (`localShare` of the budgets); it also
    /// learns this process's own 429s and headers at once.
    limiters: Vec<RateLimiter>,
    /// One per key with `coordination` (empty without): the budgets shared through Redis.
    shared: Vec<SharedLimiter>,
    /// The client's Redis link, shared by every upstream (see [`ClientGates`]).
    coordinator: Option<Arc<Coordinator>>,
}

/// What every upstream of one client shares: `maxConcurrency` bounds the instance whichever
/// server an attempt goes to, and with `coordination` the instance has one Redis link (one
/// connection, one set of `metrics().coordination` counters) however many upstreams it has.
#[derive(Clone)]
pub struct ClientGates {
    pub concurrency: Arc<ConcurrencyLimiter>,
    pub coordinator: Option<Arc<Coordinator>>,
}

impl ClientGates {
    /// The shared gates of a client configured by `cfg`.
    pub fn for_client(cfg: &ClientConfig) -> Self {
        ClientGates {
            concurrency: Arc::new(ConcurrencyLimiter::new(cfg.max_concurrency, cfg.max_queue)),
            coordinator: cfg.coordination.clone().map(|c| Arc::new(Coordinator::new(c))),
        }
    }
}

/// A circuit-breaker permit for one attempt.
enum Permit<'a> {
    Local(BreakerPermit<'a>),
    Shared(SharedPermit),
}

impl Permit<'_> {
    fn record(self, outcome: Outcome) {
        match self {
            Permit::Local(p) => p.record(outcome),
            Permit::Shared(p) => p.record(outcome),
        }
    }
}

/// Capacity taken from a rate limiter for one attempt.
enum Lease {
    Local(RateLease),
    Shared(SharedLease),
}

/// An attempt let through every gate. Dropping it releases what is still held; the key lease
/// and an unsettled rate lease are kept until then (over a retry's backoff too), so the key
/// counts as busy and the estimate as spent.
pub struct Admitted<'a> {
    /// `None` once the attempt has ended ([`Admitted::end_attempt`]).
    slot: Option<ConcurrencyPermit>,
    permit: Option<Permit<'a>>,
    lease: KeyLease,
    /// The key's rate limiter and the capacity taken from it.
    limiter: Option<&'a RateLimiter>,
    /// The shared bucket of the key and model (with `coordination`), which learns too.
    bucket: Option<SharedBucket>,
    rate: Option<Lease>,
}

impl Admission {
    /// The gates for `cfg`, with `breaker` (when the client has one), for a client of one server.
    pub fn new(cfg: &ClientConfig, breaker: Option<CircuitBreaker>) -> Self {
        Self::sharing(cfg, breaker, &ClientGates::for_client(cfg), None)
    }

    /// The gates for `cfg` whose concurrency slots and Redis link are `gates`' (shared with the
    /// other upstreams of the same client); breaker, keys and rate limiters are its own.
    /// `upstream` names the upstream in the shared buckets' keys (see
    /// [`SharedLimiter::new`]), so two upstreams never share one; `None` for a client of one
    /// server.
    pub fn sharing(
        cfg: &ClientConfig,
        breaker: Option<CircuitBreaker>,
        gates: &ClientGates,
        upstream: Option<&str>,
    ) -> Self {
        // A limiter per key even without `rateLimit`: it then starts unlimited but still learns
        // from 429s and `x-ratelimit-*` headers.
        let limit = cfg.rate_limit.unwrap_or(RateLimitConfig {
            requests_per_minute: None,
            tokens_per_minute: None,
        });
        let coordinator = gates.coordinator.clone();
        let (local, shared) = match &coordinator {
            Some(c) => (
                limit.scaled(c.config().local_share),
                cfg.api_keys
                    .iter()
                    .map(|key| SharedLimiter::new(Arc::clone(c), upstream, key.expose(), limit))
                    .collect(),
            ),
            None => (limit, Vec::new()),
        };
        let shared_breaker = match (&coordinator, &breaker) {
            (Some(c), Some(b)) => Some(SharedBreaker::new(Arc::clone(c), upstream, b.config().clone())),
            _ => None,
        };
        Admission {
            concurrency: Arc::clone(&gates.concurrency),
            breaker,
            shared_breaker,
            keys: KeyPool::new(cfg.api_keys.clone()),
            limiters: cfg.api_keys.iter().map(|_| RateLimiter::new(local)).collect(),
            shared,
            coordinator,
        }
    }

    /// The Redis link, with `coordination` (the same for every upstream of a client).
    pub fn coordinator(&self) -> Option<&Arc<Coordinator>> {
        self.coordinator.as_ref()
    }

    pub fn concurrency(&self) -> &ConcurrencyLimiter {
        &self.concurrency
    }

    /// The breaker's state (`None` without one): with `coordination`, the shared one's as Redis
    /// last showed it, or the in-process one's while Redis is unavailable.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        let local = self.breaker.as_ref()?;
        match (&self.shared_breaker, &self.coordinator) {
            (Some(shared), Some(c)) if c.stats().mode == CoordinationMode::Shared => Some(shared.state()),
            _ => Some(local.state()),
        }
    }

    /// The breaker's counters (zero without one): with `coordination`, what this process saw of
    /// the shared breaker plus what its in-process one did while Redis was unavailable.
    pub fn breaker_stats(&self) -> BreakerStats {
        let local = self.breaker.as_ref().map(CircuitBreaker::stats).unwrap_or_default();
        let Some(shared) = &self.shared_breaker else {
            return local;
        };
        let s = shared.stats();
        BreakerStats {
            opened: local.opened.saturating_add(s.opened),
            half_opened: local.half_opened.saturating_add(s.half_opened),
            closed: local.closed.saturating_add(s.closed),
            rejected: local.rejected.saturating_add(s.rejected),
        }
    }

    pub fn keys(&self) -> &KeyPool {
        &self.keys
    }

    /// Another key can take over from the one that just failed, right now.
    pub fn can_fail_over(&self) -> bool {
        self.keys.len() > 1 && self.keys.has_usable()
    }

    /// [`acquire_for`](Self::acquire_for) the configured model.
    #[cfg(test)]
    pub async fn acquire(&self, bounds: &CallBounds<'_>, estimate: u32) -> Result<Admitted<'_>, ChatError> {
        self.acquire_for(bounds, estimate, "", &Metrics::default()).await
    }

    /// Pass the four gates for one attempt to `model` expected to use about `estimate` tokens
    /// (prompt plus the reply's cap). With `coordination`, the model names the shared bucket, and
    /// key health learned from other processes is counted in `metrics`.
    pub async fn acquire_for(
        &self,
        bounds: &CallBounds<'_>,
        estimate: u32,
        model: &str,
        metrics: &Metrics,
    ) -> Result<Admitted<'_>, ChatError> {
        let slot = bounds
            .wait(async {
                self.concurrency
                    .acquire()
                    .await
                    .map_err(|AcquireError::QueueFull { max_queue }| {
                        ChatError::new(
                            ErrorCode::QueueFull,
                            format!("{max_queue} calls are already waiting for a slot (`maxQueue`)"),
                        )
                    })
            })
            .await?;

        let permit = self.breaker_permit(bounds).await?;

        // Each turn that finds the key unhealthy marks it in the pool, so the next lease is
        // another key (or a wait for one, or the end when all are disabled).
        let (lease, limiter, rate, bucket) = loop {
            let lease = self.lease_key(bounds).await?;
            let limiter = self.limiters.get(lease.index);
            let (rate, bucket) = match (limiter, self.shared.get(lease.index)) {
                (Some(l), Some(shared)) => {
                    let bucket = shared.bucket(model);
                    // A pool of one key ignores its health, shared or not: it has no other.
                    let check_health = self.keys.len() > 1;
                    let reserved = bounds
                        .wait(async {
                            shared
                                .acquire_checked(&bucket, estimate, bounds.deadline(), l, check_health)
                                .await
                                .map_err(rate_limit_error)
                        })
                        .await?;
                    let rate = match reserved {
                        SharedGrant::Granted(lease) => Lease::Shared(lease),
                        // Redis is unavailable: this process's share of the budget.
                        SharedGrant::Unavailable => local_lease(l, bounds, estimate).await?,
                        SharedGrant::KeyUnhealthy(health) => {
                            self.learn_peer_health(lease.index, health, metrics);
                            self.keys.unsent(lease);
                            continue;
                        }
                    };
                    (Some(rate), Some(bucket))
                }
                (Some(l), None) => (Some(local_lease(l, bounds, estimate).await?), None),
                (None, _) => (None, None),
            };
            break (lease, limiter, rate, bucket);
        };
        Ok(Admitted {
            slot: Some(slot),
            permit,
            lease,
            limiter,
            bucket,
            rate,
        })
    }

    /// The breaker's permit for one attempt (`None` without a breaker): the shared breaker's
    /// when Redis answers, the in-process one's otherwise.
    async fn breaker_permit(&self, bounds: &CallBounds<'_>) -> Result<Option<Permit<'_>>, ChatError> {
        let Some(local) = &self.breaker else {
            return Ok(None);
        };
        if let Some(shared) = &self.shared_breaker {
            let time_left = bounds.deadline().saturating_duration_since(Instant::now());
            match bounds.wait(async { Ok(shared.acquire(time_left).await) }).await? {
                SharedAdmit::Permit(p) => return Ok(Some(Permit::Shared(p))),
                SharedAdmit::Open(open) => return Err(circuit_open(open)),
                SharedAdmit::Unavailable => {}
            }
        }
        local
            .try_acquire()
            .map(|p| Some(Permit::Local(p)))
            .map_err(circuit_open)
    }

    /// Another process cooled the key at `index` down or disabled it: the pool skips it too.
    fn learn_peer_health(&self, index: usize, health: KeyHealth, metrics: &Metrics) {
        if health.disabled {
            if self.keys.disable_from_peer(index, health.remaining) {
                Metrics::inc(&metrics.peer_keys_disabled);
            }
        } else if self.keys.cool_down_from_peer(index, health.remaining) {
            Metrics::inc(&metrics.peer_key_cool_downs);
        }
    }

    /// A key, waiting for a cooling one when it is free before the call's deadline.
    async fn lease_key(&self, bounds: &CallBounds<'_>) -> Result<KeyLease, ChatError> {
        loop {
            match self.keys.acquire() {
                Ok(lease) => return Ok(lease),
                Err(NoKey::CoolingUntil(until)) if until < bounds.deadline() => bounds.sleep_until(until).await?,
                Err(NoKey::CoolingUntil(until)) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    let message = format!(
                        "Every API key is cooling down after 429s for another {} ms, past the call's deadline",
                        wait.as_millis()
                    );
                    return Err(ChatError::new(ErrorCode::NoKeyAvailable, message).with_retry_after(wait));
                }
                Err(NoKey::AllDisabled) => {
                    return Err(ChatError::new(
                        ErrorCode::NoKeyAvailable,
                        "Every API key was rejected (401/403)",
                    ))
                }
            }
        }
    }
}

impl Admitted<'_> {
    /// The key this attempt sends.
    pub fn key(&self) -> &ApiKey {
        &self.lease.key
    }

    /// Let the key's rate limiter learn from a response's `x-ratelimit-*` headers.
    pub fn observe_headers(&self, headers: &http::HeaderMap) {
        if self.limiter.is_none() && self.bucket.is_none() {
            return;
        }
        let Some(reading) = RateHeaders::read(headers) else {
            return;
        };
        if let Some(l) = self.limiter {
            l.observe(&reading);
        }
        if let Some(b) = &self.bucket {
            b.observe(reading);
        }
    }

    /// The request is over: free the concurrency slot for the next caller.
    pub fn end_attempt(&mut self) {
        self.slot = None;
    }

    /// The attempt succeeded having used `tokens`: close the breaker's books and return the
    /// unused part of the estimate.
    pub fn succeeded(mut self, tokens: u32) {
        self.slot = None;
        if let Some(p) = self.permit.take() {
            p.record(Outcome::Success);
        }
        match self.rate.take() {
            Some(Lease::Local(r)) => r.settle(tokens),
            Some(Lease::Shared(r)) => r.settle(tokens),
            None => {}
        }
    }

    /// The attempt failed with `e`: tell the breaker, pause the key's limiter and cool the key
    /// after a 429, disable a rejected key of a pool. The key lease stays held.
    pub fn failed(&mut self, e: &ChatError, admission: &Admission, metrics: &Metrics) {
        self.slot = None;
        if let Some(p) = self.permit.take() {
            p.record(breaker_outcome(e));
        }
        if e.not_sent {
            // No connection was made, so the server counted nothing: give the shared budget
            // back (the in-process lease keeps it, as it always has).
            if let Some(Lease::Shared(r)) = self.rate.take() {
                r.credit_back();
            }
        }
        let keys = &admission.keys;
        if e.code == ErrorCode::RateLimited {
            Metrics::inc(&metrics.rate_limited_responses);
            if let Some(l) = self.limiter {
                l.pause_for(e.retry_after);
            }
            if let Some(b) = &self.bucket {
                b.pause_for(e.retry_after);
            }
            if keys.len() > 1 {
                keys.cool_down(self.lease.index, e.retry_after);
                Metrics::inc(&metrics.key_cool_downs);
                if let Some(b) = &self.bucket {
                    b.share_health(HealthMark::CoolDown(cool_down_wait(e.retry_after)));
                }
            }
        }
        // A rejected key in a pool is disabled; the call may fail over to the next key at once.
        if e.code == ErrorCode::Auth && keys.len() > 1 && keys.disable(self.lease.index) {
            Metrics::inc(&metrics.keys_disabled);
            if let Some(b) = &self.bucket {
                b.share_health(HealthMark::Disable(SHARED_DISABLE));
            }
        }
    }
}

/// The error of a call the circuit breaker refused.
fn circuit_open(open: BreakerOpen) -> ChatError {
    ChatError::new(
        ErrorCode::CircuitOpen,
        format!(
            "The circuit breaker is open after repeated upstream failures; next probe in {} ms",
            open.retry_in.as_millis()
        ),
    )
}

/// A lease from the in-process limiter, waited for under the call's bounds.
async fn local_lease(l: &RateLimiter, bounds: &CallBounds<'_>, estimate: u32) -> Result<Lease, ChatError> {
    bounds
        .wait(async {
            l.acquire_before(estimate, Some(bounds.deadline()))
                .await
                .map(Lease::Local)
                .map_err(rate_limit_error)
        })
        .await
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
            let message = format!(
                "The server paused requests (429 or rate-limit headers) for another {} ms, past the call's deadline",
                retry_after.as_millis()
            );
            ChatError::new(ErrorCode::RateLimited, message).with_retry_after(retry_after)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::breaker::BreakerConfig;
    use crate::core::config::ClientOptions;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    fn config(opts: ClientOptions) -> ClientConfig {
        ClientConfig::build(ClientOptions {
            api_base_url: Some("http://127.0.0.1:9".into()),
            ..opts
        })
        .unwrap()
    }

    fn keys(n: usize) -> ClientOptions {
        ClientOptions {
            api_keys: (0..n).map(|i| format!("sk-test-{i}")).collect(),
            ..Default::default()
        }
    }

    fn bounds_for(cancel: &CancellationToken, timeout: Duration) -> CallBounds<'_> {
        CallBounds::from_now(timeout, Duration::from_secs(600), cancel)
    }

    /// Admission for a client built from `opts`, without a breaker.
    fn admission(opts: ClientOptions) -> Admission {
        Admission::new(&config(opts), None)
    }

    /// Admits one attempt and fails it with `e` (the attempt ends as this returns).
    async fn fail_one(admission: &Admission, bounds: &CallBounds<'_>, metrics: &Metrics, e: &ChatError) {
        let mut admitted = admission.acquire(bounds, 10).await.unwrap();
        admitted.failed(e, admission, metrics);
    }

    fn rate_limited(retry_after: Duration) -> ChatError {
        ChatError::new(ErrorCode::RateLimited, "429").with_retry_after(retry_after)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_is_refused_at_once() {
        let admission = admission(ClientOptions {
            max_concurrency: Some(1),
            max_queue: Some(0),
            ..keys(1)
        });
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(10));
        let mut first = admission.acquire(&bounds, 10).await.unwrap();
        let refused = admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::QueueFull);
        // The slot is the attempt's only: once it ends, the next attempt gets in.
        first.end_attempt();
        assert!(admission.acquire(&bounds, 10).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_refuses_attempts() {
        let cfg = config(keys(1));
        let breaker = CircuitBreaker::new(BreakerConfig {
            volume_threshold: 1,
            error_threshold_percentage: 0,
            ..BreakerConfig::default()
        });
        let admission = Admission::new(&cfg, Some(breaker));
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(10));
        fail_one(
            &admission,
            &bounds,
            &metrics,
            &ChatError::new(ErrorCode::Network, "reset"),
        )
        .await;
        let refused = admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::CircuitOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_that_outlasts_the_deadline_fails_fast_as_rate_limited() {
        let admission = admission(keys(1));
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        fail_one(&admission, &bounds, &metrics, &rate_limited(Duration::from_secs(30))).await;
        let started = Instant::now();
        let refused = admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after.is_some());
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        assert_eq!(metrics.rate_limited_responses.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_cools_the_key_and_the_next_attempt_takes_another() {
        let admission = admission(keys(2));
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        let mut admitted = admission.acquire(&bounds, 10).await.unwrap();
        let first_key = admitted.key().clone();
        admitted.failed(&rate_limited(Duration::from_secs(30)), &admission, &metrics);
        drop(admitted);
        assert!(admission.can_fail_over());
        let next = admission.acquire(&bounds, 10).await.unwrap();
        assert!(!next.key().same(&first_key));
        drop(next);
        // With both keys cooling past the deadline, the call is refused with the wait.
        fail_one(&admission, &bounds, &metrics, &rate_limited(Duration::from_secs(30))).await;
        let refused = admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::NoKeyAvailable);
        assert!(refused.retry_after.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_cooling_until_before_the_deadline_is_waited_for() {
        let admission = admission(keys(2));
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(60));
        for _ in 0..2 {
            fail_one(&admission, &bounds, &metrics, &rate_limited(Duration::from_secs(2))).await;
        }
        let started = Instant::now();
        assert!(admission.acquire(&bounds, 10).await.is_ok());
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_keys_are_disabled_until_none_is_left() {
        let admission = admission(keys(2));
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        for _ in 0..2 {
            fail_one(&admission, &bounds, &metrics, &ChatError::new(ErrorCode::Auth, "401")).await;
        }
        assert_eq!(metrics.keys_disabled.load(Ordering::Relaxed), 2);
        assert!(!admission.can_fail_over());
        let refused = admission.acquire(&bounds, 10).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::NoKeyAvailable);
    }

    #[tokio::test(start_paused = true)]
    async fn an_estimate_above_the_token_rate_can_never_be_admitted() {
        let admission = admission(ClientOptions {
            rate_limit: Some(RateLimitConfig {
                requests_per_minute: None,
                tokens_per_minute: Some(100),
            }),
            ..keys(1)
        });
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        let refused = admission.acquire(&bounds, 1_000).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::RequestTooLarge);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_call_waiting_for_a_slot_leaves_at_once() {
        let admission = admission(ClientOptions {
            max_concurrency: Some(1),
            ..keys(1)
        });
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(60));
        let _held = admission.acquire(&bounds, 10).await.unwrap();
        let waiting = admission.acquire(&bounds, 10);
        let abort = async {
            tokio::task::yield_now().await;
            cancel.cancel();
        };
        let (refused, ()) = futures::join!(waiting, abort);
        assert_eq!(refused.err().unwrap().code, ErrorCode::Aborted);
    }

    /// Admission for one "process" whose rate limits are shared through Redis at `url`.
    fn coordinated(url: &str, prefix: &str, rpm: u32) -> Admission {
        admission(ClientOptions {
            rate_limit: Some(RateLimitConfig {
                requests_per_minute: Some(rpm),
                tokens_per_minute: None,
            }),
            coordination: Some(crate::core::coordination::CoordinationOptions {
                url: url.into(),
                key_prefix: Some(prefix.into()),
                operation_timeout_ms: Some(2_000),
                local_share: Some(0.5),
                ..Default::default()
            }),
            ..keys(1)
        })
    }

    /// How many attempts `admission` admits within `within` (each held until the end).
    async fn admitted_within(admission: &Admission, tries: usize, within: Duration) -> usize {
        let cancel = CancellationToken::new();
        let mut held = Vec::new();
        for _ in 0..tries {
            let bounds = bounds_for(&cancel, within);
            match admission.acquire_for(&bounds, 1, "sim-gpt", &Metrics::default()).await {
                Ok(admitted) => held.push(admitted),
                Err(e) => assert_eq!(e.code, ErrorCode::Timeout, "{e:?}"),
            }
        }
        held.len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_coordinated_clients_share_one_budget() {
        let redis = crate::core::coordination::test_redis::TestRedis::start();
        let a = coordinated(&redis.url(), "adm", 4);
        let b = coordinated(&redis.url(), "adm", 4);
        let window = Duration::from_millis(300);
        let total = admitted_within(&a, 3, window).await + admitted_within(&b, 3, window).await;
        assert_eq!(total, 4);
        // Another model has its own bucket.
        let cancel = CancellationToken::new();
        assert!(a
            .acquire_for(&bounds_for(&cancel, window), 1, "other", &Metrics::default())
            .await
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_never_left_gives_its_shared_reservation_back() {
        let redis = crate::core::coordination::test_redis::TestRedis::start();
        let a = coordinated(&redis.url(), "unsent", 1);
        let b = coordinated(&redis.url(), "unsent", 1);
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        let mut refused = ChatError::new(ErrorCode::Network, "connection refused");
        refused.not_sent = true;
        let mut admitted = a.acquire_for(&bounds, 1, "m", &metrics).await.unwrap();
        admitted.failed(&refused, &a, &metrics);
        drop(admitted);
        // The minute's only request is back (in the background): the other process gets it
        // long before the bucket would refill (60 s).
        assert!(b.acquire_for(&bounds, 1, "m", &metrics).await.is_ok());
    }

    /// Admission for one "process" with a pool of `keys`, sharing its limits and key health
    /// through Redis at `url`.
    fn pooled(url: &str, prefix: &str, keys: &[&str]) -> Admission {
        admission(ClientOptions {
            api_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            coordination: Some(crate::core::coordination::CoordinationOptions {
                url: url.into(),
                key_prefix: Some(prefix.into()),
                operation_timeout_ms: Some(2_000),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Waits until the health hash of `admitted`'s key is in Redis (it is written in the
    /// background).
    async fn until_shared(admission: &Admission, health_key: &str) {
        let coordinator = admission.coordinator().unwrap();
        for _ in 0..200 {
            let key = health_key.to_owned();
            let exists: i64 = coordinator
                .run(|mut conn| async move { redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await })
                .await
                .unwrap_or(0);
            if exists == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{health_key} was never written");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_another_process_cooled_down_or_disabled_is_skipped_here_too() {
        let redis = crate::core::coordination::test_redis::TestRedis::start();
        let a = pooled(&redis.url(), "health", &["sk-test-first", "sk-test-second"]);
        // The same keys in another order: health follows the key, not its index.
        let b = pooled(&redis.url(), "health", &["sk-test-second", "sk-test-first"]);
        let (metrics_a, metrics_b) = (Metrics::default(), Metrics::default());
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));

        let mut admitted = a.acquire_for(&bounds, 1, "m", &metrics_a).await.unwrap();
        let cooled = admitted.key().clone();
        let health = admitted.bucket.as_ref().unwrap().health_key().to_owned();
        admitted.failed(&rate_limited(Duration::from_secs(30)), &a, &metrics_a);
        drop(admitted);
        until_shared(&a, &health).await;
        for model in ["m", "another-model"] {
            let next = b.acquire_for(&bounds, 1, model, &metrics_b).await.unwrap();
            assert!(!next.key().same(&cooled), "the cooled key was used for {model}");
        }
        assert_eq!(metrics_b.peer_key_cool_downs.load(Ordering::Relaxed), 1);
        let learned: Vec<_> = b.keys().status().into_iter().filter(|k| k.cooling).collect();
        assert_eq!(learned.len(), 1);
        assert!(
            learned[0].from_peer && learned[0].cool_downs == 0 && learned[0].requests == 0,
            "{learned:?}"
        );

        // `a` gets a 401 with the other key: `b` has no key left before its deadline.
        let mut admitted = a.acquire_for(&bounds, 1, "m", &metrics_a).await.unwrap();
        assert!(!admitted.key().same(&cooled));
        let health = admitted.bucket.as_ref().unwrap().health_key().to_owned();
        admitted.failed(&ChatError::new(ErrorCode::Auth, "401"), &a, &metrics_a);
        drop(admitted);
        until_shared(&a, &health).await;
        let refused = b.acquire_for(&bounds, 1, "m", &metrics_b).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::NoKeyAvailable);
        assert!(
            refused.retry_after.is_some(),
            "the cooled key is waited for, past the deadline"
        );
        assert_eq!(metrics_b.peer_keys_disabled.load(Ordering::Relaxed), 1);
        assert!(b.keys().status().iter().any(|k| k.disabled && k.from_peer));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_of_one_key_ignores_the_keys_shared_health() {
        let redis = crate::core::coordination::test_redis::TestRedis::start();
        let a = pooled(&redis.url(), "one", &["sk-test-first", "sk-test-second"]);
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = bounds_for(&cancel, Duration::from_secs(5));
        let mut admitted = a.acquire_for(&bounds, 1, "m", &metrics).await.unwrap();
        let b = pooled(&redis.url(), "one", &[admitted.key().expose()]);
        let health = admitted.bucket.as_ref().unwrap().health_key().to_owned();
        admitted.failed(&ChatError::new(ErrorCode::Auth, "401"), &a, &metrics);
        drop(admitted);
        until_shared(&a, &health).await;
        // Its only key is sent, as without `coordination`: the server's answer decides.
        assert!(b.acquire_for(&bounds, 1, "m", &metrics).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_unreachable_each_process_uses_its_local_share() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admission = coordinated(&format!("redis://127.0.0.1:{port}"), "down", 10);
        // localShare 0.5 of 10 per minute: 5 at once, the 6th waits ~12 s.
        assert_eq!(admitted_within(&admission, 7, Duration::from_millis(300)).await, 5);
        let stats = admission.coordinator().unwrap().stats();
        assert_eq!(stats.mode, crate::core::coordination::CoordinationMode::Local);
        assert!(stats.fallbacks >= 5, "{stats:?}");
    }
}
