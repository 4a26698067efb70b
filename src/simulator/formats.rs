//! The answers besides plain text: refusals (asked for with [`REFUSAL_MARKER`]), JSON answers for
//! `response_format`, the hidden reasoning tokens of reasoning models and their
//! `reasoning_effort`, and cutting a text into the token pieces it is streamed and billed in.

use serde_json::{json, Value};

use super::request::RequestMessage;
use crate::core::content::{joined_text, known_parts};
use crate::core::tokens::Encoding;

/// A request whose last user message contains this text is answered with a refusal.
pub(super) const REFUSAL_MARKER: &str = "[refuse]";

/// The text of every refusal (in `message.refusal`, or streamed as `delta.refusal` pieces).
pub(super) const REFUSAL_TEXT: &str = "I'm sorry, but I can't help with that request.";

/// What `response_format` asks for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ResponseFormat {
    /// Plain text (also without `response_format`).
    Text,
    /// `{ type: 'json_object' }`: a JSON object, `{"answer":"<the plain answer>"}`.
    JsonObject,
    /// `{ type: 'json_schema', json_schema: { schema } }`: an instance of `schema`.
    JsonSchema(Value),
}

/// `reasoning_effort` of a reasoning model; without one, OpenAI's default, `medium`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    /// The accepted values, as OpenAI spells them.
    pub(super) const NAMES: &'static [&'static str] = &["minimal", "low", "medium", "high"];

    pub(super) fn parse(name: &str) -> Option<Self> {
        match name {
            "minimal" => Some(Self::Minimal),
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// Reasoning tokens of one choice: 16 × (1, 2, 4 or 8 for minimal to high) plus 0..15 picked
    /// by `seed`, so higher effort always reasons longer about the same request.
    pub(super) fn tokens(self, seed: u64) -> u64 {
        let scale = match self {
            Self::Minimal => 1,
            Self::Low => 2,
            Self::Medium => 4,
            Self::High => 8,
        };
        16 * scale + seed % 16
    }
}

/// Models treated as reasoning models (hidden reasoning tokens, `reasoning_effort`): the o1, o3,
/// o4 and gpt-5 families, after any `provider/` prefix. The simulator keeps its own copy of this
/// rule rather than the client's (see the module documentation of `simulator`).
pub(super) fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|family| name.starts_with(family))
}

/// Whether the last user message contains [`REFUSAL_MARKER`] (in its text or its text parts).
pub(super) fn asks_for_refusal(messages: &[RequestMessage]) -> bool {
    let Some(last_user) = messages.iter().rev().find(|m| m.role == "user") else {
        return false;
    };
    match &last_user.content {
        Some(Value::String(text)) => text.contains(REFUSAL_MARKER),
        Some(Value::Array(parts)) => {
            known_parts(parts, "content").is_ok_and(|parts| joined_text(&parts).contains(REFUSAL_MARKER))
        }
        _ => false,
    }
}

/// The JSON text a `json_object` answer carries its plain answer in.
pub(super) fn json_object_text(answer: &str) -> String {
    json!({ "answer": answer }).to_string()
}

/// One streamed piece of a text and the tokens it is made of (more than one only where a
/// character spans tokens).
pub(super) struct Piece {
    pub(super) text: String,
    pub(super) tokens: u64,
}

/// `text` cut into its `o200k_base` tokens; tokens that end inside a UTF-8 character are joined
/// with the next ones, so every piece is whole text.
pub(super) fn token_pieces(text: &str) -> Vec<Piece> {
    let encoding = Encoding::O200kBase;
    let mut pieces = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_tokens = 0_u64;
    for token in encoding.encode(text) {
        // A token of the text's own encoding always decodes.
        if let Ok(bytes) = encoding.bpe().decode_bytes(&[token]) {
            pending.extend_from_slice(&bytes);
        }
        pending_tokens += 1;
        if let Ok(piece) = std::str::from_utf8(&pending) {
            pieces.push(Piece {
                text: piece.to_owned(),
                tokens: pending_tokens,
            });
            pending.clear();
            pending_tokens = 0;
        }
    }
    if !pending.is_empty() {
        pieces.push(Piece {
            text: String::from_utf8_lossy(&pending).into_owned(),
            tokens: pending_tokens,
        });
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// The chunks of a stream (its `data:` frames without `[DONE]`), parsed.
    async fn stream_chunks(sim: &Simulator, body: &Value) -> Vec<Value> {
        let response = post_ok(sim, body, &[]).await;
        assert_eq!(response.status(), 200);
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        data_frames(&text)
            .iter()
            .filter(|frame| *frame != "[DONE]")
            .map(|frame| serde_json::from_str(frame).expect("chunk json"))
            .collect()
    }

    /// The concatenated `delta.<field>` strings of choice `index`.
    fn joined(chunks: &[Value], index: u64, field: &str) -> String {
        chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == index)
            .filter_map(|c| c["choices"][0]["delta"][field].as_str())
            .collect()
    }

    async fn error_param(sim: &Simulator, body: &Value) -> (u16, Value, Value) {
        let response = post_ok(sim, body, &[]).await;
        let status = response.status().as_u16();
        let body = json_body(response).await;
        (status, body["error"]["param"].clone(), body["error"]["type"].clone())
    }

    #[tokio::test]
    async fn n_choices_differ_and_usage_counts_them_all() {
        let sim = start_default().await;
        let plain = json_body(post_ok(&sim, &hi_request(), &[]).await).await;
        let body = json_body(post_ok(&sim, &chat_request("Hi", json!({"n": 3})), &[]).await).await;
        let choices = body["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 3);
        let texts: Vec<&str> = choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                assert_eq!(c["index"], i as u64);
                assert_eq!(c["finish_reason"], "stop");
                c["message"]["content"].as_str().expect("text")
            })
            .collect();
        assert_eq!(json!(texts[0]), plain["choices"][0]["message"]["content"]);
        assert!(texts[0] != texts[1] && texts[1] != texts[2] && texts[0] != texts[2]);
        assert_eq!(body["usage"]["completion_tokens"], 3 * 16);
        assert_eq!(sim.stats().completion_tokens, 16 + 3 * 16);

        let capped = chat_request("Hi", json!({"n": 2, "max_completion_tokens": 5}));
        let body = json_body(post_ok(&sim, &capped, &[]).await).await;
        for choice in body["choices"].as_array().expect("choices") {
            assert_eq!(choice["finish_reason"], "length");
            assert_eq!(o200k_len(choice["message"]["content"].as_str().expect("text")), 5);
        }
        assert_eq!(body["usage"]["completion_tokens"], 10);
    }

    #[tokio::test]
    async fn n_choices_stream_interleaved_with_a_finish_chunk_each() {
        let sim = start_default().await;
        let complete = json_body(post_ok(&sim, &chat_request("Hi", json!({"n": 3})), &[]).await).await;
        let body = chat_request(
            "Hi",
            json!({"n": 3, "stream": true, "stream_options": {"include_usage": true}}),
        );
        let chunks = stream_chunks(&sim, &body).await;
        let indexes: Vec<u64> = chunks[..chunks.len() - 1]
            .iter()
            .map(|c| c["choices"][0]["index"].as_u64().expect("index"))
            .collect();
        let round_robin: Vec<u64> = (0..1 + 16 + 1).flat_map(|_| [0, 1, 2]).collect();
        assert_eq!(indexes, round_robin, "role chunks, 16 rounds of deltas, finish chunks");
        for (i, choice) in complete["choices"].as_array().expect("choices").iter().enumerate() {
            assert_eq!(
                json!(joined(&chunks, i as u64, "content")),
                choice["message"]["content"]
            );
        }
        let finishes = &chunks[chunks.len() - 4..chunks.len() - 1];
        assert!(finishes.iter().all(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 48);
    }

    #[tokio::test]
    async fn a_mid_stream_fault_counts_rounds_of_all_choices() {
        let sim = start_default().await;
        let body = chat_request("Hi", json!({"n": 2, "stream": true}));
        let response = post_fault(&sim, &body, r#"{"kind":"disconnect","afterChunks":3}"#).await;
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Error);
        // Two role chunks, then three rounds of one delta per choice.
        assert_eq!(data_frames(&text).len(), 2 + 3 * 2, "{text}");
    }

    #[tokio::test]
    async fn the_marker_gets_a_refusal_complete_or_streamed() {
        let sim = start_default().await;
        let refusal_tokens = o200k_len(REFUSAL_TEXT) as u64;
        let body = json_body(post_ok(&sim, &chat_request("do it [refuse]", json!({"n": 2})), &[]).await).await;
        for choice in body["choices"].as_array().expect("choices") {
            assert_eq!(choice["message"]["content"], Value::Null);
            assert_eq!(choice["message"]["refusal"], REFUSAL_TEXT);
            assert_eq!(choice["finish_reason"], "stop");
        }
        assert_eq!(body["usage"]["completion_tokens"], 2 * refusal_tokens);

        let chunks = stream_chunks(&sim, &chat_request("[refuse]", json!({"stream": true}))).await;
        assert_eq!(joined(&chunks, 0, "refusal"), REFUSAL_TEXT);
        let pieces = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["refusal"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty())
            })
            .count();
        assert_eq!(pieces as u64, refusal_tokens);
        assert!(chunks.iter().all(|c| c["choices"][0]["delta"].get("content").is_none()));
        assert_eq!(chunks.last().expect("finish")["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn logprobs_come_per_token_complete_or_streamed() {
        let sim = start_default().await;
        let asked = json!({"logprobs": true, "top_logprobs": 3});
        let body = json_body(post_ok(&sim, &chat_request("Hi", asked.clone()), &[]).await).await;
        let logprobs = &body["choices"][0]["logprobs"];
        assert_eq!(logprobs["refusal"], Value::Null);
        let entries = logprobs["content"].as_array().expect("entries");
        assert_eq!(entries.len(), 16);
        let text: String = entries.iter().filter_map(|e| e["token"].as_str()).collect();
        assert_eq!(json!(text), body["choices"][0]["message"]["content"]);
        for entry in entries {
            assert!(entry["logprob"].as_f64().expect("logprob") <= 0.0);
            let token = entry["token"].as_str().expect("token");
            assert_eq!(entry["bytes"], json!(token.as_bytes()));
            assert_eq!(entry["top_logprobs"].as_array().map(Vec::len), Some(3));
        }
        let again = json_body(post_ok(&sim, &chat_request("Hi", asked.clone()), &[]).await).await;
        assert_eq!(&again["choices"][0]["logprobs"], logprobs, "deterministic");

        let mut streamed = asked.clone();
        streamed["stream"] = json!(true);
        let chunks = stream_chunks(&sim, &chat_request("Hi", streamed)).await;
        let streamed_entries: Vec<Value> = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .map(|c| {
                let content = c["choices"][0]["logprobs"]["content"].as_array().expect("entries");
                assert_eq!(content.len(), 1);
                content[0].clone()
            })
            .collect();
        assert_eq!(&streamed_entries, entries);

        // Refusals carry theirs under `refusal`; without `logprobs: true` they are null.
        let refused = json_body(post_ok(&sim, &chat_request("[refuse]", asked), &[]).await).await;
        assert_eq!(refused["choices"][0]["logprobs"]["content"], Value::Null);
        assert!(refused["choices"][0]["logprobs"]["refusal"]
            .as_array()
            .is_some_and(|r| r.len() > 3));
        let plain = json_body(post_ok(&sim, &hi_request(), &[]).await).await;
        assert_eq!(plain["choices"][0]["logprobs"], Value::Null);
    }

    #[tokio::test]
    async fn json_object_answers_carry_the_answer_in_json_text() {
        let sim = start_default().await;
        let plain = json_body(post_ok(&sim, &hi_request(), &[]).await).await;
        let format = json!({"response_format": {"type": "json_object"}});
        let body = json_body(post_ok(&sim, &chat_request("Hi", format.clone()), &[]).await).await;
        let content = body["choices"][0]["message"]["content"].as_str().expect("text");
        let parsed: Value = serde_json::from_str(content).expect("a JSON object");
        assert_eq!(parsed["answer"], plain["choices"][0]["message"]["content"]);
        assert_eq!(body["usage"]["completion_tokens"], o200k_len(content) as u64);

        let mut streamed = format;
        streamed["stream"] = json!(true);
        let chunks = stream_chunks(&sim, &chat_request("Hi", streamed)).await;
        let deltas = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .count();
        assert!(deltas > 3, "the JSON text comes in several deltas");
        assert_eq!(joined(&chunks, 0, "content"), content);
    }

    #[tokio::test]
    async fn json_schema_answers_are_instances_of_the_schema() {
        let sim = start_default().await;
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 18},
                "kind": {"type": "string", "enum": ["cat", "dog"]},
                "version": {"const": 2},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "owner": {"$ref": "#/$defs/person"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "optional": {"type": "string"}
            },
            "required": ["name", "age", "kind", "version", "tags", "owner", "note"],
            "additionalProperties": false,
            "$defs": {"person": {
                "type": "object",
                "properties": {"email": {"type": "string"}, "admin": {"type": "boolean"}},
                "required": ["email", "admin"],
                "additionalProperties": false
            }}
        });
        let format = json!({"response_format": {"type": "json_schema", "json_schema": {
            "name": "pet", "strict": true, "schema": schema
        }}});
        let body = json_body(post_ok(&sim, &chat_request("Hi", format), &[]).await).await;
        let content = body["choices"][0]["message"]["content"].as_str().expect("text");
        let instance: Value = serde_json::from_str(content).expect("JSON");
        let keys: Vec<&String> = instance.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["age", "kind", "name", "note", "owner", "tags", "version"]);
        assert!(instance["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert_eq!(
            (&instance["age"], &instance["kind"], &instance["version"]),
            (&json!(18), &json!("cat"), &json!(2))
        );
        assert_eq!(instance["tags"].as_array().map(Vec::len), Some(2));
        assert!(instance["note"].is_string());
        assert_eq!(instance["owner"]["admin"], true);
        assert!(instance["owner"]["email"].is_string());
        assert_eq!(instance["owner"].as_object().map(|o| o.len()), Some(2));
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn a_json_answer_cut_by_max_tokens_is_invalid_json_with_length() {
        let sim = start_default().await;
        let format = json!({"response_format": {"type": "json_object"}, "max_tokens": 4});
        let body = json_body(post_ok(&sim, &chat_request("Hi", format.clone()), &[]).await).await;
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "length");
        let content = choice["message"]["content"].as_str().expect("text");
        assert!(serde_json::from_str::<Value>(content).is_err(), "{content}");
        assert!(content.starts_with('{'));
        assert_eq!(body["usage"]["completion_tokens"], 4);

        let mut streamed = format;
        streamed["stream"] = json!(true);
        let chunks = stream_chunks(&sim, &chat_request("Hi", streamed)).await;
        assert_eq!(joined(&chunks, 0, "content"), content);
        assert_eq!(chunks.last().expect("finish")["choices"][0]["finish_reason"], "length");
    }

    #[tokio::test]
    async fn reasoning_models_report_reasoning_tokens_inside_completion_tokens() {
        let sim = start_default().await;
        let reasoning = |effort: Option<&str>, extra: Value| {
            let mut body = chat_request("Hi", extra);
            body["model"] = json!("o3-mini");
            if let Some(effort) = effort {
                body["reasoning_effort"] = json!(effort);
            }
            body
        };
        let body = json_body(post_ok(&sim, &reasoning(None, json!({})), &[]).await).await;
        let usage = &body["usage"];
        let hidden = usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .expect("reasoning");
        assert!(hidden > 0);
        assert_eq!(usage["completion_tokens"], 16 + hidden);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        let medium = json_body(post_ok(&sim, &reasoning(Some("medium"), json!({})), &[]).await).await;
        assert_eq!(medium["usage"], *usage, "medium is the default");
        let mut spent = Vec::new();
        for effort in ReasoningEffort::NAMES {
            let body = json_body(post_ok(&sim, &reasoning(Some(effort), json!({})), &[]).await).await;
            spent.push(
                body["usage"]["completion_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .expect("n"),
            );
        }
        assert!(spent.windows(2).all(|w| w[0] < w[1]), "{spent:?}");

        // The cap covers the reasoning first: a cap it uses up leaves no visible answer.
        let capped = reasoning(Some("minimal"), json!({"max_completion_tokens": 10}));
        let body = json_body(post_ok(&sim, &capped, &[]).await).await;
        assert_eq!(body["choices"][0]["message"]["content"], "");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 10);

        let streamed = reasoning(None, json!({"stream": true, "stream_options": {"include_usage": true}}));
        let chunks = stream_chunks(&sim, &streamed).await;
        assert_eq!(chunks.last().expect("usage")["usage"], *usage);
        // Other models' usage has no details.
        let plain = json_body(post_ok(&sim, &hi_request(), &[]).await).await;
        assert!(plain["usage"].get("completion_tokens_details").is_none());
    }

    #[tokio::test]
    async fn out_of_range_fields_get_400_naming_the_parameter() {
        let sim = start_default().await;
        let cases = [
            (json!({"n": 0}), "n"),
            (json!({"n": 9}), "n"),
            (json!({"n": "2"}), "n"),
            (json!({"n": 1.5}), "n"),
            (json!({"logprobs": "yes"}), "logprobs"),
            (json!({"logprobs": true, "top_logprobs": 21}), "top_logprobs"),
            (json!({"logprobs": true, "top_logprobs": -1}), "top_logprobs"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (json!({"logprobs": false, "top_logprobs": 2}), "top_logprobs"),
            (json!({"response_format": {"type": "xml"}}), "response_format"),
            (json!({"response_format": {}}), "response_format"),
            (json!({"response_format": {"type": "json_schema"}}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
                "response_format",
            ),
            (json!({"reasoning_effort": "low"}), "reasoning_effort"),
            (
                json!({"model": "o3", "reasoning_effort": "extreme"}),
                "reasoning_effort",
            ),
            (json!({"model": "gpt-5", "reasoning_effort": 3}), "reasoning_effort"),
        ];
        for (extra, param) in cases {
            let (status, got, kind) = error_param(&sim, &chat_request("Hi", extra.clone())).await;
            assert_eq!(
                (status, got, kind),
                (400, json!(param), json!("invalid_request_error")),
                "{extra}"
            );
        }
        // A complete answer is built in memory, so its logprobs are bounded.
        let many = chat_request("Hi", json!({"logprobs": true, "top_logprobs": 20, "n": 8}));
        let response = post_ok(&sim, &many, &[("x-sim-response-tokens", "1000")]).await;
        assert_eq!(response.status(), 400);
        assert_eq!(json_body(response).await["error"]["param"], "logprobs");
        let response = post_ok(&sim, &chat_request("Hi", json!({"reasoning_effort": "low"})), &[]).await;
        assert_eq!(json_body(response).await["error"]["code"], "unsupported_parameter");
        assert_eq!(sim.stats().completion_tokens, 0);
    }

    #[tokio::test]
    async fn default_values_of_the_new_fields_answer_as_without_them() {
        let sim = start_default().await;
        let plain = json_body(post_ok(&sim, &hi_request(), &[]).await).await;
        let defaults = json!({"n": 1, "logprobs": false, "response_format": {"type": "text"}, "top_logprobs": null});
        let body = json_body(post_ok(&sim, &chat_request("Hi", defaults), &[]).await).await;
        assert_eq!(body["choices"], plain["choices"]);
        assert_eq!(body["usage"], plain["usage"]);
    }

    fn user(content: Value) -> RequestMessage {
        RequestMessage {
            role: "user".into(),
            content: Some(content),
            name: None,
        }
    }

    #[test]
    fn pieces_join_back_into_the_text_and_count_its_tokens() {
        for text in [REFUSAL_TEXT, r#"{"answer":"the model."}"#, "héllo → 世界 🎉", ""] {
            let pieces = token_pieces(text);
            let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
            assert_eq!(joined, text);
            let tokens: u64 = pieces.iter().map(|p| p.tokens).sum();
            assert_eq!(tokens, Encoding::O200kBase.count(text) as u64, "{text}");
        }
        assert!(
            token_pieces(REFUSAL_TEXT).len() > 3,
            "a refusal streams in several pieces"
        );
    }

    #[test]
    fn the_marker_in_the_last_user_message_asks_for_a_refusal() {
        assert!(asks_for_refusal(&[user(json!("please [refuse] this"))]));
        assert!(asks_for_refusal(&[user(
            json!([{"type": "text", "text": "x [refuse]"}])
        )]));
        assert!(!asks_for_refusal(&[user(json!("[refuse]")), user(json!("fine"))]));
        assert!(!asks_for_refusal(&[user(json!("refuse"))]));
        let assistant = RequestMessage {
            role: "assistant".into(),
            content: Some(json!("[refuse]")),
            name: None,
        };
        assert!(!asks_for_refusal(&[user(json!("hi")), assistant]));
    }

    #[test]
    fn reasoning_models_and_efforts() {
        for model in ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano", "openai/o3"] {
            assert!(is_reasoning_model(model), "{model}");
        }
        for model in ["gpt-4o", "gpt-4.1", "sim-gpt", "gpt-test"] {
            assert!(!is_reasoning_model(model), "{model}");
        }
        for seed in [0, 7, u64::MAX] {
            let tokens: Vec<u64> = ReasoningEffort::NAMES
                .iter()
                .filter_map(|name| ReasoningEffort::parse(name))
                .map(|effort| effort.tokens(seed))
                .collect();
            assert_eq!(tokens.len(), 4);
            assert!(tokens[0] > 0 && tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
        }
        assert_eq!(ReasoningEffort::parse("extreme"), None);
    }
}
