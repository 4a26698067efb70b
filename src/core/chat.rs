//! The chat-completions wire format: building request bodies, reading complete responses,
//! folding stream chunks into text, finish reason, tool calls, refusal, logprobs (each choice
//! apart, routed by `index`) and usage, and the chat token formula (what a prompt's messages cost
//! on top of their text, as the API bills them).
//!
//! Tolerant where real servers differ: an empty `delta`, a role-only
//! first chunk, `content: null` (llama.cpp), a usage chunk with non-empty `choices` (LiteLLM),
//! numeric error codes. Strict where silence would be wrong: an error object anywhere rejects,
//! and a stream must end with `[DONE]` or a `finish_reason`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::content::Content;
use super::error::{error_from_object, ChatError, ErrorCode};
use super::sse::SseEvent;
use super::structured::ChoiceOutput;
use super::surrogates::{decode_string, decode_string_lossy, replace_lone_surrogates};
use super::tokens::Encoding;

/// One message of the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: String,
    /// A string, or content parts (text and images) sent as given.
    pub content: Content,
    pub name: Option<String>,
    /// An assistant message's calls (sent as `tool_calls`; its `content` is then `null` when empty).
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message's answered call (sent as `tool_call_id`).
    pub tool_call_id: Option<String>,
}

impl Serialize for PromptMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let calls = self.tool_calls.as_deref().filter(|c| !c.is_empty());
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        // An assistant message that only called tools has `content: null`, as the API sends it.
        if calls.is_some() && self.content.as_text() == Some("") {
            map.serialize_entry("content", &())?;
        } else {
            map.serialize_entry("content", &self.content)?;
        }
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        if let Some(calls) = calls {
            map.serialize_entry("tool_calls", calls)?;
        }
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        map.end()
    }
}

/// A function call the model asked for, in openai-node's `ChatCompletionMessageToolCall` shape:
/// `{ id, type: 'function', function: { name, arguments } }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: ToolFunction,
}

/// The function part of a [`ToolCall`]: its name and its arguments as the JSON text the model wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolFunction {
    pub name: String,
    pub arguments: String,
}

/// Most tool calls one answer may carry (a stream's fragment `index` above this is refused).
pub const MAX_TOOL_CALLS: usize = 128;

impl ToolCall {
    /// The calls of a complete response's `message.tool_calls`, read leniently: a call that is not
    /// an object is skipped, a field of another type reads as empty; at most [`MAX_TOOL_CALLS`].
    fn list_from_value(value: &Value) -> Vec<ToolCall> {
        let Some(calls) = value.as_array() else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        calls
            .iter()
            .filter(|c| c.is_object())
            .take(MAX_TOOL_CALLS)
            .map(|c| {
                let function = c.get("function");
                ToolCall {
                    id: text(c.get("id")),
                    kind: c.get("type").and_then(Value::as_str).unwrap_or("function").to_owned(),
                    function: ToolFunction {
                        name: text(function.and_then(|f| f.get("name"))),
                        arguments: text(function.and_then(|f| f.get("arguments"))),
                    },
                }
            })
            .collect()
    }
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
    /// True when counted locally because the server sent none.
    #[serde(skip)]
    pub estimated: bool,
    /// `prompt_tokens_details` as the server sent it (absent, or of another shape: `None`).
    #[serde(default, deserialize_with = "lenient_details")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// `completion_tokens_details` as the server sent it (reasoning models' `reasoning_tokens`).
    #[serde(default, deserialize_with = "lenient_details")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// The breakdown of a response's prompt tokens (`usage.prompt_tokens_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from OpenAI's prompt cache (billed at a discount).
    #[serde(default)]
    pub cached_tokens: Option<u32>,
    #[serde(default)]
    pub audio_tokens: Option<u32>,
}

/// The breakdown of a response's completion tokens (`usage.completion_tokens_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Tokens a reasoning model spent thinking (billed, but not in the reply's text).
    #[serde(default)]
    pub reasoning_tokens: Option<u32>,
    #[serde(default)]
    pub audio_tokens: Option<u32>,
    #[serde(default)]
    pub accepted_prediction_tokens: Option<u32>,
    #[serde(default)]
    pub rejected_prediction_tokens: Option<u32>,
}

/// A details object of `usage`, or `None` when it is absent, `null` or not of its shape: a
/// server's odd breakdown must not cost the reply its token counts.
fn lenient_details<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Completion parameters, with the serialisations every request needs made once: a client's
/// own parameters are shared by all its calls, so most calls copy and format none of them.
#[derive(Debug)]
pub struct Params {
    map: Map<String, Value>,
    /// `"k":v,...` for every parameter but `messages` and `stream` (ours win).
    body_entries: String,
    /// Canonical JSON (the map is ordered by key) of the parameters that change the answer:
    /// not `stream`, `stream_options` or `user`. Hashed into cache keys.
    answer_json: String,
    model: String,
    encoding: Encoding,
}

impl Params {
    pub fn new(map: Map<String, Value>) -> Self {
        let mut body_entries = String::new();
        let mut answer = Map::new();
        for (k, v) in &map {
            if k != "messages" && k != "stream" {
                if !body_entries.is_empty() {
                    body_entries.push(',');
                }
                // Strings and JSON values always serialise.
                body_entries.push_str(&serde_json::to_string(k).unwrap_or_default());
                body_entries.push(':');
                body_entries.push_str(&serde_json::to_string(v).unwrap_or_default());
            }
            if !matches!(k.as_str(), "stream" | "stream_options" | "user") {
                answer.insert(k.clone(), v.clone());
            }
        }
        let model = map.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        Params {
            body_entries,
            answer_json: serde_json::to_string(&answer).unwrap_or_default(),
            encoding: Encoding::for_model(&model),
            model,
            map,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The tokenizer the model uses.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// See [`Params::answer_json`].
    pub fn answer_json(&self) -> &str {
        &self.answer_json
    }
}

/// The reply cap added to a request whose parameters set none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyCap {
    /// `max_tokens`, or `max_completion_tokens` for the models that take it.
    pub field: &'static str,
    pub tokens: u32,
}

/// The reply cap the client adds, if any (none when the parameters set their own).
pub type AddedMax = Option<ReplyCap>;

/// Build the JSON body: `{ ...params, max_tokens?, messages, stream }` (plus
/// `stream_options.include_usage` when streaming, so usage is real rather than estimated).
pub fn build_body(params: &Params, added_max: AddedMax, messages: &[PromptMessage], stream: bool) -> Vec<u8> {
    let size = messages.iter().map(|m| m.content.approx_len() + 32).sum::<usize>();
    body_with(params, added_max, stream, size, |out| {
        // Writing strings into a Vec cannot fail.
        let _ = serde_json::to_writer(out, messages);
    })
}

/// [`build_body`] with `messages_json`, a JSON array already written, as the messages.
pub fn build_body_raw(params: &Params, added_max: AddedMax, messages_json: &str, stream: bool) -> Vec<u8> {
    body_with(params, added_max, stream, messages_json.len(), |out| {
        out.extend_from_slice(messages_json.as_bytes())
    })
}

/// The body around the messages `write_messages` writes (about `messages_size` bytes).
fn body_with(
    params: &Params,
    added_max: AddedMax,
    stream: bool,
    messages_size: usize,
    write_messages: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64usize
            .saturating_add(params.body_entries.len())
            .saturating_add(messages_size),
    );
    out.push(b'{');
    out.extend_from_slice(params.body_entries.as_bytes());
    if !params.body_entries.is_empty() {
        out.push(b',');
    }
    if let Some(ReplyCap { field, tokens }) = added_max {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "\"{field}\":{tokens},");
    }
    out.extend_from_slice(b"\"messages\":");
    write_messages(&mut out);
    out.extend_from_slice(if stream {
        b",\"stream\":true"
    } else {
        b",\"stream\":false"
    });
    if stream && !params.contains_key("stream_options") {
        out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
    }
    out.push(b'}');
    out
}

/// A JSON document kept as its text (`None` is `null`).
///
/// The raw response becomes `ChatMessage.detail` in JavaScript. Parsing it into a `Value` tree
/// and printing it again was a third of the Rust-side cost of a cheap call's result; as text it
/// is copied through once, and keeps the server's key order. Cloning shares it.
#[derive(Clone, Default)]
pub struct RawJson(Option<Arc<RawValue>>);

impl RawJson {
    /// `text` if it is one valid JSON document, else `null`.
    pub fn from_text(text: String) -> Self {
        RawJson(RawValue::from_string(text).ok().map(Arc::from))
    }

    fn from_raw(raw: &RawValue) -> Self {
        RawJson(Some(Arc::from(raw.to_owned())))
    }

    /// This object with `usage` (JSON text) as its `usage` field, replacing any there, the other
    /// fields kept in order. A document that is not an object becomes `{"usage": ...}`.
    pub fn with_usage(&self, usage: &str) -> RawJson {
        let fields = serde_json::from_str::<OrderedFields<'_>>(self.get())
            .map(|f| f.0)
            .unwrap_or_default();
        let mut out = String::with_capacity(self.get().len().saturating_add(usage.len()).saturating_add(10));
        out.push('{');
        for (key, value) in fields.iter().filter(|(key, _)| key.as_ref() != "usage") {
            // A string always serialises.
            out.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            out.push(':');
            out.push_str(value.get());
            out.push(',');
        }
        out.push_str("\"usage\":");
        out.push_str(usage);
        out.push('}');
        RawJson::from_text(out)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.as_deref().map_or("null", RawValue::get)
    }

    /// Parsed, for tests.
    #[cfg(test)]
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => s.serialize_unit(),
        }
    }
}

/// An object's fields in document order, values kept as their JSON text.
struct OrderedFields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for OrderedFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = OrderedFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(OrderedFields(fields))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A finished completion, streamed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: Option<String>,
    pub text: String,
    pub role: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The raw response, or for a stream the chunk that finished it with the stream's `usage`.
    pub detail: RawJson,
    /// How many choices the response (or the stream's last chunk) carried.
    pub choices: usize,
    /// The tool calls of the first choice (streamed fragments joined by `index`).
    pub tool_calls: Vec<ToolCall>,
    /// The first choice's refusal (`message.refusal`, or the streamed `delta.refusal` joined),
    /// when the server sent one.
    pub refusal: Option<String>,
    /// The first choice's log probabilities (openai's `ChoiceLogprobs`, `{ content, refusal }`),
    /// when the server sent them; a stream's entries are joined in order.
    pub logprobs: Option<RawJson>,
    /// Every choice, in `index` order, when the request asked for several (`n > 1`); empty
    /// otherwise (the fields above are then the only choice's). See [`Completion::for_choices`].
    pub all_choices: Vec<CompletionChoice>,
}

/// One choice of a completion that asked for several (`n > 1`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub finish_reason: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub refusal: Option<String>,
    /// openai's `ChoiceLogprobs` (`{ content, refusal }`), when the server sent it.
    pub logprobs: Option<RawJson>,
    /// Its text's JSON value, when `response_format` asked for JSON (set by the client once the
    /// whole reply passed [`parse_output`](super::structured::parse_output)).
    pub parsed: Option<Value>,
}

impl CompletionChoice {
    /// What [`parse_output`](super::structured::parse_output) reads of this choice.
    pub fn output(&self) -> ChoiceOutput<'_> {
        ChoiceOutput {
            text: &self.text,
            finish_reason: self.finish_reason.as_deref(),
            refusal: self.refusal.as_deref(),
            tool_calls: !self.tool_calls.is_empty(),
        }
    }
}

/// Most choices one request may ask for (`n`): the per-choice state of a reply is bounded by it.
pub const MAX_CHOICES: usize = 128;

/// The number of choices a request asks for: its `n` parameter, 1 when absent (the client
/// checks it is an integer in `1..=MAX_CHOICES` before sending).
pub fn requested_choices(params: &Params) -> usize {
    params
        .get("n")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .map_or(1, |n| n.clamp(1, MAX_CHOICES))
}

impl Completion {
    /// This completion as the answer to a request for `requested` choices: with one, no
    /// `all_choices` (a response with more choices than asked keeps only the first, as before);
    /// with several, `all_choices` holds at most `requested` of them, and at least the first.
    pub fn for_choices(mut self, requested: usize) -> Self {
        if requested <= 1 {
            self.all_choices = Vec::new();
            return self;
        }
        self.all_choices.truncate(requested);
        if self.all_choices.is_empty() {
            self.all_choices.push(CompletionChoice {
                index: 0,
                text: self.text.clone(),
                finish_reason: self.finish_reason.clone(),
                tool_calls: self.tool_calls.clone(),
                refusal: self.refusal.clone(),
                logprobs: self.logprobs.clone(),
                parsed: None,
            });
        }
        self
    }
}

// Typed views of a complete response, read in one pass over the (already validated) text: only
// the fields used are decoded, nothing else is built. A field of an unexpected type reads as
// absent, as it would through `Value::as_str`.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default)]
    id: Lenient<String>,
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// `T` if the value is one, else `None` (the value is skipped, not an error).
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

/// Skips a value of any type.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the scalar and container cases of a visitor that accepts anything, answering
/// `$none` for every type it does not want.
macro_rules! accept_other_types {
    ($none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

impl<'de> Deserialize<'de> for Lenient<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|_| Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|_| Lenient(None))
            }
            accept_other_types!(Lenient(None));
        }
        d.deserialize_any(V)
    }
}

/// `choices`: how many there are, and the first [`MAX_CHOICES`] read. Not an array: no choices.
#[derive(Default)]
struct Choices {
    count: usize,
    /// In order; `None` for a choice that is not an object.
    read: Vec<Option<Choice>>,
}

#[derive(Default)]
struct Choice {
    /// `Some` (possibly empty) whenever the choice has a `message` key.
    message: Option<Message>,
    finish_reason: Lenient<String>,
    /// `logprobs` when it is an object (openai's `ChoiceLogprobs`).
    logprobs: Option<Box<RawValue>>,
}

#[derive(Default)]
struct Message {
    content: Lenient<String>,
    role: Lenient<String>,
    tool_calls: Option<Value>,
    refusal: Lenient<String>,
}

impl Choice {
    /// This choice as a reply carries it (a choice without a message is empty).
    fn into_completion_choice(self, index: u32) -> CompletionChoice {
        let message = self.message.unwrap_or_default();
        CompletionChoice {
            index,
            text: message.content.0.unwrap_or_default(),
            finish_reason: self.finish_reason.0,
            tool_calls: message
                .tool_calls
                .as_ref()
                .map(ToolCall::list_from_value)
                .unwrap_or_default(),
            refusal: message.refusal.0,
            logprobs: self.logprobs.as_deref().map(RawJson::from_raw),
            parsed: None,
        }
    }
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut choices = Choices::default();
                while choices.read.len() < MAX_CHOICES {
                    let Some(choice) = seq.next_element::<Lenient<Choice>>()? else {
                        break;
                    };
                    choices.read.push(choice.0);
                }
                choices.count = choices.read.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    choices.count = choices.count.saturating_add(1);
                }
                Ok(choices)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Choices::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|_| Choices::default())
            }
            accept_other_types!(Choices::default());
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceField {
    Message,
    FinishReason,
    Logprobs,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum MessageField {
    Content,
    Role,
    ToolCalls,
    Refusal,
    #[serde(other)]
    Other,
}

/// A JSON object read field by field into `Self`; as a [`Lenient`] value any other JSON type
/// reads as `None`.
trait ObjectFields<'de>: Default {
    /// The field names read (`#[serde(field_identifier)]`, with an `Other` for the rest).
    type Key: Deserialize<'de>;
    fn read<A: MapAccess<'de>>(&mut self, key: Self::Key, map: &mut A) -> Result<(), A::Error>;
}

impl<'de> ObjectFields<'de> for Choice {
    type Key = ChoiceField;
    fn read<A: MapAccess<'de>>(&mut self, key: ChoiceField, map: &mut A) -> Result<(), A::Error> {
        match key {
            // A null message is absent; one that is not an object is present but empty.
            ChoiceField::Message => {
                self.message = map
                    .next_value::<Option<Lenient<Message>>>()?
                    .map(|m| m.0.unwrap_or_default())
            }
            ChoiceField::FinishReason => self.finish_reason = map.next_value()?,
            ChoiceField::Logprobs => {
                let raw = map.next_value::<Box<RawValue>>()?;
                self.logprobs = raw.get().starts_with('{').then_some(raw);
            }
            ChoiceField::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> ObjectFields<'de> for Message {
    type Key = MessageField;
    fn read<A: MapAccess<'de>>(&mut self, key: MessageField, map: &mut A) -> Result<(), A::Error> {
        match key {
            MessageField::Content => self.content = map.next_value()?,
            MessageField::Role => self.role = map.next_value()?,
            MessageField::ToolCalls => self.tool_calls = map.next_value()?,
            MessageField::Refusal => self.refusal = map.next_value()?,
            MessageField::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de, T: ObjectFields<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: ObjectFields<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = T::default();
                while let Some(key) = map.next_key::<T::Key>()? {
                    fields.read(key, &mut map)?;
                }
                Ok(Lenient(Some(fields)))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|_| Lenient(None))
            }
            accept_other_types!(Lenient(None));
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Parse a non-streaming response body: one pass to validate it and keep it as `detail`, one to
/// read the fields used.
pub fn parse_completion(body: &[u8]) -> Result<Completion, ChatError> {
    let bad = |what: String| ChatError::new(ErrorCode::BadResponse, what);
    let raw: &RawValue = serde_json::from_slice(body).map_err(|e| bad(format!("The server sent invalid JSON: {e}")))?;
    // The raw text (the detail) keeps lone surrogate escapes, which JavaScript's JSON.parse
    // reads; the fields are read with them as U+FFFD, which serde_json accepts.
    let text = replace_lone_surrogates(raw.get().as_bytes());
    // Not an object (an array, a string...): valid JSON, but no response.
    let fields: Body<'_> = serde_json::from_slice(&text).map_err(|_| bad("The response has no `choices`".into()))?;
    if let Some(err) = fields.error {
        let err: Value = serde_json::from_str(err.get()).unwrap_or(Value::Null);
        return Err(error_from_object(&err));
    }
    let choices = fields.choices.unwrap_or_default();
    if choices.count == 0 {
        return Err(bad("The response has no `choices`".into()));
    }
    let count = choices.count;
    let mut read = choices.read.into_iter();
    let first = match read.next() {
        Some(Some(first)) if first.message.is_some() => first,
        _ => return Err(bad("The response's choice has no `message`".into())),
    };
    let role = first.message.as_ref().and_then(|m| m.role.0.clone());
    let first = first.into_completion_choice(0);
    // The other choices, by position (a choice that is not an object reads as empty); kept only
    // when the request asked for several (see `Completion::for_choices`).
    let all_choices = if count > 1 {
        let others = read.enumerate().map(|(i, choice)| {
            // At most MAX_CHOICES are read, so the position fits.
            let index = u32::try_from(i.saturating_add(1)).unwrap_or(u32::MAX);
            choice.unwrap_or_default().into_completion_choice(index)
        });
        std::iter::once(first.clone()).chain(others).collect()
    } else {
        Vec::new()
    };
    Ok(Completion {
        id: fields.id.0,
        text: first.text,
        role: role.unwrap_or_else(|| "assistant".into()),
        finish_reason: first.finish_reason,
        usage: fields.usage.and_then(|u| serde_json::from_str(u.get()).ok()),
        detail: RawJson::from_raw(raw),
        choices: count,
        tool_calls: first.tool_calls,
        refusal: first.refusal,
        logprobs: first.logprobs,
        all_choices,
    })
}

// Typed, borrowing views of a chunk: the per-delta hot path avoids building a `Value` tree.
// Strings are kept as their JSON text and decoded by `surrogates`, which reads a lone surrogate
// (half of a character split across chunks) where serde_json would reject the chunk; a field
// that is not a string reads as absent.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
    /// This chunk's log probabilities (see [`StreamedLogprobs`]); kept as text and read only
    /// when present.
    #[serde(borrow, default)]
    logprobs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    role: Option<&'a RawValue>,
    /// Fragments of tool calls, joined by `index` (see [`ChoiceState::tool_calls`]).
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    /// A fragment of a refusal (the model declined; `content` is then absent).
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
}

/// One streamed fragment of a tool call: the first of an `index` carries `id` and the name, the
/// others pieces of `arguments`. Strings are kept as JSON text (see [`raw_string`]).
#[derive(Deserialize)]
struct ToolCallFragment<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    function: Option<FunctionFragment<'a>>,
}

#[derive(Deserialize)]
struct FunctionFragment<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// The string a raw JSON value holds, lone surrogates as U+FFFD; `None` if it is no string.
fn raw_string(raw: &RawValue) -> Option<String> {
    decode_string_lossy(raw.get()).map(Cow::into_owned)
}

/// A JSON value read with its lone surrogates as U+FFFD; `None` if it is not JSON.
fn parse_value(json: &[u8]) -> Option<Value> {
    serde_json::from_slice(&replace_lone_surrogates(json)).ok()
}

/// What an unpaired surrogate decodes to.
const REPLACEMENT: char = '\u{FFFD}';

/// What one stream event meant.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamStep {
    /// What the event added to one choice, to deliver (already folded into the state). A chunk
    /// that changed several choices gives the first here and the others by
    /// [`StreamState::next_queued`].
    Delta(ChoiceDelta),
    /// Nothing to deliver (role chunk, finish chunk, usage chunk, keep-alive).
    Nothing,
    /// `[DONE]`: stop reading.
    Done,
}

/// What one stream event added to one choice.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChoiceDelta {
    /// The choice's `index`.
    pub choice: usize,
    /// Content added to the choice's text ("" when the event only carried a tool-call fragment
    /// or a refusal).
    pub text: String,
    /// The event carried a tool-call fragment of this choice (its partial carries the calls so
    /// far).
    pub tool_calls_changed: bool,
    /// Refusal text the event added (`delta.refusal`), if any.
    pub refusal: Option<String>,
}

/// One choice of a stream, folded so far.
#[derive(Debug, Default)]
pub struct ChoiceState {
    pub text: String,
    pub finish_reason: Option<String>,
    /// The tool calls assembled so far, in `index` order.
    pub tool_calls: Vec<ToolCall>,
    /// The streamed `delta.refusal` fragments joined, once one arrived.
    pub refusal: Option<String>,
    /// The streamed `logprobs`, once a chunk carried a non-null one.
    logprobs: Option<StreamedLogprobs>,
    /// A high surrogate that ended the last content delta, waiting for its low half at the
    /// start of the next one (see [`super::surrogates`]).
    pending_high: Option<u16>,
    /// The same for the refusal's fragments.
    refusal_pending_high: Option<u16>,
}

/// A choice's streamed log probabilities: the entries of each list (`logprobs.content`,
/// `logprobs.refusal`) joined, as the JSON text of the array's elements separated by commas;
/// `None` while no chunk carried that list.
#[derive(Debug, Default)]
struct StreamedLogprobs {
    content: Option<String>,
    refusal: Option<String>,
}

/// `logprobs` of a chunk's choice; the lists kept as JSON text.
#[derive(Deserialize)]
struct LogprobsChunk<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
}

impl StreamedLogprobs {
    /// Append the entries of a chunk's `logprobs` (JSON text). Lenient: a value that is not an
    /// object, or a list that is not an array, adds nothing.
    fn fold(&mut self, logprobs: &RawValue) {
        let Ok(chunk) = serde_json::from_str::<LogprobsChunk<'_>>(logprobs.get()) else {
            return;
        };
        append_entries(&mut self.content, chunk.content);
        append_entries(&mut self.refusal, chunk.refusal);
    }

    /// openai's `ChoiceLogprobs`: `{ content, refusal }`, each the joined entries or `null`.
    fn into_json(self) -> RawJson {
        let list = |entries: Option<String>| entries.map_or_else(|| "null".to_owned(), |e| format!("[{e}]"));
        RawJson::from_text(format!(
            r#"{{"content":{},"refusal":{}}}"#,
            list(self.content),
            list(self.refusal)
        ))
    }
}

/// Append the elements of `raw`, a JSON array's text, to `list` (see [`StreamedLogprobs`]).
fn append_entries(list: &mut Option<String>, raw: Option<&RawValue>) {
    let Some(inner) = raw
        .map(|r| r.get().trim())
        .and_then(|t| t.strip_prefix('['))
        .and_then(|t| t.strip_suffix(']'))
        .map(str::trim)
    else {
        return;
    };
    let list = list.get_or_insert_with(String::new);
    if !inner.is_empty() {
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(inner);
    }
}

/// What folding one chunk's choice did.
struct Folded {
    /// What to deliver, if the choice changed.
    delta: Option<ChoiceDelta>,
    /// The model has started answering (content, a tool call, a refusal or a finish reason).
    started: bool,
    finished: bool,
}

impl ChoiceState {
    /// Fold one chunk's choice (`index` is its own) into this one.
    ///
    /// By reference: a chunk's choice is a dozen words, moved out of the parsed list and into
    /// this call once per delta otherwise (this runs for every streamed token).
    fn fold(&mut self, index: usize, choice: &ChunkChoice<'_>) -> Result<Folded, ChatError> {
        let mut out = ChoiceDelta {
            choice: index,
            ..ChoiceDelta::default()
        };
        let mut started = false;
        if let Some(delta) = &choice.delta {
            if let Some(fragments) = delta.tool_calls {
                started = true;
                out.tool_calls_changed = self.fold_tool_calls(fragments)?;
            }
            let content = delta
                .content
                .and_then(|c| decode_string(c.get(), &mut self.pending_high))
                .filter(|c| !c.is_empty());
            if let Some(content) = content {
                started = true;
                self.text.push_str(&content);
                out.text = content.into_owned();
            }
            let refusal = delta
                .refusal
                .and_then(|r| decode_string(r.get(), &mut self.refusal_pending_high))
                .filter(|r| !r.is_empty());
            if let Some(refusal) = refusal {
                started = true;
                self.refusal.get_or_insert_with(String::new).push_str(&refusal);
                out.refusal = Some(refusal.into_owned());
            }
        }
        if let Some(logprobs) = choice.logprobs.filter(|l| l.get() != "null") {
            self.logprobs
                .get_or_insert_with(StreamedLogprobs::default)
                .fold(logprobs);
        }
        let mut finished = false;
        if let Some(reason) = choice.finish_reason.and_then(raw_string) {
            // The choice is over: a held high surrogate will get no low half.
            if self.pending_high.take().is_some() {
                self.text.push(REPLACEMENT);
                out.text.push(REPLACEMENT);
            }
            if self.refusal_pending_high.take().is_some() {
                self.refusal.get_or_insert_with(String::new).push(REPLACEMENT);
                out.refusal.get_or_insert_with(String::new).push(REPLACEMENT);
            }
            self.finish_reason = Some(reason);
            started = true;
            finished = true;
        }
        let changed = !out.text.is_empty() || out.tool_calls_changed || out.refusal.is_some();
        Ok(Folded {
            delta: changed.then_some(out),
            started,
            finished,
        })
    }

    /// Join `fragments` (a chunk's `delta.tool_calls`) into the calls so far: a new `index` starts a
    /// call (the id, type and name of its first fragment), a known one appends its `arguments`.
    /// `null` is no fragment; anything but an array of fragments, or an `index` past
    /// [`MAX_TOOL_CALLS`], is a bad response. True if it carried any fragment.
    fn fold_tool_calls(&mut self, fragments: &RawValue) -> Result<bool, ChatError> {
        let bad = |what: &str| {
            ChatError::new(
                ErrorCode::BadResponse,
                format!("The server sent a malformed tool call fragment: {what}"),
            )
        };
        let fragments: Option<Vec<ToolCallFragment<'_>>> =
            serde_json::from_str(fragments.get()).map_err(|e| bad(&e.to_string()))?;
        let mut changed = false;
        for (position, fragment) in fragments.unwrap_or_default().into_iter().enumerate() {
            // Servers that omit `index` send one call per fragment list, in order.
            let index = fragment.index.unwrap_or(position as u64);
            let index = usize::try_from(index)
                .ok()
                .filter(|i| *i < MAX_TOOL_CALLS)
                .ok_or_else(|| bad(&format!("index {index} is past the {MAX_TOOL_CALLS} calls allowed")))?;
            if self.tool_calls.len() <= index {
                self.tool_calls.resize_with(index + 1, || ToolCall {
                    kind: "function".into(),
                    ..ToolCall::default()
                });
            }
            let Some(call) = self.tool_calls.get_mut(index) else {
                continue;
            };
            if let Some(id) = fragment.id.and_then(raw_string).filter(|id| !id.is_empty()) {
                call.id = id;
            }
            if let Some(kind) = fragment.kind.and_then(raw_string) {
                call.kind = kind;
            }
            if let Some(function) = fragment.function {
                if let Some(name) = function.name.and_then(raw_string) {
                    // From the first fragment that names it (some servers repeat it in every one).
                    if call.function.name.is_empty() {
                        call.function.name = name;
                    }
                }
                if let Some(arguments) = function.arguments.and_then(raw_string) {
                    call.function.arguments.push_str(&arguments);
                }
            }
            changed = true;
        }
        Ok(changed)
    }

    /// A held high surrogate (content's first, then the refusal's) that will get no low half,
    /// appended as U+FFFD and returned as the delta to deliver.
    fn flush_held(&mut self, index: usize) -> Option<ChoiceDelta> {
        if self.pending_high.take().is_some() {
            self.text.push(REPLACEMENT);
            return Some(ChoiceDelta {
                choice: index,
                text: REPLACEMENT.into(),
                ..ChoiceDelta::default()
            });
        }
        self.refusal_pending_high.take()?;
        self.refusal.get_or_insert_with(String::new).push(REPLACEMENT);
        Some(ChoiceDelta {
            choice: index,
            refusal: Some(REPLACEMENT.into()),
            ..ChoiceDelta::default()
        })
    }

    /// This choice as a completion carries it.
    fn into_completion_choice(self, index: usize) -> CompletionChoice {
        CompletionChoice {
            // Below MAX_CHOICES.
            index: u32::try_from(index).unwrap_or(u32::MAX),
            text: self.text,
            finish_reason: self.finish_reason,
            tool_calls: finished_tool_calls(self.tool_calls),
            refusal: self.refusal,
            logprobs: self.logprobs.map(StreamedLogprobs::into_json),
            parsed: None,
        }
    }
}

/// Accumulates a streamed completion, one [`ChoiceState`] per choice.
///
/// Choices are routed by `index`. One at or past the number the request asked for (`n`, 1 when
/// absent) is ignored, as is a choice a server sends that nobody asked for: so at most
/// [`MAX_CHOICES`] are ever kept.
#[derive(Debug)]
pub struct StreamState {
    pub id: Option<String>,
    pub role: Option<String>,
    pub usage: Option<Usage>,
    /// The model has started answering: content, a tool call, a refusal or a finish reason has
    /// arrived.
    started: bool,
    /// The usage object as the server sent it (added to the `detail`).
    usage_json: Option<String>,
    /// Raw JSON of the chunk that carried choice 0's `finish_reason` (the completion's
    /// `detail`), and its number of choices.
    finish_chunk: Option<(String, usize)>,
    /// Raw JSON of the last chunk that had `choices`: the `detail` of a stream without a
    /// `finish_reason`. One buffer, reused, so a delta costs no allocation here.
    last_chunk: String,
    last_choices: usize,
    pub done: bool,
    /// The number of choices asked for (`n`), at most [`MAX_CHOICES`].
    requested: usize,
    /// Each choice so far, by `index` (grown as choices appear, never past `requested`).
    choices: Vec<ChoiceState>,
    /// The deltas of a chunk that changed several choices, after the one its step delivered.
    queued: VecDeque<ChoiceDelta>,
}

impl Default for StreamState {
    /// The state of a stream that asked for one choice.
    fn default() -> Self {
        StreamState::new(1)
    }
}

impl StreamState {
    /// The state of a stream that asked for `requested` choices (clamped to `1..=MAX_CHOICES`).
    pub fn new(requested: usize) -> Self {
        StreamState {
            id: None,
            role: None,
            usage: None,
            started: false,
            usage_json: None,
            finish_chunk: None,
            last_chunk: String::new(),
            last_choices: 0,
            done: false,
            requested: requested.clamp(1, MAX_CHOICES),
            choices: Vec::new(),
            queued: VecDeque::new(),
        }
    }

    /// The number of choices asked for.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// Choice `index` so far, once the stream has carried it.
    pub fn choice(&self, index: usize) -> Option<&ChoiceState> {
        self.choices.get(index)
    }

    /// The first choice's text so far (a failure's `partialText`).
    pub fn text(&self) -> &str {
        self.choices.first().map_or("", |c| c.text.as_str())
    }

    /// A delta of the last event beyond the one its step delivered (see [`StreamStep::Delta`]).
    pub fn next_queued(&mut self) -> Option<ChoiceDelta> {
        self.queued.pop_front()
    }

    /// Fold one SSE event in.
    pub fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, ChatError> {
        let data = ev.data.as_str();
        self.queued.clear();
        if data == "[DONE]" {
            self.done = true;
            return Ok(StreamStep::Done);
        }
        if ev.event.as_deref() == Some("error") {
            let parsed = parse_value(data.as_bytes());
            let obj = parsed.as_ref().map(|v| v.get("error").unwrap_or(v).clone());
            return Err(error_from_object(&obj.unwrap_or_else(|| Value::from(data))));
        }
        if data.trim().is_empty() {
            return Ok(StreamStep::Nothing);
        }
        let chunk: Chunk<'_> = serde_json::from_str(data).map_err(|e| {
            ChatError::new(
                ErrorCode::BadResponse,
                format!("The server sent a malformed stream chunk: {e}"),
            )
        })?;
        if let Some(err) = chunk.error {
            let err = parse_value(err.get().as_bytes()).unwrap_or(Value::Null);
            return Err(error_from_object(&err));
        }
        if self.id.is_none() {
            self.id = chunk.id.and_then(raw_string);
        }
        if let Some(usage) = chunk.usage {
            // A usage of an unexpected shape is still the server's: it goes into `detail` as sent.
            self.usage = serde_json::from_str(usage.get()).ok();
            self.usage_json = Some(usage.get().to_owned());
        }
        let mut step = StreamStep::Nothing;
        let choices = chunk.choices.unwrap_or_default();
        let count = choices.len();
        let mut finished = false;
        for choice in &choices {
            // A choice nobody asked for is ignored (bounded by `requested`).
            let index = choice.index as usize;
            if index >= self.requested {
                continue;
            }
            if let Some(role) = choice.delta.as_ref().and_then(|d| d.role).and_then(raw_string) {
                self.role = Some(role);
            }
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, ChoiceState::default);
            }
            let Some(slot) = self.choices.get_mut(index) else {
                continue;
            };
            let folded = slot.fold(index, choice)?;
            self.started |= folded.started;
            finished |= folded.finished && index == 0;
            if let Some(delta) = folded.delta {
                match step {
                    StreamStep::Nothing => step = StreamStep::Delta(delta),
                    _ => self.queued.push_back(delta),
                }
            }
        }
        if finished {
            self.finish_chunk = Some((data.to_owned(), count));
        } else if count > 0 {
            self.last_chunk.clear();
            self.last_chunk.push_str(data);
            self.last_choices = count;
        }
        Ok(step)
    }

    /// Whether the model has started answering: a content delta, a tool call, a refusal or a
    /// finish reason has arrived (a role-only first chunk, sent before the model thinks, does
    /// not count).
    pub fn started(&self) -> bool {
        self.started
    }

    /// `[DONE]` arrived, or every choice the stream carried has its `finish_reason`.
    fn complete(&self) -> bool {
        self.done || (!self.choices.is_empty() && self.choices.iter().all(|c| c.finish_reason.is_some()))
    }

    /// The stream is complete but a high surrogate is still held: it will get no low half, so it
    /// becomes U+FFFD, appended to its choice and returned as a last delta for the caller to
    /// deliver. Call until `None` (one per choice that held one).
    pub fn flush_held(&mut self) -> Option<ChoiceDelta> {
        if !self.complete() {
            return None;
        }
        self.choices
            .iter_mut()
            .enumerate()
            .find_map(|(index, choice)| choice.flush_held(index))
    }

    /// The stream ended (cleanly or not). Complete if `[DONE]` arrived or every choice has its
    /// `finish_reason`.
    pub fn finish(mut self) -> Result<Completion, ChatError> {
        for (index, choice) in self.choices.iter_mut().enumerate() {
            while choice.flush_held(index).is_some() {}
        }
        if !self.complete() {
            return Err(ChatError::new(
                ErrorCode::StreamIncomplete,
                "The stream ended before the completion finished (no [DONE] and no finish_reason)",
            )
            .with_partial_text(self.text()));
        }
        // `chatgpt` v5's `detail`: the chunk that finished choice 0 (else the last one with
        // choices), with the usage the server sent in its own chunk.
        let (chunk, count) = match self.finish_chunk {
            Some(finish) => finish,
            None => (self.last_chunk, self.last_choices),
        };
        let mut detail = if chunk.is_empty() {
            RawJson::default()
        } else {
            RawJson::from_text(chunk)
        };
        if let Some(usage) = &self.usage_json {
            detail = detail.with_usage(usage);
        }
        let mut choices = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, choice)| choice.into_completion_choice(index));
        let first = choices.next().unwrap_or_default();
        let all_choices = if self.requested > 1 {
            std::iter::once(first.clone()).chain(choices).collect()
        } else {
            Vec::new()
        };
        Ok(Completion {
            id: self.id,
            text: first.text,
            role: self.role.unwrap_or_else(|| "assistant".into()),
            finish_reason: first.finish_reason,
            usage: self.usage,
            detail,
            choices: count,
            tool_calls: first.tool_calls,
            refusal: first.refusal,
            logprobs: first.logprobs,
            all_choices,
        }
        .for_choices(self.requested))
    }
}

/// Streamed calls as a reply carries them: slots no fragment filled (an `index` the server
/// skipped) left out.
fn finished_tool_calls(mut calls: Vec<ToolCall>) -> Vec<ToolCall> {
    calls.retain(|c| !(c.id.is_empty() && c.function.name.is_empty() && c.function.arguments.is_empty()));
    calls
}

/// OpenAI's documented chat overhead: every message costs 3 tokens plus its fields, a `name`
/// one more, and the reply is primed with 3.
pub const TOKENS_PER_MESSAGE: usize = 3;
pub const TOKENS_PER_NAME: usize = 1;
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// Tokens one message adds to a prompt. OpenAI documents no formula for tool calls and results;
/// they are counted as their text: each call's id, name and arguments, a result's call id.
pub fn message_tokens(enc: Encoding, m: &PromptMessage) -> usize {
    let content = m.content.tokens(|text| enc.count(text));
    let mut n = TOKENS_PER_MESSAGE + enc.count(&m.role) + content;
    if let Some(name) = &m.name {
        n += TOKENS_PER_NAME + enc.count(name);
    }
    for call in m.tool_calls.iter().flatten() {
        n += enc.count(&call.id) + enc.count(&call.function.name) + enc.count(&call.function.arguments);
    }
    if let Some(id) = &m.tool_call_id {
        n += enc.count(id);
    }
    n
}

/// At least [`message_tokens`] for any encoding, without tokenizing: every BPE token stands for
/// at least one byte, so a text has at most as many tokens as bytes (an image costs what
/// [`message_tokens`] counts for it).
pub fn message_tokens_upper_bound(m: &PromptMessage) -> usize {
    let mut n = TOKENS_PER_MESSAGE + m.role.len() + m.content.tokens(str::len);
    if let Some(name) = &m.name {
        n += TOKENS_PER_NAME + name.len();
    }
    for call in m.tool_calls.iter().flatten() {
        n += call.id.len() + call.function.name.len() + call.function.arguments.len();
    }
    n + m.tool_call_id.as_ref().map_or(0, String::len)
}

/// Prompt tokens of a whole request, as the API bills them.
pub fn prompt_tokens(enc: Encoding, messages: &[PromptMessage]) -> usize {
    messages.iter().map(|m| message_tokens(enc, m)).sum::<usize>() + REPLY_PRIMING_TOKENS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_calling_message_has_null_content_only_when_it_has_no_text_nor_parts() {
        let call = ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: ToolFunction {
                name: "f".into(),
                arguments: "{}".into(),
            },
        };
        let message = |content: Content| PromptMessage {
            role: "assistant".into(),
            content,
            name: None,
            tool_calls: Some(vec![call.clone()]),
            tool_call_id: None,
        };
        let json = |m: &PromptMessage| serde_json::to_value(m).unwrap();
        assert!(json(&message("".into()))["content"].is_null());
        assert_eq!(json(&message("checking".into()))["content"], "checking");
        let parts = crate::core::content::parse_parts(&serde_json::json!([{"type": "text", "text": ""}]), "c").unwrap();
        assert_eq!(
            json(&message(Content::Parts(parts)))["content"],
            serde_json::json!([{"type": "text", "text": ""}])
        );
        assert_eq!(json(&message("".into()))["tool_calls"][0]["id"], "call_1");
    }

    /// A text delta of the first choice.
    impl From<&str> for ChoiceDelta {
        fn from(text: &str) -> Self {
            ChoiceDelta {
                text: text.into(),
                ..ChoiceDelta::default()
            }
        }
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn body_puts_messages_and_stream_after_params() {
        let mut p = Map::new();
        p.insert("model".into(), Value::from("m"));
        let msgs = [PromptMessage {
            role: "user".into(),
            content: "hi".into(),
            name: Some("ann".into()),
            tool_calls: None,
            tool_call_id: None,
        }];
        let body: Value = serde_json::from_slice(&build_body(&Params::new(p.clone()), None, &msgs, true)).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["name"], "ann");
        let body: Value = serde_json::from_slice(&build_body(&Params::new(p.clone()), None, &msgs, false)).unwrap();
        assert!(body.get("stream_options").is_none());
        assert!(body["messages"][0].get("name").is_some());
        // A caller's `messages` / `stream` never reach the wire, and are not duplicated; a
        // caller's own `stream_options` are kept.
        p.insert("messages".into(), Value::from("theirs"));
        p.insert("stream".into(), Value::from(false));
        p.insert("stream_options".into(), serde_json::json!({"include_usage": false}));
        let raw = String::from_utf8(build_body(&Params::new(p.clone()), None, &msgs, true)).unwrap();
        assert_eq!(raw.matches("\"messages\"").count(), 1);
        assert_eq!(raw.matches("\"stream\"").count(), 1);
        let body: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(body["messages"][0]["content"], "hi");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], false);
        let unnamed = [PromptMessage {
            name: None,
            ..msgs[0].clone()
        }];
        let body: Value = serde_json::from_slice(&build_body(&Params::new(p.clone()), None, &unnamed, false)).unwrap();
        assert!(body["messages"][0].get("name").is_none());
    }

    #[test]
    fn body_adds_the_reply_cap_and_writes_no_parameters_when_there_are_none() {
        let msgs = [PromptMessage {
            role: "user".into(),
            content: "hi".into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }];
        let raw = build_body(
            &Params::new(Map::new()),
            Some(ReplyCap {
                field: "max_completion_tokens",
                tokens: 7,
            }),
            &msgs,
            false,
        );
        let body: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(body["max_completion_tokens"], 7);
        assert_eq!(body["stream"], false);
        assert_eq!(body.as_object().unwrap().len(), 3);
        let raw = build_body(&Params::new(Map::new()), None, &msgs, true);
        let body: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 3, "messages, stream, stream_options");
    }

    #[test]
    fn params_know_their_model_and_encoding() {
        let mut m = Map::new();
        m.insert("model".into(), Value::from("gpt-4"));
        let p = Params::new(m);
        assert_eq!(p.model(), "gpt-4");
        assert_eq!(p.encoding(), Encoding::Cl100kBase);
        assert_eq!(Params::new(Map::new()).model(), "");
    }

    #[test]
    fn stream_folds_deltas_finish_and_usage() {
        let mut s = StreamState::default();
        let role =
            r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(s.on_event(&ev(role)).unwrap(), StreamStep::Nothing);
        let d = r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(s.on_event(&ev(d)).unwrap(), StreamStep::Delta("Hel".into()));
        let null_content = r#"{"id":"c1","choices":[{"index":0,"delta":{"content":null}}]}"#;
        assert_eq!(s.on_event(&ev(null_content)).unwrap(), StreamStep::Nothing);
        let fin = r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        s.on_event(&ev(fin)).unwrap();
        let usage = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
        s.on_event(&ev(usage)).unwrap();
        assert_eq!(s.on_event(&ev("[DONE]")).unwrap(), StreamStep::Done);
        let c = s.finish().unwrap();
        assert_eq!(c.text, "Hel");
        assert_eq!(c.id.as_deref(), Some("c1"));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.unwrap().total_tokens, 6);
        // The detail is the finish chunk (as `chatgpt` v5 gives it) with the usage chunk's usage.
        let detail = c.detail.to_value();
        assert_eq!(detail["choices"][0]["finish_reason"], "stop");
        assert_eq!(detail["usage"]["prompt_tokens"], 5);
        assert_eq!(c.choices, 1);
    }

    #[test]
    fn a_stream_without_a_finish_reason_has_its_last_chunk_with_choices_as_detail() {
        let mut s = StreamState::default();
        s.on_event(&ev(r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"a"}}]}"#))
            .unwrap();
        s.on_event(&ev(r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"b"}}]}"#))
            .unwrap();
        s.on_event(&ev(
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        ))
        .unwrap();
        s.on_event(&ev("[DONE]")).unwrap();
        let c = s.finish().unwrap();
        let detail = c.detail.to_value();
        assert_eq!(detail["choices"][0]["delta"]["content"], "b");
        assert_eq!(detail["usage"]["total_tokens"], 3);
        assert_eq!(c.choices, 1);
    }

    #[test]
    fn with_usage_replaces_any_usage_and_keeps_the_other_fields_in_order() {
        let chunk = RawJson::from_text(r#"{"z":1,"usage":null,"a":{"b":[1,"\u00e9"]},"id":"x"}"#.into());
        let merged = chunk.with_usage(r#"{"total_tokens":3}"#);
        assert_eq!(
            merged.get(),
            r#"{"z":1,"a":{"b":[1,"\u00e9"]},"id":"x","usage":{"total_tokens":3}}"#
        );
        assert_eq!(RawJson::default().with_usage("{}").get(), r#"{"usage":{}}"#);
        assert_eq!(RawJson::from_text("{}".into()).with_usage("1").get(), r#"{"usage":1}"#);
    }

    #[test]
    fn a_stream_has_started_once_content_a_tool_call_or_a_finish_arrives() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        for (chunk, started) in [
            (role, false),
            (r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#, true),
            (
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}"#,
                true,
            ),
            (r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#, true),
        ] {
            let mut s = StreamState::default();
            s.on_event(&ev(role)).unwrap();
            s.on_event(&ev(chunk)).unwrap();
            assert_eq!(s.started(), started, "{chunk}");
        }
    }

    #[test]
    fn streamed_tool_call_fragments_are_joined_by_index() {
        let mut s = StreamState::default();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
        ];
        let tools_only = StreamStep::Delta(ChoiceDelta {
            tool_calls_changed: true,
            ..ChoiceDelta::default()
        });
        for chunk in chunks {
            assert_eq!(s.on_event(&ev(chunk)).unwrap(), tools_only);
            assert!(s.started());
        }
        let fin = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(
            s.on_event(&ev(fin)).unwrap(),
            StreamStep::Nothing,
            "a chunk without fragments changes nothing"
        );
        let c = s.finish().unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.tool_calls.len(), 2);
        assert_eq!(
            (c.tool_calls[0].id.as_str(), c.tool_calls[0].function.name.as_str()),
            ("call_a", "get_weather")
        );
        assert_eq!(c.tool_calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(c.tool_calls[1].kind, "function");
        assert_eq!(
            serde_json::to_value(&c.tool_calls[1]).unwrap(),
            serde_json::json!({"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}})
        );
    }

    #[test]
    fn malformed_or_unbounded_tool_call_fragments_are_bad_responses() {
        for chunk in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":{"index":0}}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":100000000000}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":-1}]}}]}"#,
        ] {
            let mut s = StreamState::default();
            assert_eq!(
                s.on_event(&ev(chunk)).unwrap_err().code,
                ErrorCode::BadResponse,
                "{chunk}"
            );
        }
        // `null` fragments are none; a fragment without `index` takes its position.
        let mut s = StreamState::default();
        assert_eq!(
            s.on_event(&ev(r#"{"choices":[{"index":0,"delta":{"tool_calls":null}}]}"#))
                .unwrap(),
            StreamStep::Nothing
        );
        s.on_event(&ev(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"x","function":{"name":"f"}}]},"finish_reason":"tool_calls"}]}"#,
        ))
        .unwrap();
        assert_eq!(s.finish().unwrap().tool_calls[0].id, "x");
    }

    #[test]
    fn complete_responses_carry_their_tool_calls() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},7]},"finish_reason":"tool_calls"}]}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.tool_calls.len(), 1, "a call that is not an object is skipped");
        assert_eq!(c.tool_calls[0].function.arguments, r#"{"a":1}"#);
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        let plain = parse_completion(br#"{"choices":[{"message":{"content":"x","tool_calls":"odd"}}]}"#).unwrap();
        assert!(plain.tool_calls.is_empty());
    }

    /// A chunk of choice `index` with `delta` (a JSON object) and `finish_reason` (JSON).
    fn choice_chunk(index: usize, delta: &str, finish: &str) -> String {
        format!(r#"{{"id":"c","choices":[{{"index":{index},"delta":{delta},"finish_reason":{finish}}}]}}"#)
    }

    #[test]
    fn interleaved_choices_are_folded_apart_and_each_delta_names_its_choice() {
        let mut s = StreamState::new(3);
        let mut deltas = Vec::new();
        let chunks = [
            choice_chunk(0, r#"{"role":"assistant","content":"Red"}"#, "null"),
            choice_chunk(1, r#"{"role":"assistant","content":"Blue"}"#, "null"),
            choice_chunk(2, r#"{"content":"Green"}"#, "null"),
            choice_chunk(1, r#"{"content":" sky"}"#, "null"),
            choice_chunk(0, r#"{}"#, r#""stop""#),
            choice_chunk(2, r#"{"content":" leaf"}"#, r#""length""#),
            choice_chunk(1, r#"{}"#, r#""stop""#),
        ];
        for chunk in &chunks {
            if let StreamStep::Delta(d) = s.on_event(&ev(chunk)).unwrap() {
                deltas.push((d.choice, d.text));
            }
        }
        assert_eq!(
            deltas,
            [(0, "Red"), (1, "Blue"), (2, "Green"), (1, " sky"), (2, " leaf")].map(|(c, t)| (c, t.to_owned()))
        );
        assert_eq!(s.choice(1).map(|c| c.text.as_str()), Some("Blue sky"));
        // Every choice finished: complete without [DONE].
        let c = s.finish().unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason.as_deref()), ("Red", Some("stop")));
        let all: Vec<_> = c
            .all_choices
            .iter()
            .map(|c| (c.index, c.text.as_str(), c.finish_reason.as_deref()))
            .collect();
        assert_eq!(
            all,
            [
                (0, "Red", Some("stop")),
                (1, "Blue sky", Some("stop")),
                (2, "Green leaf", Some("length"))
            ]
        );
        // The detail is the chunk that finished the first choice.
        assert_eq!(c.detail.to_value()["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn a_stream_with_a_choice_still_open_is_incomplete_without_done() {
        let mut s = StreamState::new(2);
        s.on_event(&ev(&choice_chunk(0, r#"{"content":"a"}"#, r#""stop""#)))
            .unwrap();
        s.on_event(&ev(&choice_chunk(1, r#"{"content":"b"}"#, "null"))).unwrap();
        assert_eq!(s.finish().unwrap_err().code, ErrorCode::StreamIncomplete);
    }

    #[test]
    fn a_chunk_carrying_several_choices_queues_the_others_in_order() {
        let mut s = StreamState::new(2);
        let chunk = r#"{"choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}}]}"#;
        let StreamStep::Delta(first) = s.on_event(&ev(chunk)).unwrap() else {
            panic!("a delta")
        };
        assert_eq!((first.choice, first.text.as_str()), (1, "b"));
        let second = s.next_queued().unwrap();
        assert_eq!((second.choice, second.text.as_str()), (0, "a"));
        assert_eq!(s.next_queued(), None);
        // The queue belongs to one event: the next one starts it afresh.
        s.on_event(&ev(chunk)).unwrap();
        s.on_event(&ev("[DONE]")).unwrap();
        assert_eq!(s.next_queued(), None);
    }

    #[test]
    fn choices_past_the_number_asked_for_are_ignored() {
        // One choice asked for: another index is ignored, as it always was.
        let mut s = StreamState::default();
        assert_eq!(
            s.on_event(&ev(&choice_chunk(1, r#"{"content":"x"}"#, "null"))).unwrap(),
            StreamStep::Nothing
        );
        s.on_event(&ev(&choice_chunk(0, r#"{"content":"y"}"#, r#""stop""#)))
            .unwrap();
        let c = s.finish().unwrap();
        assert_eq!(c.text, "y");
        assert!(c.all_choices.is_empty());
        // Two asked for: index 2, or one past the u32 range, keeps nothing.
        let mut s = StreamState::new(2);
        assert_eq!(
            s.on_event(&ev(&choice_chunk(2, r#"{"content":"x"}"#, "null"))).unwrap(),
            StreamStep::Nothing
        );
        assert!(s.choice(2).is_none());
        assert_eq!(
            s.on_event(&ev(&choice_chunk(99_999_999_999, r#"{"content":"x"}"#, "null")))
                .unwrap_err()
                .code,
            ErrorCode::BadResponse
        );
        // The number asked for is itself bounded.
        assert_eq!(StreamState::new(100_000).requested(), MAX_CHOICES);
        assert_eq!(StreamState::new(0).requested(), 1);
    }

    #[test]
    fn surrogate_halves_of_interleaved_choices_join_within_their_choice() {
        let mut s = StreamState::new(2);
        let steps: Vec<_> = [
            choice_chunk(0, r#"{"content":"a\ud83c"}"#, "null"),
            choice_chunk(1, r#"{"content":"b\ud83d"}"#, "null"),
            choice_chunk(0, r#"{"content":"\udf89"}"#, "null"),
            choice_chunk(1, r#"{"content":"\ude00"}"#, "null"),
            choice_chunk(0, r#"{"content":"\ud83c"}"#, r#""stop""#),
            choice_chunk(1, r#"{"content":"\ud83c"}"#, "null"),
        ]
        .iter()
        .map(|c| s.on_event(&ev(c)).unwrap())
        .collect();
        assert_eq!(steps[2], StreamStep::Delta("🎉".into()));
        assert_eq!(
            steps[3],
            StreamStep::Delta(ChoiceDelta {
                choice: 1,
                text: "😀".into(),
                ..ChoiceDelta::default()
            })
        );
        // Choice 1 still holds a high half when [DONE] arrives: flushed as its own last delta.
        s.on_event(&ev("[DONE]")).unwrap();
        let flushed = s.flush_held().unwrap();
        assert_eq!((flushed.choice, flushed.text.as_str()), (1, "\u{FFFD}"));
        assert_eq!(s.flush_held(), None);
        let c = s.finish().unwrap();
        assert_eq!(c.all_choices[0].text, "a🎉\u{FFFD}");
        assert_eq!(c.all_choices[1].text, "b😀\u{FFFD}");
    }

    #[test]
    fn streamed_refusals_are_joined_and_delivered_apart_from_the_text() {
        let mut s = StreamState::default();
        let first = s
            .on_event(&ev(&choice_chunk(
                0,
                r#"{"role":"assistant","refusal":"I can't"}"#,
                "null",
            )))
            .unwrap();
        assert_eq!(
            first,
            StreamStep::Delta(ChoiceDelta {
                refusal: Some("I can't".into()),
                ..ChoiceDelta::default()
            })
        );
        assert!(s.started(), "a refusal is the model answering");
        s.on_event(&ev(&choice_chunk(0, r#"{"refusal":" help \ud83d"}"#, "null")))
            .unwrap();
        let last = s
            .on_event(&ev(&choice_chunk(0, r#"{"refusal":"\ude42"}"#, "null")))
            .unwrap();
        assert_eq!(
            last,
            StreamStep::Delta(ChoiceDelta {
                refusal: Some("🙂".into()),
                ..ChoiceDelta::default()
            })
        );
        s.on_event(&ev(&choice_chunk(0, "{}", r#""stop""#))).unwrap();
        let c = s.finish().unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.refusal.as_deref(), Some("I can't help 🙂"));
        // A stream without one has none.
        let (_, c) = stream_literals(&[r#""hi""#]);
        assert_eq!(c.refusal, None);
    }

    #[test]
    fn streamed_logprobs_are_accumulated_per_choice_in_order() {
        let entry = |t: &str| format!(r#"{{"token":"{t}","logprob":-0.5,"bytes":null,"top_logprobs":[]}}"#);
        let chunk = |i: usize, text: &str, logprobs: &str| {
            format!(r#"{{"choices":[{{"index":{i},"delta":{{"content":"{text}"}},"logprobs":{logprobs}}}]}}"#)
        };
        let mut s = StreamState::new(2);
        for c in [
            chunk(0, "He", &format!(r#"{{"content":[{}],"refusal":null}}"#, entry("He"))),
            chunk(1, "Yo", &format!(r#"{{"content":[{}]}}"#, entry("Yo"))),
            chunk(0, "llo", &format!(r#"{{"content":[{}, {}]}}"#, entry("l"), entry("lo"))),
            // Odd shapes add nothing and fail nothing.
            chunk(0, "", r#""odd""#),
            chunk(0, "", r#"{"content":"odd"}"#),
            chunk(1, "", "null"),
        ] {
            s.on_event(&ev(&c)).unwrap();
        }
        s.on_event(&ev("[DONE]")).unwrap();
        let c = s.finish().unwrap();
        let logprobs = c.logprobs.as_ref().unwrap().to_value();
        let tokens: Vec<_> = logprobs["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["token"].as_str().unwrap())
            .collect();
        assert_eq!(tokens, ["He", "l", "lo"]);
        assert_eq!(logprobs["refusal"], Value::Null);
        assert_eq!(logprobs["content"][0]["logprob"], -0.5);
        let second = c.all_choices[1].logprobs.as_ref().unwrap().to_value();
        assert_eq!(second["content"][0]["token"], "Yo");
        // Without logprobs (or only `null` ones), none.
        let (_, plain) = stream_literals(&[r#""hi""#]);
        assert_eq!(plain.logprobs, None);
    }

    #[test]
    fn complete_responses_carry_every_choice_refusal_and_logprobs() {
        let body = br#"{"id":"x","choices":[
            {"index":0,"message":{"role":"assistant","content":null,"refusal":"No."},"finish_reason":"stop","logprobs":{"content":null,"refusal":[{"token":"No","logprob":-1,"bytes":null,"top_logprobs":[]}]}},
            {"index":1,"message":{"role":"assistant","content":"Blue"},"finish_reason":"length","logprobs":null},
            {"index":2,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"},
            7
        ]}"#;
        let c = parse_completion(body).unwrap().for_choices(4);
        assert_eq!((c.text.as_str(), c.refusal.as_deref()), ("", Some("No.")));
        assert_eq!(c.logprobs.as_ref().unwrap().to_value()["refusal"][0]["token"], "No");
        assert_eq!(c.all_choices.len(), 4);
        assert_eq!(c.all_choices[1].text, "Blue");
        assert_eq!(c.all_choices[1].logprobs, None);
        assert_eq!(c.all_choices[2].tool_calls[0].id, "c1");
        assert_eq!(c.all_choices[2].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            (c.all_choices[3].index, c.all_choices[3].text.as_str()),
            (3, ""),
            "a choice that is not an object reads as empty"
        );
        // Asked for one (or fewer than sent): only what was asked for.
        let one = parse_completion(body).unwrap().for_choices(1);
        assert!(one.all_choices.is_empty());
        assert_eq!(parse_completion(body).unwrap().for_choices(2).all_choices.len(), 2);
        // Asked for several, sent one: that one is the list.
        let single = parse_completion(br#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#)
            .unwrap()
            .for_choices(3);
        assert_eq!(single.all_choices.len(), 1);
        assert_eq!(single.all_choices[0].text, "x");
    }

    #[test]
    fn a_complete_response_reads_at_most_max_choices() {
        let choice = r#"{"message":{"content":"x"},"finish_reason":"stop"}"#;
        let body = format!(r#"{{"choices":[{}]}}"#, vec![choice; MAX_CHOICES + 5].join(","));
        let c = parse_completion(body.as_bytes()).unwrap();
        assert_eq!(c.choices, MAX_CHOICES + 5, "all counted");
        assert_eq!(c.all_choices.len(), MAX_CHOICES, "at most MAX_CHOICES kept");
    }

    #[test]
    fn requested_choices_reads_n() {
        let params = |n: Value| Params::new(Map::from_iter([("n".to_owned(), n)]));
        assert_eq!(requested_choices(&Params::new(Map::new())), 1);
        assert_eq!(requested_choices(&params(Value::from(3))), 3);
        assert_eq!(requested_choices(&params(Value::from(100_000))), MAX_CHOICES);
        assert_eq!(requested_choices(&params(Value::from(0))), 1);
    }

    #[test]
    fn complete_responses_carry_their_refusal() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't."},"finish_reason":"stop"}]}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!((c.text.as_str(), c.refusal.as_deref()), ("", Some("I can't.")));
        let c = parse_completion(br#"{"choices":[{"message":{"content":"x","refusal":null}}]}"#).unwrap();
        assert_eq!(c.refusal, None);
        let c = parse_completion(br#"{"choices":[{"message":{"content":"x","refusal":{"a":1}}}]}"#).unwrap();
        assert_eq!(c.refusal, None, "a refusal of another type reads as none");
    }

    #[test]
    fn usage_keeps_its_token_details_streamed_and_not() {
        let usage = r#"{"prompt_tokens":30,"completion_tokens":200,"total_tokens":230,"prompt_tokens_details":{"cached_tokens":16},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0}}"#;
        let expected = Usage {
            prompt_tokens: 30,
            completion_tokens: 200,
            total_tokens: 230,
            estimated: false,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(16),
                audio_tokens: None,
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: Some(192),
                audio_tokens: Some(0),
                ..CompletionTokensDetails::default()
            }),
        };
        let body = format!(r#"{{"choices":[{{"message":{{"content":"x"}}}}],"usage":{usage}}}"#);
        assert_eq!(parse_completion(body.as_bytes()).unwrap().usage, Some(expected));
        let mut s = StreamState::default();
        s.on_event(&ev(
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
        ))
        .unwrap();
        s.on_event(&ev(&format!(r#"{{"choices":[],"usage":{usage}}}"#)))
            .unwrap();
        assert_eq!(s.finish().unwrap().usage, Some(expected));
    }

    #[test]
    fn odd_token_details_cost_the_usage_nothing() {
        for details in [
            r#"null"#,
            r#""x""#,
            r#"{"reasoning_tokens":"many","cached_tokens":"many"}"#,
            r#"{"reasoning_tokens":-1,"cached_tokens":-1}"#,
        ] {
            let body = format!(
                r#"{{"choices":[{{"message":{{"content":"x"}}}}],"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"completion_tokens_details":{details},"prompt_tokens_details":{details}}}}}"#
            );
            let usage = parse_completion(body.as_bytes()).unwrap().usage.expect(details);
            assert_eq!(
                (usage.total_tokens, usage.completion_tokens_details),
                (3, None),
                "{details}"
            );
            assert_eq!(usage.prompt_tokens_details, None);
        }
    }

    #[test]
    fn stream_without_done_or_finish_is_incomplete() {
        let mut s = StreamState::default();
        s.on_event(&ev(r#"{"choices":[{"index":0,"delta":{"content":"par"}}]}"#))
            .unwrap();
        let e = s.finish().unwrap_err();
        assert_eq!(e.code, ErrorCode::StreamIncomplete);
        assert_eq!(e.partial_text.as_deref(), Some("par"));
    }

    #[test]
    fn finish_reason_without_done_is_complete() {
        let mut s = StreamState::default();
        s.on_event(&ev(
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]}"#,
        ))
        .unwrap();
        assert_eq!(s.finish().unwrap().finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn error_objects_in_streams_reject() {
        let mut s = StreamState::default();
        let e = s
            .on_event(&ev(r#"{"error":{"message":"boom","type":"server_error","code":null}}"#))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::StreamError);
        assert_eq!(e.error_type.as_deref(), Some("server_error"));
        let typed = SseEvent {
            event: Some("error".into()),
            data: r#"{"message":"slow down","code":"rate_limit_exceeded"}"#.into(),
            id: None,
        };
        assert_eq!(s.on_event(&typed).unwrap_err().code, ErrorCode::RateLimited);
    }

    /// Streams `contents` as one content delta each (raw JSON string literals), then a finish
    /// chunk and `[DONE]`; returns the deltas delivered and the completion.
    fn stream_literals(contents: &[&str]) -> (Vec<String>, Completion) {
        let (deltas, completion) = stream_deltas(contents);
        (deltas.into_iter().map(|d| d.text).collect(), completion)
    }

    /// [`stream_literals`], the deltas as the stream gave them.
    fn stream_deltas(contents: &[&str]) -> (Vec<ChoiceDelta>, Completion) {
        let mut s = StreamState::default();
        let mut deltas = Vec::new();
        let chunks = contents
            .iter()
            .map(|c| {
                format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":{c}}},"finish_reason":null}}]}}"#)
            })
            .chain([r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_owned()]);
        for chunk in chunks {
            if let StreamStep::Delta(d) = s.on_event(&ev(&chunk)).unwrap() {
                deltas.push(d);
            }
        }
        assert_eq!(s.on_event(&ev("[DONE]")).unwrap(), StreamStep::Done);
        (deltas, s.finish().unwrap())
    }

    #[test]
    fn a_surrogate_pair_split_across_chunks_is_delivered_whole() {
        for (high, low) in [(r#""\ud83c""#, r#""\udf89""#), (r#""\uD83C""#, r#""\uDF89""#)] {
            let (deltas, c) = stream_literals(&[r#""Party ""#, high, low, r#"" time""#]);
            assert_eq!(deltas, ["Party ", "🎉", " time"]);
            assert_eq!(c.text, "Party 🎉 time");
            assert_eq!(deltas.concat(), c.text);
        }
        // With text around the halves, and a role-only chunk between them.
        let mut s = StreamState::default();
        let d1 = r#"{"choices":[{"index":0,"delta":{"content":"a\ud83d"}}]}"#;
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
        let d2 = r#"{"choices":[{"index":0,"delta":{"content":"\ude00b"},"finish_reason":"stop"}]}"#;
        assert_eq!(s.on_event(&ev(d1)).unwrap(), StreamStep::Delta("a".into()));
        assert_eq!(s.on_event(&ev(role)).unwrap(), StreamStep::Nothing);
        assert_eq!(s.on_event(&ev(d2)).unwrap(), StreamStep::Delta("😀b".into()));
        assert_eq!(s.finish().unwrap().text, "a😀b");
    }

    #[test]
    fn pairs_within_one_chunk_and_lone_surrogates_never_fail_the_stream() {
        let (deltas, c) = stream_literals(&[r#""\ud83c\udf89\uD83D\uDE00""#]);
        assert_eq!((deltas.concat(), c.text.as_str()), ("🎉😀".into(), "🎉😀"));
        // Lone low, lone high mid-string, a high followed by text in the next chunk.
        let (deltas, c) = stream_literals(&[r#""\udf89x""#, r#""y\ud83cz""#, r#""\ud83c""#, r#""w""#]);
        assert_eq!(c.text, "\u{FFFD}xy\u{FFFD}z\u{FFFD}w");
        assert_eq!(deltas.concat(), c.text);
        // An escaped backslash before `u` is text, not an escape.
        let (_, c) = stream_literals(&[r#""\\ud83c""#, r#""\\udf89""#]);
        assert_eq!(c.text, "\\ud83c\\udf89");
    }

    #[test]
    fn a_high_surrogate_held_when_done_arrives_is_flushed_as_a_last_delta() {
        let mut s = StreamState::default();
        let chunk = r#"{"choices":[{"index":0,"delta":{"content":"ok\ud83c"}}]}"#;
        assert_eq!(s.on_event(&ev(chunk)).unwrap(), StreamStep::Delta("ok".into()));
        assert_eq!(s.flush_held(), None, "not before the stream is complete");
        assert_eq!(s.on_event(&ev("[DONE]")).unwrap(), StreamStep::Done);
        assert_eq!(s.flush_held(), Some("\u{fffd}".into()));
        assert_eq!(s.flush_held(), None, "flushed once");
        assert_eq!(s.finish().unwrap().text, "ok\u{fffd}");
    }

    #[test]
    fn a_high_surrogate_still_held_at_the_end_becomes_a_replacement_character() {
        // Held when the finish chunk arrives: delivered as U+FFFD with it.
        let (deltas, c) = stream_literals(&[r#""end \ud83c""#]);
        assert_eq!(deltas, ["end ", "\u{FFFD}"]);
        assert_eq!(c.text, "end \u{FFFD}");
        // Held when the stream just ends: in the text (and the partial text) all the same.
        let mut s = StreamState::default();
        s.on_event(&ev(r#"{"choices":[{"index":0,"delta":{"content":"x\ud83c"}}]}"#))
            .unwrap();
        assert_eq!(s.finish().unwrap_err().partial_text.as_deref(), Some("x\u{FFFD}"));
        let mut s = StreamState::default();
        s.on_event(&ev(r#"{"choices":[{"index":0,"delta":{"content":"x\ud83c"}}]}"#))
            .unwrap();
        s.on_event(&ev("[DONE]")).unwrap();
        assert_eq!(s.finish().unwrap().text, "x\u{FFFD}");
    }

    #[test]
    fn lone_surrogates_in_other_stream_fields_and_errors_are_replaced() {
        let mut s = StreamState::default();
        let chunk = r#"{"id":"c\ud800","choices":[{"index":0,"delta":{"role":"\udc00r","content":"ok"},"finish_reason":"st\ud800"}]}"#;
        assert_eq!(s.on_event(&ev(chunk)).unwrap(), StreamStep::Delta("ok".into()));
        let c = s.finish().unwrap();
        assert_eq!(c.id.as_deref(), Some("c\u{FFFD}"));
        assert_eq!(c.role, "\u{FFFD}r");
        assert_eq!(c.finish_reason.as_deref(), Some("st\u{FFFD}"));
        // The detail keeps the escapes (JavaScript's JSON.parse reads them).
        assert!(c.detail.get().contains(r#"\ud800"#));
        let mut s = StreamState::default();
        let err = r#"{"error":{"message":"bad \ud83c","type":"server_error"}}"#;
        let e = s.on_event(&ev(err)).unwrap_err();
        assert_eq!(e.code, ErrorCode::StreamError);
        assert!(e.message.contains("bad \u{FFFD}"), "{}", e.message);
        let typed = SseEvent {
            event: Some("error".into()),
            data: r#"{"message":"slow \udf89","code":"rate_limit_exceeded"}"#.into(),
            id: None,
        };
        let e = s.on_event(&typed).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("slow \u{FFFD}"), "{}", e.message);
    }

    #[test]
    fn a_complete_response_with_lone_surrogates_parses() {
        let body = br#"{"id":"x","choices":[{"message":{"role":"assistant","content":"a\ud83cb \ud83c\udf89 \udf89"},"finish_reason":"stop"}]}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.text, "a\u{FFFD}b 🎉 \u{FFFD}");
        assert_eq!(c.detail.get(), std::str::from_utf8(body).unwrap(), "detail verbatim");
        let e = parse_completion(br#"{"error":{"message":"no \ud83c","code":"x"}}"#).unwrap_err();
        assert!(e.message.contains("no \u{FFFD}"), "{}", e.message);
    }

    #[test]
    fn malformed_chunks_are_bad_responses() {
        let mut s = StreamState::default();
        assert_eq!(
            s.on_event(&ev("{\"choices\": [")).unwrap_err().code,
            ErrorCode::BadResponse
        );
    }

    #[test]
    fn odd_but_usable_responses_parse_like_their_tree_would() {
        // llama.cpp-style null content, no role, no id, numbers where strings were expected,
        // unknown fields, an explicit null error, two choices, whitespace around the document.
        let body = br#"
          {"error":null,"id":7,"extra":{"nested":[1,2,{"a":"b"}]},
           "choices":[{"message":{"content":null},"finish_reason":"stop"},{"message":{"content":"x"}}],
           "usage":{"prompt_tokens":"many"}}
        "#;
        let c = parse_completion(body).unwrap();
        assert_eq!((c.text.as_str(), c.role.as_str()), ("", "assistant"));
        assert_eq!((c.id, c.finish_reason.as_deref()), (None, Some("stop")));
        assert_eq!((c.usage, c.choices), (None, 2));
        assert_eq!(c.detail.to_value()["extra"]["nested"][2]["a"], "b");
        assert!(c.detail.get().starts_with('{') && c.detail.get().ends_with('}'));
        // Escapes decode in the fields and stay intact in the detail.
        let c =
            parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"a\"b\u00e9\n"}}]}"#).unwrap();
        assert_eq!(c.text, "a\"b\u{e9}\n");
        assert_eq!(c.detail.to_value()["choices"][0]["message"]["content"], "a\"b\u{e9}\n");
    }

    #[test]
    fn fields_of_unexpected_types_read_as_absent_without_failing_the_response() {
        // A message that is not an object is present but empty; odd types elsewhere read as absent.
        let c =
            parse_completion(br#"{"id":{"x":[1]},"choices":[{"message":"hi","finish_reason":{"a":1}},7]}"#).unwrap();
        assert_eq!(
            (c.text.as_str(), c.role.as_str(), c.id, c.finish_reason),
            ("", "assistant", None, None)
        );
        assert_eq!(c.choices, 2);
        let c = parse_completion(br#"{"choices":[{"message":{"content":[1,{"b":2}],"role":true,"x":null}}]}"#).unwrap();
        assert_eq!((c.text.as_str(), c.role.as_str()), ("", "assistant"));
        // Escaped keys and values decode.
        let c = parse_completion(
            br#"{"choices":[{"message":{"con\u0074ent":"\u00e9t\u00e9"},"finish_\u0072eason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish_reason.as_deref()),
            ("\u{e9}t\u{e9}", Some("length"))
        );
        // The first choice must be an object with a message; `choices` must be a non-empty array.
        for body in [
            &br#"{"choices":[7,{"message":{"content":"x"}}]}"#[..],
            br#"{"choices":"many"}"#,
            br#"{"choices":null}"#,
            br#"{"choices":[{"message":null}]}"#,
        ] {
            assert_eq!(
                parse_completion(body).unwrap_err().code,
                ErrorCode::BadResponse,
                "{body:?}"
            );
        }
    }

    #[test]
    fn an_error_object_in_a_complete_response_rejects() {
        let e = parse_completion(br#"{"error":{"message":"nope","type":"invalid_request_error","code":"bad"}}"#)
            .unwrap_err();
        assert_eq!(e.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!(e.server_code.as_deref(), Some("bad"));
    }

    #[test]
    fn complete_responses_parse() {
        let body = br#"{"id":"c2","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.text, "hi");
        assert_eq!(c.usage.unwrap().prompt_tokens, 3);
        assert_eq!(
            c.detail.get(),
            std::str::from_utf8(body).unwrap(),
            "detail is the body, verbatim"
        );
        assert_eq!(
            (c.id.as_deref(), c.role.as_str(), c.choices),
            (Some("c2"), "assistant", 1)
        );
        assert_eq!(parse_completion(b"{").unwrap_err().code, ErrorCode::BadResponse);
        assert_eq!(parse_completion(b"[1]").unwrap_err().code, ErrorCode::BadResponse);
        assert_eq!(
            parse_completion(br#"{"choices":{"0":{}}}"#).unwrap_err().code,
            ErrorCode::BadResponse
        );
        assert_eq!(
            parse_completion(br#"{"choices":[{"finish_reason":"stop"}]}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadResponse
        );
        assert_eq!(
            parse_completion(b"{\"choices\":[]}").unwrap_err().code,
            ErrorCode::BadResponse
        );
    }

    #[test]
    fn the_byte_bound_is_never_below_the_count() {
        let texts = [
            "",
            "a",
            "bench 12345",
            "  spaces   and\ttabs\n\n",
            "日本語のテキスト、句読点。",
            "\u{1F600}\u{1F680} emoji",
            "ü",
            "0123456789".repeat(50).as_str(),
        ]
        .map(str::to_owned);
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for t in &texts {
                for name in [None, Some("bob".to_owned())] {
                    let m = PromptMessage {
                        role: "user".into(),
                        content: t.clone().into(),
                        name,
                        tool_calls: None,
                        tool_call_id: None,
                    };
                    assert!(message_tokens_upper_bound(&m) >= message_tokens(enc, &m), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn chat_formula_adds_documented_overhead() {
        let enc = Encoding::O200kBase;
        let msgs = [PromptMessage {
            role: "user".into(),
            content: "hello".into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }];
        assert_eq!(prompt_tokens(enc, &msgs), 3 + 1 + 1 + 3);
        let named = [PromptMessage {
            role: "user".into(),
            content: "hello".into(),
            name: Some("bob".into()),
            tool_calls: None,
            tool_call_id: None,
        }];
        assert_eq!(prompt_tokens(enc, &named), 3 + 1 + 1 + 1 + 1 + 3);
    }
}
