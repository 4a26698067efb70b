//! The circuit breaker of one upstream kept in Redis, so every process pointing at the same Redis
//! and prefix shares it: one process's failures count toward the shared window, and after the
//! reset timeout exactly one half-open probe goes out across all of them.
//!
//! The state machine and its rules are the in-process breaker's (`core/breaker.rs`): a rolling
//! window of buckets counting calls started, calls finished and failures; the failure share taken
//! over the larger of started and finished; Closed → Open → HalfOpen with a single probe; outcomes
//! of an older generation discarded. Here they run in two Lua scripts over one hash,
//! `{prefix:br:<upstream hash>}` (one key, one hash tag: each script runs on one Redis Cluster
//! node), with Redis's clock (`TIME`), so processes on machines whose clocks differ agree.
//!
//! A process may die while it holds the probe. The probe is therefore a lease: it lasts as long
//! as the probing call may (its deadline, at most [`MAX_PROBE_LEASE`]); past it, the next caller
//! anywhere becomes the probe. Fields: `st` the state (`o` open, `h` half-open, missing: closed),
//! `g` the generation, `op` when it opened, `pu` until when the probe's lease runs, and per
//! bucket slot `i<n>` (its absolute index), `s<n>` / `c<n>` / `f<n>` (started, finished,
//! failed). The hash expires when it could hold nothing live any more.
//!
//! # Closed without a round trip
//!
//! While the circuit is closed, asking Redis before every call would double the round trips on
//! each call's path for an answer that is nearly always "go". So a process that heard "closed"
//! from Redis within the last [`FRESH_CLOSED`] (at most half the reset timeout) admits the call
//! itself and counts its start locally; the counted starts reach Redis with the next outcome it
//! records, or at the latest [`FLUSH_DELAY`] later in a flush of their own. Every record and flush
//! answers with the current state, so a process that sends learns of an opening at its next
//! outcome, and one that sends rarely asks Redis again after `FRESH_CLOSED`. Once the circuit is
//! not closed, every call asks Redis: the single probe is decided there.
//!
//! When Redis is unavailable (an operation failed or outlasted `operationTimeoutMs`),
//! [`SharedBreaker::acquire`] answers [`SharedAdmit::Unavailable`] and admission uses the
//! in-process breaker, which then sees only the calls of that period. Outcomes are recorded in
//! the background: a call never waits for them.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{RedisResult, Script};
use tokio::time::Instant;

use super::connection::{Coordinator, RedisConn};
use super::shared::{in_background, short_hash};
use crate::core::breaker::{BreakerConfig, BreakerOpen, BreakerState, BreakerStats, Outcome};
use crate::core::metrics::Metrics;

/// Longest a half-open probe holds its lease: a process that dies while probing blocks other
/// probes this long at most.
pub const MAX_PROBE_LEASE: Duration = Duration::from_secs(600);
/// How long a "closed" from Redis lets this process admit calls without asking (capped at half
/// the reset timeout, so a process can never miss a whole open period).
pub const FRESH_CLOSED: Duration = Duration::from_secs(1);
/// Longest a start counted locally waits before it is sent to Redis.
pub const FLUSH_DELAY: Duration = Duration::from_millis(20);

/// Shared by both scripts: the clock, the configuration (ARGV[1..3]: window ms, buckets, reset
/// ms), the state, and `expire()`, which keeps the hash as long as anything in it can matter.
const PRELUDE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = math.max(1, tonumber(ARGV[1]))
local buckets = math.max(1, tonumber(ARGV[2]))
local reset = math.max(0, tonumber(ARGV[3]))
local width = math.max(1, math.floor(window / buckets))
local current = math.floor(now / width)
local h = redis.call('HMGET', KEYS[1], 'st', 'g', 'op', 'pu')
local state = h[1] or 'c'
local gen = tonumber(h[2]) or 0
local function expire(extra)
  redis.call('PEXPIRE', KEYS[1], window + reset + extra + 1000)
end
local function bump(new_state)
  gen = gen + 1
  state = new_state
  redis.call('DEL', KEYS[1])
  if new_state ~= 'c' then redis.call('HSET', KEYS[1], 'st', new_state) end
  redis.call('HSET', KEYS[1], 'g', gen)
end
local function current_slot()
  local slot = current % buckets
  if tonumber(redis.call('HGET', KEYS[1], 'i' .. slot)) ~= current then
    redis.call('HSET', KEYS[1], 'i' .. slot, current, 's' .. slot, 0, 'c' .. slot, 0, 'f' .. slot, 0)
  end
  return slot
end
"#;

/// ARGV[4]: the probe's lease in ms; ARGV[5]: starts counted locally, added when closed. Returns
/// `{0, gen, bucket}` a closed-state permit (counted as started in `bucket`), `{1, retry_in_ms}`
/// refused, `{2, gen}` the half-open probe.
const ACQUIRE: &str = r#"
local lease = math.max(1, tonumber(ARGV[4]))
if state == 'c' then
  local slot = current_slot()
  redis.call('HINCRBY', KEYS[1], 's' .. slot, 1 + math.max(0, tonumber(ARGV[5])))
  redis.call('HSET', KEYS[1], 'g', gen)
  expire(0)
  return {0, gen, current}
end
if state == 'o' then
  local opened = tonumber(h[3]) or now
  if now - opened < reset then return {1, reset - (now - opened)} end
elseif state == 'h' then
  local until_ms = tonumber(h[4]) or 0
  if now < until_ms then return {1, 0} end
end
bump('h')
redis.call('HSET', KEYS[1], 'pu', now + lease)
expire(lease)
return {2, gen}
"#;

/// ARGV[4]: the permit's generation; ARGV[5]: the bucket it started in (-1: the probe; -2: a
/// start counted locally and already sent, taken back from the current bucket); ARGV[6]: the
/// outcome (0 success, 1 failure, 2 ignored, 3 none: only flush); ARGV[7] / ARGV[8]: volume
/// threshold and error threshold percentage; ARGV[9]: starts counted locally, added first when
/// closed. Returns `{transition, state, gen}`: transition 0 none, 1 opened, 2 closed; state 0
/// closed, 1 open, 2 half-open.
const RECORD: &str = r#"
local function answer(transition)
  local code = 0
  if state == 'o' then code = 1 elseif state == 'h' then code = 2 end
  return {transition, code, gen}
end
local flush = math.max(0, tonumber(ARGV[9]))
if state == 'c' and flush > 0 then
  redis.call('HINCRBY', KEYS[1], 's' .. current_slot(), flush)
  expire(0)
end
local outcome = tonumber(ARGV[6])
if outcome == 3 or tonumber(ARGV[4]) ~= gen then return answer(0) end
local started = tonumber(ARGV[5])
if started == -1 then
  if state ~= 'h' then return answer(0) end
  if outcome == 0 then bump('c'); expire(0); return answer(2) end
  if outcome == 1 then bump('o'); redis.call('HSET', KEYS[1], 'op', now); expire(0); return answer(1) end
  redis.call('HSET', KEYS[1], 'pu', 0)
  return answer(0)
end
if state ~= 'c' then return answer(0) end
if outcome == 2 then
  if started == -2 then started = current end
  local slot = started % buckets
  if tonumber(redis.call('HGET', KEYS[1], 'i' .. slot)) == started then
    if (tonumber(redis.call('HGET', KEYS[1], 's' .. slot)) or 0) > 0 then
      redis.call('HINCRBY', KEYS[1], 's' .. slot, -1)
    end
  end
  return answer(0)
end
local slot = current_slot()
redis.call('HINCRBY', KEYS[1], 'c' .. slot, 1)
expire(0)
if outcome ~= 1 then return answer(0) end
redis.call('HINCRBY', KEYS[1], 'f' .. slot, 1)
local total_s, total_c, total_f = 0, 0, 0
for n = 0, buckets - 1 do
  local b = redis.call('HMGET', KEYS[1], 'i' .. n, 's' .. n, 'c' .. n, 'f' .. n)
  local index = tonumber(b[1])
  if index and current - index < buckets then
    total_s = total_s + (tonumber(b[2]) or 0)
    total_c = total_c + (tonumber(b[3]) or 0)
    total_f = total_f + (tonumber(b[4]) or 0)
  end
end
local volume = math.max(total_s, total_c)
if total_c >= tonumber(ARGV[7]) and total_f * 100 > volume * tonumber(ARGV[8]) then
  bump('o')
  redis.call('HSET', KEYS[1], 'op', now)
  expire(0)
  return answer(1)
end
return answer(0)
"#;

static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{ACQUIRE}")));
static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{RECORD}")));

/// Most buckets sent to the scripts: the record script walks them all.
const MAX_BUCKETS: u32 = 1000;

/// States as the scripts and `metrics().breakerState` see them.
const STATE_CLOSED: u8 = 0;
const STATE_OPEN: u8 = 1;
const STATE_HALF_OPEN: u8 = 2;

/// The shared breaker of one upstream (or of a client of one server).
pub struct SharedBreaker {
    inner: Arc<Inner>,
}

/// What permits need after the call that took them (records run in the background).
struct Inner {
    coordinator: Arc<Coordinator>,
    key: String,
    config: BreakerConfig,
    /// How long a "closed" from Redis is trusted: [`FRESH_CLOSED`], at most half the reset.
    fresh_closed: Duration,
    /// The state the last answer from Redis showed.
    state: AtomicU8,
    known: Mutex<Known>,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
    rejected: AtomicU64,
}

/// What this process last heard from Redis, and the starts it has not sent yet.
#[derive(Debug, Default)]
struct Known {
    /// When Redis last said "closed" (`None` since it said otherwise, or before it said anything).
    closed_at: Option<Instant>,
    /// The generation Redis last gave.
    generation: i64,
    /// Calls admitted locally whose start Redis has not counted yet.
    unsent_starts: u64,
    /// A flush of `unsent_starts` is scheduled.
    flush_due: bool,
}

/// Where a permit's start was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// By Redis, in this bucket.
    Bucket(i64),
    /// Locally (sent with a later record or flush).
    Local,
    /// The half-open probe: not counted as a start.
    Probe,
}

impl Start {
    /// The script's ARGV for it (see `RECORD`).
    fn arg(self) -> i64 {
        match self {
            Start::Bucket(index) => index,
            Start::Probe => -1,
            Start::Local => -2,
        }
    }
}

/// The answer of [`SharedBreaker::acquire`].
#[derive(Debug)]
pub enum SharedAdmit {
    /// The call may go (closed, or as the half-open probe).
    Permit(SharedPermit),
    /// The circuit is open across the processes.
    Open(BreakerOpen),
    /// Redis did not answer: use the in-process breaker.
    Unavailable,
}

/// Permission for one call from the shared breaker. Dropping it unrecorded records
/// [`Outcome::Ignored`], as the in-process permit does.
#[must_use = "an unrecorded permit counts as Ignored; call `record` with the call's outcome"]
pub struct SharedPermit {
    inner: Arc<Inner>,
    generation: i64,
    start: Start,
    resolved: bool,
}

impl std::fmt::Debug for SharedPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPermit")
            .field("generation", &self.generation)
            .field("start", &self.start)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_error() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected breaker answer"))
}

/// What a record or flush asks of the `RECORD` script.
#[derive(Debug, Clone, Copy)]
struct Report {
    generation: i64,
    start: Start,
    /// `None`: only send the unsent starts.
    outcome: Option<Outcome>,
}

impl SharedBreaker {
    /// The shared breaker of the upstream named `upstream` (`None`: the client's one server),
    /// with `config` (every process should be given the same).
    pub fn new(coordinator: Arc<Coordinator>, upstream: Option<&str>, config: BreakerConfig) -> Self {
        let prefix = &coordinator.config().key_prefix;
        let key = match upstream {
            None => format!("{{{prefix}:br}}"),
            Some(upstream) => format!("{{{prefix}:br:{}}}", short_hash("chatgpt-native upstream", upstream)),
        };
        let fresh_closed = FRESH_CLOSED.min(config.reset_timeout / 2);
        SharedBreaker {
            inner: Arc::new(Inner {
                coordinator,
                key,
                config,
                fresh_closed,
                state: AtomicU8::new(STATE_CLOSED),
                known: Mutex::new(Known::default()),
                opened: AtomicU64::new(0),
                half_opened: AtomicU64::new(0),
                closed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// Permission for one call that may last `probe_lease` (its time left; capped at
    /// [`MAX_PROBE_LEASE`]), which is how long it holds the probe if it becomes the probe. Asks
    /// Redis unless it said "closed" recently (see the module docs).
    pub async fn acquire(&self, probe_lease: Duration) -> SharedAdmit {
        let inner = &self.inner;
        let unsent = {
            let mut known = inner.known();
            let fresh = known
                .closed_at
                .is_some_and(|at| Instant::now().saturating_duration_since(at) < inner.fresh_closed);
            if fresh {
                known.unsent_starts = known.unsent_starts.saturating_add(1);
                let generation = known.generation;
                drop(known);
                inner.schedule_flush();
                return SharedAdmit::Permit(self.permit(generation, Start::Local));
            }
            std::mem::take(&mut known.unsent_starts)
        };
        let lease = millis(probe_lease.min(MAX_PROBE_LEASE)).max(1);
        let key = inner.key.as_str();
        let cfg = &inner.config;
        let answer = inner
            .coordinator
            .run(|mut conn: RedisConn| async move {
                let answer: Vec<i64> = ACQUIRE_SCRIPT
                    .key(key)
                    .arg(millis(cfg.window))
                    .arg(cfg.buckets.clamp(1, MAX_BUCKETS))
                    .arg(millis(cfg.reset_timeout))
                    .arg(lease)
                    .arg(unsent)
                    .invoke_async(&mut conn)
                    .await?;
                RedisResult::Ok(answer)
            })
            .await;
        let Ok(answer) = answer else {
            inner.known().closed_at = None;
            return SharedAdmit::Unavailable;
        };
        match answer.as_slice() {
            [0, generation, bucket, ..] => {
                inner.heard(STATE_CLOSED, *generation);
                SharedAdmit::Permit(self.permit(*generation, Start::Bucket(*bucket)))
            }
            [1, retry_in, ..] => {
                inner.heard(if *retry_in > 0 { STATE_OPEN } else { STATE_HALF_OPEN }, 0);
                Metrics::inc(&inner.rejected);
                SharedAdmit::Open(BreakerOpen {
                    retry_in: Duration::from_millis(u64::try_from(*retry_in).unwrap_or(0)),
                })
            }
            [2, generation, ..] => {
                inner.heard(STATE_HALF_OPEN, *generation);
                Metrics::inc(&inner.half_opened);
                SharedAdmit::Permit(self.permit(*generation, Start::Probe))
            }
            // Not an answer these scripts give: treat Redis as unavailable for this call.
            _ => SharedAdmit::Unavailable,
        }
    }

    fn permit(&self, generation: i64, start: Start) -> SharedPermit {
        SharedPermit {
            inner: Arc::clone(&self.inner),
            generation,
            start,
            resolved: false,
        }
    }

    /// The state the last answer from Redis showed (closed before any).
    pub fn state(&self) -> BreakerState {
        match self.inner.state.load(Ordering::Relaxed) {
            STATE_OPEN => BreakerState::Open,
            STATE_HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Transitions this process caused or saw first (it opened or closed the circuit, took a
    /// probe) and the calls it refused.
    pub fn stats(&self) -> BreakerStats {
        let i = &self.inner;
        BreakerStats {
            opened: i.opened.load(Ordering::Relaxed),
            half_opened: i.half_opened.load(Ordering::Relaxed),
            closed: i.closed.load(Ordering::Relaxed),
            rejected: i.rejected.load(Ordering::Relaxed),
        }
    }

    /// The Redis key of this breaker.
    pub fn key(&self) -> &str {
        &self.inner.key
    }
}

impl Inner {
    /// The lock only guards plain fields that are never left half-updated.
    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Redis said the state is `state` (and, when closed, the generation).
    fn heard(&self, state: u8, generation: i64) {
        self.state.store(state, Ordering::Relaxed);
        let mut known = self.known();
        if state == STATE_CLOSED {
            known.closed_at = Some(Instant::now());
            known.generation = generation;
        } else {
            known.closed_at = None;
        }
    }

    /// Sends the locally counted starts within [`FLUSH_DELAY`], unless a record takes them first.
    fn schedule_flush(self: &Arc<Self>) {
        {
            let mut known = self.known();
            if known.flush_due {
                return;
            }
            known.flush_due = true;
        }
        let inner = Arc::clone(self);
        in_background(async move {
            tokio::time::sleep(FLUSH_DELAY).await;
            let generation = {
                let mut known = inner.known();
                known.flush_due = false;
                if known.unsent_starts == 0 {
                    return;
                }
                known.generation
            };
            report(
                &inner,
                Report {
                    generation,
                    start: Start::Local,
                    outcome: None,
                },
            )
            .await;
        });
    }
}

impl SharedPermit {
    /// Reports the call's outcome (in the background).
    pub fn record(mut self, outcome: Outcome) {
        self.resolved = true;
        self.send(outcome);
    }

    /// Whether this permit is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.start == Start::Probe
    }

    fn send(&self, outcome: Outcome) {
        if outcome == Outcome::Ignored && self.start == Start::Local {
            // Not a call after all: if its start has not left this process, un-count it here.
            let mut known = self.inner.known();
            if known.unsent_starts > 0 && known.generation == self.generation {
                known.unsent_starts = known.unsent_starts.saturating_sub(1);
                return;
            }
        }
        let inner = Arc::clone(&self.inner);
        let report_of = Report {
            generation: self.generation,
            start: self.start,
            outcome: Some(outcome),
        };
        in_background(async move { report(&inner, report_of).await });
    }
}

impl Drop for SharedPermit {
    fn drop(&mut self) {
        if !self.resolved {
            self.send(Outcome::Ignored);
        }
    }
}

/// Runs the `RECORD` script for `r`, with the starts not sent yet, and learns the state.
async fn report(inner: &Inner, r: Report) {
    let code: u8 = match r.outcome {
        Some(Outcome::Success) => 0,
        Some(Outcome::Failure) => 1,
        Some(Outcome::Ignored) => 2,
        None => 3,
    };
    let unsent = std::mem::take(&mut inner.known().unsent_starts);
    let key = inner.key.as_str();
    let cfg = &inner.config;
    let answer = inner
        .coordinator
        .run(|mut conn: RedisConn| async move {
            let answer: Vec<i64> = RECORD_SCRIPT
                .key(key)
                .arg(millis(cfg.window))
                .arg(cfg.buckets.clamp(1, MAX_BUCKETS))
                .arg(millis(cfg.reset_timeout))
                .arg(r.generation)
                .arg(r.start.arg())
                .arg(code)
                .arg(cfg.volume_threshold)
                .arg(cfg.error_threshold_percentage)
                .arg(unsent)
                .invoke_async(&mut conn)
                .await?;
            match answer.as_slice() {
                [transition, state, generation, ..] => Ok((*transition, *state, *generation)),
                _ => Err(parse_error()),
            }
        })
        .await;
    let Ok((transition, state, generation)) = answer else {
        inner.known().closed_at = None;
        return;
    };
    let state = match state {
        1 => STATE_OPEN,
        2 => STATE_HALF_OPEN,
        _ => STATE_CLOSED,
    };
    inner.heard(state, generation);
    match transition {
        1 => Metrics::inc(&inner.opened),
        2 => Metrics::inc(&inner.closed),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::coordination::test_redis::TestRedis;
    use crate::core::coordination::{CoordinationConfig, CoordinationOptions};

    /// A coordinator as one process would have it (a generous budget: a busy machine).
    fn process(url: &str, prefix: &str) -> Arc<Coordinator> {
        let cfg = CoordinationConfig::build(CoordinationOptions {
            url: url.into(),
            key_prefix: Some(prefix.into()),
            operation_timeout_ms: Some(2_000),
            ..Default::default()
        })
        .unwrap();
        Arc::new(Coordinator::new(cfg))
    }

    fn config(reset: Duration) -> BreakerConfig {
        BreakerConfig {
            volume_threshold: 4,
            reset_timeout: reset,
            ..BreakerConfig::default()
        }
    }

    async fn permit(b: &SharedBreaker) -> SharedPermit {
        match b.acquire(Duration::from_secs(5)).await {
            SharedAdmit::Permit(p) => p,
            other => panic!("expected a permit, got {other:?}"),
        }
    }

    /// Waits until the background records of `b` have landed (the state is the one wanted).
    async fn until_state(b: &SharedBreaker, other: &SharedBreaker, want: BreakerState) {
        for _ in 0..200 {
            // Asking refreshes what `state()` shows, without taking a permit when not closed.
            match other.acquire(Duration::from_secs(5)).await {
                SharedAdmit::Permit(p) if want == BreakerState::Closed => {
                    drop(p);
                    return;
                }
                SharedAdmit::Open(_) if want != BreakerState::Closed => return,
                SharedAdmit::Permit(p) => drop(p),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("breaker {} never reached {want}", b.key());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_in_one_process_open_the_circuit_for_the_other() {
        let redis = TestRedis::start();
        let a = SharedBreaker::new(process(&redis.url(), "br1"), None, config(Duration::from_secs(30)));
        let b = SharedBreaker::new(process(&redis.url(), "br1"), None, config(Duration::from_secs(30)));
        for _ in 0..4 {
            permit(&a).await.record(Outcome::Failure);
        }
        until_state(&a, &b, BreakerState::Open).await;
        match b.acquire(Duration::from_secs(5)).await {
            SharedAdmit::Open(open) => assert!(open.retry_in > Duration::from_secs(20), "{open:?}"),
            other => panic!("the other process must be refused, got {other:?}"),
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            a.stats().opened,
            1,
            "the process whose failure opened it counts the opening"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_probe_across_processes_and_its_success_closes_for_all() {
        let redis = TestRedis::start();
        let reset = Duration::from_millis(300);
        let a = SharedBreaker::new(process(&redis.url(), "br2"), None, config(reset));
        let b = SharedBreaker::new(process(&redis.url(), "br2"), None, config(reset));
        for _ in 0..4 {
            permit(&a).await.record(Outcome::Failure);
        }
        until_state(&a, &b, BreakerState::Open).await;
        tokio::time::sleep(reset + Duration::from_millis(50)).await;
        // Both processes ask at once: exactly one gets the probe.
        let (x, y) = tokio::join!(a.acquire(Duration::from_secs(5)), b.acquire(Duration::from_secs(5)));
        let probes: Vec<SharedPermit> = [x, y]
            .into_iter()
            .filter_map(|admit| match admit {
                SharedAdmit::Permit(p) => Some(p),
                SharedAdmit::Open(open) => {
                    assert_eq!(open.retry_in, Duration::ZERO, "refused while the probe is out");
                    None
                }
                SharedAdmit::Unavailable => panic!("Redis answers"),
            })
            .collect();
        assert_eq!(probes.len(), 1);
        assert!(probes.iter().all(SharedPermit::is_probe));
        for probe in probes {
            probe.record(Outcome::Success);
        }
        until_state(&a, &b, BreakerState::Closed).await;
        assert!(!permit(&a).await.is_probe(), "closed again for everyone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_whose_process_died_lets_another_probe_once_its_lease_ends() {
        let redis = TestRedis::start();
        let reset = Duration::from_millis(100);
        let a = SharedBreaker::new(process(&redis.url(), "br3"), None, config(reset));
        let b = SharedBreaker::new(process(&redis.url(), "br3"), None, config(reset));
        for _ in 0..4 {
            permit(&a).await.record(Outcome::Failure);
        }
        until_state(&a, &b, BreakerState::Open).await;
        tokio::time::sleep(reset + Duration::from_millis(50)).await;
        let SharedAdmit::Permit(probe) = a.acquire(Duration::from_millis(400)).await else {
            panic!("the first caller probes");
        };
        assert!(probe.is_probe());
        // The process holding the probe dies: its permit is never recorded, not even as dropped.
        std::mem::forget(probe);
        assert!(matches!(b.acquire(Duration::from_secs(5)).await, SharedAdmit::Open(_)));
        tokio::time::sleep(Duration::from_millis(450)).await;
        match b.acquire(Duration::from_secs(5)).await {
            SharedAdmit::Permit(p) => assert!(p.is_probe(), "the lease ended: the next caller probes"),
            other => panic!("expected the probe, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_probe_reopens_and_stale_outcomes_are_discarded() {
        let redis = TestRedis::start();
        let reset = Duration::from_millis(200);
        let a = SharedBreaker::new(process(&redis.url(), "br4"), None, config(reset));
        let b = SharedBreaker::new(process(&redis.url(), "br4"), None, config(reset));
        let late = permit(&b).await;
        for _ in 0..4 {
            permit(&a).await.record(Outcome::Failure);
        }
        until_state(&a, &b, BreakerState::Open).await;
        tokio::time::sleep(reset + Duration::from_millis(50)).await;
        let probe = permit(&a).await;
        assert!(probe.is_probe());
        // A success admitted before the circuit opened must not close it.
        late.record(Outcome::Success);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(b.acquire(Duration::from_secs(5)).await, SharedAdmit::Open(_)));
        probe.record(Outcome::Failure);
        // The record lands in the background: the probe is out (retry in 0) until it does.
        let started = std::time::Instant::now();
        loop {
            match b.acquire(Duration::from_secs(5)).await {
                SharedAdmit::Open(open) if open.retry_in > Duration::ZERO => {
                    assert!(open.retry_in > Duration::from_millis(50), "a fresh reset: {open:?}");
                    break;
                }
                SharedAdmit::Open(_) => {}
                other => panic!("a failed probe reopens, got {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the failed probe never reopened it"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_started_anywhere_weigh_against_fast_failures() {
        let redis = TestRedis::start();
        let a = SharedBreaker::new(process(&redis.url(), "br5"), None, config(Duration::from_secs(30)));
        let b = SharedBreaker::new(process(&redis.url(), "br5"), None, config(Duration::from_secs(30)));
        // 40 calls out in one process (their starts reach Redis within FLUSH_DELAY); the other
        // sees 10 fast failures: 10 of 50 started.
        let ops = a.inner.coordinator.stats().operations;
        let mut in_flight = Vec::new();
        for _ in 0..40 {
            in_flight.push(permit(&a).await);
        }
        tokio::time::sleep(FLUSH_DELAY * 5).await;
        let a_ops = a.inner.coordinator.stats().operations - ops;
        assert!(
            a_ops <= 3,
            "one acquire from Redis, then starts counted locally and flushed: {a_ops} operations"
        );
        for _ in 0..10 {
            permit(&b).await.record(Outcome::Failure);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.state(), BreakerState::Closed, "the records' answers say closed");
        // The calls in flight are aborted: they no longer count, and the failures dominate.
        drop(in_flight);
        tokio::time::sleep(Duration::from_millis(100)).await;
        permit(&b).await.record(Outcome::Failure);
        until_state(&a, &b, BreakerState::Open).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_away_answers_unavailable_once_its_closed_is_stale_or_a_record_fails() {
        let mut redis = TestRedis::start();
        let a = SharedBreaker::new(process(&redis.url(), "br6"), None, config(Duration::from_secs(30)));
        let first = permit(&a).await;
        redis.kill();
        // Redis said "closed" a moment ago: the next call is admitted without asking.
        let local = permit(&a).await;
        assert_eq!(local.start, Start::Local);
        drop(local);
        // The failed record forgets "closed"; the next call asks Redis, which is away.
        first.record(Outcome::Success);
        let started = std::time::Instant::now();
        loop {
            match a.acquire(Duration::from_secs(5)).await {
                SharedAdmit::Unavailable => break,
                SharedAdmit::Permit(p) => drop(p),
                SharedAdmit::Open(open) => panic!("Redis is away, not open: {open:?}"),
            }
            assert!(
                started.elapsed() < FRESH_CLOSED * 2,
                "still admitting locally after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn keys_are_one_hash_tag_and_name_no_upstream_url() {
        let coordinator = Arc::new(Coordinator::new(
            CoordinationConfig::build(CoordinationOptions {
                url: "redis://127.0.0.1:9".into(),
                ..Default::default()
            })
            .unwrap(),
        ));
        let plain = SharedBreaker::new(Arc::clone(&coordinator), None, BreakerConfig::default());
        assert_eq!(plain.key(), "{chatgpt-native:br}");
        let up = SharedBreaker::new(
            coordinator,
            Some("primary https://api.example.test/v1"),
            BreakerConfig::default(),
        );
        assert!(up.key().starts_with("{chatgpt-native:br:") && up.key().ends_with('}'));
        assert!(!up.key().contains("example"));
        assert_eq!(up.key().matches('{').count(), 1);
    }
}
