//! The reply objects JavaScript receives (`ChatReply`, `PartialChatMessage`, `BuiltMessages`
//! and their parts) and their serialisation.
//!
//! A reply reaches JavaScript as JSON parsed with one `JSON.parse`
//! (`serialize_message` off the JavaScript thread, `message_to_js` on it), which builds the
//! object far faster than setting each property through napi; the structs here then only give
//! the typings their shape.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::init::BindingData;
use crate::core::chat::{CompletionChoice, RawJson, ToolCall};
use crate::core::client::ChatReply;
use crate::core::conversation::Truncation;

/// A chunk of a reply as passed to `onProgress`: `text` so far, the new `delta`, and the chunk
/// that carried it as `detail`. Built in `lib/relay.js`; this struct gives the typings its shape.
/// A `ChatMessage`, so handlers typed `(partial: ChatMessage) => void` (as written for the
/// `chatgpt` package) are accepted.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct PartialChatMessage {
    /// The reply's id: the `id` the call resolves with.
    pub id: String,
    /// Everything received so far.
    pub text: String,
    /// What this chunk added to `text` (`""` for a chunk that only carried a tool-call fragment).
    pub delta: String,
    /// The tool calls assembled so far (arguments possibly incomplete); absent until the model
    /// starts calling one.
    #[napi(ts_type = "Array<ChatCompletionMessageToolCall>")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    #[napi(ts_type = "'assistant'")]
    pub role: String,
    /// The id of the user message this replies to.
    pub parent_message_id: String,
    /// The `conversationId` passed to `sendMessage`, if any.
    pub conversation_id: Option<String>,
    /// The parsed stream chunk that carried `delta` (parsed on first read). A delta replayed from
    /// the cache or a shared request has a chunk built from the delta.
    #[napi(ts_type = "ChatCompletionChunk")]
    pub detail: serde_json::Value,
    /// Which choice this partial belongs to (`text`, `delta`, `toolCalls` and `refusal` are then
    /// that choice's); present only when the call asked for several (`completionParams: { n }`
    /// above 1).
    pub choice_index: Option<u32>,
    /// The refusal received so far, once the model started declining (a streamed
    /// `delta.refusal`; `delta` is then `""`, and `text` stays the content only).
    pub refusal: Option<String>,
}

/// Token usage of a reply: what this call cost. A reply answered without a request of its own
/// (`cached: true`) cost nothing: its counts are 0, `cached` is `true` and `saved` holds what
/// the original request used.
#[napi(object, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// True when the server sent no usage and it was counted locally with the model's tokenizer
    /// (always false on a cached reply, whose counts are 0).
    pub estimated: bool,
    /// Present, and `true`, only when the reply was answered without a request of its own: from
    /// the response cache, or by sharing an identical call's request in flight.
    #[napi(ts_type = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// Present only with `cached`: the tokens the original request used, which this call did not
    /// use again (counted in `api.metrics().cacheTokensSaved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedTokens>,
    /// The server's `usage.prompt_tokens_details`, present when it sent one: `cachedTokens`, the
    /// prompt tokens read from OpenAI's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// The server's `usage.completion_tokens_details`, present when it sent one: `reasoningTokens`,
    /// what a reasoning model spent thinking (counted in `completionTokens`, absent from `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// The breakdown of a reply's prompt tokens (`usage.promptTokensDetails`); fields the server did
/// not send are absent.
#[napi(object, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u32>,
}

/// The breakdown of a reply's completion tokens (`usage.completionTokensDetails`); fields the
/// server did not send are absent.
#[napi(object, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionTokensDetails {
    /// Tokens a reasoning model spent thinking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u32>,
    /// Predicted Outputs: tokens of the prediction that appeared in the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u32>,
    /// Predicted Outputs: tokens of the prediction that did not (billed all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u32>,
}

/// The tokens a cached reply's original request used (`usage.saved`).
#[napi(object, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedTokens {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// What `sendMessage` resolves with: a `ChatMessage` (the `chatgpt` package's shape) whose
/// fields that every reply has are required, plus `usage`, `finishReason`, `requestId`,
/// `history` and `cached`.
// Reaches JavaScript as JSON (one `JSON.parse`), never through napi's per-property conversion.
// `ChatMessage` itself, and `SendManyResult` (a union napi's typegen cannot express), are written
// by hand in `index.d.ts`, which also declares that `ChatReply` extends `ChatMessage`.
#[napi(object, js_name = "ChatReply", object_to_js = false, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// This reply's own id, unique within the store: pass it as the next call's
    /// `parentMessageId`. The server's completion id is `detail.id`.
    pub id: String,
    /// The reply's text (`""` when the model answered with tool calls only).
    pub text: String,
    #[napi(ts_type = "Role")]
    pub role: String,
    /// The raw response (`ChatCompletion`); for a stream, the chunk carrying `finish_reason`
    /// (`ChatCompletionChunk`), with the stream's `usage` (or the estimate, flagged
    /// `estimated: true`).
    #[napi(ts_type = "ChatCompletion | ChatCompletionChunk")]
    pub detail: RawJson,
    /// The id of the user message this replies to (absent on a `sendMessages` reply, which has
    /// no stored user message).
    #[napi(ts_type = "string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: ParentId,
    /// The `conversationId` passed to `sendMessage`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Tokens this reply used.
    pub usage: ChatUsage,
    /// `stop`, `length`, `content_filter`, `tool_calls`, ...; absent when the server sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `x-request-id` of the response, when the server sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How the conversation history was assembled for this reply's prompt.
    pub history: ChatHistory,
    /// True when answered without a request of its own: from the response cache (when the
    /// instance's `cache` is on), or by sharing an identical call's request in flight. Its
    /// `usage` is then 0, with the original counts in `usage.saved`.
    pub cached: bool,
    /// The functions the model asked to call (openai-node's `ChatCompletionMessageToolCall`,
    /// `arguments` the JSON text as the model wrote it); present only when it called any, with
    /// `finishReason` `'tool_calls'`. Answer them with `sendMessage('', { toolResults,
    /// parentMessageId: reply.id })`, or let `runTools` do it.
    #[napi(ts_type = "Array<ChatCompletionMessageToolCall>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The model's refusal (`message.refusal`, or a stream's `delta.refusal` joined), present
    /// only when the server sent one; `text` is then usually `""`. The reply still resolves
    /// (only a `responseFormat` call rejects a refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The log probabilities of the reply's tokens (openai's `ChoiceLogprobs`, `{ content,
    /// refusal }`), present only when the server sent them (ask with `completionParams: {
    /// logprobs: true }`); a stream's entries are joined in order.
    #[napi(ts_type = "ChatCompletionLogprobs")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<RawJson>,
    /// Every choice, in `index` order, present only when the call asked for several
    /// (`completionParams: { n }` above 1). The reply's own `text`, `finishReason`,
    /// `toolCalls`, `refusal` and `logprobs` are the first choice's, which is the one stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<ReplyChoice>>,
    /// The reply's text parsed as JSON: present only when `responseFormat` (or
    /// `completionParams.response_format`) asked for `json_object` or `json_schema`. Not checked
    /// against the schema here (with `strict: true` the server does that).
    #[napi(ts_type = "unknown")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsed: Option<serde_json::Value>,
    /// With the `upstreams` option: the `name` of the upstream whose answer this is (for a
    /// `cached` reply, the one that produced it). Absent on an instance without `upstreams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// One choice of a reply that asked for several (`reply.choices`).
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyChoice {
    /// The choice's `index` (its position in `choices`).
    pub index: u32,
    /// Its text (`""` when it answered with tool calls or a refusal only).
    pub text: String,
    /// `stop`, `length`, `content_filter`, `tool_calls`, ...; absent when the server sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The functions this choice asked to call; present only when it called any.
    #[napi(ts_type = "Array<ChatCompletionMessageToolCall>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// This choice's refusal, when it declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// This choice's log probabilities, when the server sent them.
    #[napi(ts_type = "ChatCompletionLogprobs")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<RawJson>,
    /// This choice's text parsed as JSON: present only when `responseFormat` asked for JSON
    /// (every choice must parse, or the call rejects).
    #[napi(ts_type = "unknown")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsed: Option<serde_json::Value>,
}

impl From<CompletionChoice> for ReplyChoice {
    fn from(c: CompletionChoice) -> Self {
        ReplyChoice {
            index: c.index,
            text: c.text,
            finish_reason: c.finish_reason,
            tool_calls: (!c.tool_calls.is_empty()).then_some(c.tool_calls),
            refusal: c.refusal,
            logprobs: c.logprobs,
            parsed: c.parsed,
        }
    }
}

/// A reply's `parentMessageId`: `None` for a `sendMessages` reply, which has no user message.
/// Typed `string` (every `sendMessage` reply has one); serialised as the id, or left out.
pub type ParentId = Option<String>;

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
    #[napi(ts_type = "'system' | 'user' | 'assistant' | 'tool'")]
    pub role: String,
    /// A string, or the content parts a message was sent with.
    #[napi(ts_type = "string | ContentPart[]")]
    pub content: serde_json::Value,
    pub name: Option<String>,
    /// An assistant message's tool calls (sent as `tool_calls`).
    pub tool_calls: Option<Vec<super::store::StoredToolCall>>,
    /// A `tool` message's answered call (sent as `tool_call_id`).
    pub tool_call_id: Option<String>,
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
            detail: r.detail,
            parent_message_id: (!r.own_messages).then_some(r.parent_message_id),
            conversation_id: r.conversation_id,
            usage: ChatUsage {
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                total_tokens: r.usage.total_tokens,
                estimated: r.usage.estimated,
                cached: r.saved.map(|_| true),
                saved: r.saved.map(|s| SavedTokens {
                    prompt_tokens: s.prompt_tokens,
                    completion_tokens: s.completion_tokens,
                    total_tokens: s.total_tokens,
                }),
                prompt_tokens_details: r.usage.prompt_tokens_details.map(|d| PromptTokensDetails {
                    cached_tokens: d.cached_tokens,
                    audio_tokens: d.audio_tokens,
                }),
                completion_tokens_details: r.usage.completion_tokens_details.map(|d| CompletionTokensDetails {
                    reasoning_tokens: d.reasoning_tokens,
                    audio_tokens: d.audio_tokens,
                    accepted_prediction_tokens: d.accepted_prediction_tokens,
                    rejected_prediction_tokens: d.rejected_prediction_tokens,
                }),
            },
            finish_reason: r.finish_reason,
            request_id: r.request_id,
            history: history(r.history_messages, r.truncated),
            cached: r.cached,
            tool_calls: (!r.tool_calls.is_empty()).then_some(r.tool_calls),
            refusal: r.refusal,
            logprobs: r.logprobs,
            choices: (!r.choices.is_empty()).then(|| r.choices.into_iter().map(ReplyChoice::from).collect()),
            parsed: r.parsed,
            upstream: r.upstream,
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
