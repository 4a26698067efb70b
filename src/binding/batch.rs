//! `sendMany`'s per-item report (`onItem`) and results.
//!
//! `onItem(index, result)` goes through the same relay as `onProgress` (see `progress.rs`):
//! NonBlocking ThreadsafeFunction calls, a throw or a rejected returned Promise turned into the
//! batch's rejection, and one awaited call at the end as a barrier, so every `onItem` has run
//! (and every Promise it returned has settled, within the batch's `timeoutMs`) before the
//! Promise settles.

use tokio::time::Instant;

use napi::bindgen_prelude::*;
use tokio_util::sync::CancellationToken;

use super::errors::js_error;
use super::init::BindingData;
use super::message::{message_to_js, serialize_message};
use super::progress::CallbackRelay;
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
        self.relay.send(index, Some(ItemOutcome(result)), None);
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
