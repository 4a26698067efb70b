//! Reading a chat request: its JSON body, reduced to what the simulator uses, and the answer
//! length asked for with `x-sim-response-tokens`. Anything invalid becomes a ready OpenAI-style
//! 400 body, before the request meets the rate limiter or a fault.

use bytes::Bytes;
use hyper::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::response::error_json;

/// Largest answer length accepted from `x-sim-response-tokens`; the
/// non-streaming answer is built in memory, so the value must be bounded.
const MAX_RESPONSE_TOKENS: u64 = 1_000_000;

const HEADER_RESPONSE_TOKENS: &str = "x-sim-response-tokens";

/// A validated chat request, reduced to what the simulator uses.
pub(super) struct ChatRequest {
    pub(super) model: Option<String>,
    pub(super) messages: Vec<RequestMessage>,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) max_tokens: Option<u64>,
    /// `tools` and `tool_choice` as sent (see `tools`).
    pub(super) tools: Option<Value>,
    pub(super) tool_choice: Option<Value>,
}

/// One entry of the request's `messages`, with only what the answer's seed and the prompt's
/// token count need.
#[derive(Deserialize)]
pub(super) struct RequestMessage {
    pub(super) role: String,
    #[serde(default)]
    pub(super) content: Option<Value>,
    #[serde(default)]
    pub(super) name: Option<String>,
}

/// The optional top-level fields; unknown fields are ignored like OpenAI's
/// compatible servers do.
#[derive(Deserialize)]
struct ChatOptions {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A 400 body of type `invalid_request_error`.
pub(super) fn bad_request(message: &str, param: Option<&str>) -> Bytes {
    error_json(message, "invalid_request_error", param, None)
}

pub(super) fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, Bytes> {
    const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
        means you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
        payload, but what was sent was not valid JSON.)";
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_request(NOT_JSON, None))?;
    let Value::Object(mut object) = value else {
        return Err(bad_request(NOT_JSON, None));
    };
    let messages = object
        .remove("messages")
        .ok_or_else(|| bad_request("Missing required parameter: 'messages'.", Some("messages")))?;
    let messages: Vec<RequestMessage> = serde_json::from_value(messages)
        .map_err(|e| bad_request(&format!("Invalid 'messages': {e}."), Some("messages")))?;
    // Text and image parts are checked as OpenAI checks them (a string `text`, an image URL for
    // each image); parts of other types are accepted and left out of the answer and the count.
    for (i, message) in messages.iter().enumerate() {
        if let Some(Value::Array(parts)) = &message.content {
            let path = format!("messages[{i}].content");
            crate::core::content::known_parts(parts, &path)
                .map_err(|e| bad_request(&format!("Invalid '{path}': {}", e.message), Some(&path)))?;
        }
    }
    if messages.is_empty() {
        return Err(bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            Some("messages"),
        ));
    }
    let options: ChatOptions = serde_json::from_value(Value::Object(object))
        .map_err(|e| bad_request(&format!("Invalid request body: {e}."), None))?;
    Ok(ChatRequest {
        model: options.model.filter(|model| !model.is_empty()),
        messages,
        stream: options.stream.unwrap_or(false),
        include_usage: options.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        max_tokens: options.max_completion_tokens.or(options.max_tokens),
        tools: options.tools,
        tool_choice: options.tool_choice,
    })
}

/// The answer length `x-sim-response-tokens` asks for, or `default_tokens` without the header;
/// `Err` is a ready 400 body.
pub(super) fn response_tokens_from_headers(headers: &HeaderMap, default_tokens: u32) -> Result<u64, Bytes> {
    match headers.get(HEADER_RESPONSE_TOKENS) {
        None => Ok(u64::from(default_tokens)),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|n| *n <= MAX_RESPONSE_TOKENS)
            .ok_or_else(|| {
                bad_request(
                    &format!(
                        "Invalid x-sim-response-tokens header: expected an integer from 0 to \
                         {MAX_RESPONSE_TOKENS}."
                    ),
                    None,
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[tokio::test]
    async fn invalid_requests_get_400_with_openai_error_bodies() {
        let sim = start_default().await;
        let url = format!("{}/chat/completions", sim.base_url());
        let response = client().post(&url).body("{not json").send().await.expect("sent");
        assert_eq!(response.status(), 400);
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["param"].is_null());
        assert!(body["error"]["code"].is_null());

        for bad in [
            json!({"model": "m"}),
            json!({"messages": []}),
            json!({"messages": "hi"}),
        ] {
            let body = json_body(post_ok(&sim, &bad, &[]).await).await;
            assert_eq!(body["error"]["param"], "messages", "{bad}");
        }
        let response = post_fault(&sim, &hi_request(), "{oops").await;
        assert_eq!(response.status(), 400);
        let response = post_ok(&sim, &hi_request(), &[("x-sim-response-tokens", "many")]).await;
        assert_eq!(response.status(), 400);
        assert_eq!(sim.stats().faults_injected, 0);
    }
}
