//! JavaScript values seen from plain Rust: the bounded conversion of a caller's value to JSON,
//! and JavaScript's way of printing numbers, for validation messages.
//!
//! The walk is generic over [`JsSource`], so the napi binding (`binding::convert`) drives it with
//! real JavaScript values while tests and fuzzers drive it with [`ModelHeap`], a JavaScript heap
//! modelled in Rust (cycles included). Every value that comes from a caller is hostile until
//! proven otherwise: the walk bounds nesting depth, the number of values and the bytes of text,
//! detects cycles, and never recurses deeper than [`MAX_DEPTH`] frames.
//!
//! The JSON produced is what `JSON.stringify` would produce (so code written for the `chatgpt`
//! package, which stringifies its request body, sends the same request), with three deliberate
//! differences: values `JSON.stringify` cannot represent are rejected instead of silently
//! becoming `null` or throwing later:
//! - `NaN` and `±Infinity` are rejected (`JSON.stringify` sends `null`, which no API accepts);
//! - a `bigint` is rejected (`JSON.stringify` throws a `TypeError`);
//! - cycles are rejected naming the path (`JSON.stringify` throws too).
//!
//! As in `JSON.stringify`: only own enumerable string keys are read; `undefined`, functions and
//! symbols are left out of objects and become `null` in arrays (holes too). `toJSON` methods are
//! not called: a request body is plain data.

use serde_json::{Map, Number, Value};

use super::error::ChatError;

/// Deepest nesting of objects and arrays accepted, the option itself being level 1. Request
/// parameters nest a handful of levels (a JSON schema in `response_format` perhaps a dozen).
pub const MAX_DEPTH: usize = 64;

/// Most values (of any kind, containers included) in one converted option.
pub const MAX_VALUES: usize = 100_000;

/// Most bytes of text (strings and keys, UTF-8) in one converted option: 32 MiB.
pub const MAX_TEXT_BYTES: usize = 32 * 1024 * 1024;

/// What one JavaScript value is, as far as JSON cares.
#[derive(Debug, Clone, PartialEq)]
pub enum JsKind {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// `undefined`, a function or a symbol: left out of objects, `null` in arrays.
    Omitted,
    BigInt,
    /// An array and its `length`.
    Array(u32),
    Object,
}

/// Read access to a JavaScript heap. Every method may fail (a getter throws, a Proxy trap
/// throws); the failure is reported with the path of the value being read.
pub trait JsSource {
    /// A handle to one value.
    type Value: Clone;
    /// A handle to one property key.
    type Key;
    /// What a read that threw is described as (the thrown value, already caught).
    type Error;

    fn kind(&mut self, value: &Self::Value) -> Result<JsKind, Self::Error>;
    /// Element `index` of an array (`undefined` for a hole).
    fn item(&mut self, array: &Self::Value, index: u32) -> Result<Self::Value, Self::Error>;
    /// Own enumerable string keys, in property order.
    fn keys(&mut self, object: &Self::Value) -> Result<Vec<Self::Key>, Self::Error>;
    fn key_name(&mut self, key: &Self::Key) -> Result<String, Self::Error>;
    fn field(&mut self, object: &Self::Value, key: &Self::Key) -> Result<Self::Value, Self::Error>;
    /// Whether two handles are the same object (`===`).
    fn same(&mut self, a: &Self::Value, b: &Self::Value) -> Result<bool, Self::Error>;
}

/// One step of a path: `.key` or `[index]`.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(u32),
}

/// Where in the converted value something went wrong, written as JavaScript would access it:
/// `completionParams.tools[0]["x-y"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsPath {
    root: String,
    steps: Vec<Step>,
}

impl JsPath {
    fn new(root: &str) -> Self {
        JsPath {
            root: root.to_owned(),
            steps: Vec::new(),
        }
    }

    /// The path of the ancestor `depth` steps from the root.
    fn prefix(&self, depth: usize) -> JsPath {
        JsPath {
            root: self.root.clone(),
            steps: self.steps.iter().take(depth).cloned().collect(),
        }
    }
}

/// Steps a long path shows at each end; the middle becomes `…`.
const PATH_ENDS: usize = 4;

impl std::fmt::Display for JsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.root)?;
        let len = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            if len > 2 * PATH_ENDS + 1 && (PATH_ENDS..len - PATH_ENDS).contains(&i) {
                if i == PATH_ENDS {
                    f.write_str("…")?;
                }
                continue;
            }
            match step {
                Step::Index(i) => write!(f, "[{i}]")?,
                Step::Key(k) if is_identifier(k) => write!(f, ".{k}")?,
                Step::Key(k) => write!(f, "[{}]", js_string(k, 40))?,
            }
        }
        Ok(())
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonError<E> {
    TooDeep {
        path: JsPath,
    },
    Circular {
        path: JsPath,
        ancestor: JsPath,
    },
    TooManyValues {
        path: JsPath,
    },
    TooMuchText {
        path: JsPath,
    },
    NotFinite {
        path: JsPath,
        value: f64,
    },
    BigInt {
        path: JsPath,
    },
    /// Reading the value at `path` threw.
    Threw {
        path: JsPath,
        error: E,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for JsonError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::TooDeep { path } => write!(f, "`{path}` nests deeper than {MAX_DEPTH} levels"),
            JsonError::Circular { path, ancestor } => {
                write!(f, "`{path}` is a circular reference to `{ancestor}`")
            }
            JsonError::TooManyValues { path } => {
                write!(f, "`{path}` holds more than {MAX_VALUES} values")
            }
            JsonError::TooMuchText { path } => {
                write!(f, "`{path}` holds more than {} MiB of text", MAX_TEXT_BYTES >> 20)
            }
            JsonError::NotFinite { path, value } => {
                write!(f, "Expected `{path}` to be a finite number, got {}", js_number(*value))
            }
            JsonError::BigInt { path } => {
                write!(f, "Expected `{path}` to be a JSON value, got a bigint")
            }
            JsonError::Threw { path, error } => write!(f, "Reading `{path}` threw {error}"),
        }
    }
}

/// Budgets and the walk's position.
struct Walk<'s, S: JsSource> {
    source: &'s mut S,
    path: JsPath,
    /// The objects and arrays being converted, outermost first (for cycle detection).
    ancestors: Vec<S::Value>,
    values_left: usize,
    text_left: usize,
}

/// Convert `value` to JSON within the limits above. `root` names it in errors
/// (`completionParams`).
pub fn to_json<S: JsSource>(source: &mut S, value: &S::Value, root: &str) -> Result<Value, JsonError<S::Error>> {
    let mut walk = Walk {
        source,
        path: JsPath::new(root),
        ancestors: Vec::new(),
        values_left: MAX_VALUES,
        text_left: MAX_TEXT_BYTES,
    };
    Ok(walk.value(value)?.unwrap_or(Value::Null))
}

impl<S: JsSource> Walk<'_, S> {
    fn threw(&self, error: S::Error) -> JsonError<S::Error> {
        JsonError::Threw {
            path: self.path.clone(),
            error,
        }
    }

    fn count(&mut self, values: usize) -> Result<(), JsonError<S::Error>> {
        match self.values_left.checked_sub(values) {
            Some(left) => {
                self.values_left = left;
                Ok(())
            }
            None => Err(JsonError::TooManyValues {
                path: self.path.prefix(0),
            }),
        }
    }

    fn text(&mut self, s: &str) -> Result<(), JsonError<S::Error>> {
        match self.text_left.checked_sub(s.len()) {
            Some(left) => {
                self.text_left = left;
                Ok(())
            }
            None => Err(JsonError::TooMuchText {
                path: self.path.prefix(0),
            }),
        }
    }

    /// `None` for a value JSON leaves out (`undefined`, functions, symbols).
    fn value(&mut self, value: &S::Value) -> Result<Option<Value>, JsonError<S::Error>> {
        self.count(1)?;
        let kind = self.source.kind(value).map_err(|e| self.threw(e))?;
        Ok(Some(match kind {
            JsKind::Null => Value::Null,
            JsKind::Bool(b) => Value::Bool(b),
            JsKind::Number(n) => Value::Number(json_number(n).ok_or_else(|| JsonError::NotFinite {
                path: self.path.clone(),
                value: n,
            })?),
            JsKind::String(s) => {
                self.text(&s)?;
                Value::String(s)
            }
            JsKind::Omitted => return Ok(None),
            JsKind::BigInt => {
                return Err(JsonError::BigInt {
                    path: self.path.clone(),
                })
            }
            JsKind::Array(len) => {
                self.enter(value)?;
                let array = self.array(value, len);
                self.ancestors.pop();
                Value::Array(array?)
            }
            JsKind::Object => {
                self.enter(value)?;
                let object = self.object(value);
                self.ancestors.pop();
                Value::Object(object?)
            }
        }))
    }

    /// Push a container, refusing one nested too deep or already being converted.
    fn enter(&mut self, value: &S::Value) -> Result<(), JsonError<S::Error>> {
        if self.ancestors.len() >= MAX_DEPTH {
            return Err(JsonError::TooDeep {
                path: self.path.clone(),
            });
        }
        for (depth, ancestor) in self.ancestors.iter().enumerate() {
            let same = self.source.same(ancestor, value).map_err(|e| JsonError::Threw {
                path: self.path.clone(),
                error: e,
            })?;
            if same {
                return Err(JsonError::Circular {
                    path: self.path.clone(),
                    ancestor: self.path.prefix(depth),
                });
            }
        }
        self.ancestors.push(value.clone());
        Ok(())
    }

    fn array(&mut self, value: &S::Value, len: u32) -> Result<Vec<Value>, JsonError<S::Error>> {
        // Checked before reading anything: `new Array(2 ** 32 - 1)` costs its creator nothing.
        if len as usize > self.values_left {
            return Err(JsonError::TooManyValues {
                path: self.path.prefix(0),
            });
        }
        let mut out = Vec::with_capacity(len as usize);
        for index in 0..len {
            self.path.steps.push(Step::Index(index));
            let item = self.source.item(value, index).map_err(|e| self.threw(e));
            let converted = match item {
                Ok(item) => self.value(&item),
                Err(e) => Err(e),
            };
            self.path.steps.pop();
            out.push(converted?.unwrap_or(Value::Null));
        }
        Ok(out)
    }

    fn object(&mut self, value: &S::Value) -> Result<Map<String, Value>, JsonError<S::Error>> {
        let keys = self.source.keys(value).map_err(|e| self.threw(e))?;
        if keys.len() > self.values_left {
            return Err(JsonError::TooManyValues {
                path: self.path.prefix(0),
            });
        }
        let mut out = Map::new();
        for key in &keys {
            let name = self.source.key_name(key).map_err(|e| self.threw(e))?;
            self.text(&name)?;
            self.path.steps.push(Step::Key(name));
            let field = self.source.field(value, key).map_err(|e| self.threw(e));
            let converted = match field {
                Ok(field) => self.value(&field),
                Err(e) => Err(e),
            };
            let Some(Step::Key(name)) = self.path.steps.pop() else {
                continue;
            };
            if let Some(v) = converted? {
                out.insert(name, v);
            }
        }
        Ok(out)
    }
}

/// A JSON number for a finite `n`; integers stay integers (`1` not `1.0`), as `JSON.stringify`
/// writes them.
fn json_number(n: f64) -> Option<Number> {
    if !n.is_finite() {
        return None;
    }
    // 2^53: beyond it, every f64 is an integer but not every integer an exact one.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        // Exact: the value is integral and within i64.
        return Some(Number::from(n as i64));
    }
    Number::from_f64(n)
}

/// `n` as JavaScript's `String(n)` prints it: `1e+308`, `Infinity`, `NaN`, `0.1`, `-0` as `0`.
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, as ECMAScript's Number::toString wants;
    // only the layout differs.
    let sci = format!("{:e}", n.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let k = digits.len() as i64;
    let n_pos = exponent + 1; // the decimal point sits after `n_pos` digits
    let sign = if n < 0.0 { "-" } else { "" };
    let body = if k <= n_pos && n_pos <= 21 {
        format!("{digits}{}", "0".repeat((n_pos - k) as usize))
    } else if 0 < n_pos && n_pos <= 21 {
        let (int, frac) = digits.split_at(n_pos as usize);
        format!("{int}.{frac}")
    } else if -6 < n_pos && n_pos <= 0 {
        format!("0.{}{digits}", "0".repeat((-n_pos) as usize))
    } else {
        let e = n_pos - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            format!("{first}e{e_sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{e_sign}{}", e.abs())
        }
    };
    format!("{sign}{body}")
}

/// A JSON value as an option error names what it got: the value itself for a scalar (a string
/// quoted and cut to 40 characters), "an array" or "an object" otherwise.
pub fn describe_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => js_string(s, 40),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The error for an option of JSON value `got` that is not `expected`: "Expected `option` to be
/// expected, got ...".
pub fn expected_arg(option: &str, expected: &str, got: &Value) -> ChatError {
    ChatError::invalid_arg(format!(
        "Expected `{option}` to be {expected}, got {}",
        describe_json(got)
    ))
}

/// `s` quoted as a JavaScript string literal (JSON escapes), cut to `max_chars` characters with
/// an ellipsis after the quote when longer.
pub fn js_string(s: &str, max_chars: usize) -> String {
    let short: String = s.chars().take(max_chars).collect();
    let quoted = serde_json::to_string(&short).unwrap_or_else(|_| "\"\"".to_owned());
    if short.len() < s.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

/// The name in `known` that `key` most likely misspells: the same ignoring case, `_` and `-`,
/// a small edit, or a shortened form (`overlap` for `overlapTokens`). `None` when none is close.
pub fn closest_name<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let normal = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = normal(key);
    let close = |name: &str| -> Option<usize> {
        let candidate = normal(name);
        let d = edit_distance(&wanted, &candidate);
        let shortened = wanted.len() >= 4 && candidate.starts_with(&wanted);
        (d == 0 || (d <= 3 && d * 2 < name.len()) || shortened).then_some(d)
    };
    known
        .iter()
        .filter_map(|name| close(name).map(|d| (d, *name)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance between two short names, one row of the table at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        // `row` holds the previous line; build the next one left to right.
        let mut next = Vec::with_capacity(row.len());
        next.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let diagonal = row.get(j).copied().unwrap_or(usize::MAX);
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = next.last().copied().unwrap_or(usize::MAX);
            let cost = diagonal.saturating_add(usize::from(ca != *cb));
            next.push(cost.min(above.saturating_add(1)).min(left.saturating_add(1)));
        }
        row = next;
    }
    row.last().copied().unwrap_or(0)
}

/// A JavaScript heap modelled in Rust: values are indices into `values`, so objects can share
/// children and form cycles. Drives [`to_json`] in tests and fuzz targets without Node.js.
#[derive(Debug, Clone, Default)]
pub struct ModelHeap {
    pub values: Vec<ModelValue>,
}

/// One value of a [`ModelHeap`]; children are indices into the heap.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelValue {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    BigInt,
    Function,
    /// Elements; `None` is a hole. `length` may exceed the elements given (a sparse array).
    Array {
        items: Vec<Option<usize>>,
        length: u32,
    },
    Object(Vec<(String, usize)>),
    /// A property whose getter throws, with the thrown message.
    Throws(String),
}

impl ModelHeap {
    /// Add `value`, returning its handle.
    pub fn add(&mut self, value: ModelValue) -> usize {
        self.values.push(value);
        self.values.len() - 1
    }

    fn get(&self, handle: usize) -> Result<&ModelValue, String> {
        self.values.get(handle).ok_or_else(|| "a dangling handle".to_owned())
    }
}

/// Reads a fuzzer's bytes; past the end every read is 0, so any input decodes.
struct ByteReader<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl ByteReader<'_> {
    fn byte(&mut self) -> u8 {
        self.bytes.next().copied().unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 16);
        let raw: Vec<u8> = (0..len).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&raw).into_owned()
    }
}

impl ModelHeap {
    /// Decode arbitrary bytes into a heap and a root handle, for fuzz targets and property
    /// tests: every input is a valid heap; children point anywhere in it, so shared children,
    /// cycles, deep chains, sparse arrays, non-finite numbers and throwing getters all arise.
    pub fn from_bytes(data: &[u8]) -> (ModelHeap, usize) {
        let mut r = ByteReader { bytes: data.iter() };
        let size = usize::from(r.byte()) + 1;
        let mut heap = ModelHeap::default();
        for _ in 0..size {
            let value = match r.byte() % 11 {
                0 => ModelValue::Undefined,
                1 => ModelValue::Null,
                2 => ModelValue::Bool(r.byte() & 1 == 1),
                3 => ModelValue::Number(f64::from_bits(r.u64())),
                4 => ModelValue::String(r.text()),
                5 => ModelValue::BigInt,
                6 => ModelValue::Function,
                7 => ModelValue::Throws(r.text()),
                8 => {
                    let items = (0..r.byte() % 8)
                        .map(|_| match r.byte() {
                            255 => None,
                            b => Some(usize::from(b) % size),
                        })
                        .collect::<Vec<_>>();
                    let extra = match r.byte() {
                        255 => u32::MAX,
                        b => u32::from(b % 4),
                    };
                    let length = u32::try_from(items.len()).unwrap_or(0).saturating_add(extra);
                    ModelValue::Array { items, length }
                }
                _ => ModelValue::Object(
                    (0..r.byte() % 8)
                        .map(|_| (r.text(), usize::from(r.byte()) % size))
                        .collect(),
                ),
            };
            heap.add(value);
        }
        let root = usize::from(r.byte()) % size;
        (heap, root)
    }
}

impl JsSource for ModelHeap {
    type Value = usize;
    type Key = (String, usize);
    type Error = String;

    fn kind(&mut self, value: &usize) -> Result<JsKind, String> {
        Ok(match self.get(*value)? {
            ModelValue::Undefined | ModelValue::Function => JsKind::Omitted,
            ModelValue::Null => JsKind::Null,
            ModelValue::Bool(b) => JsKind::Bool(*b),
            ModelValue::Number(n) => JsKind::Number(*n),
            ModelValue::String(s) => JsKind::String(s.clone()),
            ModelValue::BigInt => JsKind::BigInt,
            ModelValue::Array { length, .. } => JsKind::Array(*length),
            ModelValue::Object(_) => JsKind::Object,
            ModelValue::Throws(message) => return Err(message.clone()),
        })
    }

    fn item(&mut self, array: &usize, index: u32) -> Result<usize, String> {
        let ModelValue::Array { items, .. } = self.get(*array)? else {
            return Err("not an array".into());
        };
        match items.get(index as usize).copied().flatten() {
            Some(handle) => Ok(handle),
            None => Ok(self.add(ModelValue::Undefined)),
        }
    }

    fn keys(&mut self, object: &usize) -> Result<Vec<(String, usize)>, String> {
        match self.get(*object)? {
            ModelValue::Object(entries) => Ok(entries.clone()),
            _ => Err("not an object".into()),
        }
    }

    fn key_name(&mut self, key: &(String, usize)) -> Result<String, String> {
        Ok(key.0.clone())
    }

    fn field(&mut self, _object: &usize, key: &(String, usize)) -> Result<usize, String> {
        Ok(key.1)
    }

    fn same(&mut self, a: &usize, b: &usize) -> Result<bool, String> {
        Ok(a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(heap: &mut ModelHeap, entries: &[(&str, usize)]) -> usize {
        heap.add(ModelValue::Object(
            entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        ))
    }

    #[test]
    fn converts_plain_values_like_json_stringify() {
        let mut h = ModelHeap::default();
        let s = h.add(ModelValue::String("gpt".into()));
        let t = h.add(ModelValue::Number(0.5));
        let i = h.add(ModelValue::Number(3.0));
        let u = h.add(ModelValue::Undefined);
        let f = h.add(ModelValue::Function);
        let b = h.add(ModelValue::Bool(true));
        let arr = h.add(ModelValue::Array {
            items: vec![Some(i), Some(u), None, Some(f)],
            length: 5,
        });
        let root = object(
            &mut h,
            &[
                ("model", s),
                ("temperature", t),
                ("skip", u),
                ("fn", f),
                ("stop", arr),
                ("x", b),
            ],
        );
        let v = to_json(&mut h, &root, "completionParams").unwrap();
        assert_eq!(
            v,
            json!({ "model": "gpt", "temperature": 0.5, "stop": [3, null, null, null, null], "x": true })
        );
        assert_eq!(serde_json::to_string(&v["stop"][0]).unwrap(), "3");
    }

    #[test]
    fn shared_children_are_fine_but_a_cycle_names_both_paths() {
        let mut h = ModelHeap::default();
        let leaf = object(&mut h, &[]);
        let shared = object(&mut h, &[("a", leaf), ("b", leaf)]);
        assert!(to_json(&mut h, &shared, "p").is_ok());

        let root = h.add(ModelValue::Object(Vec::new()));
        let tools = h.add(ModelValue::Array {
            items: vec![Some(root)],
            length: 1,
        });
        h.values[root] = ModelValue::Object(vec![("tools".into(), tools)]);
        let err = to_json(&mut h, &root, "completionParams").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`completionParams.tools[0]` is a circular reference to `completionParams`"
        );
    }

    #[test]
    fn depth_is_bounded_without_deep_recursion() {
        let mut h = ModelHeap::default();
        let mut inner = object(&mut h, &[]);
        for _ in 0..100_000 {
            inner = object(&mut h, &[("x", inner)]);
        }
        let err = to_json(&mut h, &inner, "completionParams").unwrap_err();
        assert!(matches!(err, JsonError::TooDeep { .. }));
        assert_eq!(
            err.to_string(),
            "`completionParams.x.x.x.x….x.x.x.x` nests deeper than 64 levels"
        );
        let JsonError::TooDeep { path } = err else {
            unreachable!()
        };
        assert_eq!(path.steps.len(), MAX_DEPTH);

        let mut h = ModelHeap::default();
        let mut inner = object(&mut h, &[]);
        for _ in 0..MAX_DEPTH - 1 {
            inner = object(&mut h, &[("x", inner)]);
        }
        assert!(
            to_json(&mut h, &inner, "p").is_ok(),
            "exactly {MAX_DEPTH} levels are accepted"
        );
    }

    #[test]
    fn counts_and_text_are_bounded_before_anything_is_read() {
        let mut h = ModelHeap::default();
        let sparse = h.add(ModelValue::Array {
            items: Vec::new(),
            length: u32::MAX,
        });
        let root = object(&mut h, &[("stop", sparse)]);
        assert!(matches!(
            to_json(&mut h, &root, "p"),
            Err(JsonError::TooManyValues { .. })
        ));

        // A DAG that doubles at every level: 2^40 values reachable, few stored.
        let mut h = ModelHeap::default();
        let mut node = h.add(ModelValue::Null);
        for _ in 0..40 {
            node = h.add(ModelValue::Array {
                items: vec![Some(node), Some(node)],
                length: 2,
            });
        }
        assert!(matches!(
            to_json(&mut h, &node, "p"),
            Err(JsonError::TooManyValues { .. })
        ));

        let mut h = ModelHeap::default();
        let big = h.add(ModelValue::String("x".repeat(1024 * 1024)));
        let items = vec![Some(big); 40];
        let arr = h.add(ModelValue::Array { items, length: 40 });
        let err = to_json(&mut h, &arr, "p").unwrap_err();
        assert_eq!(err.to_string(), "`p` holds more than 32 MiB of text");
    }

    #[test]
    fn rejects_non_finite_numbers_bigints_and_throwing_getters_by_path() {
        let mut h = ModelHeap::default();
        let nan = h.add(ModelValue::Number(f64::NAN));
        let root = object(&mut h, &[("temperature", nan)]);
        assert_eq!(
            to_json(&mut h, &root, "completionParams").unwrap_err().to_string(),
            "Expected `completionParams.temperature` to be a finite number, got NaN"
        );
        let big = h.add(ModelValue::BigInt);
        let root = object(&mut h, &[("seed", big)]);
        assert!(matches!(to_json(&mut h, &root, "p"), Err(JsonError::BigInt { .. })));
        let boom = h.add(ModelValue::Throws("Error: boom".into()));
        let inner = object(&mut h, &[("x-y", boom)]);
        let root = object(&mut h, &[("a", inner)]);
        assert_eq!(
            to_json(&mut h, &root, "completionParams").unwrap_err().to_string(),
            "Reading `completionParams.a[\"x-y\"]` threw Error: boom"
        );
    }

    #[test]
    fn prints_numbers_as_javascript_does() {
        let cases: &[(f64, &str)] = &[
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-0.0, "0"),
            (1e308, "1e+308"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (18446744073709551616.0, "18446744073709552000"),
            (-1.0, "-1"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.2345e-10, "1.2345e-10"),
            (123.456, "123.456"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (9007199254740991.0, "9007199254740991"),
        ];
        for (n, expected) in cases {
            assert_eq!(js_number(*n), *expected, "{n:e}");
        }
    }

    #[test]
    fn quotes_strings_as_json_and_cuts_long_ones() {
        assert_eq!(js_string("a\"b\n", 40), "\"a\\\"b\\n\"");
        assert_eq!(js_string(&"é".repeat(50), 3), "\"ééé\"…");
    }

    #[test]
    fn suggests_the_closest_option_name_only_when_close() {
        let known = [
            "maxRetries",
            "timeoutMs",
            "apiKey",
            "overlapTokens",
            "model",
            "name",
            "n2",
        ];
        assert_eq!(closest_name("maxRetry", &known), Some("maxRetries"));
        assert_eq!(closest_name("timeout", &known), Some("timeoutMs"));
        assert_eq!(closest_name("api_key", &known), Some("apiKey"));
        assert_eq!(closest_name("APIKEY", &known), Some("apiKey"));
        assert_eq!(closest_name("overlap", &known), Some("overlapTokens"));
        assert_eq!(closest_name("modle", &known), Some("model"));
        assert_eq!(closest_name("fetch", &known), None);
        assert_eq!(closest_name("x", &known), None);
        assert_eq!(closest_name("", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    /// A small deterministic generator, so the property test below needs no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound.max(1) as u64) as usize
        }
    }

    #[test]
    fn random_heaps_never_panic_and_succeed_only_within_bounds() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3_000 {
            let len = rng.next(600);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next(256) as u8).collect();
            let (mut heap, root) = ModelHeap::from_bytes(&bytes);
            if let Ok(v) = to_json(&mut heap, &root, "p") {
                // Whatever converts serialises and stays within the bounds.
                let text = serde_json::to_string(&v).unwrap();
                assert!(text.len() < MAX_TEXT_BYTES * 2);
            }
        }
        // Every input decodes, the empty one included.
        let (heap, root) = ModelHeap::from_bytes(&[]);
        assert_eq!((heap.values.len(), root), (1, 0));
    }
}
