//! The rate limiter of one API key whose buckets live in Redis, one per model: what admission
//! uses instead of the in-process [`RateLimiter`] when `coordination` is on.
//!
//! Within a process, reservations of one bucket go out in arrival order (a FIFO gate per model,
//! as the in-process limiter has one per key): only the head waiter asks Redis, and while the
//! bucket is short it sleeps for the wait the script computed, then asks again. Across
//! processes, the script's atomicity is the arbiter. A pause the process itself just learned (a
//! 429, a remaining count of 0) is in the in-process limiter at once and is honoured here too,
//! before Redis has it.
//!
//! The in-process limiter remains the fallback: when a Redis operation fails or is slow,
//! [`SharedLimiter::acquire`] answers `Ok(None)` and the caller uses it (built with `localShare`
//! of the budgets). Reconciling, giving back and learning are sent in the background: a call
//! never waits for them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Coordinator;
use super::health::{mark, HealthMark};
use super::scripts::{adjust, observe, reserve, KeyHealth, Reservation, ReserveArgs};
use crate::core::limits::{server_pause, RateHeaders, RateLimitConfig, RateLimitError, RateLimiter};
use crate::core::time::instant_after;

/// Longest sleep before asking Redis again while the bucket is short: another process may give
/// back tokens sooner than the refill would provide them.
const MAX_POLL: Duration = Duration::from_secs(1);
/// Longest model name used as-is in a key; longer or unusual ones are hashed.
const MAX_MODEL_IN_KEY: usize = 100;
/// Most per-model gates kept; past it, idle ones are dropped, and while all are in use further
/// models share one gate (the names come from callers, so their number is not ours to trust).
const MAX_GATES: usize = 1024;

/// A FIFO gate: the waiter holding it is the only one of its bucket asking Redis.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// One API key's shared buckets (one per model).
pub struct SharedLimiter {
    coordinator: Arc<Coordinator>,
    /// `{prefix:rl:<key hash>}` (`{prefix:rl:up:<upstream hash>:<key hash>}` for an upstream):
    /// the hash tag of every key of this API key; a bucket's key is this, `:m:` and the model.
    key_tag: String,
    /// `<key_tag>:h`: the key's shared health (see `health.rs`).
    health: Arc<str>,
    /// The configured budgets: the whole budget every process shares.
    limits: RateLimitConfig,
    /// FIFO hand-out within this process, per bucket, so a wait for one model's budget never
    /// holds up another model's calls (see the module docs).
    gates: Mutex<HashMap<Arc<str>, Gate>>,
    /// The gate of models beyond [`MAX_GATES`].
    overflow: Gate,
}

/// Capacity taken from a shared bucket by [`SharedLimiter::acquire`]. Dropping it without
/// [`settle`](Self::settle) keeps the estimate spent, as the in-process lease does.
pub struct SharedLease {
    coordinator: Arc<Coordinator>,
    bucket: Arc<str>,
    limits: RateLimitConfig,
    estimate: u32,
}

/// What a bucket of a shared limiter is called and which budgets it has: enough to learn from a
/// response outside the call that reserved (the work is sent in the background).
#[derive(Clone)]
pub struct SharedBucket {
    coordinator: Arc<Coordinator>,
    key: Arc<str>,
    /// The API key's health hash (one per key, whatever the model).
    health: Arc<str>,
    limits: RateLimitConfig,
}

/// The answer of [`SharedLimiter::acquire_checked`].
pub enum SharedGrant {
    /// The request and tokens were taken from the shared bucket.
    Granted(SharedLease),
    /// Redis is unavailable: the caller uses the local limiter.
    Unavailable,
    /// Another process cooled the key down or disabled it: the caller takes another key.
    KeyUnhealthy(KeyHealth),
}

/// The first 8 bytes of SHA-256 of `text`, in hex: names a key in Redis without revealing it.
pub(super) fn short_hash(domain: &str, text: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(domain.as_bytes());
    ctx.update(&[0]);
    ctx.update(text.as_bytes());
    let digest = ctx.finish();
    let mut out = String::with_capacity(16);
    for byte in digest.as_ref().iter().take(8) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Runs `work` on the current runtime without waiting for it (nothing to do outside one).
pub(super) fn in_background(work: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(work);
    }
}

impl SharedLimiter {
    /// The shared buckets of `api_key` (never stored: only a hash of it names the buckets).
    /// `upstream` (set for each entry of `upstreams`, from its name and base URL) puts the
    /// buckets in a space of their own, `{prefix:rl:up:<upstream hash>:<key hash>}:m:<model>`,
    /// so two upstreams of a client never share one, even with the same key; a client of one
    /// server (`None`) has `{prefix:rl:<key hash>}:m:<model>`. The hash tag is the key's, so its
    /// buckets and its health hash (`{…}:h`) share a cluster slot and one script reads both.
    pub fn new(coordinator: Arc<Coordinator>, upstream: Option<&str>, api_key: &str, limits: RateLimitConfig) -> Self {
        let prefix = &coordinator.config().key_prefix;
        let key_hash = short_hash("chatgpt-native api key", api_key);
        let key_tag = match upstream {
            None => format!("{{{prefix}:rl:{key_hash}}}"),
            Some(upstream) => format!(
                "{{{prefix}:rl:up:{}:{key_hash}}}",
                short_hash("chatgpt-native upstream", upstream)
            ),
        };
        SharedLimiter {
            coordinator,
            health: format!("{key_tag}:h").into(),
            key_tag,
            limits,
            gates: Mutex::new(HashMap::new()),
            overflow: Gate::default(),
        }
    }

    /// The FIFO gate of `bucket`.
    fn gate(&self, bucket: &SharedBucket) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.get(&bucket.key) {
            return Arc::clone(gate);
        }
        if gates.len() >= MAX_GATES {
            // Only this map holds an idle gate.
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
            if gates.len() >= MAX_GATES {
                return Arc::clone(&self.overflow);
            }
        }
        Arc::clone(gates.entry(Arc::clone(&bucket.key)).or_default())
    }

    /// The bucket of `model`. Its key starts with the API key's hash tag (`{...}`), so a
    /// script's keys share a cluster slot; a model name that could bloat the key, or hold a
    /// brace (another tag), is hashed.
    pub fn bucket(&self, model: &str) -> SharedBucket {
        let plain = !model.is_empty()
            && model.len() <= MAX_MODEL_IN_KEY
            && model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/' | b'@'));
        let model_part = if plain {
            model.to_owned()
        } else {
            format!("#{}", short_hash("chatgpt-native model", model))
        };
        SharedBucket {
            coordinator: Arc::clone(&self.coordinator),
            key: format!("{}:m:{model_part}", self.key_tag).into(),
            health: Arc::clone(&self.health),
            limits: self.limits,
        }
    }

    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Takes 1 request and `estimate` tokens from `bucket`, waiting (in arrival order) while it
    /// is short or paused. `Ok(None)`: Redis is unavailable, the caller uses `local` instead.
    /// The key's shared health is not checked (see [`acquire_checked`](Self::acquire_checked)).
    #[cfg(test)]
    pub async fn acquire(
        &self,
        bucket: &SharedBucket,
        estimate: u32,
        deadline: Instant,
        local: &RateLimiter,
    ) -> Result<Option<SharedLease>, RateLimitError> {
        let grant = self.acquire_checked(bucket, estimate, deadline, local, false).await?;
        Ok(match grant {
            SharedGrant::Granted(lease) => Some(lease),
            SharedGrant::Unavailable | SharedGrant::KeyUnhealthy(_) => None,
        })
    }

    /// Takes 1 request and `estimate` tokens from `bucket`, waiting (in arrival order) while it
    /// is short or paused. [`SharedGrant::Unavailable`]: Redis is unavailable, the caller uses
    /// `local` instead. `local`'s pause (what this process learned itself) is honoured too. With
    /// `check_health` (a pool of several keys), the same script reads the key's shared health,
    /// and a key another process cooled down or disabled is [`SharedGrant::KeyUnhealthy`] at once:
    /// nothing is taken, the caller takes another key.
    ///
    /// Fails at once with [`RateLimitError::RequestTooLarge`] when the estimate exceeds the
    /// configured tokens per minute, and with [`RateLimitError::Paused`] when a pause ends after
    /// `deadline`. Other waits are bounded by the caller (admission runs this under the call's
    /// bounds). Dropped while Redis is answering, a reservation Redis made stays spent: counting
    /// too much only slows pacing a little, counting too little costs 429s.
    pub async fn acquire_checked(
        &self,
        bucket: &SharedBucket,
        estimate: u32,
        deadline: Instant,
        local: &RateLimiter,
        check_health: bool,
    ) -> Result<SharedGrant, RateLimitError> {
        if let Some(tpm) = self.limits.tokens_per_minute.filter(|&l| l > 0) {
            if estimate > tpm {
                return Err(RateLimitError::RequestTooLarge {
                    estimate,
                    tokens_per_minute: tpm,
                });
            }
        }
        let gate = self.gate(bucket);
        let _turn = gate.lock().await;
        loop {
            let now = Instant::now();
            if let Some(until) = local.paused_until() {
                if until > deadline {
                    return Err(RateLimitError::Paused {
                        retry_after: until.saturating_duration_since(now),
                    });
                }
                tokio::time::sleep_until(until).await;
                continue;
            }
            let (key, health) = (Arc::clone(&bucket.key), Arc::clone(&bucket.health));
            let limits = self.limits;
            let answer = self
                .coordinator
                .run(|conn| async move {
                    let args = ReserveArgs {
                        bucket: &key,
                        health: &health,
                        check_health,
                        limits,
                        tokens: estimate,
                    };
                    reserve(conn, &args).await
                })
                .await;
            match answer {
                Err(_) => {
                    self.coordinator.record_fallback();
                    return Ok(SharedGrant::Unavailable);
                }
                Ok(Reservation::Granted) => {
                    return Ok(SharedGrant::Granted(SharedLease {
                        coordinator: Arc::clone(&self.coordinator),
                        bucket: Arc::clone(&bucket.key),
                        limits: self.limits,
                        estimate,
                    }))
                }
                Ok(Reservation::Unhealthy(health)) => return Ok(SharedGrant::KeyUnhealthy(health)),
                Ok(Reservation::Wait { wait, paused }) => {
                    let now = Instant::now();
                    if paused && instant_after(now, wait) > deadline {
                        return Err(RateLimitError::Paused { retry_after: wait });
                    }
                    tokio::time::sleep_until(instant_after(now, wait.min(MAX_POLL))).await;
                }
            }
        }
    }
}

impl SharedBucket {
    /// Shares what a response's `x-ratelimit-*` headers said (in the background).
    pub fn observe(&self, reading: RateHeaders) {
        let bucket = self.clone();
        in_background(async move { bucket.observe_now(reading).await });
    }

    async fn observe_now(&self, reading: RateHeaders) {
        let key = Arc::clone(&self.key);
        let limits = self.limits;
        let _ = self
            .coordinator
            .run(|conn| async move { observe(conn, &key, limits, reading).await })
            .await;
    }

    /// Shares the pause after a 429 (its `retry-after`, 1 s without one), in the background.
    pub fn pause_for(&self, retry_after: Option<Duration>) {
        self.observe(RateHeaders {
            remaining_requests: None,
            remaining_tokens: None,
            limit_requests: None,
            limit_tokens: None,
            pause: Some(server_pause(retry_after)),
        });
    }

    /// The Redis key of this bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The Redis key of the API key's health hash.
    pub fn health_key(&self) -> &str {
        &self.health
    }

    /// Shares what this process learned about the key (a 429 cool-down, a 401/403 disable), in
    /// the background: one script.
    pub fn share_health(&self, what: HealthMark) {
        let (coordinator, health) = (Arc::clone(&self.coordinator), Arc::clone(&self.health));
        in_background(async move {
            let _ = coordinator
                .run(|conn| async move { mark(conn, &health, what).await })
                .await;
        });
    }
}

impl SharedLease {
    /// The real usage is known: gives back `estimate - actual_tokens` (or takes the excess), in
    /// the background.
    pub fn settle(self, actual_tokens: u32) {
        let delta = i64::from(self.estimate) - i64::from(actual_tokens);
        if delta != 0 {
            self.adjust(delta, 0);
        }
    }

    /// The request was never sent (no connection could be made): gives the request and the
    /// whole estimate back, in the background.
    pub fn credit_back(self) {
        let estimate = i64::from(self.estimate);
        self.adjust(estimate, 1);
    }

    fn adjust(self, tokens: i64, requests: i64) {
        in_background(async move { self.adjust_now(tokens, requests).await });
    }

    async fn adjust_now(&self, tokens: i64, requests: i64) {
        let key = Arc::clone(&self.bucket);
        let limits = self.limits;
        let _ = self
            .coordinator
            .run(|conn| async move { adjust(conn, &key, limits, tokens, requests).await })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::coordination::test_redis::TestRedis;
    use crate::core::coordination::{CoordinationConfig, CoordinationMode, CoordinationOptions};

    const KEY: &str = "sk-test-shared-bucket-0123456789";

    /// A coordinator as one process would have it. The operation budget is generous: these
    /// tests are about the scripts' semantics, on a machine that may be busy.
    fn process(url: &str, prefix: &str) -> Arc<Coordinator> {
        let cfg = CoordinationConfig::build(CoordinationOptions {
            url: url.into(),
            key_prefix: Some(prefix.into()),
            operation_timeout_ms: Some(2_000),
            local_share: None,
            ..Default::default()
        })
        .unwrap();
        Arc::new(Coordinator::new(cfg))
    }

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    fn unlimited() -> RateLimiter {
        RateLimiter::new(limits(None, None))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// How many of `tries` concurrent reservations of `tokens` each, spread over two processes,
    /// are granted within `window`.
    async fn granted_across_two_processes(redis: &TestRedis, l: RateLimitConfig, tokens: u32, tries: usize) -> usize {
        let a = Arc::new(SharedLimiter::new(process(&redis.url(), "t"), None, KEY, l));
        let b = Arc::new(SharedLimiter::new(process(&redis.url(), "t"), None, KEY, l));
        let mut tasks = Vec::new();
        for i in 0..tries {
            let limiter = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tasks.push(tokio::spawn(async move {
                let bucket = limiter.bucket("gpt-4o-mini");
                let local = unlimited();
                let window = Duration::from_millis(1_500);
                let got = tokio::time::timeout(window, limiter.acquire(&bucket, tokens, far(), &local)).await;
                matches!(got, Ok(Ok(Some(_))))
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        granted
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_together_never_take_more_requests_than_the_budget() {
        let redis = TestRedis::start();
        // 12 per minute: one refills every 5 s, none within the 1.5 s window.
        let granted = granted_across_two_processes(&redis, limits(Some(12), None), 0, 40).await;
        assert_eq!(granted, 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_together_never_take_more_tokens_than_the_budget() {
        let redis = TestRedis::start();
        let granted = granted_across_two_processes(&redis, limits(None, Some(1_000)), 100, 40).await;
        assert_eq!(granted, 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_bucket_refills_at_the_per_minute_rate() {
        let redis = TestRedis::start();
        let limiter = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(Some(60), None));
        let bucket = limiter.bucket("m");
        let local = unlimited();
        for _ in 0..60 {
            assert!(limiter.acquire(&bucket, 0, far(), &local).await.unwrap().is_some());
        }
        let started = std::time::Instant::now();
        assert!(limiter.acquire(&bucket, 0, far(), &local).await.unwrap().is_some());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_millis(2_500),
            "one request per second: waited {waited:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settling_gives_back_the_unused_estimate_and_credit_back_the_whole_reservation() {
        let redis = TestRedis::start();
        let a = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(Some(2), Some(1_000)));
        let b = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(Some(2), Some(1_000)));
        let (bucket_a, bucket_b) = (a.bucket("m"), b.bucket("m"));
        let local = unlimited();
        let soon = || Instant::now() + Duration::from_millis(300);
        let lease = a.acquire(&bucket_a, 600, far(), &local).await.unwrap().unwrap();
        // 400 tokens left: the other process cannot have 900 yet.
        let early = tokio::time::timeout(Duration::from_millis(300), b.acquire(&bucket_b, 900, soon(), &local)).await;
        assert!(early.is_err(), "granted before the settle");
        lease.adjust_now(500, 0).await; // settle(100): 500 of the 600 back
        let lease = b.acquire(&bucket_b, 900, far(), &local).await.unwrap().unwrap();
        // Both requests of the minute are spent; crediting the unsent one back frees one.
        lease.adjust_now(900, 1).await;
        let again = tokio::time::timeout(Duration::from_millis(300), a.acquire(&bucket_a, 900, soon(), &local)).await;
        assert!(
            matches!(again, Ok(Ok(Some(_)))),
            "{:?}",
            again.map(|r| r.map(|l| l.is_some()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_learned_by_one_process_holds_the_other() {
        let redis = TestRedis::start();
        let a = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(None, None));
        let b = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(None, None));
        let local = unlimited();
        a.bucket("m").observe_now(pause_of(Duration::from_millis(1_000))).await;
        // A caller whose deadline the pause outlasts is refused at once.
        let started = std::time::Instant::now();
        let refused = b
            .acquire(&b.bucket("m"), 1, Instant::now() + Duration::from_millis(200), &local)
            .await;
        assert!(
            matches!(refused, Err(RateLimitError::Paused { .. })),
            "{:?}",
            refused.map(|l| l.is_some())
        );
        assert!(started.elapsed() < Duration::from_millis(150));
        // Another model's bucket is not paused; a caller with time waits the pause out.
        assert!(b.acquire(&b.bucket("other"), 1, far(), &local).await.unwrap().is_some());
        assert!(b.acquire(&b.bucket("m"), 1, far(), &local).await.unwrap().is_some());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(800), "waited {waited:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_for_one_models_budget_does_not_hold_up_another_model() {
        let redis = TestRedis::start();
        let limiter = Arc::new(SharedLimiter::new(
            process(&redis.url(), "t"),
            None,
            KEY,
            limits(Some(1), None),
        ));
        let local = Arc::new(unlimited());
        assert!(limiter
            .acquire(&limiter.bucket("a"), 0, far(), &local)
            .await
            .unwrap()
            .is_some());
        // The next request of model `a` waits a minute for the refill, holding `a`'s gate.
        let waiting = {
            let (limiter, local) = (Arc::clone(&limiter), Arc::clone(&local));
            tokio::spawn(async move {
                limiter
                    .acquire(&limiter.bucket("a"), 0, far(), &local)
                    .await
                    .map(|l| l.is_some())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let other = tokio::time::timeout(
            Duration::from_millis(1_000),
            limiter.acquire(&limiter.bucket("b"), 0, far(), &local),
        )
        .await;
        assert!(matches!(other, Ok(Ok(Some(_)))), "model b waited behind model a");
        waiting.abort();
    }

    fn pause_of(pause: Duration) -> RateHeaders {
        RateHeaders {
            remaining_requests: None,
            remaining_tokens: None,
            limit_requests: None,
            limit_tokens: None,
            pause: Some(pause),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_after_beside_remaining_zero_is_the_shared_pause_not_the_reset() {
        let redis = TestRedis::start();
        let coordinator = process(&redis.url(), "t");
        let limiter = SharedLimiter::new(Arc::clone(&coordinator), None, KEY, limits(None, None));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        headers.insert("retry-after", "1".parse().unwrap());
        let bucket = limiter.bucket("m");
        bucket.observe_now(RateHeaders::read(&headers).unwrap()).await;
        let (key, health) = (bucket.key().to_owned(), bucket.health_key().to_owned());
        let answer = coordinator
            .run(|conn| async move {
                let args = ReserveArgs {
                    bucket: &key,
                    health: &health,
                    check_health: true,
                    limits: limits(None, None),
                    tokens: 1,
                };
                reserve(conn, &args).await
            })
            .await
            .unwrap();
        match answer {
            Reservation::Wait { wait, paused: true } => {
                assert!(
                    wait <= Duration::from_secs(1) && wait > Duration::from_millis(500),
                    "{wait:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stated_limit_is_learned_and_shared_when_none_is_configured() {
        let redis = TestRedis::start();
        let a = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(None, None));
        let b = SharedLimiter::new(process(&redis.url(), "t"), None, KEY, limits(None, None));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
        headers.insert("x-ratelimit-remaining-requests", "1".parse().unwrap());
        a.bucket("m").observe_now(RateHeaders::read(&headers).unwrap()).await;
        let local = unlimited();
        assert!(b.acquire(&b.bucket("m"), 1, far(), &local).await.unwrap().is_some());
        let started = std::time::Instant::now();
        assert!(b.acquire(&b.bucket("m"), 1, far(), &local).await.unwrap().is_some());
        assert!(started.elapsed() >= Duration::from_millis(700), "paced at 60/min");
    }

    #[test]
    fn bucket_keys_are_one_hash_tag_and_never_hold_the_key() {
        let coordinator = Arc::new(Coordinator::new(
            CoordinationConfig::build(CoordinationOptions {
                url: "redis://127.0.0.1:9".into(),
                key_prefix: Some("app".into()),
                ..Default::default()
            })
            .unwrap(),
        ));
        let limiter = SharedLimiter::new(coordinator, None, KEY, limits(Some(1), None));
        for model in ["gpt-4o-mini", "a}b{c", "", &"x".repeat(500)] {
            let bucket = limiter.bucket(model);
            let key = bucket.key();
            assert!(key.starts_with("{app:rl:") && key.contains("}:m:"), "{key}");
            assert_eq!(key.matches(['{', '}']).count(), 2, "{key}");
            assert!(!key.contains("sk-test") && key.len() < 160, "{key}");
            // The health hash shares the bucket's hash tag (one cluster slot).
            let tag = &key[..key.find('}').unwrap() + 1];
            assert_eq!(bucket.health_key(), format!("{tag}:h"));
        }
        assert!(limiter.bucket("gpt-4o-mini").key().ends_with("}:m:gpt-4o-mini"));
        assert_ne!(limiter.bucket("a").key(), limiter.bucket("b").key());
        // An upstream's buckets have a space of their own, still one hash tag.
        let coordinator = Arc::clone(&limiter.coordinator);
        let upstream =
            |name: &str| SharedLimiter::new(Arc::clone(&coordinator), Some(name), KEY, limits(Some(1), None));
        let (a, b) = (upstream("a\nhttp://a.test/v1"), upstream("b\nhttp://a.test/v1"));
        let key = a.bucket("gpt-4o-mini").key().to_owned();
        assert!(
            key.starts_with("{app:rl:up:") && key.ends_with("}:m:gpt-4o-mini"),
            "{key}"
        );
        assert_eq!(key.matches(['{', '}']).count(), 2, "{key}");
        assert!(!key.contains("a.test"), "{key}");
        assert_ne!(key, b.bucket("gpt-4o-mini").key());
        assert_ne!(key, limiter.bucket("gpt-4o-mini").key());
        assert_ne!(a.bucket("m").health_key(), limiter.bucket("m").health_key());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_redis_falls_back_warns_once_and_sharing_resumes_when_it_returns() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let coordinator = process(&format!("redis://:secret-pw@127.0.0.1:{port}"), "t");
        let limiter = SharedLimiter::new(Arc::clone(&coordinator), None, KEY, limits(Some(100), None));
        let bucket = limiter.bucket("m");
        let local = unlimited();
        assert!(limiter.acquire(&bucket, 1, far(), &local).await.unwrap().is_none());
        let stats = coordinator.stats();
        assert_eq!(stats.mode, CoordinationMode::Local);
        assert_eq!((stats.fallbacks, stats.redis_errors), (1, 1));
        let warning = coordinator.take_warning().unwrap();
        assert!(
            warning.contains(&port.to_string()) && !warning.contains("secret-pw"),
            "{warning}"
        );
        assert_eq!(coordinator.take_warning(), None, "once");
        // Right after a failure Redis is left alone: no operation, straight to the fallback.
        assert!(limiter.acquire(&bucket, 1, far(), &local).await.unwrap().is_none());
        assert_eq!(coordinator.stats().redis_errors, 1);

        let _redis = TestRedis::start_with(port, Some("secret-pw"));
        let resumed = async {
            loop {
                if limiter.acquire(&bucket, 1, far(), &local).await.unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), resumed).await.unwrap();
        assert_eq!(coordinator.stats().mode, CoordinationMode::Shared);
        assert_eq!(coordinator.take_warning(), None, "still only once");
    }
}
