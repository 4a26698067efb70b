//! The one error type every core operation returns, and its stable string codes.
//!
//! JavaScript callers branch on `code` (`ERR_CHATGPT_*`, `ABORT_ERR`), never on the message, so
//! the codes are part of the public contract: add new ones, never rename. The binding turns a
//! [`ChatError`] into a JS `ChatGPTError` carrying every field below.
//!
//! Nothing here may ever hold the API key: messages are built from status lines, server error
//! bodies and our own text, and the transport never formats a request (which carries the key).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::surrogates::replace_lone_surrogates;

/// Stable error codes. `as_str` is what JavaScript sees in `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A non-2xx status not covered by a more specific code.
    Http,
    /// 401 or 403: the key is missing, wrong, revoked or lacks permission.
    Auth,
    /// 429 `rate_limit_exceeded` (or any 429 that is not about quota).
    RateLimited,
    /// 429 `insufficient_quota`: billing, not load; retrying cannot help.
    InsufficientQuota,
    /// `timeoutMs` elapsed, or a stream was idle longer than `idleTimeoutMs`.
    Timeout,
    /// The connection failed (refused, reset, DNS, TLS) before a complete response.
    Network,
    /// The server answered 2xx with something that is not a chat completion.
    BadResponse,
    /// A stream ended with neither `[DONE]` nor a `finish_reason`.
    StreamIncomplete,
    /// The server sent an error event inside a 200 stream.
    StreamError,
    /// The response grew past the configured maximum size.
    ResponseTooLarge,
    /// An argument or option failed validation.
    InvalidArg,
    /// The caller aborted through its `AbortSignal`.
    Aborted,
    /// The system message plus the new user message alone exceed the prompt budget
    /// (`maxModelTokens - maxResponseTokens`): sending would truncate or fail upstream.
    ContextTooLong,
    /// A conversation store (`getMessageById` / `upsertMessage` / `messageStore`) failed.
    Store,
    /// A stream failed after deltas had been delivered, so it could not be retried.
    StreamInterrupted,
    /// `maxQueue` calls were already waiting for a concurrency slot.
    QueueFull,
    /// The request's token estimate exceeds `rateLimit.tokensPerMinute`: it could never be sent.
    RequestTooLarge,
    /// The circuit breaker is open: the upstream failed too often recently.
    CircuitOpen,
    /// Every API key is disabled, or cooling down past the call's deadline.
    NoKeyAvailable,
    /// A bug in this package ended the call (a Rust panic, caught at the task boundary), or the
    /// runtime dropped the call while shutting down. The process is unaffected.
    Internal,
    /// `responseFormat` asked for JSON and the reply is not JSON (the error carries `text`).
    OutputParse,
    /// `responseFormat` asked for JSON and the reply was cut by the token limit
    /// (`finish_reason: 'length'`; the error carries `text`).
    OutputLength,
    /// `responseFormat` asked for JSON and the model refused (the error carries `refusal`).
    Refusal,
}

impl ErrorCode {
    /// The string JavaScript sees as `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Http => "ERR_CHATGPT_HTTP",
            ErrorCode::Auth => "ERR_CHATGPT_AUTH",
            ErrorCode::RateLimited => "ERR_CHATGPT_RATE_LIMITED",
            ErrorCode::InsufficientQuota => "ERR_CHATGPT_INSUFFICIENT_QUOTA",
            ErrorCode::Timeout => "ERR_CHATGPT_TIMEOUT",
            ErrorCode::Network => "ERR_CHATGPT_NETWORK",
            ErrorCode::BadResponse => "ERR_CHATGPT_BAD_RESPONSE",
            ErrorCode::StreamIncomplete => "ERR_CHATGPT_STREAM_INCOMPLETE",
            ErrorCode::StreamError => "ERR_CHATGPT_STREAM_ERROR",
            ErrorCode::ResponseTooLarge => "ERR_CHATGPT_RESPONSE_TOO_LARGE",
            ErrorCode::InvalidArg => "ERR_CHATGPT_INVALID_ARG",
            ErrorCode::Aborted => "ABORT_ERR",
            ErrorCode::ContextTooLong => "ERR_CHATGPT_CONTEXT_TOO_LONG",
            ErrorCode::Store => "ERR_CHATGPT_STORE",
            ErrorCode::StreamInterrupted => "ERR_CHATGPT_STREAM_INTERRUPTED",
            ErrorCode::QueueFull => "ERR_CHATGPT_QUEUE_FULL",
            ErrorCode::RequestTooLarge => "ERR_CHATGPT_REQUEST_TOO_LARGE",
            ErrorCode::CircuitOpen => "ERR_CHATGPT_CIRCUIT_OPEN",
            ErrorCode::NoKeyAvailable => "ERR_CHATGPT_NO_KEY_AVAILABLE",
            ErrorCode::Internal => "ERR_CHATGPT_INTERNAL",
            ErrorCode::OutputParse => "ERR_CHATGPT_OUTPUT_PARSE",
            ErrorCode::OutputLength => "ERR_CHATGPT_OUTPUT_LENGTH",
            ErrorCode::Refusal => "ERR_CHATGPT_REFUSAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call. Boxed so `Result<T, ChatError>` stays one pointer wide on the hot paths that
/// return it; fields are reached through `Deref` (`err.code`, `err.status`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatError(Box<ErrorInfo>);

/// Everything known about a failed call. Optional fields are filled where the failure had them.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    pub message: String,
    /// HTTP status of the failed response.
    pub status: Option<u16>,
    /// Canonical reason phrase for `status` ("Too Many Requests").
    pub status_text: Option<String>,
    /// The server's `error.type`.
    pub error_type: Option<String>,
    /// The server's `error.param`.
    pub param: Option<String>,
    /// The server's `error.code` (a string, or a number rendered as one: llama.cpp sends numbers).
    pub server_code: Option<String>,
    /// `x-request-id` of the failed response.
    pub request_id: Option<String>,
    /// For stream failures: the text received before the failure.
    pub partial_text: Option<String>,
    /// `retry-after-ms` / `retry-after` of the response, parsed (used by the retry layer).
    pub retry_after: Option<Duration>,
    /// For `ContextTooLong`: the prompt's tokens and the budget it had to fit.
    pub prompt_tokens: Option<u32>,
    pub max_prompt_tokens: Option<u32>,
    /// The server's `x-should-retry` header, which overrides the retry rules.
    pub should_retry: Option<bool>,
    /// HTTP attempts made for the call (set on the error the call finally rejects with).
    pub attempts: Option<u32>,
    /// What a caller's own code (a conversation store) threw or rejected with: the error's
    /// `cause` in JavaScript.
    pub thrown: Option<Thrown>,
    /// The failure behind this one: for `StreamInterrupted`, what ended the stream.
    pub cause: Option<ChatError>,
    /// For `OutputParse` and `OutputLength`: the reply's whole text.
    pub text: Option<String>,
    /// For `Refusal`: the model's refusal message.
    pub refusal: Option<String>,
    /// The request never left: no connection to the server could be made. A rate reservation
    /// shared with other processes is given back for it.
    pub not_sent: bool,
    /// With `upstreams`: the name of the upstream this failure came from.
    pub upstream: Option<String>,
}

/// A value a caller's code failed with, carried as the error's `cause`. Opaque here: the binding
/// puts the JavaScript value in it and takes it out again when it builds the `ChatGPTError`.
#[derive(Clone)]
pub struct Thrown(pub Arc<dyn Any + Send + Sync>);

impl fmt::Debug for Thrown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Thrown(..)")
    }
}

impl PartialEq for Thrown {
    /// The same value, not an equal one: what it holds is opaque.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl ChatError {
    /// An error with a code and message and nothing else known.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ChatError::from(ErrorInfo {
            code,
            message: message.into(),
            status: None,
            status_text: None,
            error_type: None,
            param: None,
            server_code: None,
            request_id: None,
            partial_text: None,
            retry_after: None,
            prompt_tokens: None,
            max_prompt_tokens: None,
            should_retry: None,
            attempts: None,
            thrown: None,
            cause: None,
            text: None,
            refusal: None,
            not_sent: false,
            upstream: None,
        })
    }

    pub fn invalid_arg(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArg, message)
    }

    pub fn aborted() -> Self {
        Self::new(ErrorCode::Aborted, "This operation was aborted")
    }

    /// The error for a call that panicked, from the panic's payload. Only a literal message
    /// (`panic!("text")`, a `&'static str`) is quoted: a formatted one may hold runtime data,
    /// which could include a key or a prompt.
    pub fn internal(payload: &(dyn Any + Send)) -> Self {
        let message = match payload.downcast_ref::<&'static str>() {
            Some(text) => format!("chatgpt-native failed internally (a bug; please report it): {text}"),
            None => "chatgpt-native failed internally (a bug; please report it)".to_owned(),
        };
        Self::new(ErrorCode::Internal, message)
    }

    /// Attach the text streamed so far (only when there is some: an empty partial says nothing).
    pub fn with_partial_text(mut self, text: &str) -> Self {
        if !text.is_empty() && self.partial_text.is_none() {
            self.partial_text = Some(text.to_owned());
        }
        self
    }

    /// This failure as the end of a stream that had delivered `deltas` content deltas:
    /// `StreamInterrupted`, naming the failure, which becomes its `cause` (its own code and
    /// message). The server's fields (`type`, `statusCode`...) and `partialText` stay on the
    /// returned error too.
    pub fn interrupted_after(self, deltas: u32) -> ChatError {
        let mut outer = self.clone();
        let mut cause = self;
        cause.partial_text = None;
        cause.attempts = None;
        outer.code = ErrorCode::StreamInterrupted;
        outer.message = format!(
            "The stream was interrupted after {deltas} deltas ({}): {}",
            cause.code, cause.message
        );
        outer.cause = Some(cause);
        outer
    }

    /// Attach the HTTP attempts the call made, unless already known; nothing when it made none.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        if self.attempts.is_none() && attempts > 0 {
            self.attempts = Some(attempts);
        }
        self
    }

    /// Attach how long the caller should wait before trying again.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Attach what the caller's code threw or rejected with (see [`ErrorInfo::thrown`]).
    pub fn with_thrown(mut self, thrown: Thrown) -> Self {
        self.thrown = Some(thrown);
        self
    }

    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        if self.request_id.is_none() {
            self.request_id = request_id.map(str::to_owned);
        }
        self
    }
}

impl From<ErrorInfo> for ChatError {
    fn from(info: ErrorInfo) -> Self {
        ChatError(Box::new(info))
    }
}

impl std::ops::Deref for ChatError {
    type Target = ErrorInfo;
    fn deref(&self) -> &ErrorInfo {
        &self.0
    }
}

impl std::ops::DerefMut for ChatError {
    fn deref_mut(&mut self) -> &mut ErrorInfo {
        &mut self.0
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ChatError {}

/// Map an HTTP error response to a code. `server_code` / `error_type` come from the error body;
/// 429 is split on them because quota exhaustion must not be retried like load.
pub fn code_for_status(status: u16, server_code: Option<&str>, error_type: Option<&str>) -> ErrorCode {
    match status {
        401 | 403 => ErrorCode::Auth,
        429 if is_quota(server_code, error_type) => ErrorCode::InsufficientQuota,
        429 => ErrorCode::RateLimited,
        _ => ErrorCode::Http,
    }
}

/// Classify an error event that arrived inside a 200 stream, where there is no status line.
pub fn code_for_stream_error(server_code: Option<&str>, error_type: Option<&str>) -> ErrorCode {
    if is_quota(server_code, error_type) {
        ErrorCode::InsufficientQuota
    } else if server_code == Some("rate_limit_exceeded") || error_type == Some("rate_limit_exceeded") {
        ErrorCode::RateLimited
    } else {
        ErrorCode::StreamError
    }
}

fn is_quota(server_code: Option<&str>, error_type: Option<&str>) -> bool {
    server_code == Some("insufficient_quota") || error_type == Some("insufficient_quota")
}

/// The fields of an OpenAI error object (`{"message", "type", "param", "code"}`), from a response
/// body or a stream event. Numeric codes (llama.cpp) read as strings.
#[derive(Debug, Default, PartialEq)]
pub struct ServerError {
    /// `message`, or the object itself when it is a bare string (`{"error": "text"}`).
    pub message: Option<String>,
    pub code: Option<String>,
    pub error_type: Option<String>,
    pub param: Option<String>,
}

impl ServerError {
    /// Read an error object; anything not shaped like one reads as all fields absent.
    pub fn read(err: &Value) -> Self {
        let field = |name: &str| err.get(name).and_then(value_to_string);
        ServerError {
            message: field("message").or_else(|| err.as_str().map(str::to_owned)),
            code: field("code"),
            error_type: field("type"),
            param: field("param"),
        }
    }
}

/// Strings stay strings, numbers (llama.cpp's numeric codes) become strings, null is absent.
pub fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turn a non-2xx status and its (optional) OpenAI error body into an error.
pub fn status_to_error(
    status: u16,
    reason: Option<&str>,
    body: &[u8],
    request_id: Option<String>,
    retry_after: Option<Duration>,
) -> ChatError {
    // Lone surrogate escapes read as U+FFFD rather than making the body unreadable.
    let parsed: Option<Value> = serde_json::from_slice(&replace_lone_surrogates(body)).ok();
    let server = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .map(ServerError::read)
        .unwrap_or_default();
    // Some servers send plain text.
    let server_message = server.message.or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        (!text.is_empty() && parsed.is_none()).then(|| text.chars().take(500).collect())
    });
    let code = code_for_status(status, server.code.as_deref(), server.error_type.as_deref());
    let reason_text = reason.unwrap_or("");
    let message = match server_message {
        Some(m) => format!("OpenAI error {status} {reason_text}: {m}"),
        None => format!("OpenAI error {status} {reason_text}"),
    };
    let mut e = ChatError::new(code, message.trim_end());
    e.status = Some(status);
    e.status_text = reason.map(str::to_owned);
    e.error_type = server.error_type;
    e.param = server.param;
    e.server_code = server.code;
    e.request_id = request_id;
    e.retry_after = retry_after;
    e
}

/// An error object that arrived in a 200 response or inside a stream, where there is no status.
pub fn error_from_object(err: &Value) -> ChatError {
    let server = ServerError::read(err);
    let message = server.message.unwrap_or_else(|| err.to_string());
    let mut e = ChatError::new(
        code_for_stream_error(server.code.as_deref(), server.error_type.as_deref()),
        format!("The server reported an error: {message}"),
    );
    e.server_code = server.code;
    e.error_type = server.error_type;
    e.param = server.param;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_stream_keeps_its_failure_as_cause() {
        let mut e = ChatError::new(ErrorCode::Timeout, "idle").with_partial_text("Hel");
        e.error_type = Some("server_error".into());
        let outer = e.interrupted_after(2);
        assert_eq!(outer.code, ErrorCode::StreamInterrupted);
        assert_eq!(outer.partial_text.as_deref(), Some("Hel"));
        assert_eq!(outer.error_type.as_deref(), Some("server_error"));
        assert!(outer.message.contains("ERR_CHATGPT_TIMEOUT") && outer.message.contains("idle"));
        let cause = outer.cause.as_ref().unwrap();
        assert_eq!((cause.code, cause.message.as_str()), (ErrorCode::Timeout, "idle"));
        assert_eq!(cause.partial_text, None);
    }

    #[test]
    fn quota_429_is_not_a_rate_limit() {
        assert_eq!(
            code_for_status(429, Some("insufficient_quota"), None),
            ErrorCode::InsufficientQuota
        );
        assert_eq!(
            code_for_status(429, None, Some("insufficient_quota")),
            ErrorCode::InsufficientQuota
        );
        assert_eq!(
            code_for_status(429, Some("rate_limit_exceeded"), None),
            ErrorCode::RateLimited
        );
        assert_eq!(code_for_status(429, None, None), ErrorCode::RateLimited);
    }

    #[test]
    fn auth_statuses_map_to_auth() {
        assert_eq!(code_for_status(401, None, None), ErrorCode::Auth);
        assert_eq!(code_for_status(403, None, None), ErrorCode::Auth);
        assert_eq!(code_for_status(500, None, None), ErrorCode::Http);
        assert_eq!(code_for_status(400, None, None), ErrorCode::Http);
    }

    #[test]
    fn stream_error_events_are_classified_by_their_code() {
        assert_eq!(
            code_for_stream_error(Some("rate_limit_exceeded"), None),
            ErrorCode::RateLimited
        );
        assert_eq!(
            code_for_stream_error(None, Some("server_error")),
            ErrorCode::StreamError
        );
    }

    #[test]
    fn a_panic_becomes_an_internal_error_quoting_only_literal_messages() {
        let literal = std::panic::catch_unwind(|| std::panic::panic_any("literal text")).unwrap_err();
        let e = ChatError::internal(&*literal);
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(e.code.as_str(), "ERR_CHATGPT_INTERNAL");
        assert!(e.message.contains("literal text"));
        let formatted = std::panic::catch_unwind(|| std::panic::panic_any(format!("sk-{}", "secret"))).unwrap_err();
        assert!(!ChatError::internal(&*formatted).message.contains("secret"));
    }

    #[test]
    fn partial_text_is_kept_only_when_non_empty() {
        let e = ChatError::new(ErrorCode::Network, "x").with_partial_text("");
        assert_eq!(e.partial_text, None);
        let e = e.with_partial_text("abc");
        assert_eq!(e.partial_text.as_deref(), Some("abc"));
    }

    #[test]
    fn openai_error_body_fills_every_field() {
        let body = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = status_to_error(429, Some("Too Many Requests"), body, Some("req_1".into()), None);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.status, Some(429));
        assert_eq!(e.status_text.as_deref(), Some("Too Many Requests"));
        assert_eq!(e.error_type.as_deref(), Some("requests"));
        assert_eq!(e.server_code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.param, None);
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
        assert!(e.message.contains("Rate limit reached"));
    }

    #[test]
    fn numeric_server_codes_become_strings() {
        let body = br#"{"error":{"message":"bad","type":"invalid_request_error","code":400}}"#;
        let e = status_to_error(400, Some("Bad Request"), body, None, None);
        assert_eq!(e.server_code.as_deref(), Some("400"));
        assert_eq!(e.code, ErrorCode::Http);
    }

    #[test]
    fn plain_text_bodies_are_kept_in_the_message() {
        let e = status_to_error(502, Some("Bad Gateway"), b"upstream died", None, None);
        assert!(e.message.contains("upstream died"));
    }

    #[test]
    fn an_error_object_reads_alike_in_a_body_and_in_a_stream() {
        let object = serde_json::json!({"message": "slow down", "type": "requests", "param": "model", "code": 429});
        let body = serde_json::to_vec(&serde_json::json!({ "error": object })).unwrap();
        let from_body = status_to_error(429, Some("Too Many Requests"), &body, None, None);
        let from_stream = error_from_object(&object);
        assert_eq!(from_body.server_code.as_deref(), Some("429"));
        for e in [&from_body, &from_stream] {
            assert_eq!(e.server_code, from_body.server_code);
            assert_eq!(e.error_type.as_deref(), Some("requests"));
            assert_eq!(e.param.as_deref(), Some("model"));
            assert!(e.message.contains("slow down"));
        }
        // A bare string is the message; anything else is shown whole.
        assert!(error_from_object(&serde_json::json!("boom")).message.ends_with("boom"));
        assert_eq!(ServerError::read(&serde_json::json!(42)), ServerError::default());
    }
}
