//! Sharing among identical calls: the response cache answers a request seen before, and
//! identical requests in flight share one upstream call (a flight).
//!
//! The flight runs in its own task, so no single caller's abort or deadline ends it: it is
//! cancelled when its last waiter leaves, and bounded by the latest of their deadlines. Each
//! caller waits under its own bounds and receives every delta from the first. One reply of a
//! flight, the first to receive the answer, accounts for the request and its usage; the others
//! are `cached`, answered without a request of their own, as a cache hit is.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::oneshot;

use super::bounds::{CallBounds, Deadline};
use super::cache::{is_cacheable, CachedCompletion, Flight, FlightResult, Flights, ResponseCache};
use super::call::{CallPlan, Outbound, Received};
use super::chat::Completion;
use super::coordination::{Lookup, SharedCache};
use super::error::{ChatError, ErrorCode};
use super::metrics::Metrics;
use super::stream::{Delivery, DeltaEvent, DeltaSink, Progress, ProgressIds};
use super::structured::{parse_output, OutputFormat};

/// What a flight needs from the client that owns it: a way to run a call's attempts upstream.
pub trait Upstream: Send + Sync + 'static {
    /// Run `plan`'s attempts (admission, request, retries).
    fn send_upstream(&self, plan: CallPlan<'_, '_>) -> impl Future<Output = Result<Received, ChatError>> + Send;

    /// How long a body read may wait for data (`idleTimeoutMs`).
    fn idle_timeout(&self) -> Duration;

    /// The client's counters (the shared cache's are bumped in the flight's task).
    fn metrics(&self) -> &Metrics;
}

/// The response cache and the flights in progress of one client.
pub struct Sharing {
    cache: ResponseCache,
    /// The second level in Redis, with `coordination`: looked up by a flight before it goes
    /// upstream, and given every answer the first level keeps.
    shared: Option<Arc<SharedCache>>,
    flights: Flights,
    /// Resolves once the latest flight started has entered admission (see `start_flight`).
    last_admitted: Mutex<Option<oneshot::Receiver<()>>>,
}

/// The cache key of a shared request, and the key of its flight (streamed and plain calls fly
/// apart).
struct FlightKeys {
    cache: u128,
    flight: u128,
}

/// Everything the task running a flight's upstream call owns.
struct SharedCall {
    flight: Arc<Flight>,
    keys: FlightKeys,
    request: Outbound,
    /// The creating caller's `timeoutMs`, for the timeout message.
    timeout: Duration,
}

impl Sharing {
    pub fn new(cache: ResponseCache, shared: Option<SharedCache>) -> Arc<Self> {
        Arc::new(Sharing {
            cache,
            shared: shared.map(Arc::new),
            flights: Flights::default(),
            last_admitted: Mutex::new(None),
        })
    }

    pub fn cache(&self) -> &ResponseCache {
        &self.cache
    }

    /// No flight is in progress.
    pub fn is_idle(&self) -> bool {
        self.flights.is_empty()
    }

    /// A cached answer to the request under `key`, or a share of one upstream call for
    /// identical requests in flight (run by `upstream`).
    pub async fn send<U: Upstream>(
        self: &Arc<Self>,
        upstream: &Arc<U>,
        metrics: &Metrics,
        key: u128,
        plan: CallPlan<'_, '_>,
    ) -> Result<Received, ChatError> {
        let CallPlan {
            request,
            bounds,
            mut delivery,
            attempts: _,
        } = plan;
        // With several choices, every partial says which one it belongs to.
        let first_choice = (request.choices > 1).then_some(0);
        if let Some(hit) = self.cache.get(key) {
            Metrics::inc(&metrics.cache_hits);
            if request.stream {
                let mut text = String::with_capacity(hit.text.len());
                for delta in hit.deltas() {
                    text.push_str(delta);
                    delivery.deliver_event(DeltaEvent {
                        delta,
                        text: &text,
                        choice: first_choice,
                        ..DeltaEvent::default()
                    });
                }
                deliver_rest(&mut delivery, &text, &hit, Replay::Cached);
            }
            return Ok(Received {
                completion: completion_from_cache(&hit),
                request_id: None,
                deltas: delivery.delivered(),
                attempts: 0,
                cached: true,
                upstream: hit.upstream,
            });
        }
        Metrics::inc(&metrics.cache_misses);

        // Streamed and plain calls are kept apart (their `detail` differs). Each caller waits
        // with its own deadline and cancellation; the shared request runs until the last of
        // them has left.
        let stream = request.stream;
        let flight_key = key ^ u128::from(stream);
        let joined = self.flights.join_or_create(flight_key, bounds.deadline());
        if joined.created {
            let call = SharedCall {
                flight: joined.flight.clone(),
                keys: FlightKeys {
                    cache: key,
                    flight: flight_key,
                },
                request,
                timeout: bounds.timeout(),
            };
            self.start_flight(upstream.clone(), call);
        } else {
            Metrics::inc(&metrics.coalesced);
        }
        let flight = &joined.flight;
        let mut seen = 0usize;
        let mut text = String::new();
        // The other choices' texts so far, by index (at most `MAX_CHOICES`).
        let mut others: Vec<String> = Vec::new();
        let outcome = {
            let mut on_delta = |choice: u32, delta: &str| {
                let text = match choice.checked_sub(1) {
                    None => &mut text,
                    Some(other) => {
                        let other = other as usize;
                        if others.len() <= other {
                            others.resize_with(other + 1, String::new);
                        }
                        match others.get_mut(other) {
                            Some(text) => text,
                            None => return,
                        }
                    }
                };
                text.push_str(delta);
                delivery.deliver_event(DeltaEvent {
                    delta,
                    text,
                    choice: first_choice.map(|_| choice),
                    ..DeltaEvent::default()
                });
            };
            bounds
                .wait(async { Ok(flight.next(&mut seen, &mut on_delta).await) })
                .await
        };
        drop(joined.waiter);
        let result = outcome.and_then(|r| r).map_err(|e| {
            // This caller's own timeout or abort, after the shared call had sent requests.
            let mut e = e.with_attempts(flight.attempts.load(Ordering::Relaxed));
            // As for a call of its own: once deltas reached this caller, any end but an abort is
            // an interrupted stream (the shared call's own failure already is one).
            let delivered = delivery.delivered();
            if delivered > 0 && !matches!(e.code, ErrorCode::Aborted | ErrorCode::StreamInterrupted) {
                e = e.interrupted_after(delivered);
            }
            e.with_partial_text(&text)
        })?;
        if stream {
            deliver_rest(&mut delivery, &text, &result.completion, Replay::Shared);
        }
        Ok(Received {
            completion: completion_from_cache(&result.completion),
            request_id: result.request_id,
            deltas: delivery.delivered(),
            attempts: flight.attempts.load(Ordering::Relaxed),
            // Identical calls share one request: one reply accounts for it, the others are
            // answered without one, as a cache hit is. An answer from Redis had no request.
            cached: result.from_shared_cache || !flight.claim_request(),
            upstream: result.completion.upstream,
        })
    }

    /// Run the upstream call of a flight in its own task; store a complete answer in the cache.
    ///
    /// Flights enter admission (a concurrency slot, or a place in its FIFO queue) in the order
    /// they were started. Spawning alone would not keep it: tokio runs the task a worker spawned
    /// last first (its LIFO slot), so a `sendMany` with `maxConcurrency: 1` sent its last item
    /// first. Each flight's task therefore waits for the previous flight's first poll, which is
    /// where that one entered admission, before polling its own.
    fn start_flight<U: Upstream>(self: &Arc<Self>, upstream: Arc<U>, call: SharedCall) {
        let sharing = self.clone();
        let (admitted, admitted_rx) = oneshot::channel::<()>();
        let previous = self
            .last_admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(admitted_rx);
        tokio::spawn(async move {
            let SharedCall {
                flight,
                keys,
                request,
                timeout,
            } = call;
            // The second level first (before waiting for the previous flight, so lookups of
            // flights started together overlap): a hit answers every waiter without a request.
            if let Some(shared) = &sharing.shared {
                let found = tokio::select! {
                    found = shared.lookup(keys.cache) => found,
                    () = flight.cancel.cancelled() => Lookup::Miss,
                };
                let metrics = upstream.metrics();
                match found {
                    Lookup::Hit(hit) => {
                        Metrics::inc(&metrics.shared_cache_hits);
                        if request.stream {
                            replay_into(&flight, &hit);
                        }
                        sharing.cache.insert(keys.cache, (*hit).clone());
                        flight.finish(Ok(FlightResult {
                            completion: Arc::new(*hit),
                            request_id: None,
                            from_shared_cache: true,
                        }));
                        sharing.flights.remove(keys.flight, &flight);
                        return;
                    }
                    Lookup::Miss => Metrics::inc(&metrics.shared_cache_misses),
                    Lookup::Rejected => {
                        Metrics::inc(&metrics.shared_cache_rejected);
                        Metrics::inc(&metrics.shared_cache_misses);
                    }
                }
            }
            if let Some(previous) = previous {
                // Resolves (with an error) as soon as the previous task dropped its sender: after
                // its first poll, or when it ended, panicking included.
                tokio::select! {
                    _ = previous => {}
                    () = flight.cancel.cancelled() => {}
                }
            }
            let stream = request.stream;
            let output = request.output;
            // The client, for the counters of a store to Redis (`upstream` is shadowed below).
            let client = Arc::clone(&upstream);
            let run = async {
                let bounds = CallBounds::new(
                    Deadline::Shared(&flight),
                    timeout,
                    upstream.idle_timeout(),
                    &flight.cancel,
                );
                let mut recorder = FlightSink {
                    flight: &flight,
                    ends: Vec::new(),
                    len: 0,
                };
                let ids = ProgressIds {
                    reply: "",
                    parent: "",
                    conversation: None,
                };
                let outcome = upstream
                    .send_upstream(CallPlan {
                        request,
                        bounds: &bounds,
                        delivery: Delivery::new(&mut recorder, ids),
                        attempts: Some(&flight.attempts),
                    })
                    .await;
                let ends = std::mem::take(&mut recorder.ends);
                outcome.map(|received| {
                    let upstream = received.upstream;
                    let completion = received.completion;
                    let choices = completion.choices;
                    let stored = CachedCompletion {
                        text: completion.text,
                        delta_ends: if stream { ends } else { Vec::new() },
                        role: completion.role,
                        finish_reason: completion.finish_reason,
                        usage: completion.usage,
                        detail: completion.detail,
                        tool_calls: completion.tool_calls,
                        refusal: completion.refusal,
                        logprobs: completion.logprobs,
                        all_choices: completion.all_choices,
                        upstream,
                    };
                    // An answer with several choices asked for them: it is cached whole when
                    // every choice finished.
                    let cacheable = if stored.all_choices.is_empty() {
                        is_cacheable(stored.finish_reason.as_deref(), choices)
                    } else {
                        stored
                            .all_choices
                            .iter()
                            .all(|c| is_cacheable(c.finish_reason.as_deref(), 1))
                    };
                    // A reply `response_format` rejects (not JSON, cut, refused) is no answer to
                    // keep: each waiter rejects with it, and the next call asks again.
                    let rejected =
                        output == OutputFormat::Json && stored.outputs().into_iter().any(|c| parse_output(c).is_err());
                    if !rejected && cacheable {
                        sharing.cache.insert(keys.cache, stored.clone());
                        if let Some(shared) = &sharing.shared {
                            // In the background: no caller waits for Redis to have it.
                            let (shared, client, stored) = (Arc::clone(shared), Arc::clone(&client), stored.clone());
                            let key = keys.cache;
                            tokio::spawn(async move {
                                if shared.store(key, &stored).await {
                                    Metrics::inc(&client.metrics().shared_cache_stores);
                                }
                            });
                        }
                    }
                    FlightResult {
                        completion: Arc::new(stored),
                        request_id: received.request_id,
                        from_shared_cache: false,
                    }
                })
            };
            // A panic inside the call must not leave the waiters waiting for an outcome that
            // would never come (until each one's own timeout): every waiter gets the error now.
            let mut run = std::pin::pin!(AssertUnwindSafe(run).catch_unwind());
            let first = futures::poll!(run.as_mut());
            drop(admitted);
            let outcome = match first {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => run.await,
            };
            let result = outcome.unwrap_or_else(|panic| Err(ChatError::internal(&*panic)));
            flight.finish(result);
            sharing.flights.remove(keys.flight, &flight);
        });
    }
}

/// Gives a flight's streaming waiters an answer from the cache in Redis as deltas: the first
/// choice's as they originally streamed, each other choice's whole (as the first level replays
/// them).
fn replay_into(flight: &Flight, hit: &CachedCompletion) {
    for delta in hit.deltas() {
        flight.push_delta(0, delta);
    }
    for choice in hit.all_choices.iter().skip(1) {
        if !choice.text.is_empty() {
            flight.push_delta(choice.index, &choice.text);
        }
    }
}

/// A stored answer as a completion (its id is the caller's own).
pub fn completion_from_cache(c: &CachedCompletion) -> Completion {
    Completion {
        id: None,
        text: c.text.clone(),
        role: c.role.clone(),
        finish_reason: c.finish_reason.clone(),
        usage: c.usage,
        detail: c.detail.clone(),
        choices: 1,
        tool_calls: c.tool_calls.clone(),
        refusal: c.refusal.clone(),
        logprobs: c.logprobs.clone(),
        all_choices: c.all_choices.clone(),
    }
}

/// How a stream is replayed to a caller that did not read it itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// From the cache: only the first choice's deltas were kept.
    Cached,
    /// A share of a flight: every choice's text deltas were delivered as they came.
    Shared,
}

/// What a replayed stream delivers after its text deltas: each choice's tool calls and refusal
/// (a waiter gets them with the answer), and from the cache each choice after the first whole,
/// in one partial (only the first choice's deltas are kept as they streamed).
fn deliver_rest(delivery: &mut Delivery<'_, '_>, text: &str, c: &CachedCompletion, replay: Replay) {
    let several = !c.all_choices.is_empty();
    if !c.tool_calls.is_empty() || c.refusal.is_some() {
        delivery.deliver_event(DeltaEvent {
            text,
            tool_calls: (!c.tool_calls.is_empty()).then_some(c.tool_calls.as_slice()),
            choice: several.then_some(0),
            refusal: c.refusal.as_deref(),
            ..DeltaEvent::default()
        });
    }
    for choice in c.all_choices.iter().skip(1) {
        let whole = replay == Replay::Cached && !choice.text.is_empty();
        if !whole && choice.tool_calls.is_empty() && choice.refusal.is_none() {
            continue;
        }
        delivery.deliver_event(DeltaEvent {
            delta: if whole { &choice.text } else { "" },
            text: &choice.text,
            tool_calls: (!choice.tool_calls.is_empty()).then_some(choice.tool_calls.as_slice()),
            choice: Some(choice.index),
            refusal: choice.refusal.as_deref(),
            ..DeltaEvent::default()
        });
    }
}

/// Records a flight's deltas for its waiters and the cache.
struct FlightSink<'a> {
    flight: &'a Flight,
    ends: Vec<usize>,
    len: usize,
}

impl DeltaSink for FlightSink<'_> {
    fn on_delta(&mut self, p: &Progress<'_>) {
        // A tool-call fragment or refusal without text: the waiters get them with the completion.
        if p.delta.is_empty() {
            return;
        }
        let choice = p.choice.unwrap_or(0);
        // The cache keeps the first choice's deltas (its `text`); the waiters get every one.
        if choice == 0 {
            self.len = self.len.saturating_add(p.delta.len());
            self.ends.push(self.len);
        }
        self.flight.push_delta(choice, p.delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cache::CacheConfig;
    use crate::core::error::ErrorCode;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    /// Records the order in which flights reach it (the body is the item's index), and fails
    /// each call at once.
    #[derive(Default)]
    struct Recorder {
        order: Mutex<Vec<usize>>,
        metrics: Metrics,
    }

    impl Upstream for Recorder {
        fn send_upstream(&self, plan: CallPlan<'_, '_>) -> impl Future<Output = Result<Received, ChatError>> + Send {
            let index = std::str::from_utf8(&plan.request.body)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            self.order.lock().unwrap().push(index);
            std::future::ready(Err(ChatError::new(ErrorCode::Http, "recorded")))
        }

        fn idle_timeout(&self) -> Duration {
            Duration::from_secs(60)
        }

        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
    }

    struct Quiet;
    impl DeltaSink for Quiet {
        fn on_delta(&mut self, _: &Progress<'_>) {}
    }

    /// `n` different calls started together, as `sendMany` starts its items.
    async fn start_together(n: usize) -> Vec<usize> {
        let sharing = Sharing::new(ResponseCache::new(CacheConfig::default()), None);
        let upstream = Arc::new(Recorder::default());
        let metrics = Metrics::default();
        let cancel = CancellationToken::new();
        let bounds = CallBounds::new(
            Deadline::Fixed(Instant::now() + Duration::from_secs(60)),
            Duration::from_secs(60),
            Duration::from_secs(60),
            &cancel,
        );
        let calls = (0..n).map(|i| {
            let (sharing, upstream, metrics, bounds) = (&sharing, &upstream, &metrics, &bounds);
            async move {
                let mut sink = Quiet;
                let ids = ProgressIds {
                    reply: "",
                    parent: "",
                    conversation: None,
                };
                let plan = CallPlan {
                    request: Outbound {
                        body: bytes::Bytes::from(i.to_string()),
                        stream: false,
                        estimate: 1,
                        model: String::new(),
                        headers: None,
                        choices: 1,
                        output: OutputFormat::Text,
                    },
                    bounds,
                    delivery: Delivery::new(&mut sink, ids),
                    attempts: None,
                };
                sharing.send(upstream, metrics, i as u128, plan).await
            }
        });
        futures::future::join_all(calls).await;
        let order = upstream.order.lock().unwrap().clone();
        order
    }

    // One worker, and the calls started from a task on it, as `sendMany`'s are: the worker's
    // LIFO slot is then in play. 5 and 40 fall on both sides of `join_all`'s small/large split.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn flights_reach_the_upstream_in_the_order_they_were_started() {
        for n in [5, 40] {
            let order = tokio::spawn(start_together(n)).await.unwrap();
            assert_eq!(order, (0..n).collect::<Vec<_>>(), "{n} flights");
        }
    }
}
