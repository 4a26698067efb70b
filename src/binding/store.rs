//! JavaScript conversation stores, adapted to `core::conversation::ConversationStore`.
//!
//! Two shapes are accepted, as in the `chatgpt` package: a pair of async functions
//! `getMessageById(id)` / `upsertMessage(message)`, or a Keyv-style `messageStore` object with
//! `get(key)` / `set(key, value)`. The JavaScript layer's adapter (`lib/store.js`) turns either
//! into two functions that always return Promises, so Rust can await them uniformly and a
//! synchronous function or a synchronous throw works too. The ThreadsafeFunctions are weak: a
//! store held by a client never keeps the process alive on its own.

use std::sync::Arc;

use futures::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use super::init::BindingData;
use crate::core::conversation::{ConversationStore, StoredMessage};
use crate::core::error::{ChatError, ErrorCode};

/// A stored message as JavaScript stores see it (the `chatgpt` package's `ChatMessage` shape;
/// other fields a store keeps are ignored).
#[napi(object)]
pub struct StoredChatMessage {
    pub id: String,
    pub text: String,
    #[napi(ts_type = "'user' | 'assistant' | 'system'")]
    pub role: String,
    pub name: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
}

impl From<StoredChatMessage> for StoredMessage {
    fn from(m: StoredChatMessage) -> Self {
        StoredMessage {
            id: m.id,
            role: m.role,
            text: m.text,
            name: m.name,
            parent_message_id: m.parent_message_id,
            conversation_id: m.conversation_id,
        }
    }
}

impl From<StoredMessage> for StoredChatMessage {
    fn from(m: StoredMessage) -> Self {
        StoredChatMessage {
            id: m.id,
            text: m.text,
            role: m.role,
            name: m.name,
            parent_message_id: m.parent_message_id,
            conversation_id: m.conversation_id,
        }
    }
}

type GetFn = ThreadsafeFunction<String, Promise<Option<StoredChatMessage>>, String, Status, false, true>;
type SetFn = ThreadsafeFunction<StoredChatMessage, Promise<()>, StoredChatMessage, Status, false, true>;

/// A conversation store implemented in JavaScript.
pub struct JsStore {
    get: GetFn,
    set: SetFn,
}

/// The functions the adapter factory is called with.
pub struct JsStoreParts<'a> {
    pub get_message_by_id: Option<Function<'a, Unknown<'static>, Unknown<'static>>>,
    pub upsert_message: Option<Function<'a, Unknown<'static>, Unknown<'static>>>,
    pub message_store: Option<Object<'a>>,
}

impl JsStore {
    pub fn new(env: &Env, parts: JsStoreParts<'_>) -> Result<Self> {
        let factory = BindingData::get(env)?.js(|js| js.store_factory.borrow_back(env))?;
        let as_unknown = |v: Option<Unknown<'_>>| -> Result<Unknown<'static>> {
            match v {
                Some(v) => unsafe { Unknown::from_napi_value(env.raw(), v.raw()) },
                None => {
                    let mut null = std::ptr::null_mut();
                    unsafe {
                        napi::sys::napi_get_null(env.raw(), &mut null);
                        Unknown::from_napi_value(env.raw(), null)
                    }
                }
            }
        };
        let args = FnArgs::from((
            as_unknown(parts.get_message_by_id.map(|f| f.to_unknown()))?,
            as_unknown(parts.upsert_message.map(|f| f.to_unknown()))?,
            as_unknown(parts.message_store.map(|o| o.to_unknown()))?,
        ));
        let adapter: Object = factory.call(args)?;
        let get: Function<String, Promise<Option<StoredChatMessage>>> = adapter
            .get("get")?
            .ok_or_else(|| Error::from_reason("store adapter has no get"))?;
        let set: Function<StoredChatMessage, Promise<()>> = adapter
            .get("set")?
            .ok_or_else(|| Error::from_reason("store adapter has no set"))?;
        Ok(JsStore {
            get: get
                .build_threadsafe_function()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
            set: set
                .build_threadsafe_function()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
        })
    }
}

fn store_error(operation: &str, e: Error) -> ChatError {
    ChatError::new(
        ErrorCode::Store,
        format!("The conversation store's {operation} failed: {}", e.reason),
    )
}

/// What the store callback `operation`, called by `call`, resolved its Promise with; a failure
/// to call it, a throw or a rejection is the store's error.
async fn settled<T: FromNapiValue + 'static>(
    operation: &str,
    call: impl std::future::Future<Output = Result<Promise<T>>>,
) -> std::result::Result<T, ChatError> {
    let promise = call.await.map_err(|e| store_error(operation, e))?;
    promise.await.map_err(|e| store_error(operation, e))
}

impl ConversationStore for JsStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, std::result::Result<Option<Arc<StoredMessage>>, ChatError>> {
        Box::pin(async move {
            let message = settled("getMessageById", self.get.call_async(id.to_owned())).await?;
            Ok(message.map(|m| Arc::new(m.into())))
        })
    }

    fn upsert(&self, message: StoredMessage) -> BoxFuture<'_, std::result::Result<(), ChatError>> {
        Box::pin(async move { settled("upsertMessage", self.set.call_async(message.into())).await })
    }
}
