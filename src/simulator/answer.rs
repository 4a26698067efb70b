//! The answers: deterministic text drawn from a fixed vocabulary (every word one token in both
//! `cl100k_base` and `o200k_base`), seeded by the request's messages; its choices (`n`, each a
//! text, a refusal, a JSON text or a tool call, see `formats` and `tools`); its usage by OpenAI's
//! chat formula, counted here rather than with core's formula so that the two check each other;
//! and the JSON of a complete answer and of one stream chunk.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::formats::{asks_for_refusal, json_object_text, token_pieces, Piece, ResponseFormat, REFUSAL_TEXT};
use super::logprobs;
use super::request::{ChatRequest, RequestMessage};
use super::response::{sse, to_bytes, unix_now};
use super::server::{Shared, SimulatorConfig};
use super::tools::{schema_instance, tool_call_for, SimToolCall};
use crate::core::content::{joined_text, known_parts, Content};

/// Words the answers are made of. Every entry, with its leading space and
/// without it, is exactly one token in both `cl100k_base` and `o200k_base`
/// (checked by a unit test), so an answer of `n` streamed deltas is exactly
/// `n` tokens whichever of the two tokenizers a client uses to check it.
pub(super) const VOCABULARY: &[&str] = &[
    " the",
    " model",
    " answer",
    " quick",
    " simple",
    " data",
    " system",
    " time",
    " world",
    " test",
    " value",
    " result",
    " stream",
    " server",
    " client",
    " request",
    " response",
    " fast",
    " small",
    " large",
    " good",
    " new",
    " first",
    " last",
    " long",
    " great",
    " little",
    " right",
    " old",
    " big",
    " high",
    " different",
    " important",
    " public",
    " able",
    " water",
    " light",
    " house",
    " point",
    " number",
    " people",
    " place",
    " work",
    " part",
    " case",
    " week",
    " company",
    " group",
    " problem",
    " fact",
    " hand",
    " day",
    " way",
    " thing",
    " year",
    " order",
    " state",
    " city",
    " story",
    " level",
    " sound",
    " river",
    " green",
    " blue",
];

/// Final token of a complete answer (one token in both encodings).
const FULL_STOP: &str = ".";

/// Everything about one generated answer: its choices (one unless the request asked for `n`)
/// and what they have in common.
pub(super) struct Answer {
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) choices: Vec<Choice>,
    pub(super) prompt_tokens: u64,
    /// A reasoning model's answer: its usage has `completion_tokens_details`.
    reasoning: bool,
}

/// What a choice's pieces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChoiceKind {
    /// The answer's content (plain text, or JSON text for `response_format`).
    Content,
    /// A refusal: the pieces make `message.refusal` and stream as `delta.refusal`.
    Refusal,
    /// A tool call (no pieces): see `tools`.
    ToolCall,
}

/// One choice of an answer.
pub(super) struct Choice {
    pub(super) index: u32,
    pub(super) kind: ChoiceKind,
    /// The pieces actually delivered (already cut to the request's cap), one streamed delta
    /// each: a token of the vocabulary for plain text, a token of the text otherwise.
    pub(super) tokens: Vec<Cow<'static, str>>,
    pub(super) finish_reason: &'static str,
    pub(super) tool_call: Option<SimToolCall>,
    /// Tokens of what is delivered (the pieces, or the tool call).
    visible_tokens: u64,
    /// Hidden reasoning tokens (reasoning models only), part of `completion_tokens`.
    reasoning_tokens: u64,
    /// With `logprobs: true`, the `top_logprobs` asked for: every piece has an entry, computed
    /// when it is sent.
    logprobs: Option<usize>,
    /// What this choice draws its words and log probabilities from.
    seed: u64,
}

/// What every choice of a request shares.
struct ChoicePlan<'a> {
    chat: &'a ChatRequest,
    /// The answer length asked for (`x-sim-response-tokens` or the configured default).
    wanted: u64,
    /// The hash of the messages; choice `i` draws from [`choice_seed`] of it.
    seed: u64,
    refuse: bool,
}

/// Choice 0 draws from the messages' hash itself (so a plain answer is what it always was);
/// the others from a mix of it and their index, so that choices differ.
fn choice_seed(seed: u64, index: u32) -> u64 {
    if index == 0 {
        return seed;
    }
    let mut state = seed ^ u64::from(index).wrapping_mul(0xd1b5_4a32_d192_ed03);
    splitmix64(&mut state)
}

/// The leading pieces of `pieces` that fit in `cap` tokens, their tokens, and whether that cut
/// the text short.
fn cut_pieces(pieces: Vec<Piece>, cap: Option<u64>) -> (Vec<Cow<'static, str>>, u64, bool) {
    let mut kept = Vec::with_capacity(pieces.len());
    let mut used = 0_u64;
    for piece in pieces {
        let next = used.saturating_add(piece.tokens);
        if cap.is_some_and(|cap| next > cap) {
            return (kept, used, true);
        }
        used = next;
        kept.push(Cow::Owned(piece.text));
    }
    (kept, used, false)
}

impl Choice {
    fn new(plan: &ChoicePlan<'_>, index: u32) -> Self {
        let chat = plan.chat;
        let seed = choice_seed(plan.seed, index);
        // A reasoning model thinks first; `max_completion_tokens` caps the reasoning and the
        // visible answer together, as OpenAI's does.
        let reasoning_wanted = chat.reasoning.map_or(0, |effort| effort.tokens(seed));
        let reasoning_tokens = chat
            .max_tokens
            .map_or(reasoning_wanted, |cap| reasoning_wanted.min(cap));
        let cap = chat.max_tokens.map(|cap| cap.saturating_sub(reasoning_tokens));
        let tool_call = if plan.refuse {
            None
        } else {
            tool_call_for(chat.tools.as_ref(), chat.tool_choice.as_ref(), &chat.messages, seed)
        };
        let mut choice = Self {
            index,
            kind: ChoiceKind::Content,
            tokens: Vec::new(),
            finish_reason: "stop",
            tool_call: None,
            visible_tokens: 0,
            reasoning_tokens,
            logprobs: chat.logprobs,
            seed,
        };
        // `wanted` is bounded by MAX_RESPONSE_TOKENS, so it fits a usize.
        let wanted = usize::try_from(plan.wanted).unwrap_or(usize::MAX);
        let (tokens, visible_tokens, cut) = if let Some(call) = tool_call {
            choice.kind = ChoiceKind::ToolCall;
            choice.finish_reason = "tool_calls";
            choice.visible_tokens = count_tokens(&call.name) + count_tokens(&call.arguments);
            choice.tool_call = Some(call);
            return choice;
        } else if plan.refuse {
            choice.kind = ChoiceKind::Refusal;
            cut_pieces(token_pieces(REFUSAL_TEXT), cap)
        } else {
            match &chat.response_format {
                ResponseFormat::Text => {
                    let (delivered, cut) = match cap {
                        Some(cap) if cap < plan.wanted => (usize::try_from(cap).unwrap_or(usize::MAX), true),
                        _ => (wanted, false),
                    };
                    let tokens: Vec<Cow<'static, str>> = answer_tokens(seed, wanted, delivered)
                        .into_iter()
                        .map(Cow::Borrowed)
                        .collect();
                    let len = tokens.len() as u64;
                    (tokens, len, cut)
                }
                ResponseFormat::JsonObject => {
                    let text = json_object_text(&answer_tokens(seed, wanted, wanted).concat());
                    cut_pieces(token_pieces(&text), cap)
                }
                ResponseFormat::JsonSchema(schema) => {
                    let text = schema_instance_text(schema, seed);
                    cut_pieces(token_pieces(&text), cap)
                }
            }
        };
        if cut {
            choice.finish_reason = "length";
        }
        choice.tokens = tokens;
        choice.visible_tokens = visible_tokens;
        choice
    }

    /// Visible and reasoning tokens.
    fn completion_tokens(&self) -> u64 {
        self.visible_tokens.saturating_add(self.reasoning_tokens)
    }

    /// `message` of a complete answer.
    fn message(&self) -> Value {
        match (&self.tool_call, self.kind) {
            (Some(call), _) => json!({"role": "assistant", "content": null, "tool_calls": [call.to_json()]}),
            (None, ChoiceKind::Refusal) => {
                json!({"role": "assistant", "content": null, "refusal": self.tokens.concat()})
            }
            (None, _) => json!({"role": "assistant", "content": self.tokens.concat()}),
        }
    }

    /// `logprobs` of a complete answer: `null` unless asked for; the entries under `refusal` for
    /// a refusal, under `content` otherwise (none for a tool call).
    fn logprobs_json(&self) -> Value {
        let Some(top) = self.logprobs else {
            return Value::Null;
        };
        let entries: Vec<Value> = (self.tokens.iter().enumerate())
            .map(|(at, token)| logprobs::entry(token, self.seed, at, top))
            .collect();
        match self.kind {
            ChoiceKind::Content => json!({"content": entries, "refusal": null}),
            ChoiceKind::Refusal => json!({"content": null, "refusal": entries}),
            ChoiceKind::ToolCall => json!({"content": null, "refusal": null}),
        }
    }

    /// The stream delta carrying piece `at`, and its `logprobs` (`null` unless asked for).
    pub(super) fn piece_delta(&self, at: usize) -> Option<(Value, Value)> {
        let token = self.tokens.get(at)?;
        let entry = self.logprobs.map(|top| logprobs::entry(token, self.seed, at, top));
        Some(match self.kind {
            ChoiceKind::Refusal => (
                json!({ "refusal": token }),
                entry.map_or(Value::Null, |e| json!({"content": null, "refusal": [e]})),
            ),
            _ => (
                json!({ "content": token }),
                entry.map_or(Value::Null, |e| json!({"content": [e], "refusal": null})),
            ),
        })
    }

    /// The first delta of the choice's stream: a refusal's has no `content`.
    pub(super) fn role_delta(&self) -> Value {
        match self.kind {
            ChoiceKind::Refusal => json!({"role": "assistant", "refusal": ""}),
            _ => json!({"role": "assistant", "content": ""}),
        }
    }
}

impl Answer {
    pub(super) fn new(config: &SimulatorConfig, chat: &ChatRequest, wanted: u64) -> Self {
        let plan = ChoicePlan {
            chat,
            wanted,
            seed: messages_seed(&chat.messages),
            refuse: asks_for_refusal(&chat.messages),
        };
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: chat.model.clone().unwrap_or_else(|| config.model.clone()),
            choices: (0..chat.n.max(1)).map(|index| Choice::new(&plan, index)).collect(),
            prompt_tokens: prompt_tokens(&chat.messages),
            reasoning: chat.reasoning.is_some(),
        }
    }

    /// How many values the answer's `logprobs` are made of (0 without them); see
    /// [`logprobs::MAX_LOGPROB_VALUES`].
    pub(super) fn logprob_values(&self) -> u64 {
        self.choices
            .iter()
            .filter_map(|c| {
                c.logprobs
                    .map(|top| (c.tokens.len() as u64).saturating_mul(1 + top as u64))
            })
            .fold(0, u64::saturating_add)
    }

    /// The most pieces any choice streams.
    pub(super) fn rounds(&self) -> usize {
        self.choices.iter().map(|c| c.tokens.len()).max().unwrap_or(0)
    }

    fn completion_tokens(&self) -> u64 {
        self.choices.iter().map(Choice::completion_tokens).sum()
    }

    pub(super) fn usage(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens(),
            "total_tokens": self.prompt_tokens + self.completion_tokens(),
        });
        if self.reasoning {
            let reasoning_tokens: u64 = self.choices.iter().map(|c| c.reasoning_tokens).sum();
            if let Some(object) = usage.as_object_mut() {
                object.insert(
                    "prompt_tokens_details".into(),
                    json!({"cached_tokens": 0, "audio_tokens": 0}),
                );
                object.insert(
                    "completion_tokens_details".into(),
                    json!({
                        "reasoning_tokens": reasoning_tokens,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    }),
                );
            }
        }
        usage
    }

    pub(super) fn record_usage(&self, shared: &Shared) {
        let mut stats = shared.stats();
        stats.prompt_tokens += self.prompt_tokens;
        stats.completion_tokens += self.completion_tokens();
    }

    /// How long a non-streaming answer takes: `ttft + n * token_delay`, `n` being the longest
    /// choice's pieces (streamed choices advance together).
    pub(super) fn total_delay(&self, config: &SimulatorConfig) -> Duration {
        let n = u32::try_from(self.rounds()).unwrap_or(u32::MAX);
        config.ttft.saturating_add(config.token_delay.saturating_mul(n))
    }

    pub(super) fn completion_json(&self) -> Bytes {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|choice| {
                json!({
                    "index": choice.index,
                    "message": choice.message(),
                    "logprobs": choice.logprobs_json(),
                    "finish_reason": choice.finish_reason,
                })
            })
            .collect();
        to_bytes(&json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        }))
    }

    /// One `chat.completion.chunk` frame for choice `index`. With `include_usage`, OpenAI sends
    /// `"usage": null` on every chunk but the last; clients must cope.
    pub(super) fn chunk(&self, index: u32, delta: ChunkDelta, include_usage: bool) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": index,
                "delta": delta.delta,
                "logprobs": delta.logprobs,
                "finish_reason": delta.finish_reason,
            }],
        });
        if include_usage {
            if let Some(object) = chunk.as_object_mut() {
                object.insert("usage".to_string(), Value::Null);
            }
        }
        sse(&chunk)
    }
}

/// What one chunk says about its choice.
pub(super) struct ChunkDelta {
    pub(super) delta: Value,
    /// `null` unless the request asked for logprobs and the chunk carries a piece.
    pub(super) logprobs: Value,
    pub(super) finish_reason: Option<&'static str>,
}

impl ChunkDelta {
    /// A delta without logprobs or finish reason.
    pub(super) fn plain(delta: Value) -> Self {
        Self {
            delta,
            logprobs: Value::Null,
            finish_reason: None,
        }
    }

    /// The empty delta that ends a choice.
    pub(super) fn finish(finish_reason: &'static str) -> Self {
        Self {
            delta: json!({}),
            logprobs: Value::Null,
            finish_reason: Some(finish_reason),
        }
    }
}

/// A JSON instance of `schema` (built as tool arguments are, see `tools`), as text.
fn schema_instance_text(schema: &Value, seed: u64) -> String {
    let mut words = seed;
    schema_instance(schema, &mut words).to_string()
}

/// FNV-1a over the messages: stable across runs, platforms and Rust
/// versions, unlike `std`'s hashers.
fn messages_seed(messages: &[RequestMessage]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for message in messages {
        feed(message.role.as_bytes());
        match &message.content {
            Some(Value::String(text)) => feed(text.as_bytes()),
            // Content parts answer as their text would: the text parts joined with '\n'.
            Some(Value::Array(parts)) => match known_parts(parts, "content") {
                Ok(parts) => feed(joined_text(&parts).as_bytes()),
                Err(_) => feed(Value::from(parts.clone()).to_string().as_bytes()),
            },
            Some(other) => feed(other.to_string().as_bytes()),
            None => feed(b""),
        }
        feed(message.name.as_deref().unwrap_or("").as_bytes());
    }
    hash
}

/// A word of the vocabulary (without its leading space), picked by `state`.
pub(super) fn word(state: &mut u64) -> &'static str {
    let pick = usize::try_from(splitmix64(state) % VOCABULARY.len() as u64).unwrap_or(0);
    VOCABULARY.get(pick).copied().unwrap_or(" the").trim_start()
}

/// SplitMix64: tiny, fast and good enough to pick words.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first `delivered` tokens of the `wanted`-token answer for `seed`: the
/// first word has no leading space and a complete answer ends with ".", so a
/// capped answer is visibly cut mid-sentence.
fn answer_tokens(seed: u64, wanted: usize, delivered: usize) -> Vec<&'static str> {
    let mut state = seed;
    let len = VOCABULARY.len() as u64;
    (0..delivered.min(wanted))
        .map(|index| {
            if index + 1 == wanted && wanted >= 2 {
                return FULL_STOP;
            }
            let pick = usize::try_from(splitmix64(&mut state) % len).unwrap_or(0);
            let word = VOCABULARY.get(pick).copied().unwrap_or(" the");
            if index == 0 {
                word.trim_start()
            } else {
                word
            }
        })
        .collect()
}

/// Tokens of `text` in `o200k_base`. `encode_ordinary` treats special-token
/// text such as `<|endoftext|>` as plain text, which is how the API counts
/// user content, and never fails on it.
fn count_tokens(text: &str) -> u64 {
    // Through the project tokenizer wrapper: it survives whitespace runs that crash tiktoken.
    crate::core::tokens::Encoding::O200kBase.count(text) as u64
}

/// OpenAI's chat formula: 3 per message + role + content (+ 1 + name), plus
/// 3 for priming the reply. Content parts count their text, and their images by OpenAI's image
/// formula (the client's own, `core::content`), so a client's budget can be checked against it.
fn prompt_tokens(messages: &[RequestMessage]) -> u64 {
    let content_tokens = |content: &Option<Value>| match content {
        Some(Value::String(text)) => count_tokens(text),
        Some(Value::Array(parts)) => known_parts(parts, "content").map_or(0, |parts| {
            Content::Parts(parts.into()).tokens(|text| count_tokens(text) as usize) as u64
        }),
        _ => 0,
    };
    let per_message: u64 = messages
        .iter()
        .map(|message| {
            let name = message.name.as_deref().map_or(0, |name| 1 + count_tokens(name));
            3 + count_tokens(&message.role) + content_tokens(&message.content) + name
        })
        .sum();
    per_message + 3
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn vocabulary_entries_are_single_tokens_in_both_encodings() {
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let o200k = tiktoken_rs::o200k_base_singleton();
        let mut entries: Vec<&str> = VOCABULARY.to_vec();
        entries.extend(VOCABULARY.iter().map(|w| w.trim_start()));
        entries.push(FULL_STOP);
        for entry in entries {
            assert_eq!(cl100k.encode_ordinary(entry).len(), 1, "cl100k: {entry:?}");
            assert_eq!(o200k.encode_ordinary(entry).len(), 1, "o200k: {entry:?}");
        }
    }

    #[test]
    fn generated_text_tokenizes_to_exactly_the_generated_count() {
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let o200k = tiktoken_rs::o200k_base_singleton();
        for (seed, n) in [(1_u64, 1_usize), (2, 2), (3, 16), (42, 300), (u64::MAX, 1000)] {
            let text = answer_tokens(seed, n, n).concat();
            assert_eq!(cl100k.encode_ordinary(&text).len(), n, "{text}");
            assert_eq!(o200k.encode_ordinary(&text).len(), n, "{text}");
        }
    }

    #[tokio::test]
    async fn non_streaming_completion_has_the_openai_shape() {
        let sim = start_default().await;
        let response = post_ok(&sim, &chat_request("Hello", json!({})), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        let id = body["id"].as_str().expect("id");
        assert!(id.starts_with("chatcmpl-") && id.len() == "chatcmpl-".len() + 32);
        assert_eq!(body["object"], "chat.completion");
        assert!(body["created"].as_u64().is_some());
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["choices"][0]["index"], 0);
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert!(body["choices"][0]["message"]["content"].is_string());
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert!(body["choices"][0]["logprobs"].is_null());
        assert_eq!(body["usage"]["completion_tokens"], 16);

        // Without a model in the request the configured one is reported.
        let mut no_model = chat_request("Hello", json!({}));
        no_model.as_object_mut().map(|o| o.remove("model"));
        let body = json_body(post_ok(&sim, &no_model, &[]).await).await;
        assert_eq!(body["model"], "sim-gpt");
    }

    #[tokio::test]
    async fn same_messages_give_the_same_text_and_different_messages_differ() {
        let sim = start_default().await;
        let text = |body: Value| body["choices"][0]["message"]["content"].clone();
        let first = text(json_body(post_ok(&sim, &hi_request(), &[]).await).await);
        let again = text(json_body(post_ok(&sim, &hi_request(), &[]).await).await);
        let other = text(json_body(post_ok(&sim, &chat_request("Ho", json!({})), &[]).await).await);
        assert_eq!(first, again);
        assert_ne!(first, other);
        let first = first.as_str().expect("text");
        assert!(!first.starts_with(' ') && first.ends_with('.'), "{first}");
    }

    #[tokio::test]
    async fn usage_counts_generated_tokens_and_follows_the_prompt_formula() {
        let sim = start_default().await;
        // Known value: a single "Hello" user message is 8 prompt tokens at OpenAI.
        let hello = json!({"messages": [{"role": "user", "content": "Hello"}]});
        let body = json_body(post_ok(&sim, &hello, &[("x-sim-response-tokens", "7")]).await).await;
        assert_eq!(body["usage"]["prompt_tokens"], 8);
        assert_eq!(body["usage"]["completion_tokens"], 7);
        assert_eq!(body["usage"]["total_tokens"], 15);
        let content = body["choices"][0]["message"]["content"].as_str().expect("text");
        assert_eq!(o200k_len(content), 7);
        assert_eq!(content.split(' ').count(), 6, "six words and a full stop: {content}");

        // Names cost 1 + their tokens; special-token text counts as plain text.
        let special = "say <|endoftext|> please";
        let named = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "bob", "content": special},
        ]});
        let body = json_body(post_ok(&sim, &named, &[]).await).await;
        let expected = (3 + o200k_len("system") + o200k_len("Be brief."))
            + (3 + o200k_len("user") + o200k_len(special) + 1 + o200k_len("bob"))
            + 3;
        assert!(o200k_len(special) > 3);
        assert_eq!(body["usage"]["prompt_tokens"], expected as u64);

        let stats = sim.stats();
        assert_eq!(stats.prompt_tokens, 8 + expected as u64);
        assert_eq!(stats.completion_tokens, 7 + 16);
    }

    #[tokio::test]
    async fn content_parts_answer_from_their_text_and_bill_images_by_the_formula() {
        let sim = start_default().await;
        let parts = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hello"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
        ]}]});
        let body = json_body(post_ok(&sim, &parts, &[]).await).await;
        // "Hello" alone is 8 tokens; a low-detail image 85, an image of unknown size 765.
        assert_eq!(body["usage"]["prompt_tokens"], 8 + 85 + 765);
        let hello = json!({"messages": [{"role": "user", "content": "Hello"}]});
        let plain = json_body(post_ok(&sim, &hello, &[]).await).await;
        assert_eq!(
            body["choices"][0]["message"]["content"],
            plain["choices"][0]["message"]["content"]
        );
        // Parts of other types are taken and left out; a malformed image is a 400.
        let other = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hello"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]}]});
        let body = json_body(post_ok(&sim, &other, &[]).await).await;
        assert_eq!(body["usage"]["prompt_tokens"], 8);
        let bad = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]});
        let response = post_ok(&sim, &bad, &[]).await;
        assert_eq!(response.status(), 400);
        assert_eq!(json_body(response).await["error"]["param"], "messages[0].content");
    }

    #[tokio::test]
    async fn max_tokens_below_the_answer_length_cuts_it_with_finish_reason_length() {
        let sim = start_default().await;
        for cap_field in ["max_tokens", "max_completion_tokens"] {
            let request = chat_request("Hi", json!({ cap_field: 5 }));
            let body = json_body(post_ok(&sim, &request, &[]).await).await;
            assert_eq!(body["choices"][0]["finish_reason"], "length");
            assert_eq!(body["usage"]["completion_tokens"], 5);
            let content = body["choices"][0]["message"]["content"].as_str().expect("text");
            assert_eq!(o200k_len(content), 5);
            assert!(!content.ends_with('.'));
        }
        let roomy = chat_request("Hi", json!({"max_tokens": 100}));
        let body = json_body(post_ok(&sim, &roomy, &[]).await).await;
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["completion_tokens"], 16);
    }
}
