//! Sharing among identical calls: the response cache answers a request seen before, and
//! identical requests in flight share one upstream call (a flight).
//!
//! The flight runs in its own task, so no single caller's abort or deadline ends it: it is
//! cancelled when its last waiter leaves, and bounded by the latest of their deadlines. Each
//! caller waits under its own bounds and receives every delta from the first.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::bounds::{CallBounds, Deadline};
use super::cache::{is_cacheable, CachedCompletion, Flight, FlightResult, Flights, ResponseCache};
use super::call::{CallPlan, Outbound, Received};
use super::chat::Completion;
use super::error::{ChatError, ErrorCode};
use super::metrics::Metrics;
use super::stream::{Delivery, DeltaSink, Progress, ProgressIds};

/// What a flight needs from the client that owns it: a way to run a call's attempts upstream.
pub trait Upstream: Send + Sync + 'static {
    /// Run `plan`'s attempts (admission, request, retries).
    fn send_upstream(&self, plan: CallPlan<'_, '_>) -> impl Future<Output = Result<Received, ChatError>> + Send;

    /// How long a body read may wait for data (`idleTimeoutMs`).
    fn idle_timeout(&self) -> Duration;
}

/// The response cache and the flights in progress of one client.
pub struct Sharing {
    cache: ResponseCache,
    flights: Flights,
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
    pub fn new(cache: ResponseCache) -> Arc<Self> {
        Arc::new(Sharing {
            cache,
            flights: Flights::default(),
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
        if let Some(hit) = self.cache.get(key) {
            Metrics::inc(&metrics.cache_hits);
            if request.stream {
                let mut text = String::with_capacity(hit.text.len());
                for delta in hit.deltas() {
                    text.push_str(delta);
                    delivery.deliver(delta, &text, "");
                }
            }
            return Ok(Received {
                completion: completion_from_cache(&hit),
                request_id: None,
                deltas: delivery.delivered(),
                attempts: 0,
                cached: true,
            });
        }
        Metrics::inc(&metrics.cache_misses);

        // Streamed and plain calls are kept apart (their `detail` differs). Each caller waits
        // with its own deadline and cancellation; the shared request runs until the last of
        // them has left.
        let flight_key = key ^ u128::from(request.stream);
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
        let outcome = {
            let mut on_delta = |delta: &str| {
                text.push_str(delta);
                delivery.deliver(delta, &text, "");
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
        Ok(Received {
            completion: completion_from_cache(&result.completion),
            request_id: result.request_id,
            deltas: delivery.delivered(),
            attempts: flight.attempts.load(Ordering::Relaxed),
            cached: false,
        })
    }

    /// Run the upstream call of a flight in its own task; store a complete answer in the cache.
    fn start_flight<U: Upstream>(self: &Arc<Self>, upstream: Arc<U>, call: SharedCall) {
        let sharing = self.clone();
        tokio::spawn(async move {
            let SharedCall {
                flight,
                keys,
                request,
                timeout,
            } = call;
            let stream = request.stream;
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
                    let completion = received.completion;
                    let choices = completion.choices;
                    let stored = CachedCompletion {
                        text: completion.text,
                        delta_ends: if stream { ends } else { Vec::new() },
                        role: completion.role,
                        finish_reason: completion.finish_reason,
                        usage: completion.usage,
                        detail: completion.detail,
                    };
                    if is_cacheable(stored.finish_reason.as_deref(), choices) {
                        sharing.cache.insert(keys.cache, stored.clone());
                    }
                    FlightResult {
                        completion: Arc::new(stored),
                        request_id: received.request_id,
                    }
                })
            };
            // A panic inside the call must not leave the waiters waiting for an outcome that
            // would never come (until each one's own timeout): every waiter gets the error now.
            let result = AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(ChatError::internal(&*panic)));
            flight.finish(result);
            sharing.flights.remove(keys.flight, &flight);
        });
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
        self.len = self.len.saturating_add(p.delta.len());
        self.ends.push(self.len);
        self.flight.push_delta(p.delta);
    }
}
