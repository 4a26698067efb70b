//! Settling the Promises of async calls: one wake-up of the JavaScript thread per batch of
//! finished calls, not one per call.
//!
//! Why not napi-rs's `Env::spawn_future_with_callback`: for every Promise it creates a
//! ThreadsafeFunction, a JavaScript `Error` (to keep a stack for rejections made in Rust), a
//! reference and an environment cleanup hook, and each result wakes the event loop on its own (an
//! eventfd write on a tokio thread, an epoll wake-up on the JavaScript thread). At 64 calls in
//! flight that bookkeeping cost the JavaScript thread about 4 of its 12 µs per call
//! (bench/throughput.mjs, CPU time per thread).
//!
//! Here each JavaScript environment has one ThreadsafeFunction, made at load time. A finished call
//! pushes its output onto a shared inbox; only the push that finds no wake-up scheduled calls the
//! ThreadsafeFunction, and the JavaScript thread then settles everything in the inbox at once.
//! What must stay on the JavaScript thread (the napi deferred, the callback that builds the
//! result, an AbortSignal listener to remove) waits in a table there, keyed by a call id; only
//! the call's `Send` output crosses threads.
//!
//! A panic inside a call's future is caught at this task boundary and settles its Promise with a
//! `ChatGPTError` coded `ERR_CHATGPT_INTERNAL`, as does a call the runtime drops unfinished, so
//! no Promise is left pending and no panic crosses into Node.
//!
//! The ThreadsafeFunction is created *weak* (it does not keep Node alive by itself) and is
//! referenced while at least one call is pending, so a process with calls in flight does not exit
//! and an idle one is not held open.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use futures::FutureExt;

use super::errors::to_napi_error;
use super::init::BindingData;
use crate::core::error::{ChatError, ErrorCode};

/// How a call's task ended.
enum Output {
    /// Its output, type-erased.
    Done(Box<dyn Any + Send>),
    /// It panicked, or the runtime dropped it while shutting down: the error to reject with.
    Failed(ChatError),
}
/// Builds the settled value from the output, on the JavaScript thread.
type Settle = Box<dyn FnOnce(&Env, Output) -> Result<sys::napi_value>>;
type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// The part shared with tokio threads.
struct Inbox {
    done: Mutex<Vec<(u64, Output)>>,
    /// A wake-up is queued and has not yet started draining.
    scheduled: AtomicBool,
    wake: Wake,
}

impl Inbox {
    fn push(&self, id: u64, output: Output) {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, output));
        // Only the first push after a drain started needs to wake JavaScript; the drain takes
        // everything pushed before it swaps the inbox out. If the environment is gone the call
        // fails with `Closing`, and there is nobody left to settle anyway.
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// A call waiting for its output, kept on the JavaScript thread.
struct Pending {
    deferred: sys::napi_deferred,
    settle: Settle,
}

/// One per JavaScript environment, in its instance data.
pub struct Settler {
    inbox: Arc<Inbox>,
    pending: RefCell<HashMap<u64, Pending>>,
    next_id: Cell<u64>,
    /// Whether the ThreadsafeFunction currently keeps the event loop alive.
    referenced: Cell<bool>,
}

impl Settler {
    /// Made once per environment while the addon loads.
    pub fn new(env: &Env) -> Result<Self> {
        let drain = env.create_function_from_closure::<(), (), _>("settleChatGPTCalls", |ctx| {
            if let Ok(data) = BindingData::get(ctx.env) {
                data.settler.drain(ctx.env);
            }
            Ok(())
        })?;
        let wake: Wake = drain
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        Ok(Settler {
            inbox: Arc::new(Inbox {
                done: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                wake,
            }),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            referenced: Cell::new(false),
        })
    }

    /// Settle every call whose output has arrived.
    fn drain(&self, env: &Env) {
        // Cleared before the swap: a push after this point schedules another wake-up, a push
        // before it is in the batch taken below. No output is left behind either way.
        self.inbox.scheduled.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(PoisonError::into_inner));
        for (id, output) in batch {
            // Removed before settling: the callback may run JavaScript that starts new calls.
            let Some(p) = self.pending.borrow_mut().remove(&id) else {
                continue;
            };
            let raw = env.raw();
            // The settle callback builds JavaScript values from Rust data; a panic there must
            // not skip the rejection (nor unwind through napi).
            let settled = std::panic::catch_unwind(AssertUnwindSafe(|| (p.settle)(env, output)))
                .unwrap_or_else(|panic| Err(to_napi_error(env, &ChatError::internal(&*panic))));
            // SAFETY: on the JavaScript thread of the environment that created the deferred,
            // which is settled exactly once (its entry was just removed).
            unsafe {
                match settled {
                    Ok(value) => {
                        sys::napi_resolve_deferred(raw, p.deferred, value);
                    }
                    Err(err) => {
                        // A retained JavaScript value (a thrown callback value, a ChatGPTError)
                        // comes back verbatim.
                        let reason = match Error::to_napi_value(raw, err) {
                            Ok(v) => v,
                            Err(_) => match env.create_string("chatgpt-native: the call failed") {
                                Ok(s) => s.raw(),
                                Err(_) => std::ptr::null_mut(),
                            },
                        };
                        sys::napi_reject_deferred(raw, p.deferred, reason);
                    }
                }
            }
        }
        if self.referenced.get() && self.pending.borrow().is_empty() {
            // SAFETY: the ThreadsafeFunction belongs to this environment; we are on its thread.
            unsafe { sys::napi_unref_threadsafe_function(env.raw(), self.inbox.wake.raw()) };
            self.referenced.set(false);
        }
    }
}

/// Run `fut` on the tokio runtime and return a Promise settled on the JavaScript thread by
/// `settle(env, output)`: resolved with its value, or rejected with its error. A drop-in for
/// `Env::spawn_future_with_callback`, with `settle` free to hold JavaScript-thread state.
pub fn spawn<'env, T, F, R, V>(env: &'env Env, fut: F, settle: R) -> Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    R: FnOnce(&'env Env, T) -> Result<V> + 'static,
    V: ToNapiValue,
{
    let settler = &BindingData::get(env)?.settler;
    // Fetched before the Promise exists, so a runtime that cannot start fails the call at once.
    let runtime = super::runtime::call_runtime()
        .map_err(|e| Error::from_reason(format!("chatgpt-native could not start its runtime: {e}")))?;
    let raw = env.raw();
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    // SAFETY: plain napi calls on the JavaScript thread with out-pointers to locals.
    unsafe {
        check_status!(sys::napi_create_promise(raw, &mut deferred, &mut promise))?;
        if !settler.referenced.get() {
            check_status!(sys::napi_ref_threadsafe_function(raw, settler.inbox.wake.raw()))?;
            settler.referenced.set(true);
        }
    }
    let id = settler.next_id.get();
    settler.next_id.set(id.wrapping_add(1));
    let settle: Settle = Box::new(move |env: &Env, output: Output| {
        let value = match output {
            Output::Done(o) => o.downcast::<T>().map_err(|_| {
                to_napi_error(
                    env,
                    &ChatError::new(
                        ErrorCode::Internal,
                        "chatgpt-native: a call produced an unexpected output",
                    ),
                )
            })?,
            Output::Failed(e) => return Err(to_napi_error(env, &e)),
        };
        // SAFETY: `settle` may build values borrowing `env` (say an `Unknown<'env>`); they are
        // converted to a raw value right here, while the drain's `env` is live, and never kept.
        // napi-rs's own `spawn_future_with_callback` widens the lifetime the same way.
        let env_for_settle = unsafe { std::mem::transmute::<&Env, &'env Env>(env) };
        let v = settle(env_for_settle, *value)?;
        // SAFETY: converting on the JavaScript thread of `env`.
        unsafe { V::to_napi_value(env.raw(), v) }
    });
    settler.pending.borrow_mut().insert(id, Pending { deferred, settle });

    let inbox = settler.inbox.clone();
    runtime.spawn(async move {
        // Pushes a failure if the task is dropped before it finishes, so the Promise still
        // settles.
        let mut delivery = Delivery { inbox, id, sent: false };
        let output = match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(output) => Output::Done(Box::new(output)),
            Err(panic) => Output::Failed(ChatError::internal(&*panic)),
        };
        delivery.sent = true;
        delivery.inbox.push(id, output);
    });
    Ok(PromiseRaw::new(raw, promise))
}

struct Delivery {
    inbox: Arc<Inbox>,
    id: u64,
    sent: bool,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.sent {
            let dropped = ChatError::new(
                ErrorCode::Internal,
                "chatgpt-native: the call was dropped before it finished (the runtime is shutting down)",
            );
            self.inbox.push(self.id, Output::Failed(dropped));
        }
    }
}
