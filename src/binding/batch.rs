//! `sendMany`'s per-item report (`onItem`) and results.
//!
//! `onItem(index, result)` uses the same delivery scheme as `onProgress` (see `progress.rs`):
//! NonBlocking ThreadsafeFunction calls, a throw or a rejected returned Promise turned into the
//! batch's rejection, and one awaited call at the end as a barrier, so every `onItem` has run
//! (and every Promise it returned has settled, within the batch's `timeoutMs`) before the
//! Promise settles.

use std::sync::Arc;
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio_util::sync::CancellationToken;

use super::errors::js_error;
use super::message::{message_to_js, serialize_message};
use super::progress::{relay_tracking_source, CallbackState};
use crate::core::client::ChatReply;
use crate::core::error::ChatError;

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

/// What `onItem` receives: the index and the outcome (`None` is the barrier).
pub type ItemEvent = Option<(u32, std::result::Result<ChatReply, ChatError>)>;

/// `(index, result)` arguments, built on the JS thread.
pub struct ItemArgs(ItemEvent);

impl ToNapiValue for ItemArgs {
    unsafe fn to_napi_value(raw_env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(raw_env);
        match val.0 {
            None => {
                let mut null = std::ptr::null_mut();
                napi::sys::napi_get_null(raw_env, &mut null);
                Ok(null)
            }
            Some((index, result)) => {
                let mut pair = env.create_array(2)?;
                pair.set(0, index)?;
                pair.set(1, item_to_js(&env, &result)?)?;
                Ok(pair.raw())
            }
        }
    }
}

/// Relays `(index, result)` pairs to the user's `onItem`; a null pair is the barrier. A Promise
/// `onItem` returns is tracked like `onProgress`'s (see `progress.rs`).
pub(crate) const ITEM_RELAY_SOURCE: &str = concat!(
    r#"(function makeItemRelay(onItem, report, idle) {
  let failed = false"#,
    relay_tracking_source!(),
    r#"  return function relay(pair) {
    if (pair == null) return drain()
    if (failed) return
    let ret
    try {
      ret = onItem(pair[0], pair[1])
    } catch (err) {
      failed = true
      throw err
    }
    watch(ret)
  }
})"#
);

type ItemFn = ThreadsafeFunction<ItemArgs, (), ItemArgs, Status, false>;
/// `makeItemRelay(onItem, report, idle)` as called from Rust.
type ItemRelayFactory<'env> =
    Function<'env, FnArgs<(Unknown<'static>, Unknown<'static>, Unknown<'static>)>, Function<'static, ItemArgs, ()>>;

/// The `onItem` side of one batch.
pub struct ItemSink {
    tsfn: ItemFn,
    state: Arc<CallbackState>,
    sent: u32,
}

impl ItemSink {
    pub fn new(
        env: &Env,
        on_item: Function<'_, Unknown<'static>, Unknown<'static>>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let factory: ItemRelayFactory = env.run_script(ITEM_RELAY_SOURCE)?;
        // SAFETY of the lifetime: the function value is only used during this call.
        let user: Unknown<'static> = unsafe { Unknown::from_napi_value(env.raw(), on_item.raw())? };
        let state = CallbackState::new(cancel);
        let hooks = state.hooks(env)?;
        let relay = factory.call(FnArgs::from((user, hooks.report, hooks.idle)))?;
        let tsfn = relay
            .build_threadsafe_function::<ItemArgs>()
            .callee_handled::<false>()
            .build_callback(|ctx| Ok(ctx.value))?;
        Ok(ItemSink { tsfn, state, sent: 0 })
    }

    pub fn report(&mut self, index: u32, result: std::result::Result<ChatReply, ChatError>) {
        if self.state.has_failed() {
            return;
        }
        self.sent = self.sent.saturating_add(1);
        let state = self.state.clone();
        self.tsfn.call_with_return_value(
            ItemArgs(Some((index, result))),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |ret, _env| {
                if let Err(err) = ret {
                    state.fail(err);
                }
                Ok(())
            },
        );
    }

    /// Wait until every `onItem` call has run and every Promise it returned has settled, up to
    /// `deadline`.
    pub async fn barrier(&self, deadline: Instant) -> std::result::Result<(), ChatError> {
        if self.sent == 0 {
            return Ok(());
        }
        if self.tsfn.call_async_catch(ItemArgs(None)).await.is_err() {
            return Ok(());
        }
        self.state.settled_by(deadline, "onItem").await
    }

    /// The value `onItem` threw or rejected with, if it did.
    pub fn take_error(&self) -> Option<Error> {
        self.state.take_error()
    }
}
