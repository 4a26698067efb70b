//! `ChatGPTError`: the one error class JavaScript sees, and the conversion from core errors.
//!
//! The class is JavaScript (`lib/errors.js`: a real `Error` subclass) and reaches Rust through
//! the JavaScript layer at load (see `init.rs`); its typings are `ChatGPTErrorOptions` in
//! `index.d.ts`. The fields an error carries are listed in three places, each checked against the
//! next: core's `ErrorInfo` (destructured without `..` in [`js_error`], so a new field does not
//! compile until it is handled), [`ERROR_FIELDS`] (checked against `lib/errors.js` by a test
//! below) and `lib/errors.js`'s `FIELDS` (checked against the typings by
//! `__test__/exports.test.mjs`).

use napi::bindgen_prelude::*;

use super::init::BindingData;
use crate::core::error::{ChatError, ErrorCode, ErrorInfo};
use crate::core::redact::Redactor;

/// The fields [`js_error`] may set, by their JavaScript names, in `lib/errors.js`'s order.
pub const ERROR_FIELDS: [&str; 14] = [
    "code",
    "statusCode",
    "statusText",
    "type",
    "param",
    "errorCode",
    "requestId",
    "partialText",
    "attempts",
    "promptTokens",
    "maxPromptTokens",
    "text",
    "refusal",
    "upstream",
];

/// One field's value, as the options object of the class's constructor carries it.
enum FieldValue<'a> {
    Text(&'a str),
    Number(u32),
}

/// Build a `ChatGPTError` object for `e`. Whatever its origin, it leaves without authorization
/// tokens or URL credentials (`core/redact.rs`; a client's errors were already scrubbed of its
/// keys).
pub fn js_error<'env>(env: &'env Env, e: &ChatError) -> Result<Unknown<'env>> {
    let mut scrubbed = e.clone();
    Redactor::default().scrub_error(&mut scrubbed);
    scrubbed_js_error(env, &scrubbed)
}

/// [`js_error`] for an error already scrubbed (its `cause` included).
fn scrubbed_js_error<'env>(env: &'env Env, scrubbed: &ChatError) -> Result<Unknown<'env>> {
    let info: &ErrorInfo = scrubbed;
    // No `..`: a field added to `ErrorInfo` must be handled here (and in ERROR_FIELDS).
    let ErrorInfo {
        code,
        message,
        status,
        status_text,
        error_type,
        param,
        server_code,
        request_id,
        partial_text,
        retry_after: _,
        prompt_tokens,
        max_prompt_tokens,
        should_retry: _,
        attempts,
        thrown,
        cause,
        text: reply_text,
        refusal,
        // Internal: what admission gives back, not something JavaScript sees.
        not_sent: _,
        upstream,
    } = info;
    fn text(v: &Option<String>) -> Option<FieldValue<'_>> {
        v.as_deref().map(FieldValue::Text)
    }
    let values: [Option<FieldValue>; ERROR_FIELDS.len()] = [
        Some(FieldValue::Text(code.as_str())),
        status.map(|s| FieldValue::Number(u32::from(s))),
        text(status_text),
        text(error_type),
        text(param),
        text(server_code),
        text(request_id),
        text(partial_text),
        attempts.map(FieldValue::Number),
        prompt_tokens.map(FieldValue::Number),
        max_prompt_tokens.map(FieldValue::Number),
        text(reply_text),
        text(refusal),
        text(upstream),
    ];
    let class = BindingData::get(env)?.js(|js| js.error_class.borrow_back(env))?;
    let mut options = Object::new(env)?;
    for (name, value) in ERROR_FIELDS.iter().zip(values) {
        match value {
            Some(FieldValue::Text(s)) => options.set(name, s)?,
            Some(FieldValue::Number(n)) => options.set(name, n)?,
            None => {}
        }
    }
    // `cause` is the constructor's own option (passed on to `Error`), not one of the fields: the
    // failure behind a STREAM_INTERRUPTED, or the previous upstream's failure (so this recurses
    // at most once per upstream, and `upstreams` has at most 16), else the value the caller's own
    // code threw.
    if let Some(cause) = cause {
        options.set("cause", scrubbed_js_error(env, cause)?)?;
    } else if let Some(value) = thrown.as_ref().and_then(|t| t.0.downcast_ref::<Error>()) {
        let value = value.try_clone()?;
        // SAFETY: on the JavaScript thread; a retained value converts back to itself.
        let raw = unsafe { Error::to_napi_value(env.raw(), value) }?;
        options.set("cause", unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })?;
    }
    // SAFETY of the lifetime cast: the object is used immediately within this call scope.
    let options: Object<'static> = Object::from_raw(env.raw(), options.raw());
    class.new_instance(FnArgs::from((message.clone(), options)))
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

#[cfg(test)]
mod tests {
    use super::ERROR_FIELDS;

    /// The names inside `const FIELDS = Object.freeze([...])` of `lib/errors.js`.
    fn js_fields() -> Vec<String> {
        let source = include_str!("../../lib/errors.js");
        let start = source
            .find("const FIELDS = Object.freeze([")
            .expect("lib/errors.js declares FIELDS");
        let list = &source[start..];
        let list = &list[list.find('[').expect("[") + 1..list.find(']').expect("]")];
        list.split(',')
            .map(|s| s.trim().trim_matches('\'').to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn error_fields_match_the_javascript_class() {
        assert_eq!(
            js_fields(),
            ERROR_FIELDS,
            "ERROR_FIELDS (src/binding/errors.rs) and FIELDS (lib/errors.js) must list the same fields in the same order"
        );
    }
}
