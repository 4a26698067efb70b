//! Response cache and in-flight coalescing.
//!
//! **Cache.** Complete answers (one choice, `finish_reason` `stop` or `length`; for a request whose
//! `response_format` asks for JSON, only one that is JSON, neither cut nor refused) are kept in a
//! quick_cache weighted by bytes, keyed by a 128-bit xxh3 hash of the canonical request actually
//! sent: the base URL, the full messages array after history building, and every body parameter
//! except `stream`, `stream_options` and `user` (they do not change the answer). The API key is
//! never part of the key. quick_cache has no TTL, so expiry is checked on read: an entry older
//! than `ttl` is removed and reported as a miss. Each entry weighs at least `max_bytes /
//! max_entries`, which bounds the entry count as well as the memory. Streamed answers keep the
//! boundaries of their original deltas, so a streaming hit replays them one by one rather than
//! as one lump.
//!
//! **Coalescing.** Identical requests in flight at the same time share one upstream call
//! (singleflight): the first creates a [`Flight`], later ones join it. Every event the upstream
//! call produces is recorded in the flight, so a caller that joins late still receives every
//! delta from the first. The upstream call runs in its own task and holds its own cancellation
//! token, cancelled only when the last waiter leaves: one caller aborting or timing out does not
//! cancel the request for the others. Each waiter keeps its own deadline; the upstream call is
//! bounded by the latest of them ([`Flight::deadline`]). A failure reaches every waiter and is
//! never cached. Of the waiters answered, the first accounts for the request
//! ([`Flight::claim_request`]); the others are answered as cache hits are (`cached`).
//!
//! Both are off unless the client's `cache` option turns them on (see `config`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chat::{AddedMax, CompletionChoice, Params, PromptMessage, RawJson, ToolCall, Usage};
use super::error::ChatError;
use super::structured::ChoiceOutput;

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: u64,
    pub ttl: Duration,
}

impl Default for CacheConfig {
    /// 1,024 entries, 64 MiB, one hour.
    fn default() -> Self {
        CacheConfig {
            max_entries: 1024,
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// A complete answer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCompletion {
    pub text: String,
    /// End offsets (bytes) of the original stream deltas in `text`; empty for non-streamed ones.
    pub delta_ends: Vec<usize>,
    pub role: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub detail: RawJson,
    /// The answer's tool calls (shared by coalesced calls; answers with any are not cached).
    pub tool_calls: Vec<ToolCall>,
    /// The first choice's refusal and log probabilities (see `Completion`).
    pub refusal: Option<String>,
    pub logprobs: Option<RawJson>,
    /// Every choice of an answer to a request for several (`n > 1`), else empty. `text` and
    /// `delta_ends` are the first choice's.
    pub all_choices: Vec<CompletionChoice>,
    /// The index of the upstream that answered (see [`Received::upstream`](super::call::Received)).
    pub upstream: Option<usize>,
}

impl CachedCompletion {
    /// What [`parse_output`](super::structured::parse_output) reads of the answer: each choice
    /// (the only one's, or every one of an answer with several).
    pub fn outputs(&self) -> Vec<ChoiceOutput<'_>> {
        if !self.all_choices.is_empty() {
            return self.all_choices.iter().map(CompletionChoice::output).collect();
        }
        vec![ChoiceOutput {
            text: &self.text,
            finish_reason: self.finish_reason.as_deref(),
            refusal: self.refusal.as_deref(),
            tool_calls: !self.tool_calls.is_empty(),
        }]
    }

    /// The original deltas, in order (the whole text as one when the answer was not streamed).
    pub fn deltas(&self) -> Vec<&str> {
        if self.delta_ends.is_empty() {
            return if self.text.is_empty() {
                Vec::new()
            } else {
                vec![self.text.as_str()]
            };
        }
        let mut out = Vec::with_capacity(self.delta_ends.len());
        let mut start = 0;
        for &end in &self.delta_ends {
            if let Some(piece) = self.text.get(start..end) {
                out.push(piece);
            }
            start = end;
        }
        out
    }

    fn bytes(&self) -> u64 {
        // Text, offsets and the raw detail plus fixed overhead.
        let detail = self.detail.get().len();
        let logprobs = |l: &Option<RawJson>| l.as_ref().map_or(0, |l| l.get().len());
        let choices = self
            .all_choices
            .iter()
            .map(|c| c.text.len() + c.refusal.as_ref().map_or(0, String::len) + logprobs(&c.logprobs) + 64)
            .sum::<usize>();
        let refusal = self.refusal.as_ref().map_or(0, String::len);
        (self.text.len()
            + self.delta_ends.len() * 8
            + detail
            + self.role.len()
            + refusal
            + logprobs(&self.logprobs)
            + choices
            + 128) as u64
    }
}

struct Entry {
    completion: Arc<CachedCompletion>,
    stored_at: Instant,
    bytes: u64,
}

#[derive(Clone)]
struct EntryWeighter {
    min_weight: u64,
}

impl Weighter<u128, Arc<Entry>> for EntryWeighter {
    fn weight(&self, _key: &u128, val: &Arc<Entry>) -> u64 {
        val.bytes.max(self.min_weight)
    }
}

/// The response cache of one client.
pub struct ResponseCache {
    cache: Cache<u128, Arc<Entry>, EntryWeighter>,
    ttl: Duration,
}

impl ResponseCache {
    pub fn new(cfg: CacheConfig) -> Self {
        let max_entries = cfg.max_entries.max(1);
        let min_weight = (cfg.max_bytes / max_entries as u64).max(1);
        ResponseCache {
            cache: Cache::with_weighter(max_entries, cfg.max_bytes.max(1), EntryWeighter { min_weight }),
            ttl: cfg.ttl,
        }
    }

    /// A fresh, unexpired answer for `key`.
    pub fn get(&self, key: u128) -> Option<Arc<CachedCompletion>> {
        let entry = self.cache.get(&key)?;
        if entry.stored_at.elapsed() >= self.ttl {
            self.cache.remove(&key);
            return None;
        }
        Some(entry.completion.clone())
    }

    pub fn insert(&self, key: u128, completion: CachedCompletion) {
        let bytes = completion.bytes();
        self.cache.insert(
            key,
            Arc::new(Entry {
                completion: Arc::new(completion),
                stored_at: Instant::now(),
                bytes,
            }),
        );
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes actually held (not the weight charged).
    pub fn bytes(&self) -> u64 {
        self.cache.iter().map(|(_, e)| e.bytes).sum()
    }

    pub fn clear(&self) {
        self.cache.clear();
    }
}

/// Whether an answer may be stored: complete, one choice, no error.
pub fn is_cacheable(finish_reason: Option<&str>, choices: usize) -> bool {
    matches!(finish_reason, Some("stop" | "length")) && choices <= 1
}

/// The cache key: a hash of what determines the answer.
pub fn cache_key(base_url: &str, params: &Params, added_max: AddedMax, messages: &[PromptMessage]) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(base_url.as_bytes());
    h.update(&[0]);
    h.update(params.answer_json().as_bytes());
    h.update(&[0]);
    if let Some(cap) = added_max {
        h.update(cap.field.as_bytes());
        h.update(&cap.tokens.to_le_bytes());
    }
    for m in messages {
        h.update(&[1]);
        h.update(m.role.as_bytes());
        h.update(&[2]);
        m.content.hash_into(&mut h);
        h.update(&[3]);
        if let Some(name) = &m.name {
            h.update(name.as_bytes());
        }
        for call in m.tool_calls.iter().flatten() {
            for part in [&call.id, &call.function.name, &call.function.arguments] {
                h.update(&[4]);
                h.update(part.as_bytes());
            }
        }
        if let Some(id) = &m.tool_call_id {
            h.update(&[5]);
            h.update(id.as_bytes());
        }
    }
    h.digest128()
}

/// What the shared upstream call produced.
#[derive(Debug, Clone)]
pub struct FlightResult {
    pub completion: Arc<CachedCompletion>,
    pub request_id: Option<String>,
    /// Answered from the response cache in Redis (`coordination`): no request was sent.
    pub from_shared_cache: bool,
}

struct FlightState {
    deltas: Vec<FlightDelta>,
    done: Option<Result<FlightResult, ChatError>>,
    /// Callers waiting for the outcome. Changed only under this lock, together with the check of
    /// `cancel`, so a caller never joins a flight that its last waiter is cancelling.
    waiters: usize,
    /// The latest deadline of the waiters that joined: the upstream call may run until then.
    deadline: Instant,
}

/// A text delta of a flight, and the choice it belongs to (0 unless the call asked for several).
#[derive(Clone)]
struct FlightDelta {
    choice: u32,
    text: String,
}

/// One shared upstream call and everything it has produced so far.
pub struct Flight {
    state: Mutex<FlightState>,
    notify: Notify,
    /// Cancels the upstream call; fired when the last waiter leaves.
    pub cancel: CancellationToken,
    /// Set by the first waiter to receive the answer (see [`Flight::claim_request`]).
    request_claimed: AtomicBool,
    /// Attempts the upstream call has started (see `CallPlan::attempts`).
    pub attempts: AtomicU32,
}

impl Flight {
    /// A flight with its creator as its one waiter (see `Flights::join_or_create`).
    fn new(deadline: Instant) -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(FlightState {
                deltas: Vec::new(),
                done: None,
                waiters: 1,
                deadline,
            }),
            notify: Notify::new(),
            cancel: CancellationToken::new(),
            request_claimed: AtomicBool::new(false),
            attempts: AtomicU32::new(0),
        })
    }

    /// True for the first waiter to call it once the answer is in, false for every other: one
    /// reply reports the shared request (and its usage), the others were answered without a
    /// request of their own. The first to receive it, not the creator, since the creator may
    /// have left: whoever is answered, one reply accounts for the request.
    pub fn claim_request(&self) -> bool {
        !self.request_claimed.swap(true, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Join as a waiter whose own deadline is `deadline`, extending the flight's to it if later.
    /// `None` when the flight is already being cancelled (its last waiter left).
    fn try_join(self: &Arc<Self>, deadline: Instant) -> Option<WaiterGuard> {
        let mut st = self.lock();
        if self.cancel.is_cancelled() {
            return None;
        }
        st.waiters = st.waiters.saturating_add(1);
        st.deadline = st.deadline.max(deadline);
        Some(WaiterGuard { flight: self.clone() })
    }

    /// The latest deadline of the waiters so far: no waiter is left to serve after it.
    pub fn deadline(&self) -> Instant {
        self.lock().deadline
    }

    /// Record a delta and wake the waiters.
    pub fn push_delta(&self, choice: u32, delta: &str) {
        self.lock().deltas.push(FlightDelta {
            choice,
            text: delta.to_owned(),
        });
        self.notify.notify_waiters();
    }

    /// Record the outcome and wake the waiters.
    pub fn finish(&self, result: Result<FlightResult, ChatError>) {
        self.lock().done = Some(result);
        self.notify.notify_waiters();
    }

    /// Wait for the next events: calls `on_delta(choice, delta)` for every delta after `*seen`,
    /// and returns the outcome once there is one. Cancel-safe.
    pub async fn next(
        &self,
        seen: &mut usize,
        on_delta: &mut (dyn FnMut(u32, &str) + Send),
    ) -> Result<FlightResult, ChatError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before reading, so an event between the read and the wait is not missed.
            notified.as_mut().enable();
            let (new, done) = {
                let st = self.lock();
                let new: Vec<FlightDelta> = st.deltas.get(*seen..).map(|d| d.to_vec()).unwrap_or_default();
                (new, st.done.clone())
            };
            *seen = seen.saturating_add(new.len());
            for d in &new {
                on_delta(d.choice, &d.text);
            }
            if let Some(done) = done {
                return done;
            }
            notified.await;
        }
    }
}

/// A waiter's membership of a flight: when the last one leaves, the upstream call is cancelled.
pub struct WaiterGuard {
    flight: Arc<Flight>,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut st = self.flight.lock();
        st.waiters = st.waiters.saturating_sub(1);
        if st.waiters == 0 && st.done.is_none() {
            // Under the lock, so `try_join` sees the cancellation or the caller it lets in is
            // counted before this check.
            self.flight.cancel.cancel();
        }
    }
}

/// A caller's place in a flight: the flight, its membership, and whether it started the flight
/// (and so must start the upstream call).
pub struct Joined {
    pub flight: Arc<Flight>,
    pub waiter: WaiterGuard,
    pub created: bool,
}

/// The flights in progress of one client.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<u128, Arc<Flight>>>,
}

impl Flights {
    /// Join the flight for `key` with this caller's `deadline`, or create it.
    pub fn join_or_create(&self, key: u128, deadline: Instant) -> Joined {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&key) {
            // A flight whose waiters all left is being cancelled: do not join it.
            if let Some(waiter) = f.try_join(deadline) {
                return Joined {
                    flight: f.clone(),
                    waiter,
                    created: false,
                };
            }
        }
        let flight = Flight::new(deadline);
        // The creator is the first waiter.
        let waiter = WaiterGuard { flight: flight.clone() };
        map.insert(key, flight.clone());
        Joined {
            flight,
            waiter,
            created: true,
        }
    }

    /// The upstream call finished: later identical requests start a new flight (or hit the cache).
    pub fn remove(&self, key: u128, flight: &Arc<Flight>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chat::ReplyCap;
    use serde_json::{Map, Value};

    fn completion(text: &str, ends: Vec<usize>) -> CachedCompletion {
        CachedCompletion {
            text: text.into(),
            delta_ends: ends,
            role: "assistant".into(),
            finish_reason: Some("stop".into()),
            usage: None,
            detail: RawJson::default(),
            tool_calls: Vec::new(),
            refusal: None,
            logprobs: None,
            all_choices: Vec::new(),
            upstream: None,
        }
    }

    fn msgs(text: &str) -> Vec<PromptMessage> {
        vec![PromptMessage {
            role: "user".into(),
            content: text.into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }]
    }

    fn params(model: &str) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("model".into(), Value::from(model));
        p.insert("temperature".into(), Value::from(0.5));
        p
    }

    #[test]
    fn keys_ignore_stream_and_user_but_not_what_changes_the_answer() {
        let key = |base: &str, p: Map<String, Value>, max: AddedMax, m: &[PromptMessage]| {
            cache_key(base, &Params::new(p), max, m)
        };
        let base = key("http://a/v1", params("m"), None, &msgs("hi"));
        let mut streamed = params("m");
        streamed.insert("stream".into(), Value::Bool(true));
        streamed.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
        streamed.insert("user".into(), Value::from("u1"));
        assert_eq!(key("http://a/v1", streamed, None, &msgs("hi")), base);
        assert_ne!(key("http://b/v1", params("m"), None, &msgs("hi")), base);
        assert_ne!(key("http://a/v1", params("m2"), None, &msgs("hi")), base);
        assert_ne!(key("http://a/v1", params("m"), None, &msgs("hi!")), base);
        let mut hot = params("m");
        hot.insert("temperature".into(), Value::from(1.5));
        assert_ne!(key("http://a/v1", hot, None, &msgs("hi")), base);
        // The reply cap changes the answer, whether the caller set it or the client added it.
        let capped = key(
            "http://a/v1",
            params("m"),
            Some(ReplyCap {
                field: "max_tokens",
                tokens: 10,
            }),
            &msgs("hi"),
        );
        assert_ne!(capped, base);
        assert_ne!(
            key(
                "http://a/v1",
                params("m"),
                Some(ReplyCap {
                    field: "max_tokens",
                    tokens: 11
                }),
                &msgs("hi")
            ),
            capped
        );
        let mut own = params("m");
        own.insert("max_tokens".into(), Value::from(10));
        assert_ne!(key("http://a/v1", own, None, &msgs("hi")), base);
    }

    #[test]
    fn streamed_answers_replay_their_original_deltas() {
        let c = completion("Hello, world", vec![5, 7, 12]);
        assert_eq!(c.deltas(), ["Hello", ", ", "world"]);
        assert_eq!(completion("lump", vec![]).deltas(), ["lump"]);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = ResponseCache::new(CacheConfig {
            ttl: Duration::from_secs(10),
            ..CacheConfig::default()
        });
        cache.insert(1, completion("x", vec![]));
        assert!(cache.get(1).is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(cache.get(1).is_none());
        assert_eq!(cache.len(), 0, "expired entries are removed on read");
    }

    #[test]
    fn entry_count_and_bytes_are_bounded() {
        let cache = ResponseCache::new(CacheConfig {
            max_entries: 10,
            max_bytes: 100_000,
            ttl: Duration::from_secs(60),
        });
        for i in 0..100 {
            cache.insert(i, completion("short", vec![]));
        }
        assert!(cache.len() <= 10, "len {}", cache.len());
        let big = "x".repeat(30_000);
        for i in 100..120 {
            cache.insert(i, completion(&big, vec![]));
        }
        assert!(cache.bytes() <= 100_000, "bytes {}", cache.bytes());
    }

    #[test]
    fn only_complete_single_choice_answers_are_cacheable() {
        assert!(is_cacheable(Some("stop"), 1));
        assert!(is_cacheable(Some("length"), 1));
        // A stream's last chunk may be a usage chunk with no choices.
        assert!(is_cacheable(Some("stop"), 0));
        assert!(!is_cacheable(Some("content_filter"), 1));
        assert!(!is_cacheable(None, 1));
        assert!(!is_cacheable(Some("stop"), 2));
    }

    #[tokio::test]
    async fn joiners_share_the_flight_and_replay_every_delta() {
        let flights = Flights::default();
        let now = Instant::now();
        let first = flights.join_or_create(7, now);
        assert!(first.created);
        let second = flights.join_or_create(7, now);
        assert!(!second.created && Arc::ptr_eq(&first.flight, &second.flight));
        let flight = first.flight.clone();
        flight.push_delta(0, "a");
        flight.push_delta(1, "b");
        let producer = {
            let flight = flight.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                flight.push_delta(0, "c");
                flight.finish(Ok(FlightResult {
                    completion: Arc::new(completion("abc", vec![1, 2, 3])),
                    request_id: None,
                    from_shared_cache: false,
                }));
            })
        };
        let mut seen = 0;
        let mut got = Vec::new();
        let result = flight
            .next(&mut seen, &mut |c, d| got.push((c, d.to_owned())))
            .await
            .unwrap();
        producer.await.unwrap();
        assert_eq!(got, [(0, "a".into()), (1, "b".into()), (0, "c".into())]);
        assert_eq!(result.completion.text, "abc");
    }

    #[test]
    fn the_last_waiter_leaving_cancels_the_flight() {
        let flights = Flights::default();
        let now = Instant::now();
        let a = flights.join_or_create(1, now);
        let b = flights.join_or_create(1, now);
        let flight = a.flight.clone();
        drop(a);
        assert!(!flight.cancel.is_cancelled());
        drop(b);
        assert!(flight.cancel.is_cancelled());
        let fresh = flights.join_or_create(1, now);
        assert!(
            fresh.created && !Arc::ptr_eq(&fresh.flight, &flight),
            "a cancelled flight is not joined"
        );
    }

    #[test]
    fn a_flight_runs_until_the_latest_deadline_of_its_waiters() {
        let flights = Flights::default();
        let now = Instant::now();
        let short = flights.join_or_create(3, now + Duration::from_secs(1));
        assert_eq!(short.flight.deadline(), now + Duration::from_secs(1));
        let long = flights.join_or_create(3, now + Duration::from_secs(10));
        assert_eq!(short.flight.deadline(), now + Duration::from_secs(10));
        // An earlier joiner never shortens it.
        let _early = flights.join_or_create(3, now);
        assert_eq!(long.flight.deadline(), now + Duration::from_secs(10));
    }
}
