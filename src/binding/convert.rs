//! Every conversion of a caller's JavaScript value to JSON goes through here: the napi side of
//! `core::jsvalue`'s bounded walk (depth, value count, text size, cycles), plus catching what a
//! getter or Proxy trap throws while a value is read, so that it becomes a `ChatGPTError` with
//! code `ERR_CHATGPT_INVALID_ARG` naming the option instead of escaping as a foreign exception.

use napi::bindgen_prelude::*;
use napi::sys;
use serde_json::{Map, Value};

use super::errors::invalid_arg;
use crate::core::jsvalue::{self, js_number, js_string, JsKind, JsSource};

/// Characters of a thrown message quoted in a validation message.
const THROWN_MESSAGE_CHARS: usize = 200;

/// After a napi call failed: take the pending JavaScript exception, if any, off the environment
/// and describe it (`Error: boom`, `"a string"`, `42`). Clearing it is what lets the caller
/// report its own error instead.
pub fn caught(env: &Env, err: &Error) -> String {
    let raw = env.raw();
    let mut pending = false;
    let status = unsafe { sys::napi_is_exception_pending(raw, &mut pending) };
    if status != sys::Status::napi_ok || !pending {
        return format!("an error ({})", err.status.as_ref());
    }
    let mut exception = std::ptr::null_mut();
    if unsafe { sys::napi_get_and_clear_last_exception(raw, &mut exception) } != sys::Status::napi_ok {
        return "an exception".into();
    }
    let value = unsafe { Unknown::from_raw_unchecked(raw, exception) };
    describe_thrown(env, &value)
}

/// A thrown value for a message. Only plain data properties are read (`name`, `message`); if
/// reading them throws too, that is cleared and the value is described by its type.
fn describe_thrown(env: &Env, value: &Unknown) -> String {
    match value.get_type() {
        Ok(ValueType::Object) => {
            let Ok(obj) = (unsafe { value.cast::<Object>() }) else {
                return "an object".into();
            };
            let text = |key: &str| -> Option<String> {
                match obj.get::<Unknown>(key) {
                    Ok(Some(v)) if v.get_type().ok() == Some(ValueType::String) => unsafe { v.cast::<String>() }.ok(),
                    Ok(_) => None,
                    Err(e) => {
                        let _ = caught(env, &e);
                        None
                    }
                }
            };
            match (text("name"), text("message")) {
                (Some(name), Some(message)) => {
                    let message: String = message.chars().take(THROWN_MESSAGE_CHARS).collect();
                    format!("{name}: {message}")
                }
                (None, Some(message)) => message.chars().take(THROWN_MESSAGE_CHARS).collect(),
                _ => "an object".into(),
            }
        }
        Ok(ValueType::String) => match unsafe { value.cast::<String>() } {
            Ok(s) => js_string(&s, 40),
            Err(_) => "a string".into(),
        },
        Ok(ValueType::Number) => match unsafe { value.cast::<f64>() } {
            Ok(n) => js_number(n),
            Err(_) => "a number".into(),
        },
        Ok(ValueType::Undefined) => "undefined".into(),
        Ok(ValueType::Null) => "null".into(),
        _ => "a value".into(),
    }
}

/// `napi_get_property(object, key)`, keys being JavaScript values (so any string key works,
/// NUL characters included).
fn get_property<'env>(env: &'env Env, object: &Unknown<'env>, key: &Unknown<'env>) -> Result<Unknown<'env>> {
    let mut out = std::ptr::null_mut();
    napi::check_status!(unsafe { sys::napi_get_property(env.raw(), object.raw(), key.raw(), &mut out) })?;
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), out) })
}

/// Own enumerable string keys, as `Object.keys` lists them (what `JSON.stringify` reads).
pub fn own_keys<'env>(env: &'env Env, object: &Unknown<'env>) -> Result<Array<'env>> {
    let mut names = std::ptr::null_mut();
    napi::check_status!(unsafe {
        sys::napi_get_all_property_names(
            env.raw(),
            object.raw(),
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut names,
        )
    })?;
    unsafe { Array::from_napi_value(env.raw(), names) }
}

/// `core::jsvalue::JsSource` over live JavaScript values. Failed reads are caught and described.
struct NapiSource<'env> {
    env: &'env Env,
}

impl<'env> NapiSource<'env> {
    fn fail(&self, err: Error) -> String {
        caught(self.env, &err)
    }
}

impl<'env> JsSource for NapiSource<'env> {
    type Value = Unknown<'env>;
    type Key = Unknown<'env>;
    type Error = String;

    fn kind(&mut self, value: &Unknown<'env>) -> std::result::Result<JsKind, String> {
        let kind = (|| -> Result<JsKind> {
            Ok(match value.get_type()? {
                ValueType::Undefined | ValueType::Function | ValueType::Symbol => JsKind::Omitted,
                ValueType::Null => JsKind::Null,
                ValueType::Boolean => JsKind::Bool(unsafe { value.cast::<bool>() }?),
                ValueType::Number => JsKind::Number(unsafe { value.cast::<f64>() }?),
                ValueType::String => JsKind::String(unsafe { value.cast::<String>() }?),
                ValueType::BigInt => JsKind::BigInt,
                ValueType::Object => {
                    let object: Object = unsafe { value.cast() }?;
                    if object.is_array()? {
                        let array: Array = unsafe { value.cast() }?;
                        JsKind::Array(array.len())
                    } else {
                        JsKind::Object
                    }
                }
                _ => JsKind::Omitted,
            })
        })();
        kind.map_err(|e| self.fail(e))
    }

    fn item(&mut self, array: &Unknown<'env>, index: u32) -> std::result::Result<Unknown<'env>, String> {
        let mut out = std::ptr::null_mut();
        let status = unsafe { sys::napi_get_element(self.env.raw(), array.raw(), index, &mut out) };
        napi::check_status!(status)
            .map(|()| unsafe { Unknown::from_raw_unchecked(self.env.raw(), out) })
            .map_err(|e| self.fail(e))
    }

    fn keys(&mut self, object: &Unknown<'env>) -> std::result::Result<Vec<Unknown<'env>>, String> {
        let keys = (|| -> Result<Vec<Unknown<'env>>> {
            let names = own_keys(self.env, object)?;
            // The count is bounded by the walk right after; holding the handles costs little.
            let mut out = Vec::with_capacity((names.len() as usize).min(1024));
            for i in 0..names.len() {
                let key: Option<Unknown<'env>> = names.get(i)?;
                if let Some(key) = key {
                    out.push(key);
                }
            }
            Ok(out)
        })();
        keys.map_err(|e| self.fail(e))
    }

    fn key_name(&mut self, key: &Unknown<'env>) -> std::result::Result<String, String> {
        unsafe { key.cast::<String>() }.map_err(|e| self.fail(e))
    }

    fn field(&mut self, object: &Unknown<'env>, key: &Unknown<'env>) -> std::result::Result<Unknown<'env>, String> {
        get_property(self.env, object, key).map_err(|e| self.fail(e))
    }

    fn same(&mut self, a: &Unknown<'env>, b: &Unknown<'env>) -> std::result::Result<bool, String> {
        let mut result = false;
        let status = unsafe { sys::napi_strict_equals(self.env.raw(), a.raw(), b.raw(), &mut result) };
        napi::check_status!(status).map(|()| result).map_err(|e| self.fail(e))
    }
}

/// Convert a caller's value to JSON within `core::jsvalue`'s bounds; `path` names it in errors
/// (`completionParams`, `inputs[3].completionParams`).
pub fn to_json(env: &Env, value: &Unknown, path: &str) -> Result<Value> {
    let mut source = NapiSource { env };
    // Rebind the lifetime: the handle is only used during this call.
    let value = unsafe { Unknown::from_raw_unchecked(env.raw(), value.raw()) };
    jsvalue::to_json(&mut source, &value, path).map_err(|e| invalid_arg(env, e.to_string()))
}

/// [`to_json`] for a value that must be a plain object (not an array).
pub fn to_json_object(env: &Env, value: &Unknown, path: &str) -> Result<Map<String, Value>> {
    match to_json(env, value, path)? {
        Value::Object(map) => Ok(map),
        _ => Err(invalid_arg(env, format!("Expected `{path}` to be an object"))),
    }
}
