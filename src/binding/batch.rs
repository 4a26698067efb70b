//! `sendMany`'s per-item report (`onItem`) and results, and the `metrics()` snapshot objects.
//!
//! `onItem(index, result)` goes through the same relay as `onProgress` (see `progress.rs`):
//! NonBlocking ThreadsafeFunction calls, a throw or a rejected returned Promise turned into the
//! batch's rejection, and one awaited call at the end as a barrier, so every `onItem` has run
//! (and every Promise it returned has settled, within the batch's `timeoutMs`) before the
//! Promise settles.

use std::time::Instant;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use super::api::{message_to_js, serialize_message};
use super::errors::js_error;
use super::init::BindingData;
use super::progress::CallbackRelay;
use crate::core::client::{ChatReply, ClientStats};
use crate::core::error::ChatError;
use crate::core::metrics::Percentiles;

/// One item's outcome, as JavaScript sees it: `{ ok: true, message }` or `{ ok: false, error }`.
pub fn item_to_js<'env>(env: &'env Env, result: &std::result::Result<ChatReply, ChatError>) -> Result<Object<'env>> {
    let mut o = Object::new(env)?;
    match result {
        Ok(reply) => {
            o.set("ok", true)?;
            o.set("message", message_to_js(env, &serialize_message(reply.clone()))?)?;
        }
        Err(e) => {
            o.set("ok", false)?;
            o.set("error", js_error(env, e)?)?;
        }
    }
    Ok(o)
}

/// One item's outcome, converted to `{ ok, message | error }` on the JavaScript thread.
pub struct ItemOutcome(std::result::Result<ChatReply, ChatError>);

impl ToNapiValue for ItemOutcome {
    unsafe fn to_napi_value(raw_env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(raw_env);
        Ok(item_to_js(&env, &val.0)?.raw())
    }
}

/// The `onItem` side of one batch: `(index, result)` events through the relay `progress.rs`
/// describes.
pub struct ItemSink {
    relay: CallbackRelay<u32, ItemOutcome>,
}

impl ItemSink {
    pub fn new(
        env: &Env,
        on_item: Function<'_, Unknown<'static>, Unknown<'static>>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        // SAFETY of the lifetime: the function value is only used during this call.
        let user: Unknown<'static> = unsafe { Unknown::from_napi_value(env.raw(), on_item.raw())? };
        let relay = CallbackRelay::new(env, "onItem", cancel, |env, hooks| {
            BindingData::get(env)?.js(|js| js.item_relay(env, user, hooks))
        })?;
        Ok(ItemSink { relay })
    }

    pub fn report(&mut self, index: u32, result: std::result::Result<ChatReply, ChatError>) {
        if self.relay.has_failed() {
            return;
        }
        self.relay.send(index, Some(ItemOutcome(result)));
    }

    /// Wait until every `onItem` call has run and every Promise it returned has settled, up to
    /// `deadline`.
    pub async fn barrier(&self, deadline: Instant) -> std::result::Result<(), ChatError> {
        self.relay.barrier(deadline).await
    }

    /// The value `onItem` threw or rejected with, if it did.
    pub fn take_error(&self) -> Option<Error> {
        self.relay.take_error()
    }
}

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
    pub keys: Vec<KeyMetrics>,
}

impl From<ClientStats> for ChatMetrics {
    fn from(s: ClientStats) -> Self {
        let m = s.metrics;
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
            keys: s
                .keys
                .into_iter()
                .map(|k| KeyMetrics {
                    index: k.index as u32,
                    fingerprint: k.fingerprint,
                    in_flight: k.in_flight,
                    cooling: k.cooling,
                    disabled: k.disabled,
                    requests: k.requests as f64,
                    cool_downs: k.cool_downs as f64,
                })
                .collect(),
        }
    }
}
