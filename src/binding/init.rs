//! Module initialisation and per-environment data.
//!
//! Three pieces of this package are JavaScript by nature and are evaluated once per JS
//! environment (main thread or worker) when the addon loads: the `ChatGPTError` class (a real
//! `Error` subclass), the factory of `onProgress` relays (see `progress.rs`) and the adapter for
//! JavaScript conversation stores (see `store.rs`). References to all three live in the
//! environment's instance data, so workers each get their own.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::errors::ERROR_CLASS_SOURCE;
use super::progress::{RelayFactory, RELAY_FACTORY_SOURCE};
use super::settle::Settler;
use super::store::STORE_ADAPTER_SOURCE;

type ErrorClass = FunctionRef<FnArgs<(String, Object<'static>)>, Unknown<'static>>;
/// `makeRelay(onProgress, parentMessageId, conversationId, report, idle)` as called from Rust.
type RelayFactoryRef = FunctionRef<
    FnArgs<(
        Unknown<'static>,
        String,
        Option<String>,
        Unknown<'static>,
        Unknown<'static>,
    )>,
    RelayFactory,
>;
/// `makeStore(getMessageById, upsertMessage, messageStore)` as called from Rust.
pub type StoreFactory = FunctionRef<FnArgs<(Unknown<'static>, Unknown<'static>, Unknown<'static>)>, Object<'static>>;

/// What each JS environment keeps for the binding.
pub struct BindingData {
    pub error_class: ErrorClass,
    pub relay_factory: RelayFactoryRef,
    pub store_factory: StoreFactory,
    /// `JSON.parse`, for building result objects in one call.
    pub json_parse: FunctionRef<Unknown<'static>, Unknown<'static>>,
    /// Settles the Promises of async calls in batches (see `settle.rs`).
    pub settler: Settler,
}

impl BindingData {
    pub fn get(env: &Env) -> Result<&'static BindingData> {
        match env.get_instance_data::<BindingData>()? {
            Some(data) => Ok(data),
            None => Err(Error::from_reason(
                "chatgpt-native was not initialised in this environment",
            )),
        }
    }
}

#[napi(module_exports)]
pub fn init(mut exports: Object, env: Env) -> Result<()> {
    let class: Function<FnArgs<(String, Object<'static>)>, Unknown<'static>> = env.run_script(ERROR_CLASS_SOURCE)?;
    let error_class = class.create_ref()?;
    // The generated loader re-exports this name; the class replaces the `#[napi]` declaration.
    exports.set("ChatGPTError", class)?;
    let relay: Function<_, RelayFactory> = env.run_script(RELAY_FACTORY_SOURCE)?;
    let relay_factory = relay.create_ref()?;
    let store: Function<_, Object<'static>> = env.run_script(STORE_ADAPTER_SOURCE)?;
    let store_factory = store.create_ref()?;
    let parse: Function<Unknown<'static>, Unknown<'static>> = env.run_script("JSON.parse")?;
    let json_parse = parse.create_ref()?;
    env.set_instance_data(
        BindingData {
            error_class,
            relay_factory,
            store_factory,
            json_parse,
            settler: Settler::new(&env)?,
        },
        0u8,
        |_| {},
    )?;
    Ok(())
}
