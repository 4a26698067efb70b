//! Delivering stream deltas to `onProgress`: in order, cheaply, all before the Promise settles,
//! and with a throwing callback turned into a rejection rather than a crashed process.
//!
//! How (measured in bench/progress.mjs, numbers in BENCHMARKS.md):
//! - One ThreadsafeFunction per streaming call. Each delta is a *NonBlocking* call: the Rust
//!   stream never waits for JavaScript, and Node drains queued calls in FIFO order.
//! - NonBlocking calls alone may still be queued when the Promise resolves (it settles through
//!   napi's own queue). So after the stream ends we make one *awaited* call through the same
//!   queue: a barrier. FIFO order means every delta has run once the barrier returns.
//! - The ThreadsafeFunction does not call the user's function directly but a small wrapper made
//!   here. The wrapper ignores the barrier's `null` (so the user never sees it) and skips the
//!   remaining deltas once the callback has thrown.
//! - Every call uses `call_with_return_value`: napi catches a throw and hands it to us as an
//!   `Err` holding the original JS value. We keep the first one, cancel the request, and the
//!   Promise rejects with exactly that value. A plain `.call()` would raise an uncaught
//!   exception and kill the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio_util::sync::CancellationToken;

use crate::core::client::{DeltaSink, Progress};

/// The ids a partial message repeats on every delta; shared, not copied per delta.
pub struct PartialIds {
    pub id: String,
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
}

/// One delta on its way to JavaScript.
pub struct Partial {
    ids: Arc<PartialIds>,
    delta: String,
    text: String,
}

impl ToNapiValue for Partial {
    unsafe fn to_napi_value(env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(env);
        let mut o = Object::new(&env)?;
        o.set("role", "assistant")?;
        o.set("id", val.ids.id.as_str())?;
        o.set("text", val.text)?;
        o.set("delta", val.delta)?;
        o.set("parentMessageId", val.ids.parent_message_id.as_str())?;
        if let Some(c) = &val.ids.conversation_id {
            o.set("conversationId", c.as_str())?;
        }
        Ok(o.raw())
    }
}

type ProgressFn = ThreadsafeFunction<Option<Partial>, (), Option<Partial>, Status, false>;

/// State shared between the Rust stream and the JS-thread callbacks.
struct Shared {
    /// Set once the user's callback threw: the wrapper stops calling it.
    failed: AtomicBool,
    /// The first thrown value, as an error that rejects with the original JS value.
    error: Mutex<Option<Error>>,
    cancel: CancellationToken,
}

/// The `onProgress` side of one streaming call.
pub struct ProgressSink {
    tsfn: ProgressFn,
    shared: Arc<Shared>,
    ids: Option<Arc<PartialIds>>,
    sent: u32,
}

impl ProgressSink {
    /// Wrap `on_progress`; `cancel` is cancelled if it throws.
    pub fn new(
        env: &Env,
        on_progress: Function<'_, Unknown<'static>, Unknown<'static>>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            cancel,
        });
        let user = on_progress.create_ref()?;
        let wrapper_shared = shared.clone();
        let wrapper =
            env.create_function_from_closure::<Unknown, (), _>("onProgress", move |ctx| {
                let arg: Unknown<'static> = ctx.get(0)?;
                if matches!(arg.get_type()?, ValueType::Null | ValueType::Undefined)
                    || wrapper_shared.failed.load(Ordering::Acquire)
                {
                    return Ok(());
                }
                let f = user.borrow_back(ctx.env)?;
                // A raw call, not `Function::call`: on a throw the exception must stay pending so
                // it propagates out of this wrapper untouched (`Function::call` converts it into
                // an error, which fails for thrown primitives such as `throw 'oops'`). napi then
                // captures it, whatever its type, for `call_with_return_value` below.
                let mut recv = std::ptr::null_mut();
                let mut ret = std::ptr::null_mut();
                let raw_env = ctx.env.raw();
                let status = unsafe {
                    napi::sys::napi_get_undefined(raw_env, &mut recv);
                    napi::sys::napi_call_function(
                        raw_env,
                        recv,
                        f.raw(),
                        1,
                        [arg.raw()].as_ptr(),
                        &mut ret,
                    )
                };
                match status {
                    napi::sys::Status::napi_ok => Ok(()),
                    napi::sys::Status::napi_pending_exception => {
                        Err(Error::from_status(Status::PendingException))
                    }
                    other => Err(Error::new(Status::from(other), "Calling onProgress failed")),
                }
            })?;
        let tsfn = wrapper
            .build_threadsafe_function::<Option<Partial>>()
            .callee_handled::<false>()
            .build_callback(|ctx| Ok(ctx.value))?;
        Ok(ProgressSink {
            tsfn,
            shared,
            ids: None,
            sent: 0,
        })
    }

    /// Wait until every delta queued so far has been delivered (or skipped after a throw).
    pub async fn barrier(&self) {
        if self.sent > 0 {
            // The wrapper returns at once for `None`; only the queue position matters. An error
            // here means the environment is shutting down: nothing is left to wait for.
            let _ = self.tsfn.call_async_catch(None).await;
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
        let ids = match &self.ids {
            Some(ids) if ids.id == p.id => ids.clone(),
            _ => {
                let ids = Arc::new(PartialIds {
                    id: p.id.to_owned(),
                    parent_message_id: p.parent_message_id.to_owned(),
                    conversation_id: p.conversation_id.map(str::to_owned),
                });
                self.ids = Some(ids.clone());
                ids
            }
        };
        self.sent += 1;
        let shared = self.shared.clone();
        self.tsfn.call_with_return_value(
            Some(Partial {
                ids,
                delta: p.delta.to_owned(),
                text: p.text.to_owned(),
            }),
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
