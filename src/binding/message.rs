//! The reply objects JavaScript receives (`ChatMessage`, `PartialChatMessage`, `BuiltMessages`
//! and their parts) and their serialisation.
//!
//! A `ChatMessage` reaches JavaScript as JSON parsed with one `JSON.parse`
//! (`serialize_message` off the JavaScript thread, `message_to_js` on it), which builds the
//! object far faster than setting each property through napi; the structs here then only give
//! the typings their shape.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::init::BindingData;
use crate::core::chat::RawJson;
use crate::core::client::ChatReply;
use crate::core::conversation::Truncation;

/// A chunk of a reply as passed to `onProgress`: `text` so far, the new `delta`, and the chunk
/// that carried it as `detail`. Built in `lib/relay.js`; this struct gives the typings its shape.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct PartialChatMessage {
    /// The completion id (`chatcmpl-...`).
    pub id: String,
    /// Everything received so far.
    pub text: String,
    /// What this chunk added.
    pub delta: String,
    #[napi(ts_type = "'assistant'")]
    pub role: String,
    /// The id of the user message this replies to.
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
    /// The parsed stream chunk that carried `delta` (parsed on first read). A delta replayed from
    /// the cache or a shared request has a chunk built from the delta.
    #[napi(ts_type = "Record<string, any>")]
    pub detail: serde_json::Value,
}

/// Token usage of a reply.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// True when the server sent no usage and it was counted locally with the model's tokenizer.
    pub estimated: bool,
}

/// A reply, as `chatgpt` v5's `ChatMessage` plus `usage`, `finishReason` and `requestId`.
// Reaches JavaScript as JSON (one `JSON.parse`), never through napi's per-property conversion.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The completion id (`chatcmpl-...`): pass it as the next call's `parentMessageId`.
    pub id: String,
    pub text: String,
    #[napi(ts_type = "'user' | 'assistant' | 'system'")]
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    /// The raw response; for a stream, the chunk carrying `finish_reason`, with the stream's
    /// `usage` (or the estimate, flagged `estimated: true`).
    #[napi(ts_type = "Record<string, any>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<RawJson>,
    /// The id of the user message this replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// `stop`, `length`, `content_filter`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `x-request-id` of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How the conversation history was assembled for this reply's prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<ChatHistory>,
    /// True when served from the response cache (no request was sent).
    pub cached: bool,
}

/// One item of `sendMany`'s result.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SendManyResult {
    pub ok: bool,
    /// The reply, when `ok`.
    pub message: Option<ChatMessage>,
    /// The failure, when not `ok`.
    #[napi(ts_type = "ChatGPTError")]
    pub error: Option<serde_json::Value>,
}

/// The history sent with a prompt.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistory {
    /// Earlier messages (walked through `parentMessageId`) included in the prompt.
    pub messages: u32,
    /// True when the walk stopped before the start of the conversation.
    pub truncated: bool,
    /// Why it stopped: `'budget'` (the next message did not fit `maxModelTokens -
    /// maxResponseTokens`) or `'missing-parent'` (an ancestor was not in the store).
    #[napi(ts_type = "'budget' | 'missing-parent'")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<String>,
}

/// One message of a built prompt.
#[napi(object)]
pub struct PromptMessageJs {
    #[napi(ts_type = "'system' | 'user' | 'assistant'")]
    pub role: String,
    pub content: String,
    pub name: Option<String>,
}

/// What `sendMessage` would send: the result of `buildMessages`.
#[napi(object)]
pub struct BuiltMessages {
    /// System message, history oldest first, then the new user message.
    pub messages: Vec<PromptMessageJs>,
    /// Prompt tokens as the API bills them (OpenAI's per-message overhead included).
    pub num_tokens: u32,
    /// The `max_tokens` the request would carry: what the window leaves, capped at `maxResponseTokens`.
    pub max_tokens: u32,
    pub history: ChatHistory,
}

impl From<ChatReply> for ChatMessage {
    fn from(r: ChatReply) -> Self {
        ChatMessage {
            id: r.id,
            text: r.text,
            role: r.role,
            name: None,
            delta: None,
            detail: Some(r.detail),
            parent_message_id: Some(r.parent_message_id),
            conversation_id: r.conversation_id,
            usage: Some(ChatUsage {
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                total_tokens: r.usage.total_tokens,
                estimated: r.usage.estimated,
            }),
            finish_reason: r.finish_reason,
            request_id: r.request_id,
            history: Some(history(r.history_messages, r.truncated)),
            cached: r.cached,
        }
    }
}

/// A reply as the JSON of its `ChatMessage`.
pub(crate) fn serialize_message(reply: ChatReply) -> String {
    serde_json::to_string(&ChatMessage::from(reply)).unwrap_or_else(|_| "{}".to_owned())
}

/// `JSON.parse(json)`.
pub(crate) fn message_to_js<'env>(env: &'env Env, json: &str) -> Result<Unknown<'env>> {
    let parse = BindingData::get(env)?.js(|js| js.json_parse.borrow_back(env))?;
    // ASCII is its own Latin-1 encoding: V8 then copies the bytes into a one-byte string instead of
    // decoding UTF-8 (the usual case: JSON escapes nothing, but most replies are ASCII).
    let text = if json.is_ascii() {
        env.create_string_latin1(json.as_bytes())?
    } else {
        env.create_string(json)?
    };
    parse.call(text.to_unknown())
}

/// How a prompt's history was assembled, as JavaScript sees it.
pub(crate) fn history(messages: u32, truncated: Option<Truncation>) -> ChatHistory {
    ChatHistory {
        messages,
        truncated: truncated.is_some(),
        truncated_by: truncated.map(|t| t.as_str().to_owned()),
    }
}
