//! Per-environment data, handed over by the JavaScript layer when the package loads.
//!
//! The pieces of this package that are JavaScript by nature live in `lib/` (the `ChatGPTError`
//! class, the callback relays, the conversation-store adapter, the debug printer). `index.js` requires the generated
//! loader and calls [`init`] once per JS environment (main thread or worker) with them; the
//! references live in the environment's instance data, so workers each get their own.

use std::cell::RefCell;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::progress::RelayHooks;
use super::settle::Settler;

/// `new ChatGPTError(message, options)` as called from Rust.
type ErrorClass = FunctionRef<FnArgs<(String, Object<'static>)>, Unknown<'static>>;

/// `makeProgressRelay(onProgress, parentMessageId, conversationId, report, idle)`.
type ProgressRelayFactory = FunctionRef<
    FnArgs<(
        Unknown<'static>,
        String,
        Option<String>,
        Unknown<'static>,
        Unknown<'static>,
    )>,
    Unknown<'static>,
>;
/// `makeItemRelay(onItem, report, idle)`.
type ItemRelayFactory = FunctionRef<FnArgs<(Unknown<'static>, Unknown<'static>, Unknown<'static>)>, Unknown<'static>>;
/// `makeStore(getMessageById, upsertMessage, messageStore)`.
pub type StoreFactory = FunctionRef<FnArgs<(Unknown<'static>, Unknown<'static>, Unknown<'static>)>, Object<'static>>;

/// `debugLog(kind, text, promptTokens)` (`lib/debug.js`).
pub type DebugLogFn = FunctionRef<FnArgs<(String, String, Option<u32>)>, ()>;

/// The JavaScript layer's functions, as `init` received them.
pub struct JsLayer {
    pub error_class: ErrorClass,
    progress_relay: ProgressRelayFactory,
    item_relay: ItemRelayFactory,
    pub store_factory: StoreFactory,
    pub debug_log: DebugLogFn,
    /// `JSON.parse`, for building result objects in one call.
    pub json_parse: FunctionRef<Unknown<'static>, Unknown<'static>>,
}

/// What each JS environment keeps for the binding.
pub struct BindingData {
    js: RefCell<JsLayer>,
    /// Settles the Promises of async calls in batches (see `settle.rs`).
    pub settler: Settler,
}

impl BindingData {
    pub fn get(env: &Env) -> Result<&'static BindingData> {
        match env.get_instance_data::<BindingData>()? {
            Some(data) => Ok(data),
            None => Err(Error::from_reason(
                "chatgpt-native was not initialised in this environment: load it through its index.js",
            )),
        }
    }

    /// Run `f` with the JavaScript layer. The borrow ends before any JavaScript runs: `f` only
    /// borrows values back from their references.
    pub fn js<T>(&self, f: impl FnOnce(&JsLayer) -> Result<T>) -> Result<T> {
        let layer = self
            .js
            .try_borrow()
            .map_err(|_| Error::from_reason("chatgpt-native: the JavaScript layer is being replaced"))?;
        f(&layer)
    }
}

impl JsLayer {
    /// A relay for `onProgress` (see `lib/relay.js`).
    pub(crate) fn progress_relay(
        &self,
        env: &Env,
        on_progress: Unknown<'static>,
        parent_message_id: String,
        conversation_id: Option<String>,
        hooks: RelayHooks,
    ) -> Result<Unknown<'static>> {
        let factory = self.progress_relay.borrow_back(env)?;
        factory.call(FnArgs::from((
            on_progress,
            parent_message_id,
            conversation_id,
            hooks.report,
            hooks.idle,
        )))
    }

    /// A relay for `sendMany`'s `onItem` (see `lib/relay.js`).
    pub(crate) fn item_relay(
        &self,
        env: &Env,
        on_item: Unknown<'static>,
        hooks: RelayHooks,
    ) -> Result<Unknown<'static>> {
        let factory = self.item_relay.borrow_back(env)?;
        factory.call(FnArgs::from((on_item, hooks.report, hooks.idle)))
    }
}

/// One function of the object `index.js` passes to [`init`].
fn function<Args: JsValuesTupleIntoVec, Ret: FromNapiValue>(
    layer: &Object,
    name: &str,
) -> Result<FunctionRef<Args, Ret>> {
    let f: Option<Function<Args, Ret>> = layer.get(name)?;
    f.ok_or_else(|| Error::from_reason(format!("chatgpt-native: `{name}` is missing from the JavaScript layer")))?
        .create_ref()
}

/// Called by `index.js` right after loading the addon, once per environment, with
/// `{ ChatGPTError, makeProgressRelay, makeItemRelay, makeStore, debugLog, parseJson }`. A second call in
/// the same environment replaces the functions and keeps the settler, so calls already pending
/// still settle. (Loading the package again after clearing the require cache loads the addon
/// again too, with an environment and data of its own.)
#[napi(js_name = "__init", skip_typescript)]
pub fn init(env: Env, layer: Object) -> Result<()> {
    let js = JsLayer {
        error_class: function(&layer, "ChatGPTError")?,
        progress_relay: function(&layer, "makeProgressRelay")?,
        item_relay: function(&layer, "makeItemRelay")?,
        store_factory: function(&layer, "makeStore")?,
        debug_log: function(&layer, "debugLog")?,
        json_parse: function(&layer, "parseJson")?,
    };
    if let Some(data) = env.get_instance_data::<BindingData>()? {
        let mut slot = data
            .js
            .try_borrow_mut()
            .map_err(|_| Error::from_reason("chatgpt-native: the JavaScript layer is in use"))?;
        *slot = js;
        return Ok(());
    }
    env.set_instance_data(
        BindingData {
            js: RefCell::new(js),
            settler: Settler::new(&env)?,
        },
        0u8,
        |_| {},
    )
}
