//! Delivering stream deltas to `onProgress`: in order, cheaply, all before the Promise settles,
//! and with a throwing callback turned into a rejection rather than a crashed process.
//!
//! How (measured in bench/progress.mjs, numbers in BENCHMARKS.md):
//! - One ThreadsafeFunction per streaming call. Each delta is a *NonBlocking* call: the Rust
//!   stream never waits for JavaScript, and Node drains queued calls in FIFO order.
//! - NonBlocking calls alone may still be queued when the Promise resolves (it settles through
//!   napi's own queue). So after the stream ends we make one *awaited* call through the same
//!   queue: a barrier. FIFO order means every delta has run once the barrier returns.
//! - The ThreadsafeFunction does not call the user's function directly but a small JavaScript
//!   relay made per call (factory below, compiled once per environment). Only the delta crosses
//!   the boundary; the relay appends it to the text with a string concatenation (a rope in V8:
//!   O(1)) and builds the partial message in JIT-compiled JS. Sending the accumulated text from
//!   Rust instead copies O(n²) bytes over a long stream (measured: 13 µs per delta at 20k
//!   deltas). The relay ignores the barrier's `null`, so the user never sees it, and stops
//!   calling back once the callback has thrown.
//! - Every call uses `call_with_return_value`: napi catches a throw and hands it to us as an
//!   `Err` holding the original JS value. We keep the first one, cancel the request, and the
//!   Promise rejects with exactly that value. A plain `.call()` would raise an uncaught
//!   exception and kill the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio_util::sync::CancellationToken;

use super::init::BindingData;
use crate::core::client::{DeltaSink, Progress};

/// `makeRelay(onProgress, parentMessageId, conversationId)` returns `relay(delta, id)`.
pub(crate) const RELAY_FACTORY_SOURCE: &str = r#"(function makeRelay(onProgress, parentMessageId, conversationId) {
  let text = ''
  let id = ''
  let failed = false
  return function relay(delta, newId) {
    if (delta == null || failed) return
    if (newId != null) id = newId
    text += delta
    const partial = { role: 'assistant', id, parentMessageId, text, delta }
    if (conversationId != null) partial.conversationId = conversationId
    try {
      onProgress(partial)
    } catch (err) {
      failed = true
      throw err
    }
  }
})"#;

/// What one relay call carries: the delta (None for the barrier) and the completion id when
/// it changed since the last call.
type RelayArgs = FnArgs<(Option<String>, Option<String>)>;
type Relay = Function<'static, RelayArgs, ()>;
/// The factory's result as napi sees it.
pub type RelayFactory = Relay;

type RelayFn = ThreadsafeFunction<(Option<String>, Option<String>), (), RelayArgs, Status, false>;

/// State shared between the Rust stream and the JS-thread return callbacks.
struct Shared {
    /// Set once the user's callback threw.
    failed: AtomicBool,
    /// The first thrown value, as an error that rejects with the original JS value.
    error: Mutex<Option<Error>>,
    cancel: CancellationToken,
}

/// The `onProgress` side of one streaming call.
pub struct ProgressSink {
    tsfn: RelayFn,
    shared: Arc<Shared>,
    last_id: String,
    sent: u32,
}

impl ProgressSink {
    /// Relay deltas of the reply to `parent_message_id` into `on_progress`; `cancel` is cancelled
    /// if it throws.
    pub fn new(
        env: &Env,
        on_progress: Function<'_, Unknown<'static>, Unknown<'static>>,
        parent_message_id: String,
        conversation_id: Option<String>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let factory = BindingData::get(env)?.relay_factory.borrow_back(env)?;
        // SAFETY of the lifetime: the function value is only used during this call.
        let user: Function<'static, Unknown<'static>, Unknown<'static>> =
            unsafe { Function::from_napi_value(env.raw(), on_progress.raw())? };
        let relay = factory.call(FnArgs::from((user, parent_message_id, conversation_id)))?;
        let tsfn = relay
            .build_threadsafe_function::<(Option<String>, Option<String>)>()
            .callee_handled::<false>()
            .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))?;
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            cancel,
        });
        Ok(ProgressSink {
            tsfn,
            shared,
            last_id: String::new(),
            sent: 0,
        })
    }

    /// Wait until every delta queued so far has been delivered (or skipped after a throw).
    pub async fn barrier(&self) {
        if self.sent > 0 {
            // The relay returns at once for a null delta; only the queue position matters. An
            // error here means the environment is shutting down: nothing is left to wait for.
            let _ = self.tsfn.call_async_catch((None, None)).await;
        }
    }

    /// The value the callback threw, if it did.
    pub fn take_error(&self) -> Option<Error> {
        self.shared.error.lock().ok().and_then(|mut e| e.take())
    }
}

impl DeltaSink for ProgressSink {
    fn on_delta(&mut self, p: &Progress<'_>) {
        if self.shared.failed.load(Ordering::Acquire) {
            return;
        }
        let id = if p.id != self.last_id {
            self.last_id = p.id.to_owned();
            Some(self.last_id.clone())
        } else {
            None
        };
        self.sent += 1;
        let shared = self.shared.clone();
        // Every call goes through `call_with_return_value`: napi then catches a throw and hands
        // us the original value, where a plain `.call()` would raise an uncaught exception.
        self.tsfn.call_with_return_value(
            (Some(p.delta.to_owned()), id),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |ret, _env| {
                if let Err(err) = ret {
                    if !shared.failed.swap(true, Ordering::AcqRel) {
                        if let Ok(mut slot) = shared.error.lock() {
                            *slot = Some(err);
                        }
                        shared.cancel.cancel();
                    }
                }
                Ok(())
            },
        );
    }
}
