//! `ChatGPTError`: the one error class JavaScript sees, and the conversion from core errors.
//!
//! A real `class ChatGPTError extends Error` (stack traces, `instanceof Error`) cannot be declared
//! from Rust, so the module-init hook evaluates it once per JS environment and installs it over
//! the `#[napi]` declaration below. The declaration exists for the generated typings and the
//! generated loader (which only re-exports names it has typings for, including for ESM named
//! imports); `index.d.ts` merges in `extends Error` through the dts header in package.json.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::init::BindingData;
use crate::core::error::{ChatError, ErrorCode};
use crate::core::redact::Redactor;

/// Evaluated once per environment. Only defined option fields become own properties, so
/// `'statusCode' in err` tells whether the failure had a status.
pub(crate) const ERROR_CLASS_SOURCE: &str = r#"(() => {
  const FIELDS = ['code', 'statusCode', 'statusText', 'type', 'param', 'errorCode', 'requestId', 'partialText', 'attempts', 'promptTokens', 'maxPromptTokens'];
  class ChatGPTError extends Error {
    constructor(message, options) {
      super(message, options && options.cause !== undefined ? { cause: options.cause } : undefined);
      this.code = 'ERR_CHATGPT_HTTP';
      if (options) {
        for (const key of FIELDS) {
          if (options[key] !== undefined && options[key] !== null) this[key] = options[key];
        }
      }
      if (this.code === 'ABORT_ERR') this.name = 'AbortError';
    }
  }
  Object.defineProperty(ChatGPTError.prototype, 'name', { value: 'ChatGPTError', writable: true, configurable: true });
  return ChatGPTError;
})()"#;

/// Every error this package throws or rejects with. Branch on `code`, never on `message`.
///
/// `instanceof ChatGPTError` and `instanceof Error` both hold. Aborts have `name === 'AbortError'`
/// and `code === 'ABORT_ERR'`, like `fetch`. Fields the failure did not have are absent.
#[napi(js_name = "ChatGPTError")]
pub struct ChatGPTError {
    /// Stable code: `ERR_CHATGPT_HTTP`, `ERR_CHATGPT_AUTH`, `ERR_CHATGPT_RATE_LIMITED`,
    /// `ERR_CHATGPT_INSUFFICIENT_QUOTA`, `ERR_CHATGPT_TIMEOUT`, `ERR_CHATGPT_NETWORK`,
    /// `ERR_CHATGPT_BAD_RESPONSE`, `ERR_CHATGPT_STREAM_INCOMPLETE`, `ERR_CHATGPT_STREAM_ERROR`,
    /// `ERR_CHATGPT_RESPONSE_TOO_LARGE`, `ERR_CHATGPT_CONTEXT_TOO_LONG`, `ERR_CHATGPT_STORE`,
    /// `ERR_CHATGPT_STREAM_INTERRUPTED`, `ERR_CHATGPT_QUEUE_FULL`, `ERR_CHATGPT_REQUEST_TOO_LARGE`,
    /// `ERR_CHATGPT_CIRCUIT_OPEN`, `ERR_CHATGPT_NO_KEY_AVAILABLE`, `ERR_CHATGPT_INVALID_ARG`,
    /// `ERR_CHATGPT_INTERNAL` (a bug in this package ended the call; the process is unaffected) or
    /// `ABORT_ERR`.
    pub code: String,
    /// HTTP status of the failed response.
    pub status_code: Option<u32>,
    /// Reason phrase of `statusCode`, e.g. "Too Many Requests".
    pub status_text: Option<String>,
    /// The server's `error.type`, e.g. "invalid_request_error".
    #[napi(js_name = "type")]
    pub error_type: Option<String>,
    /// The server's `error.param`.
    pub param: Option<String>,
    /// The server's own `error.code`, e.g. "rate_limit_exceeded" or "context_length_exceeded".
    pub error_code: Option<String>,
    /// `x-request-id` of the failed response: quote it to the provider's support.
    pub request_id: Option<String>,
    /// Text streamed before a stream failed, timed out or was aborted.
    pub partial_text: Option<String>,
    /// How many HTTP attempts were made.
    pub attempts: Option<u32>,
    /// `ERR_CHATGPT_CONTEXT_TOO_LONG`: tokens the system and user messages need.
    pub prompt_tokens: Option<u32>,
    /// `ERR_CHATGPT_CONTEXT_TOO_LONG`: the prompt budget, `maxModelTokens - maxResponseTokens`.
    pub max_prompt_tokens: Option<u32>,
}

#[napi]
impl ChatGPTError {
    /// Build one yourself, e.g. to fake failures in your tests:
    /// `new ChatGPTError('boom', { code: 'ERR_CHATGPT_HTTP', statusCode: 500 })`.
    #[napi(constructor, ts_args_type = "message: string, options?: ChatGPTErrorOptions")]
    pub fn new(message: String, options: Option<ChatGPTErrorOptions>) -> Self {
        // Never runs: the module-init hook replaces this class with the JS one above.
        let _ = message;
        let o = options.unwrap_or_default();
        ChatGPTError {
            code: o.code.unwrap_or_else(|| ErrorCode::Http.as_str().to_owned()),
            status_code: o.status_code,
            status_text: o.status_text,
            error_type: o.error_type,
            param: o.param,
            error_code: o.error_code,
            request_id: o.request_id,
            partial_text: o.partial_text,
            attempts: o.attempts,
            prompt_tokens: o.prompt_tokens,
            max_prompt_tokens: o.max_prompt_tokens,
        }
    }
}

/// Fields accepted by the `ChatGPTError` constructor.
#[napi(object, js_name = "ChatGPTErrorOptions")]
#[derive(Default)]
pub struct ChatGPTErrorOptions {
    /// @default 'ERR_CHATGPT_HTTP'
    pub code: Option<String>,
    pub status_code: Option<u32>,
    pub status_text: Option<String>,
    #[napi(js_name = "type")]
    pub error_type: Option<String>,
    pub param: Option<String>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub partial_text: Option<String>,
    pub attempts: Option<u32>,
    pub prompt_tokens: Option<u32>,
    pub max_prompt_tokens: Option<u32>,
    /// The underlying error, kept as the standard `cause`.
    #[napi(ts_type = "unknown")]
    pub cause: Option<serde_json::Value>,
}

/// Build a `ChatGPTError` object for `e`. Whatever its origin, it leaves without authorization
/// tokens or URL credentials (`core/redact.rs`; a client's errors were already scrubbed of its
/// keys).
pub fn js_error<'env>(env: &'env Env, e: &ChatError) -> Result<Unknown<'env>> {
    let mut scrubbed = e.clone();
    Redactor::default().scrub_error(&mut scrubbed);
    let e = &scrubbed;
    let class = BindingData::get(env)?.error_class.borrow_back(env)?;
    let mut options = Object::new(env)?;
    options.set("code", e.code.as_str())?;
    if let Some(s) = e.status {
        options.set("statusCode", s as u32)?;
    }
    set_opt(&mut options, "statusText", &e.status_text)?;
    set_opt(&mut options, "type", &e.error_type)?;
    set_opt(&mut options, "param", &e.param)?;
    set_opt(&mut options, "errorCode", &e.server_code)?;
    set_opt(&mut options, "requestId", &e.request_id)?;
    set_opt(&mut options, "partialText", &e.partial_text)?;
    if let Some(n) = e.attempts {
        options.set("attempts", n)?;
    }
    if let Some(n) = e.prompt_tokens {
        options.set("promptTokens", n)?;
    }
    if let Some(n) = e.max_prompt_tokens {
        options.set("maxPromptTokens", n)?;
    }
    // SAFETY of the lifetime cast: the object is used immediately within this call scope.
    let options: Object<'static> = Object::from_raw(env.raw(), options.raw());
    class.new_instance(FnArgs::from((e.message.clone(), options)))
}

fn set_opt(o: &mut Object, key: &str, v: &Option<String>) -> Result<()> {
    if let Some(v) = v {
        o.set(key, v.as_str())?;
    }
    Ok(())
}

/// A `napi::Error` that, thrown or used as a rejection, is exactly the `ChatGPTError` for `e`.
pub fn to_napi_error(env: &Env, e: &ChatError) -> Error {
    match js_error(env, e) {
        Ok(obj) => Error::from_unknown_without_coercion(obj),
        // Could not build the object (environment tearing down): fall back to a plain error
        // that still carries the code in its text.
        Err(_) => Error::new(Status::GenericFailure, format!("{}: {}", e.code, e.message)),
    }
}

/// Shorthand for validation failures raised while converting arguments.
pub fn invalid_arg(env: &Env, message: impl Into<String>) -> Error {
    to_napi_error(env, &ChatError::invalid_arg(message))
}

/// A `TypeError` (with `code: 'ERR_CHATGPT_INVALID_ARG'`), for misuse JavaScript itself reports
/// as one, such as calling a class without `new`.
pub fn type_error(env: &Env, message: &str) -> Error {
    let raw = env.raw();
    let made = (|| -> Result<Unknown<'_>> {
        let code = env.create_string(ErrorCode::InvalidArg.as_str())?;
        let text = env.create_string(message)?;
        let mut out = std::ptr::null_mut();
        napi::check_status!(unsafe { napi::sys::napi_create_type_error(raw, code.raw(), text.raw(), &mut out) })?;
        Ok(unsafe { Unknown::from_raw_unchecked(raw, out) })
    })();
    match made {
        Ok(value) => Error::from_unknown_without_coercion(value),
        Err(_) => Error::new(Status::InvalidArg, message.to_owned()),
    }
}

/// A Promise rejected with `err`, or with the JavaScript exception pending because of it (a
/// callback or getter that threw), which is taken off the environment.
pub fn rejected_promise<'env, T>(env: &'env Env, err: Error) -> Result<PromiseRaw<'env, T>> {
    let raw = env.raw();
    let mut pending = false;
    let mut reason = std::ptr::null_mut();
    unsafe {
        napi::check_status!(napi::sys::napi_is_exception_pending(raw, &mut pending))?;
        if pending {
            napi::check_status!(napi::sys::napi_get_and_clear_last_exception(raw, &mut reason))?;
        } else {
            reason = JsError::from(err).into_value(raw);
        }
        let mut deferred = std::ptr::null_mut();
        let mut promise = std::ptr::null_mut();
        napi::check_status!(napi::sys::napi_create_promise(raw, &mut deferred, &mut promise))?;
        napi::check_status!(napi::sys::napi_reject_deferred(raw, deferred, reason))?;
        Ok(PromiseRaw::new(raw, promise))
    }
}

/// Run `start`, which validates a call's arguments and starts it; a failure rejects the
/// returned Promise instead of throwing, so a Promise-returning function never throws.
pub fn promise_or_rejection<'env, T>(
    env: &'env Env,
    start: impl FnOnce() -> Result<PromiseRaw<'env, T>>,
) -> Result<PromiseRaw<'env, T>> {
    start().or_else(|e| rejected_promise(env, e))
}
