//! The chat-completions wire format: building request bodies, reading complete responses, and
//! folding stream chunks into text, finish reason and usage.
//!
//! Tolerant where real servers differ (see the reference notes): an empty `delta`, a role-only
//! first chunk, `content: null` (llama.cpp), a usage chunk with non-empty `choices` (LiteLLM),
//! numeric error codes. Strict where silence would be wrong: an error object anywhere rejects,
//! and a stream must end with `[DONE]` or a `finish_reason`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{code_for_stream_error, ChatError, ErrorCode};
use super::sse::SseEvent;
use super::transport::value_to_string;

/// One message of the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
    pub name: Option<String>,
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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
}

/// Build the JSON body: `{ ...params, messages, stream }` (plus `stream_options.include_usage`
/// when streaming, so usage is real rather than estimated).
pub fn build_body(params: &Map<String, Value>, messages: &[PromptMessage], stream: bool) -> Vec<u8> {
    let mut body = params.clone();
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("role".into(), Value::from(m.role.as_str()));
            o.insert("content".into(), Value::from(m.content.as_str()));
            if let Some(name) = &m.name {
                o.insert("name".into(), Value::from(name.as_str()));
            }
            Value::Object(o)
        })
        .collect();
    body.insert("messages".into(), Value::Array(msgs));
    body.insert("stream".into(), Value::Bool(stream));
    if stream && !body.contains_key("stream_options") {
        let mut so = Map::new();
        so.insert("include_usage".into(), Value::Bool(true));
        body.insert("stream_options".into(), Value::Object(so));
    }
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// A finished completion, streamed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: Option<String>,
    pub text: String,
    pub role: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The raw response, or the last chunk of a stream.
    pub detail: Value,
}

/// Parse a non-streaming response body.
pub fn parse_completion(body: &[u8]) -> Result<Completion, ChatError> {
    let detail: Value = serde_json::from_slice(body)
        .map_err(|e| ChatError::new(ErrorCode::BadResponse, format!("The server sent invalid JSON: {e}")))?;
    if let Some(err) = detail.get("error").filter(|e| !e.is_null()) {
        return Err(error_from_object(err));
    }
    let choice = detail
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| ChatError::new(ErrorCode::BadResponse, "The response has no `choices`"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| ChatError::new(ErrorCode::BadResponse, "The response's choice has no `message`"))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or("").to_owned();
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("assistant")
        .to_owned();
    let usage = detail.get("usage").and_then(|u| Usage::deserialize(u).ok());
    Ok(Completion {
        id: detail.get("id").and_then(Value::as_str).map(str::to_owned),
        text,
        role,
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned),
        usage,
        detail,
    })
}

/// An `{"message","type","param","code"}` error object from a body or stream event.
pub fn error_from_object(err: &Value) -> ChatError {
    let field = |name: &str| err.get(name).and_then(value_to_string);
    let server_code = field("code");
    let error_type = field("type");
    let message = field("message")
        .or_else(|| err.as_str().map(str::to_owned))
        .unwrap_or_else(|| err.to_string());
    let mut e = ChatError::new(
        code_for_stream_error(server_code.as_deref(), error_type.as_deref()),
        format!("The server reported an error: {message}"),
    );
    e.server_code = server_code;
    e.error_type = error_type;
    e.param = field("param");
    e
}

// Typed, borrowing views of a chunk: the per-delta hot path avoids building a `Value` tree.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
}

/// What one stream event meant.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamStep {
    /// A content delta to deliver (already appended to the accumulated text).
    Delta(String),
    /// Nothing to deliver (role chunk, finish chunk, usage chunk, keep-alive).
    Nothing,
    /// `[DONE]`: stop reading.
    Done,
}

/// Accumulates a streamed completion.
#[derive(Debug, Default)]
pub struct StreamState {
    pub id: Option<String>,
    pub text: String,
    pub role: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// Raw JSON of the last chunk, parsed into `detail` only once at the end.
    last_chunk: Option<String>,
    pub done: bool,
}

impl StreamState {
    /// Fold one SSE event in.
    pub fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, ChatError> {
        let data = ev.data.as_str();
        if data == "[DONE]" {
            self.done = true;
            return Ok(StreamStep::Done);
        }
        if ev.event.as_deref() == Some("error") {
            let parsed: Option<Value> = serde_json::from_str(data).ok();
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
        if let Some(err) = chunk.error.as_ref().filter(|e| !e.is_null()) {
            return Err(error_from_object(err));
        }
        if self.id.is_none() {
            self.id = chunk.id.map(Cow::into_owned);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let mut step = StreamStep::Nothing;
        for choice in chunk.choices.unwrap_or_default() {
            // `n` is never sent, so only the first choice exists; ignore any other defensively.
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(role) = delta.role {
                    self.role = Some(role.into_owned());
                }
                if let Some(content) = delta.content.filter(|c| !c.is_empty()) {
                    self.text.push_str(&content);
                    step = StreamStep::Delta(content.into_owned());
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason.into_owned());
            }
        }
        self.last_chunk = Some(ev.data.clone());
        Ok(step)
    }

    /// The stream ended (cleanly or not). Complete if `[DONE]` or a `finish_reason` was seen.
    pub fn finish(self) -> Result<Completion, ChatError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(ChatError::new(
                ErrorCode::StreamIncomplete,
                "The stream ended before the completion finished (no [DONE] and no finish_reason)",
            )
            .with_partial_text(&self.text));
        }
        let detail = self
            .last_chunk
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        Ok(Completion {
            id: self.id,
            text: self.text,
            role: self.role.unwrap_or_else(|| "assistant".into()),
            finish_reason: self.finish_reason,
            usage: self.usage,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }];
        let body: Value = serde_json::from_slice(&build_body(&p, &msgs, true)).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["name"], "ann");
        let body: Value = serde_json::from_slice(&build_body(&p, &msgs, false)).unwrap();
        assert!(body.get("stream_options").is_none());
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
        assert_eq!(c.detail["usage"]["prompt_tokens"], 5);
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

    #[test]
    fn malformed_chunks_are_bad_responses() {
        let mut s = StreamState::default();
        assert_eq!(
            s.on_event(&ev("{\"choices\": [")).unwrap_err().code,
            ErrorCode::BadResponse
        );
    }

    #[test]
    fn complete_responses_parse() {
        let body = br#"{"id":"c2","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.text, "hi");
        assert_eq!(c.usage.unwrap().prompt_tokens, 3);
        assert_eq!(parse_completion(b"{").unwrap_err().code, ErrorCode::BadResponse);
        assert_eq!(
            parse_completion(b"{\"choices\":[]}").unwrap_err().code,
            ErrorCode::BadResponse
        );
    }
}
