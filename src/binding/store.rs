//! JavaScript conversation stores, adapted to `core::conversation::ConversationStore`.
//!
//! Two shapes are accepted, as in the `chatgpt` package: a pair of async functions
//! `getMessageById(id)` / `upsertMessage(message)`, or a Keyv-style `messageStore` object with
//! `get(key)` / `set(key, value)`. As there, either hook may come alone: the other operation
//! then goes to `messageStore` when given, else to the in-memory store. The JavaScript layer's
//! adapter (`lib/store.js`) turns what was given into functions that always return Promises, so
//! Rust can await them uniformly and a synchronous function or a synchronous throw works too.
//! The ThreadsafeFunctions are weak: a store held by a client never keeps the process alive on
//! its own.
//!
//! A hook's throw or rejection fails the call with `ERR_CHATGPT_STORE`, whose `cause` is the very
//! value thrown.

use std::sync::Arc;

use futures::future::BoxFuture;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use super::convert::to_json;
use super::init::BindingData;
use crate::core::chat::{ToolCall, ToolFunction};
use crate::core::content::{self, ContentPart};
use crate::core::conversation::{ConversationStore, MessageStore, StoredMessage};
use crate::core::error::{ChatError, ErrorCode, Thrown};

/// A stored message as JavaScript stores see it (the `chatgpt` package's `ChatMessage` shape;
/// other fields a store keeps are ignored).
#[napi(object)]
pub struct StoredChatMessage {
    pub id: String,
    pub text: String,
    /// Always set on the messages this package stores; a row without it is a `'user'` message,
    /// as the `chatgpt` package reads one.
    #[napi(ts_type = "'user' | 'assistant' | 'system' | 'tool'")]
    pub role: Option<String>,
    pub name: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// A reply's tool calls, when it called any.
    pub tool_calls: Option<Vec<StoredToolCall>>,
    /// A tool result's (`role: 'tool'`) answered call.
    pub tool_call_id: Option<String>,
    /// The content parts of a user message sent with them (`text` then holds their text parts,
    /// joined with `'\n'`); a rebuilt history sends the parts again.
    #[napi(ts_type = "ContentPart[]")]
    pub content: Option<StoredParts>,
}

/// A tool call as a stored reply keeps it (openai-node's `ChatCompletionMessageToolCall`).
#[napi(object)]
pub struct StoredToolCall {
    pub id: String,
    #[napi(js_name = "type", ts_type = "'function'")]
    pub kind: String,
    pub function: StoredToolFunction,
}

/// The function of a [`StoredToolCall`]: its name and its arguments as JSON text.
#[napi(object)]
pub struct StoredToolFunction {
    pub name: String,
    pub arguments: String,
}

impl From<StoredToolCall> for ToolCall {
    fn from(c: StoredToolCall) -> Self {
        ToolCall {
            id: c.id,
            kind: c.kind,
            function: ToolFunction {
                name: c.function.name,
                arguments: c.function.arguments,
            },
        }
    }
}

/// The `content` of a stored row: its parts, read within `core::jsvalue`'s bounds and checked like
/// `sendMessage`'s. A string `content` (a row some other code wrote) is left to `text`.
pub struct StoredParts(Option<Arc<[ContentPart]>>);

impl FromNapiValue for StoredParts {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        let js_env = Env::from_raw(env);
        let value = Unknown::from_raw_unchecked(env, value);
        match value.get_type()? {
            ValueType::Undefined | ValueType::Null | ValueType::String => Ok(StoredParts(None)),
            _ => {
                let json = to_json(&js_env, &value, "content")?;
                let parts =
                    content::parse_parts(&json, "content").map_err(|e| Error::from_reason(e.message.clone()))?;
                Ok(StoredParts(Some(parts)))
            }
        }
    }
}

impl From<ToolCall> for StoredToolCall {
    fn from(c: ToolCall) -> Self {
        StoredToolCall {
            id: c.id,
            kind: c.kind,
            function: StoredToolFunction {
                name: c.function.name,
                arguments: c.function.arguments,
            },
        }
    }
}

impl ToNapiValue for StoredParts {
    unsafe fn to_napi_value(env: napi::sys::napi_env, value: Self) -> Result<napi::sys::napi_value> {
        // Parts always serialise.
        let json = value.0.map_or(serde_json::Value::Null, |p| {
            serde_json::to_value(&p[..]).unwrap_or_default()
        });
        serde_json::Value::to_napi_value(env, json)
    }
}

impl From<StoredChatMessage> for StoredMessage {
    fn from(m: StoredChatMessage) -> Self {
        StoredMessage {
            id: m.id,
            role: m.role.unwrap_or_else(|| "user".to_owned()),
            text: m.text,
            name: m.name,
            parent_message_id: m.parent_message_id,
            conversation_id: m.conversation_id,
            tool_calls: m.tool_calls.into_iter().flatten().map(ToolCall::from).collect(),
            tool_call_id: m.tool_call_id,
            content: m.content.and_then(|c| c.0),
        }
    }
}

impl From<StoredMessage> for StoredChatMessage {
    fn from(m: StoredMessage) -> Self {
        StoredChatMessage {
            id: m.id,
            text: m.text,
            role: Some(m.role),
            name: m.name,
            parent_message_id: m.parent_message_id,
            conversation_id: m.conversation_id,
            tool_calls: (!m.tool_calls.is_empty())
                .then(|| m.tool_calls.into_iter().map(StoredToolCall::from).collect()),
            tool_call_id: m.tool_call_id,
            content: m.content.map(|c| StoredParts(Some(c))),
        }
    }
}

type GetFn = ThreadsafeFunction<String, Promise<Option<StoredChatMessage>>, String, Status, false, true>;
type SetFn = ThreadsafeFunction<StoredChatMessage, Promise<()>, StoredChatMessage, Status, false, true>;

/// `f` callable from any thread, and weak: a store must not keep Node's event loop alive.
fn weak_threadsafe<A, R>(f: Function<'_, A, R>) -> Result<ThreadsafeFunction<A, R, A, Status, false, true>>
where
    A: JsValuesTupleIntoVec + 'static,
    R: FromNapiValue + 'static,
{
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
}

/// A conversation store implemented in JavaScript, wholly or in part.
pub struct JsStore {
    /// `None`: reads go to `memory`.
    get: Option<GetFn>,
    /// `None`: writes go to `memory`.
    set: Option<SetFn>,
    /// The in-memory store, for the operation JavaScript does not provide (only then).
    memory: Option<MessageStore>,
}

/// The functions the adapter factory is called with.
pub struct JsStoreParts<'a> {
    pub get_message_by_id: Option<Function<'a, Unknown<'static>, Unknown<'static>>>,
    pub upsert_message: Option<Function<'a, Unknown<'static>, Unknown<'static>>>,
    pub message_store: Option<Object<'a>>,
}

impl JsStore {
    /// The store `parts` make; an operation none of them provides goes to an in-memory store of
    /// `memory_capacity` messages.
    pub fn new(env: &Env, parts: JsStoreParts<'_>, memory_capacity: usize) -> Result<Self> {
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
        // The adapter leaves out (null) what nothing given provides.
        let get: Option<Function<String, Promise<Option<StoredChatMessage>>>> = function(&adapter, "get")?;
        let set: Option<Function<StoredChatMessage, Promise<()>>> = function(&adapter, "set")?;
        let memory = (get.is_none() || set.is_none()).then(|| MessageStore::new(memory_capacity));
        Ok(JsStore {
            get: get.map(weak_threadsafe).transpose()?,
            set: set.map(weak_threadsafe).transpose()?,
            memory,
        })
    }
}

/// The adapter's `name` function, or `None` when it left that operation out.
fn function<'a, Args: JsValuesTupleIntoVec, Ret: FromNapiValue>(
    adapter: &Object<'a>,
    name: &str,
) -> Result<Option<Function<'a, Args, Ret>>> {
    let value: Option<Unknown> = adapter.get(name)?;
    match value {
        Some(v) if v.get_type()? == ValueType::Function => Ok(Some(unsafe { v.cast() }?)),
        _ => Ok(None),
    }
}

/// The error of a failed store operation; a thrown or rejected JavaScript value rides along as
/// its `cause`.
fn store_error(operation: &str, e: Error) -> ChatError {
    let message = format!("The conversation store's {operation} failed: {}", e.reason);
    ChatError::new(ErrorCode::Store, message).with_thrown(Thrown(Arc::new(e)))
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

/// An operation JavaScript does not provide: the in-memory store's.
fn unprovided() -> ChatError {
    ChatError::new(
        ErrorCode::Internal,
        "chatgpt-native: a store operation has no implementation",
    )
}

impl ConversationStore for JsStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, std::result::Result<Option<Arc<StoredMessage>>, ChatError>> {
        let Some(get) = &self.get else {
            return Box::pin(std::future::ready(
                self.memory.as_ref().map(|m| m.get_now(id)).ok_or_else(unprovided),
            ));
        };
        Box::pin(async move {
            let message = settled("getMessageById", get.call_async(id.to_owned())).await?;
            Ok(message.map(|m| Arc::new(m.into())))
        })
    }

    fn upsert(&self, message: StoredMessage) -> BoxFuture<'_, std::result::Result<(), ChatError>> {
        let Some(set) = &self.set else {
            return Box::pin(std::future::ready(
                self.memory.as_ref().map(|m| m.insert(message)).ok_or_else(unprovided),
            ));
        };
        Box::pin(async move { settled("upsertMessage", set.call_async(message.into())).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_without_a_role_is_a_user_message() {
        let row = StoredChatMessage {
            id: "r1".into(),
            text: "no role here".into(),
            role: None,
            name: None,
            parent_message_id: None,
            conversation_id: None,
            tool_calls: None,
            tool_call_id: None,
            content: None,
        };
        assert_eq!(StoredMessage::from(row).role, "user");
    }
}
