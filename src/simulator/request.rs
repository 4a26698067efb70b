//! Reading a chat request: its JSON body, reduced to what the simulator uses, and the answer
//! length asked for with `x-sim-response-tokens`. Anything invalid becomes a ready OpenAI-style
//! 400 body, before the request meets the rate limiter or a fault.

use bytes::Bytes;
use hyper::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::formats::{is_reasoning_model, ReasoningEffort, ResponseFormat};
use super::response::error_json;

/// Most choices a request may ask for with `n` (OpenAI allows 128; answers are built in memory).
pub(super) const MAX_CHOICES: u64 = 8;

/// Most alternatives `top_logprobs` may ask for, as at OpenAI.
const MAX_TOP_LOGPROBS: u64 = 20;

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
    /// `n`: how many choices, 1 to [`MAX_CHOICES`].
    pub(super) n: u32,
    /// With `logprobs: true`, the number of `top_logprobs` asked for (0 without it).
    pub(super) logprobs: Option<usize>,
    pub(super) response_format: ResponseFormat,
    /// For a reasoning model, its effort (`medium` unless the request names one); `None` for
    /// other models.
    pub(super) reasoning: Option<ReasoningEffort>,
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
    #[serde(default)]
    n: Option<Value>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    top_logprobs: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    reasoning_effort: Option<Value>,
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

/// The name of a JSON value's type, as OpenAI's messages spell it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An integer parameter from `min` to `max`, or its 400.
fn integer_in(value: &Value, param: &str, min: u64, max: u64) -> Result<u64, Bytes> {
    let Some(number) = value.as_i64().or_else(|| value.as_u64().map(|_| i64::MAX)) else {
        let message = format!(
            "Invalid type for '{param}': expected an integer, but got {} instead.",
            type_name(value)
        );
        return Err(bad_request(&message, Some(param)));
    };
    match u64::try_from(number) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) if n > max => Err(bad_request(
            &format!(
                "Invalid '{param}': integer above maximum value. Expected a value <= {max}, but got {value} instead."
            ),
            Some(param),
        )),
        _ => Err(bad_request(
            &format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {value} instead."
            ),
            Some(param),
        )),
    }
}

/// `n`, `logprobs` and `top_logprobs`: the number of choices and the alternatives asked for.
fn choices_and_logprobs(options: &ChatOptions) -> Result<(u32, Option<usize>), Bytes> {
    let n = match &options.n {
        None => 1,
        Some(n) => integer_in(n, "n", 1, MAX_CHOICES)?,
    };
    let logprobs = match &options.logprobs {
        None => false,
        Some(Value::Bool(on)) => *on,
        Some(other) => {
            let message = format!(
                "Invalid type for 'logprobs': expected a boolean, but got {} instead.",
                type_name(other)
            );
            return Err(bad_request(&message, Some("logprobs")));
        }
    };
    let top = match &options.top_logprobs {
        None => 0,
        Some(top) => {
            let top = integer_in(top, "top_logprobs", 0, MAX_TOP_LOGPROBS)?;
            if !logprobs {
                return Err(bad_request(
                    "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
                    Some("top_logprobs"),
                ));
            }
            top
        }
    };
    // Both are bounded above, so the conversions cannot fail.
    let n = u32::try_from(n).unwrap_or(1);
    let top = usize::try_from(top).unwrap_or(0);
    Ok((n, logprobs.then_some(top)))
}

/// `response_format`: `text`, `json_object` or `json_schema` (whose `json_schema` needs a `name`;
/// a missing `schema` is any object).
fn response_format(value: Option<&Value>) -> Result<ResponseFormat, Bytes> {
    let Some(value) = value else {
        return Ok(ResponseFormat::Text);
    };
    let kind = value.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = value.get("json_schema").filter(|s| s.is_object()).ok_or_else(|| {
                bad_request(
                    "Missing required parameter: 'response_format.json_schema'.",
                    Some("response_format"),
                )
            })?;
            if !spec.get("name").is_some_and(Value::is_string) {
                return Err(bad_request(
                    "Missing required parameter: 'response_format.json_schema.name'.",
                    Some("response_format"),
                ));
            }
            let schema = spec.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            Ok(ResponseFormat::JsonSchema(schema))
        }
        _ => {
            let shown = value.get("type").map_or_else(|| "null".to_string(), Value::to_string);
            Err(bad_request(
                &format!("Invalid value: {shown}. Supported values are: 'text', 'json_object', and 'json_schema'."),
                Some("response_format"),
            ))
        }
    }
}

/// `reasoning_effort`, which only reasoning models take.
fn reasoning(model: &str, effort: Option<&Value>) -> Result<Option<ReasoningEffort>, Bytes> {
    if !is_reasoning_model(model) {
        return match effort {
            None => Ok(None),
            Some(_) => Err(error_json(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "invalid_request_error",
                Some("reasoning_effort"),
                Some("unsupported_parameter"),
            )),
        };
    }
    let Some(effort) = effort else {
        return Ok(Some(ReasoningEffort::Medium));
    };
    effort
        .as_str()
        .and_then(ReasoningEffort::parse)
        .map(Some)
        .ok_or_else(|| {
            let supported = ReasoningEffort::NAMES
                .iter()
                .map(|name| format!("'{name}'"))
                .collect::<Vec<_>>()
                .join(", ");
            error_json(
                &format!("Invalid value: {effort}. Supported values are: {supported}."),
                "invalid_request_error",
                Some("reasoning_effort"),
                Some("invalid_value"),
            )
        })
}

/// A chat request's body, validated; `default_model` answers a request that names none.
pub(super) fn parse_chat_request(body: &[u8], default_model: &str) -> Result<ChatRequest, Bytes> {
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
    let (n, logprobs) = choices_and_logprobs(&options)?;
    let response_format = response_format(options.response_format.as_ref())?;
    let model = options.model.filter(|model| !model.is_empty());
    let reasoning = reasoning(
        model.as_deref().unwrap_or(default_model),
        options.reasoning_effort.as_ref(),
    )?;
    Ok(ChatRequest {
        model,
        messages,
        stream: options.stream.unwrap_or(false),
        include_usage: options.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        max_tokens: options.max_completion_tokens.or(options.max_tokens),
        tools: options.tools,
        tool_choice: options.tool_choice,
        n,
        logprobs,
        response_format,
        reasoning,
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
