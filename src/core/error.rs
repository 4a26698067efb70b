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
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
