//! Reading and validating option objects from JavaScript.
//!
//! Options are read field by field from a plain `Object` instead of through `#[napi(object)]`
//! conversion, so that every failure is a `ChatGPTError` with code `ERR_CHATGPT_INVALID_ARG` and
//! a message naming the option and the bad value: "Expected `maxRetries` to be a non-negative
//! integer, got -1". `undefined` and `null` both mean "not given".

use napi::bindgen_prelude::*;
use serde_json::{Map, Value};

use super::errors::invalid_arg;

/// A short, safe rendering of a JS value for error messages. Strings are quoted and cut short;
/// callers must not pass secrets (the API key is only ever type-checked, never described).
pub fn describe(env: &Env, v: &Unknown) -> String {
    match v.get_type() {
        Ok(ValueType::Number) => match unsafe { v.cast::<f64>() } {
            Ok(n) => format_number(n),
            Err(_) => "a number".into(),
        },
        Ok(ValueType::String) => match unsafe { v.cast::<String>() } {
            Ok(s) => {
                let short: String = s.chars().take(40).collect();
                if short.len() < s.len() {
                    format!("{short:?}…")
                } else {
                    format!("{short:?}")
                }
            }
            Err(_) => "a string".into(),
        },
        Ok(ValueType::Boolean) => unsafe { v.cast::<bool>() }
            .map(|b| b.to_string())
            .unwrap_or_else(|_| "a boolean".into()),
        Ok(ValueType::Null) => "null".into(),
        Ok(ValueType::Undefined) => "undefined".into(),
        Ok(ValueType::Function) => "a function".into(),
        Ok(ValueType::Object) => {
            let is_array = env
                .get_global()
                .ok()
                .and_then(|_| unsafe { v.cast::<Object>() }.ok())
                .map(|o| o.is_array());
            match is_array {
                Some(Ok(true)) => "an array".into(),
                _ => "an object".into(),
            }
        }
        Ok(ValueType::BigInt) => "a bigint".into(),
        Ok(ValueType::Symbol) => "a symbol".into(),
        _ => "an unsupported value".into(),
    }
}

fn format_number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Typed access to one options object. `prefix` names nested objects in messages
/// (`rateLimit.requestsPerMinute`).
pub struct Opts<'a> {
    env: &'a Env,
    obj: Option<Object<'a>>,
    prefix: String,
}

impl<'a> Opts<'a> {
    /// Wrap the optional options argument `name`; anything but an object (or undefined/null)
    /// is rejected.
    pub fn from_arg(env: &'a Env, arg: Option<Unknown<'a>>, name: &str) -> Result<Self> {
        let obj = match arg {
            None => None,
            Some(v) => match v.get_type()? {
                ValueType::Undefined | ValueType::Null => None,
                ValueType::Object => Some(unsafe { v.cast::<Object>() }?),
                _ => {
                    return Err(invalid_arg(
                        env,
                        format!("Expected `{name}` to be an object, got {}", describe(env, &v)),
                    ))
                }
            },
        };
        Ok(Opts {
            env,
            obj,
            prefix: String::new(),
        })
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The raw value, or None when absent, undefined or null.
    pub fn raw(&self, key: &str) -> Result<Option<Unknown<'a>>> {
        let Some(obj) = &self.obj else {
            return Ok(None);
        };
        let v: Option<Unknown<'a>> = obj.get(key)?;
        match v {
            Some(v) if v.get_type()? != ValueType::Null => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    fn type_error(&self, key: &str, expected: &str, v: &Unknown) -> Error {
        invalid_arg(
            self.env,
            format!(
                "Expected `{}` to be {expected}, got {}",
                self.name(key),
                describe(self.env, v)
            ),
        )
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::String => Ok(Some(unsafe { v.cast::<String>() }?)),
            Some(v) => Err(self.type_error(key, "a string", &v)),
        }
    }

    /// A string whose value must never be echoed (API keys): only its type is described.
    pub fn secret_string(&self, key: &str) -> Result<Option<String>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::String => Ok(Some(unsafe { v.cast::<String>() }?)),
            Some(v) => {
                let kind = match v.get_type()? {
                    ValueType::Number => "a number",
                    ValueType::Boolean => "a boolean",
                    ValueType::Object => "an object",
                    _ => "another type",
                };
                Err(invalid_arg(
                    self.env,
                    format!("Expected `{}` to be a string, got {kind}", self.name(key)),
                ))
            }
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::Boolean => Ok(Some(unsafe { v.cast::<bool>() }?)),
            Some(v) => Err(self.type_error(key, "a boolean", &v)),
        }
    }

    fn number(&self, key: &str, expected: &str) -> Result<Option<(f64, Unknown<'a>)>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::Number => Ok(Some((unsafe { v.cast::<f64>() }?, v))),
            Some(v) => Err(self.type_error(key, expected, &v)),
        }
    }

    /// An integer >= `min` (and <= 2^53). `what` is the phrase used in messages.
    fn integer(&self, key: &str, min: f64, what: &str) -> Result<Option<u64>> {
        let Some((n, v)) = self.number(key, what)? else {
            return Ok(None);
        };
        if !n.is_finite() || n.fract() != 0.0 || n < min || n > 9_007_199_254_740_991.0 {
            return Err(self.type_error(key, what, &v));
        }
        Ok(Some(n as u64))
    }

    pub fn non_negative_int(&self, key: &str) -> Result<Option<u64>> {
        self.integer(key, 0.0, "a non-negative integer")
    }

    pub fn positive_int(&self, key: &str) -> Result<Option<u64>> {
        self.integer(key, 1.0, "a positive integer")
    }

    /// A positive integer that fits in u32.
    pub fn positive_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.positive_int(key)? {
            Some(n) if n > u32::MAX as u64 => Err(invalid_arg(
                self.env,
                format!("Expected `{}` to be at most {}, got {n}", self.name(key), u32::MAX),
            )),
            other => Ok(other.map(|n| n as u32)),
        }
    }

    pub fn function(&self, key: &str) -> Result<Option<Function<'a, Unknown<'static>, Unknown<'static>>>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::Function => Ok(Some(unsafe { v.cast() }?)),
            Some(v) => Err(self.type_error(key, "a function", &v)),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<Object<'a>>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) if v.get_type()? == ValueType::Object => Ok(Some(unsafe { v.cast::<Object>() }?)),
            Some(v) => Err(self.type_error(key, "an object", &v)),
        }
    }

    /// A plain JSON-like object (completion params), converted with serde.
    pub fn json_object(&self, key: &str) -> Result<Option<Map<String, Value>>> {
        let Some(obj) = self.object(key)? else {
            return Ok(None);
        };
        if obj.is_array()? {
            return Err(invalid_arg(
                self.env,
                format!("Expected `{}` to be an object, got an array", self.name(key)),
            ));
        }
        let value: Value = self.env.from_js_value(obj).map_err(|e| {
            invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to be a JSON-serialisable object: {}",
                    self.name(key),
                    e.reason
                ),
            )
        })?;
        match value {
            Value::Object(map) => Ok(Some(map)),
            _ => Err(invalid_arg(
                self.env,
                format!("Expected `{}` to be an object", self.name(key)),
            )),
        }
    }

    /// A nested options object, read with names prefixed (`rateLimit.requestsPerMinute`).
    pub fn nested(&self, key: &str) -> Result<Option<Opts<'a>>> {
        Ok(self.object(key)?.map(|obj| Opts {
            env: self.env,
            obj: Some(obj),
            prefix: format!("{}{key}.", self.prefix),
        }))
    }

    /// `Some(bool)` for a boolean, `None` for absent or an object (read it with `nested`).
    pub fn bool_or_object(&self, key: &str) -> Result<Option<bool>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => match v.get_type()? {
                ValueType::Boolean => Ok(Some(unsafe { v.cast::<bool>() }?)),
                ValueType::Object => Ok(None),
                _ => Err(self.type_error(key, "a boolean or an object", &v)),
            },
        }
    }

    /// A validation error for this object.
    pub fn invalid(&self, message: String) -> Error {
        invalid_arg(self.env, message)
    }

    /// An array of strings whose values are secrets (API keys): never described.
    pub fn string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(v) = self.raw(key)? else { return Ok(None) };
        let fail = || {
            invalid_arg(
                self.env,
                format!("Expected `{}` to be a non-empty array of strings", self.name(key)),
            )
        };
        if v.get_type()? != ValueType::Object {
            return Err(fail());
        }
        let obj: Object = unsafe { v.cast() }?;
        if !obj.is_array()? {
            return Err(fail());
        }
        let array: Array = unsafe { v.cast() }?;
        if array.len() == 0 {
            return Err(fail());
        }
        let mut out = Vec::with_capacity(array.len() as usize);
        for i in 0..array.len() {
            let item: Option<Unknown> = array.get(i)?;
            match item {
                Some(item) if item.get_type()? == ValueType::String => out.push(unsafe { item.cast::<String>() }?),
                _ => return Err(fail()),
            }
        }
        Ok(Some(out))
    }

    /// A `Record<string, string>` (extra headers).
    pub fn string_record(&self, key: &str) -> Result<Vec<(String, String)>> {
        let Some(obj) = self.object(key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for k in Object::keys(&obj)? {
            let v: Unknown = obj.get(&k)?.ok_or_else(|| Error::from_reason("property vanished"))?;
            if v.get_type()? != ValueType::String {
                return Err(invalid_arg(
                    self.env,
                    format!(
                        "Expected `{}[{k:?}]` to be a string, got {}",
                        self.name(key),
                        describe(self.env, &v)
                    ),
                ));
            }
            out.push((k, unsafe { v.cast::<String>() }?));
        }
        Ok(out)
    }
}
