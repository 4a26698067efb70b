//! Reading and validating option objects from JavaScript.
//!
//! Options are read field by field from a plain `Object` instead of through `#[napi(object)]`
//! conversion, so that every failure is a `ChatGPTError` with code `ERR_CHATGPT_INVALID_ARG` and
//! a message naming the option and the bad value: "Expected `maxRetries` to be a non-negative
//! integer, got -1". `undefined` and `null` both mean "not given".
//!
//! Every read is bounded and contained: a getter that throws becomes `ERR_CHATGPT_INVALID_ARG`
//! naming the option, arrays and records have a maximum length checked before they are read,
//! JSON-valued options go through `convert` (depth, size and cycle bounds), and an options
//! object may only hold the names its reader lists ([`Opts::allow_only`]), so a misspelt option
//! fails with a suggestion instead of being silently ignored.

use std::sync::Mutex;

use napi::bindgen_prelude::*;
use serde_json::{Map, Value};

use super::convert::{caught, own_keys, to_json_object};
use super::errors::invalid_arg;
use crate::core::config::{ProxySetting, MAX_CA_FILE_BYTES};
use crate::core::jsvalue::{closest_name, js_number, js_string};

/// Most entries of `apiKeys`.
pub const MAX_API_KEYS: u32 = 1024;
/// Most entries of `headers`.
pub const MAX_HEADERS: u32 = 256;

/// An option another API accepts (the `chatgpt` package's `fetch`) that this one cannot honour:
/// given, it is ignored with a one-time warning instead of failing, so drop-in code keeps running.
pub struct IgnoredOption {
    pub name: &'static str,
    /// Why, completing "`name` is ignored: ...".
    pub why: &'static str,
}

/// The `code` of the warning emitted for an [`IgnoredOption`].
pub const UNSUPPORTED_OPTION_WARNING: &str = "CHATGPT_NATIVE_UNSUPPORTED_OPTION";

/// Names already warned about, in this process (all environments share it: one warning each).
static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// `process.emitWarning(message, { code })`, once per option name per process. Best effort: a
/// failure to warn (no `process`, a patched `emitWarning` that throws) is swallowed.
fn warn_ignored(env: &Env, option: &IgnoredOption) {
    {
        let Ok(mut warned) = WARNED.lock() else { return };
        if warned.contains(&option.name) {
            return;
        }
        warned.push(option.name);
    }
    let message = format!("`{}` is ignored by chatgpt-native: {}", option.name, option.why);
    emit_warning(env, message, UNSUPPORTED_OPTION_WARNING);
}

/// `process.emitWarning(message, { code })`. Best effort: a failure to warn (no `process`, a
/// patched `emitWarning` that throws) is swallowed.
pub fn emit_warning(env: &Env, message: String, code: &str) {
    let result = (|| -> Result<()> {
        let process: Object = env.get_global()?.get_named_property("process")?;
        let emit: Function<FnArgs<(String, Object)>, Unknown> = process.get_named_property("emitWarning")?;
        let mut options = Object::new(env)?;
        options.set("code", code)?;
        emit.apply(process, FnArgs::from((message, options)))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = caught(env, &e);
    }
}

/// Warn about `name` if it is one of `ignored`; whether it is.
fn warn_if_ignored(env: &Env, name: &str, ignored: &[IgnoredOption]) -> bool {
    match ignored.iter().find(|o| o.name == name) {
        Some(option) => {
            warn_ignored(env, option);
            true
        }
        None => false,
    }
}

/// "; did you mean `maxRetries`?" when a known name is close to `key`, else "".
fn did_you_mean(key: &str, known: &[&str], prefix: &str) -> String {
    match closest_name(key, known) {
        Some(name) => format!("; did you mean `{prefix}{name}`?"),
        None => String::new(),
    }
}

/// A short, safe rendering of a JS value for error messages. Strings are quoted and cut short;
/// callers must not pass secrets (the API key is only ever type-checked, never described).
pub fn describe(env: &Env, v: &Unknown) -> String {
    match v.get_type() {
        Ok(ValueType::Number) => match unsafe { v.cast::<f64>() } {
            Ok(n) => js_number(n),
            Err(_) => "a number".into(),
        },
        Ok(ValueType::String) => match unsafe { v.cast::<String>() } {
            Ok(s) => js_string(&s, 40),
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

/// A positional argument that must be an integer from 0 to `u32::MAX` (`setLimits(rpm, tpm)`).
pub fn u32_arg(env: &Env, v: &Unknown, name: &str) -> Result<u32> {
    if v.get_type()? == ValueType::Number {
        let n: f64 = unsafe { v.cast() }?;
        if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
            return Ok(n as u32);
        }
    }
    Err(invalid_arg(
        env,
        format!(
            "Expected `{name}` to be an integer from 0 to {}, got {}",
            u32::MAX,
            describe(env, v)
        ),
    ))
}

/// Typed access to one options object. `prefix` names nested objects in messages
/// (`rateLimit.requestsPerMinute`).
pub struct Opts<'a> {
    env: &'a Env,
    obj: Option<Object<'a>>,
    prefix: String,
    /// The object's own name in messages (`options`, `rateLimit`, `inputs[2]`).
    label: String,
}

impl<'a> Opts<'a> {
    /// Wrap the optional options argument `name`; anything but an object (or undefined/null)
    /// is rejected.
    pub fn from_arg(env: &'a Env, arg: Option<Unknown<'a>>, name: &str) -> Result<Self> {
        let obj = match arg {
            None => None,
            Some(v) => match v.get_type()? {
                ValueType::Undefined | ValueType::Null => None,
                ValueType::Object if unsafe { v.cast::<Object>() }?.is_array()? => {
                    return Err(invalid_arg(
                        env,
                        format!("Expected `{name}` to be an object, got an array"),
                    ))
                }
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
            label: name.to_owned(),
        })
    }

    /// Name options `{prefix}{key}` in messages (`inputs[2].timeoutMs`).
    pub fn with_prefix(mut self, prefix: String) -> Self {
        self.label = prefix.trim_end_matches('.').to_owned();
        self.prefix = prefix;
        self
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The error for a read of `key` that threw (a getter, a Proxy trap).
    fn threw(&self, key: &str, e: &Error) -> Error {
        invalid_arg(
            self.env,
            format!("Reading `{}` threw {}", self.name(key), caught(self.env, e)),
        )
    }

    /// The raw value, or None when absent, undefined or null.
    pub fn raw(&self, key: &str) -> Result<Option<Unknown<'a>>> {
        let Some(obj) = &self.obj else {
            return Ok(None);
        };
        let v: Option<Unknown<'a>> = obj.get(key).map_err(|e| self.threw(key, &e))?;
        match v {
            Some(v) if !matches!(v.get_type()?, ValueType::Null | ValueType::Undefined) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// Reject any own key of the object not in `known` (unless its value is `undefined`, as
    /// object spreads leave them), with a did-you-mean; warn once about each `ignored` one
    /// (listed in `known` too, as in the typings, or not).
    pub fn allow_only(&self, known: &[&str], ignored: &[IgnoredOption]) -> Result<()> {
        let Some(obj) = &self.obj else {
            return Ok(());
        };
        let listing_threw = |e: &Error| {
            invalid_arg(
                self.env,
                format!("Listing the keys of `{}` threw {}", self.label, caught(self.env, e)),
            )
        };
        let keys = own_keys(self.env, &obj.to_unknown()).map_err(|e| listing_threw(&e))?;
        // Every call runs this over its options: known names are matched from a stack buffer,
        // and only an unexpected name is copied into a String.
        let mut buffer = [0u8; 64];
        for i in 0..keys.len() {
            let key: Unknown = keys
                .get(i)
                .map_err(|e| listing_threw(&e))?
                .ok_or_else(|| listing_threw(&Error::from_reason("hole")))?;
            let mut len = 0usize;
            let status = unsafe {
                napi::sys::napi_get_value_string_utf8(
                    self.env.raw(),
                    key.raw(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    &mut len,
                )
            };
            if status == napi::sys::Status::napi_ok && len < buffer.len() - 1 {
                if let Some(name) = buffer.get(..len).and_then(|b| std::str::from_utf8(b).ok()) {
                    if known.contains(&name) {
                        warn_if_ignored(self.env, name, ignored);
                        continue;
                    }
                }
            }
            let key: String = unsafe { key.cast() }?;
            if known.contains(&key.as_str()) {
                warn_if_ignored(self.env, &key, ignored);
                continue;
            }
            if warn_if_ignored(self.env, &key, ignored) {
                continue;
            }
            if self.raw(&key)?.is_none() {
                continue;
            }
            let shown: String = key.chars().take(40).flat_map(char::escape_debug).collect();
            return Err(invalid_arg(
                self.env,
                format!(
                    "Unknown option `{}{shown}`{}",
                    self.prefix,
                    did_you_mean(&key, known, &self.prefix)
                ),
            ));
        }
        Ok(())
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

    /// A finite number (any sign; the caller checks the range and names it).
    pub fn finite_number(&self, key: &str) -> Result<Option<f64>> {
        let Some((n, v)) = self.number(key, "a finite number")? else {
            return Ok(None);
        };
        if !n.is_finite() {
            return Err(self.type_error(key, "a finite number", &v));
        }
        Ok(Some(n))
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

    /// A plain JSON-like object (completion params), converted within `convert`'s bounds.
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
        to_json_object(self.env, &obj.to_unknown(), &self.name(key)).map(Some)
    }

    /// Any JSON value (`tools`), converted within `convert`'s bounds; `None` when absent.
    pub fn json(&self, key: &str) -> Result<Option<Value>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => super::convert::to_json(self.env, &v, &self.name(key)).map(Some),
        }
    }

    /// `key` as messages name it (`inputs[2].tools`).
    pub fn option_name(&self, key: &str) -> String {
        self.name(key)
    }

    /// A nested options object, read with names prefixed (`rateLimit.requestsPerMinute`).
    pub fn nested(&self, key: &str) -> Result<Option<Opts<'a>>> {
        Ok(self.object(key)?.map(|obj| Opts {
            env: self.env,
            obj: Some(obj),
            prefix: format!("{}{key}.", self.prefix),
            label: self.name(key),
        }))
    }

    /// An array of 1 to `max` options objects, each read with names prefixed (`upstreams[1].`);
    /// `None` when absent.
    pub fn object_array(&self, key: &str, max: u32) -> Result<Option<Vec<Opts<'a>>>> {
        let Some(v) = self.raw(key)? else { return Ok(None) };
        let fail = |v: &Unknown| {
            invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to be an array of 1 to {max} objects, got {}",
                    self.name(key),
                    describe(self.env, v)
                ),
            )
        };
        let is_array = v.get_type()? == ValueType::Object && unsafe { v.cast::<Object>() }?.is_array()?;
        if !is_array {
            return Err(fail(&v));
        }
        let array: Array = unsafe { v.cast() }?;
        if array.len() == 0 || array.len() > max {
            return Err(invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to be an array of 1 to {max} objects, got {} entries",
                    self.name(key),
                    array.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(array.len() as usize);
        for i in 0..array.len() {
            let entry = format!("{key}[{i}]");
            let item: Option<Unknown<'a>> = array.get(i).map_err(|e| self.threw(&entry, &e))?;
            let object = match item {
                Some(item)
                    if item.get_type()? == ValueType::Object && !unsafe { item.cast::<Object>() }?.is_array()? =>
                {
                    unsafe { item.cast::<Object<'a>>() }?
                }
                Some(item) => return Err(self.type_error(&entry, "an object", &item)),
                None => {
                    return Err(invalid_arg(
                        self.env,
                        format!("Expected `{}` to be an object", self.name(&entry)),
                    ))
                }
            };
            out.push(Opts {
                env: self.env,
                obj: Some(object),
                prefix: format!("{}.", self.name(&entry)),
                label: self.name(&entry),
            });
        }
        Ok(Some(out))
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
                format!(
                    "Expected `{}` to be a non-empty array of at most {MAX_API_KEYS} strings",
                    self.name(key)
                ),
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
        if array.len() == 0 || array.len() > MAX_API_KEYS {
            return Err(fail());
        }
        let mut out = Vec::with_capacity(array.len() as usize);
        for i in 0..array.len() {
            let item: Option<Unknown> = array.get(i).map_err(|e| self.threw(&format!("{key}[{i}]"), &e))?;
            match item {
                Some(item) if item.get_type()? == ValueType::String => out.push(unsafe { item.cast::<String>() }?),
                _ => return Err(fail()),
            }
        }
        Ok(Some(out))
    }

    /// PEM certificates: a string or Buffer, or an array of them (at most [`MAX_PEM_ENTRIES`],
    /// [`MAX_CA_FILE_BYTES`] in all).
    pub fn pem_list(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        let Some(v) = self.raw(key)? else { return Ok(Vec::new()) };
        let fail = |v: &Unknown| {
            invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to be a PEM string or Buffer, or an array of at most {MAX_PEM_ENTRIES} of them, got {}",
                    self.name(key),
                    describe(self.env, v)
                ),
            )
        };
        let one = |v: &Unknown| -> Result<Option<Vec<u8>>> {
            match v.get_type()? {
                ValueType::String => Ok(Some(unsafe { v.cast::<String>() }?.into_bytes())),
                ValueType::Object if v.is_buffer()? => Ok(Some(unsafe { v.cast::<BufferSlice>() }?.to_vec())),
                _ => Ok(None),
            }
        };
        let mut out = Vec::new();
        if let Some(pem) = one(&v)? {
            out.push(pem);
        } else if v.get_type()? == ValueType::Object && unsafe { v.cast::<Object>() }?.is_array()? {
            let array: Array = unsafe { v.cast() }?;
            if array.len() > MAX_PEM_ENTRIES {
                return Err(fail(&v));
            }
            for i in 0..array.len() {
                let item: Option<Unknown> = array.get(i).map_err(|e| self.threw(&format!("{key}[{i}]"), &e))?;
                match item.map(|item| one(&item).map(|pem| (pem, item))).transpose()? {
                    Some((Some(pem), _)) => out.push(pem),
                    Some((None, item)) => return Err(fail(&item)),
                    None => return Err(fail(&v)),
                }
            }
        } else {
            return Err(fail(&v));
        }
        let total: usize = out.iter().map(Vec::len).sum();
        if total as u64 > MAX_CA_FILE_BYTES {
            return Err(invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to be at most {MAX_CA_FILE_BYTES} bytes, got {total}",
                    self.name(key)
                ),
            ));
        }
        Ok(out)
    }

    /// `proxy`-like: a URL string; `false` or `null` for none; `undefined` for the environment's.
    pub fn proxy_setting(&self, key: &str) -> Result<ProxySetting> {
        let Some(obj) = &self.obj else {
            return Ok(ProxySetting::FromEnvironment);
        };
        let v: Option<Unknown> = obj.get(key).map_err(|e| self.threw(key, &e))?;
        let Some(v) = v else {
            return Ok(ProxySetting::FromEnvironment);
        };
        match v.get_type()? {
            ValueType::Undefined => Ok(ProxySetting::FromEnvironment),
            ValueType::Null => Ok(ProxySetting::Off),
            ValueType::Boolean if !unsafe { v.cast::<bool>() }? => Ok(ProxySetting::Off),
            ValueType::String => Ok(ProxySetting::Url(unsafe { v.cast::<String>() }?)),
            _ => Err(self.type_error(key, "a URL string, `false` or `null`", &v)),
        }
    }

    /// A `Record<string, string>` (extra headers).
    pub fn string_record(&self, key: &str) -> Result<Vec<(String, String)>> {
        let Some(obj) = self.object(key)? else {
            return Ok(Vec::new());
        };
        let keys = own_keys(self.env, &obj.to_unknown()).map_err(|e| self.threw(key, &e))?;
        if keys.len() > MAX_HEADERS {
            return Err(invalid_arg(
                self.env,
                format!(
                    "Expected `{}` to have at most {MAX_HEADERS} entries, got {}",
                    self.name(key),
                    keys.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for i in 0..keys.len() {
            let k: String = keys.get(i).map_err(|e| self.threw(key, &e))?.unwrap_or_default();
            let entry = format!("{key}[{}]", js_string(&k, 40));
            let v: Unknown = obj
                .get::<Unknown>(&k)
                .map_err(|e| self.threw(&entry, &e))?
                .ok_or_else(|| invalid_arg(self.env, format!("Expected `{}` to be a string", self.name(&entry))))?;
            if v.get_type()? != ValueType::String {
                return Err(invalid_arg(
                    self.env,
                    format!(
                        "Expected `{}` to be a string, got {}",
                        self.name(&entry),
                        describe(self.env, &v)
                    ),
                ));
            }
            out.push((k, unsafe { v.cast::<String>() }?));
        }
        Ok(out)
    }
}

/// Most entries of a certificate list (`ca`).
pub const MAX_PEM_ENTRIES: u32 = 1024;

/// Asserts that every `#[napi]` struct named `*Options` in `source` is in `declared` with its
/// fields, in JavaScript's spelling (napi's camelCase), as the names: both ways, in any order.
#[cfg(test)]
pub fn check_option_names(source: &str, declared: &[(&str, &[&str])]) {
    let file = syn::parse_file(source).expect("the source parses");
    let mut seen = Vec::new();
    for item in file.items {
        let syn::Item::Struct(shape) = item else { continue };
        let name = shape.ident.to_string();
        let is_napi = shape.attrs.iter().any(|a| a.path().is_ident("napi"));
        if !is_napi || !name.ends_with("Options") {
            continue;
        }
        let Some((_, names)) = declared.iter().find(|(n, _)| *n == name) else {
            panic!("{name} has no `NAMES` in the list checked here");
        };
        let mut fields: Vec<String> = shape
            .fields
            .iter()
            .filter_map(|f| f.ident.as_ref())
            .map(|f| js_name(&f.to_string()))
            .collect();
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        fields.sort();
        names.sort();
        assert_eq!(
            fields, names,
            "{name}: its fields (left) and its `NAMES` (right) differ"
        );
        seen.push(name);
    }
    for (name, _) in declared {
        assert!(seen.iter().any(|s| s == name), "{name} was not found in the source");
    }
}

/// A Rust field name as napi spells it in JavaScript: `timeout_ms` is `timeoutMs`.
#[cfg(test)]
fn js_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
