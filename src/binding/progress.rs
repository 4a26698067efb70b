//! Delivering native events to user callbacks (`onProgress`, `sendMany`'s `onItem`): in order,
//! cheaply, all before the Promise settles, and with a throwing (or rejecting) callback turned
//! into a rejection rather than a crashed process. One `CallbackRelay` serves both.
//!
//! How (measured in bench/progress.mjs, numbers in BENCHMARKS.md):
//! - One ThreadsafeFunction per call. Each event is a *NonBlocking* call: the Rust side never
//!   waits for JavaScript, and Node drains queued calls in FIFO order.
//! - NonBlocking calls alone may still be queued when the Promise resolves (it settles through
//!   its own queue). So after the last event we make one *awaited* call through the same queue: a
//!   barrier. FIFO order means every event has run once the barrier returns.
//! - The ThreadsafeFunction does not call the user's function directly but a relay made per call
//!   by `lib/relay.js`. For `onProgress` only the delta crosses the boundary; the relay appends
//!   it to the text (a rope in V8: O(1)) and builds the partial message in JIT-compiled JS, where
//!   sending the accumulated text from Rust would copy O(n²) bytes over a long stream. The relay
//!   ignores the barrier (a null first argument), so the user never sees it, and stops calling
//!   back once the callback has failed.
//! - Every call uses `call_with_return_value`: napi catches a throw and hands it to us as an
//!   `Err` holding the original JS value. We keep the first one, cancel the call, and the Promise
//!   rejects with exactly that value. A plain `.call()` would raise an uncaught exception and
//!   kill the process.
//! - A callback may be `async`. The relay attaches a rejection handler to any thenable it
//!   returns (so a rejection is never unhandled) and reports the first rejection through
//!   `report(reason)`, which then does what a throw does: cancel, and reject with that value.
//!   The relay counts the thenables that have not settled; at the barrier it calls `idle()` once
//!   none is left (or one has failed), and the call waits for that before it settles, so a
//!   rejection that comes after the last event still rejects the call. That wait ends at the
//!   call's deadline (`timeoutMs` from the start of the call): a callback Promise that never
//!   settles fails the call with `ERR_CHATGPT_TIMEOUT` instead of holding it forever, and an
//!   abort ends the wait at once (`ABORT_ERR`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::init::BindingData;
use crate::core::chat::ToolCall;
use crate::core::client::{DeltaSink, Progress};
use crate::core::error::{ChatError, ErrorCode};
use crate::core::time::instant_after;

/// The deadline of a call that may run for `timeout` from now (saturating far in the future).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    instant_after(Instant::now(), timeout)
}

/// How a user callback (`onProgress`, `onItem`) has fared, shared between the Rust side of a call
/// and the JavaScript thread that runs the callback.
pub(crate) struct CallbackState {
    /// Set once the callback threw or a Promise it returned rejected.
    failed: AtomicBool,
    /// The first thrown or rejected value, as an error that rejects with the original JS value.
    error: Mutex<Option<Error>>,
    cancel: CancellationToken,
    /// Notified by the relay once the barrier has run and no callback Promise is pending (or
    /// one failed).
    idle: Notify,
}

impl CallbackState {
    pub(crate) fn new(cancel: CancellationToken) -> Arc<Self> {
        Arc::new(CallbackState {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            cancel,
            idle: Notify::new(),
        })
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Keep the first failure and cancel the call.
    pub(crate) fn fail(&self, err: Error) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            if let Ok(mut slot) = self.error.lock() {
                *slot = Some(err);
            }
            self.cancel.cancel();
        }
    }

    /// The value the callback threw or rejected with, if it did.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// The relay factory's `report(reason)` and `idle()` arguments, as JS functions.
    pub(crate) fn hooks(self: &Arc<Self>, env: &Env) -> Result<RelayHooks> {
        let state = self.clone();
        let report = env.create_function_from_closure::<Unknown, (), _>("reportCallbackFailure", move |ctx| {
            let reason: Unknown = ctx.get(0)?;
            // Retains any value (a string, `undefined`) without running its `toString`, which
            // may throw; the call then rejects with exactly this value.
            state.fail(Error::from_unknown_without_coercion(reason));
            Ok(())
        })?;
        let state = self.clone();
        let idle = env.create_function_from_closure::<(), (), _>("callbacksSettled", move |_ctx| {
            state.idle.notify_one();
            Ok(())
        })?;
        // SAFETY of the lifetimes: both are passed to the factory right away and only kept alive
        // by the relay that closes over them.
        unsafe {
            Ok(RelayHooks {
                report: Unknown::from_napi_value(env.raw(), report.raw())?,
                idle: Unknown::from_napi_value(env.raw(), idle.raw())?,
            })
        }
    }

    /// After the barrier call returned: wait until no Promise returned by the callback is
    /// pending, or one failed, but not past `deadline` and not after the call is aborted.
    pub(crate) async fn settled_by(&self, deadline: Instant, callback: &str) -> std::result::Result<(), ChatError> {
        tokio::select! {
            biased;
            () = self.idle.notified() => Ok(()),
            // Our own `fail` cancels too, but it notifies `idle` first through the relay; a
            // cancel without a failure is the caller's abort.
            () = self.cancel.cancelled() => {
                if self.has_failed() {
                    Ok(())
                } else {
                    Err(ChatError::aborted())
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                self.cancel.cancel();
                Err(ChatError::new(
                    ErrorCode::Timeout,
                    format!("A Promise returned by `{callback}` did not settle within the call's `timeoutMs`"),
                ))
            }
        }
    }
}

/// The functions a relay reports back through.
pub(crate) struct RelayHooks {
    pub report: Unknown<'static>,
    pub idle: Unknown<'static>,
}

/// What one relay call carries: `(a, b, c)`, or `(null, null, null)` for the barrier.
type RelayEvent<A, B, C> = (Option<A>, Option<B>, Option<C>);
type RelayArgs<A, B, C> = FnArgs<RelayEvent<A, B, C>>;
type RelayTsfn<A, B, C> = ThreadsafeFunction<RelayEvent<A, B, C>, (), RelayArgs<A, B, C>, Status, false>;

/// The native side of one call's callback: queues events to its JavaScript relay, and waits for
/// them (and the Promises the callback returned) at the end.
pub(crate) struct CallbackRelay<A: ToNapiValue + 'static, B: ToNapiValue + 'static, C: ToNapiValue + 'static = ()> {
    tsfn: RelayTsfn<A, B, C>,
    state: Arc<CallbackState>,
    sent: u32,
    /// The callback's name in messages (`onProgress`).
    name: &'static str,
}

impl<A: ToNapiValue + Send + 'static, B: ToNapiValue + Send + 'static, C: ToNapiValue + Send + 'static>
    CallbackRelay<A, B, C>
{
    /// `make(env, hooks)` calls the JavaScript factory of the relay; `cancel` is cancelled once
    /// the callback throws or a Promise it returns rejects.
    pub(crate) fn new(
        env: &Env,
        name: &'static str,
        cancel: CancellationToken,
        make: impl FnOnce(&Env, RelayHooks) -> Result<Unknown<'static>>,
    ) -> Result<Self> {
        let state = CallbackState::new(cancel);
        let relay = make(env, state.hooks(env)?)?;
        if relay.get_type()? != ValueType::Function {
            return Err(Error::from_reason(format!(
                "chatgpt-native: the {name} relay is not a function"
            )));
        }
        // SAFETY: checked to be a function just above.
        let relay: Function<'static, RelayArgs<A, B, C>, ()> = unsafe { relay.cast() }?;
        let tsfn = relay
            .build_threadsafe_function::<RelayEvent<A, B, C>>()
            .callee_handled::<false>()
            .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))?;
        Ok(CallbackRelay {
            tsfn,
            state,
            sent: 0,
            name,
        })
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.state.has_failed()
    }

    /// Queue one event, unless the callback has already failed.
    pub(crate) fn send(&mut self, a: A, b: Option<B>, c: Option<C>) {
        if self.state.has_failed() {
            return;
        }
        self.sent = self.sent.saturating_add(1);
        let state = self.state.clone();
        // `call_with_return_value`: napi then catches a throw and hands us the original value,
        // where a plain `.call()` would raise an uncaught exception.
        self.tsfn.call_with_return_value(
            (Some(a), b, c),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |ret, _env| {
                if let Err(err) = ret {
                    state.fail(err);
                }
                Ok(())
            },
        );
    }

    /// Wait until every event queued so far has been delivered (or skipped after a failure) and
    /// every Promise the callback returned has settled, up to `deadline`.
    pub(crate) async fn barrier(&self, deadline: Instant) -> std::result::Result<(), ChatError> {
        if self.sent == 0 {
            return Ok(());
        }
        // The relay returns at once for the barrier; only the queue position matters. An error
        // here means the environment is shutting down: nothing is left to wait for.
        if self.tsfn.call_async_catch((None, None, None)).await.is_err() {
            return Ok(());
        }
        self.state.settled_by(deadline, self.name).await
    }

    /// The value the callback threw or rejected with, if it did.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.state.take_error()
    }
}

/// A chunk's JSON text on its way to JavaScript, which parses it only if `detail` is read.
pub(crate) struct ChunkJson(String);

impl ToNapiValue for ChunkJson {
    unsafe fn to_napi_value(raw_env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(raw_env);
        // ASCII is its own Latin-1: V8 copies the bytes instead of decoding UTF-8 (most chunks).
        let text = if val.0.is_ascii() {
            env.create_string_latin1(val.0.as_bytes())?
        } else {
            env.create_string(&val.0)?
        };
        Ok(text.raw())
    }
}

/// The third value of an `onProgress` event: the chunk's JSON text (a string), or for any other
/// event `[chunk or null, JSON text of the tool-call changes or null, choice index or null,
/// refusal delta or null]`, so that a text delta of a single-choice call costs the relay no more
/// than a `typeof` check. The changes are what the choice's calls gained since its last event,
/// `[[index, id | null, type | null, name | null, argumentsPiece], ...]` (see
/// [`ToolCallsSent`]): sending the whole calls every time would copy their arguments once per
/// fragment, quadratic in a long call. The choice index is there only when the call asked for
/// several choices.
pub(crate) enum ProgressChunk {
    Text(ChunkJson),
    /// Boxed: every event is moved into the ThreadsafeFunction's queue, and an unboxed extra
    /// (three strings and an index) made every text delta's event 32 bytes bigger, which cost
    /// the streaming thread a `memcpy` call per delta (callgrind on bench/progress.mjs's stream:
    /// about 100 of the 250 instructions per delta that folding several choices had added).
    Extra(Box<ProgressExtra>),
}

/// The parts of an event that is more than a single-choice text delta (see [`ProgressChunk`]).
pub(crate) struct ProgressExtra {
    chunk: Option<String>,
    tool_calls: Option<String>,
    choice: Option<u32>,
    refusal: Option<String>,
}

impl ToNapiValue for ProgressChunk {
    unsafe fn to_napi_value(raw_env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        match val {
            ProgressChunk::Text(chunk) => ChunkJson::to_napi_value(raw_env, chunk),
            ProgressChunk::Extra(extra) => {
                let extra = *extra;
                let env = Env::from_raw(raw_env);
                let mut array = env.create_array(4)?;
                array.set(0, extra.chunk.map(ChunkJson))?;
                array.set(1, extra.tool_calls)?;
                array.set(2, extra.choice)?;
                array.set(3, extra.refusal)?;
                Array::to_napi_value(raw_env, array)
            }
        }
    }
}

/// The `onProgress` side of one streaming call: `(delta, id, chunk)` events, the id only when it
/// changed, the chunk's JSON text when there is one (see [`ProgressChunk`]).
pub struct ProgressSink {
    relay: CallbackRelay<String, String, ProgressChunk>,
    last_id: String,
    /// By choice index (one entry without several choices; at most `MAX_CHOICES`).
    tool_calls_sent: Vec<ToolCallsSent>,
}

/// What the relay already has of each tool call, to send it only what is new.
#[derive(Default)]
struct ToolCallsSent(Vec<ToolCallSent>);

#[derive(Default)]
struct ToolCallSent {
    id: String,
    kind: String,
    name: String,
    /// Bytes of the arguments sent (they only ever grow).
    arguments: usize,
}

impl ToolCallsSent {
    /// The JSON of the changes from what was sent to `calls`, recording them as sent.
    fn changes(&mut self, calls: &[ToolCall]) -> String {
        let mut changes = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            if self.0.len() <= index {
                self.0.resize_with(index + 1, ToolCallSent::default);
            }
            let Some(sent) = self.0.get_mut(index) else { continue };
            let changed = |now: &str, before: &mut String| {
                (now != before.as_str()).then(|| {
                    *before = now.to_owned();
                    now.to_owned()
                })
            };
            let id = changed(&call.id, &mut sent.id);
            let kind = changed(&call.kind, &mut sent.kind);
            let name = changed(&call.function.name, &mut sent.name);
            // The arguments only grow, so what was sent ends on a character boundary.
            let piece = call.function.arguments.get(sent.arguments..).unwrap_or_default();
            sent.arguments = call.function.arguments.len();
            if id.is_some() || kind.is_some() || name.is_some() || !piece.is_empty() {
                changes.push(serde_json::json!([index, id, kind, name, piece]));
            }
        }
        // JSON values always serialise.
        serde_json::to_string(&changes).unwrap_or_else(|_| "[]".to_owned())
    }
}

impl ProgressSink {
    /// Relay deltas of the reply to `parent_message_id` into `on_progress`; `cancel` is
    /// cancelled if it throws or a Promise it returns rejects.
    pub fn new(
        env: &Env,
        on_progress: Function<'_, Unknown<'static>, Unknown<'static>>,
        parent_message_id: String,
        conversation_id: Option<String>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        // SAFETY of the lifetime: the function value is only used during this call.
        let user: Unknown<'static> = unsafe { Unknown::from_napi_value(env.raw(), on_progress.raw())? };
        let relay = CallbackRelay::new(env, "onProgress", cancel, |env, hooks| {
            BindingData::get(env)?.js(|js| js.progress_relay(env, user, parent_message_id, conversation_id, hooks))
        })?;
        Ok(ProgressSink {
            relay,
            last_id: String::new(),
            tool_calls_sent: Vec::new(),
        })
    }

    /// See `CallbackRelay::barrier`.
    pub async fn barrier(&self, deadline: Instant) -> std::result::Result<(), ChatError> {
        self.relay.barrier(deadline).await
    }

    /// The value the callback threw or rejected with, if it did.
    pub fn take_error(&self) -> Option<Error> {
        self.relay.take_error()
    }
}

impl DeltaSink for ProgressSink {
    fn on_delta(&mut self, p: &Progress<'_>) {
        if self.relay.has_failed() {
            return;
        }
        let id = if p.id != self.last_id {
            self.last_id = p.id.to_owned();
            Some(self.last_id.clone())
        } else {
            None
        };
        let chunk = (!p.chunk.is_empty()).then(|| p.chunk.to_owned());
        let chunk = if p.tool_calls.is_none() && p.choice.is_none() && p.refusal.is_none() {
            chunk.map(|c| ProgressChunk::Text(ChunkJson(c)))
        } else {
            let tool_calls = p.tool_calls.map(|calls| {
                let choice = p.choice.map_or(0, |c| c as usize);
                if self.tool_calls_sent.len() <= choice {
                    self.tool_calls_sent.resize_with(choice + 1, ToolCallsSent::default);
                }
                self.tool_calls_sent
                    .get_mut(choice)
                    .map(|sent| sent.changes(calls))
                    .unwrap_or_else(|| "[]".to_owned())
            });
            Some(ProgressChunk::Extra(Box::new(ProgressExtra {
                chunk,
                tool_calls,
                choice: p.choice,
                refusal: p.refusal.map(str::to_owned),
            })))
        };
        self.relay.send(p.delta.to_owned(), id, chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chat::ToolFunction;

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: ToolFunction {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn only_what_the_tool_calls_gained_is_sent() {
        let mut sent = ToolCallsSent::default();
        assert_eq!(sent.changes(&[call("c1", "f", "")]), r#"[[0,"c1","function","f",""]]"#);
        assert_eq!(
            sent.changes(&[call("c1", "f", r#"{"a""#)]),
            r#"[[0,null,null,null,"{\"a\""]]"#
        );
        // A second call appears; the first gains the rest of its arguments (non-ASCII included).
        assert_eq!(
            sent.changes(&[call("c1", "f", r#"{"a":"é"}"#), call("c2", "g", "{}")]),
            r#"[[0,null,null,null,":\"é\"}"],[1,"c2","function","g","{}"]]"#
        );
        assert_eq!(
            sent.changes(&[call("c1", "f", r#"{"a":"é"}"#), call("c2", "g", "{}")]),
            "[]"
        );
    }
}
