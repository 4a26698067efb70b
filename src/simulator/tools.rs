//! Tool calls: when a request offers `tools` (and `tool_choice` is not `'none'`) and its last
//! message is the user's, the answer is a call to the tool `tool_choice` names, or else the first
//! one, with arguments built deterministically from the tool's JSON-schema `parameters`: its
//! required properties only, a string as a word of the vocabulary, a number or integer as 1, a
//! boolean as `true`, an enum as its first value, an object by the same rules, an array as `[]`.
//! Also followed: `const` (its value), `$ref` into the schema (`#/$defs/...`), `anyOf`/`oneOf`/
//! `allOf` (the first branch), `minimum`/`maximum` (the number nearest 1 they allow) and
//! `minItems` (that many items, up to 8, built from `items`). Optional properties are left out,
//! which `additionalProperties: false` allows. The same rules answer a `json_schema` response
//! format (see `formats`). The call's id is `call_` plus a hash of the messages. A request whose last message is a `tool`
//! result gets a text answer as usual, so a client's tool loop ends.

use serde_json::{json, Map, Value};

use super::request::RequestMessage;

/// Deepest schema nesting followed when building arguments (deeper values are `null`), which
/// also ends `$ref` cycles.
const MAX_SCHEMA_DEPTH: usize = 16;

/// Most values one instance is built of; past it, values are `null`.
const MAX_INSTANCE_VALUES: usize = 100_000;

/// Most items built for an array's `minItems`.
const MAX_ARRAY_ITEMS: u64 = 8;

/// The call a tool answer makes.
pub(super) struct SimToolCall {
    pub(super) id: String,
    pub(super) name: String,
    /// The arguments as JSON text.
    pub(super) arguments: String,
}

impl SimToolCall {
    /// The call as a complete answer's `message.tool_calls[0]`.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }

    /// The call as stream deltas: the id and name with empty arguments first, then the
    /// arguments in two or more pieces (split on character boundaries).
    pub(super) fn fragments(&self) -> Vec<Value> {
        let mut out = vec![json!({"tool_calls": [{
            "index": 0,
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": ""},
        }]})];
        let chars: Vec<char> = self.arguments.chars().collect();
        // At least two pieces (an argument text has at least "{}"), at most about 8 characters each.
        let pieces = chars.len().div_ceil(8).max(2);
        let size = chars.len().div_ceil(pieces).max(1);
        for piece in chars.chunks(size) {
            let piece: String = piece.iter().collect();
            out.push(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}));
        }
        out
    }
}

/// The tool call a request gets, if any (see the module's documentation). `seed` is the hash of
/// the request's messages.
pub(super) fn tool_call_for(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
    messages: &[RequestMessage],
    seed: u64,
) -> Option<SimToolCall> {
    let tools = tools?.as_array().filter(|t| !t.is_empty())?;
    if tool_choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    if messages.last()?.role != "user" {
        return None;
    }
    let function_name = |tool: &Value| tool.get("function")?.get("name")?.as_str().map(str::to_owned);
    let named = tool_choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let (name, tool) = match named {
        Some(name) => (
            name.to_owned(),
            tools.iter().find(|t| function_name(t).as_deref() == Some(name)),
        ),
        None => {
            let first = tools.first()?;
            (function_name(first)?, Some(first))
        }
    };
    let schema = tool.and_then(|t| t.get("function")).and_then(|f| f.get("parameters"));
    let mut words = seed;
    let arguments = match schema.map(|s| schema_instance(s, &mut words)) {
        Some(Value::Object(object)) => Value::Object(object),
        _ => Value::Object(Map::new()),
    };
    Some(SimToolCall {
        id: format!("call_{seed:016x}"),
        name,
        // A JSON value always serialises.
        arguments: serde_json::to_string(&arguments).unwrap_or_else(|_| "{}".into()),
    })
}

/// A JSON instance of `schema` (the rules are in the module's documentation); `words` picks the
/// words. Also the answer to a `json_schema` response format.
pub(super) fn schema_instance(schema: &Value, words: &mut u64) -> Value {
    let mut walk = SchemaWalk {
        root: schema,
        words,
        budget: MAX_INSTANCE_VALUES,
    };
    walk.value_for(schema, 0)
}

/// Building one instance: the schema `$ref`s point into, the word picker, and how many more
/// values may be built (`$ref`s make a schema a graph, whose instance could grow exponentially).
struct SchemaWalk<'a> {
    root: &'a Value,
    words: &'a mut u64,
    budget: usize,
}

impl SchemaWalk<'_> {
    /// A value matching `schema`.
    fn value_for(&mut self, schema: &Value, depth: usize) -> Value {
        if self.budget == 0 {
            return Value::Null;
        }
        self.budget -= 1;
        let root = self.root;
        // Past the deepest level nothing more is followed: objects and arrays come out empty.
        let deep = depth >= MAX_SCHEMA_DEPTH;
        if let Some(constant) = schema.get("const") {
            return constant.clone();
        }
        if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return first.clone();
        }
        // `#/$defs/Name` (or any JSON pointer into the root schema), as zod and pydantic write them.
        if let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .filter(|_| !deep)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        {
            return self.value_for(target, depth + 1);
        }
        for combinator in ["anyOf", "oneOf", "allOf"] {
            let first = schema.get(combinator).and_then(Value::as_array).and_then(|s| s.first());
            if let Some(first) = first.filter(|_| !deep) {
                return self.value_for(first, depth + 1);
            }
        }
        let kind = match schema.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            // `["string", "null"]`: the first type named.
            Some(Value::Array(kinds)) => kinds.iter().find_map(Value::as_str).unwrap_or("object"),
            _ if schema.get("properties").is_some() => "object",
            _ => "string",
        };
        match kind {
            "string" => Value::from(super::answer::word(self.words)),
            "number" | "integer" => number_for(schema, kind == "integer"),
            "boolean" => Value::Bool(true),
            "array" => {
                // As few items as allowed: `minItems` of them (at most MAX_ARRAY_ITEMS).
                let count = schema
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .filter(|_| !deep)
                    .map_or(0, |n| n.min(MAX_ARRAY_ITEMS));
                let items = schema.get("items").unwrap_or(&Value::Null);
                (0..count).map(|_| self.value_for(items, depth + 1)).collect()
            }
            "null" => Value::Null,
            _ => {
                let mut object = Map::new();
                if deep {
                    return Value::Object(object);
                }
                let properties = schema.get("properties");
                let required = schema.get("required").and_then(Value::as_array);
                for key in required.into_iter().flatten().filter_map(Value::as_str) {
                    let property = properties.and_then(|p| p.get(key)).unwrap_or(&Value::Null);
                    object.insert(key.to_owned(), self.value_for(property, depth + 1));
                }
                Value::Object(object)
            }
        }
    }
}

/// 1, or the nearest value `minimum`/`maximum` allow (rounded inwards for an integer).
fn number_for(schema: &Value, integer: bool) -> Value {
    let bound = |name: &str| schema.get(name).and_then(Value::as_f64).filter(|b| b.is_finite());
    let mut value = 1.0_f64;
    if let Some(minimum) = bound("minimum").filter(|m| *m > value) {
        value = if integer { minimum.ceil() } else { minimum };
    }
    if let Some(maximum) = bound("maximum").filter(|m| *m < value) {
        value = if integer { maximum.floor() } else { maximum };
    }
    if integer {
        // Finite and rounded; an integer beyond i64 is left as a float.
        if value.abs() < 9.0e15 {
            return Value::from(value as i64);
        }
    }
    serde_json::Number::from_f64(value).map_or(Value::from(1), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn user(text: &str) -> RequestMessage {
        RequestMessage {
            role: "user".into(),
            content: Some(Value::from(text)),
            name: None,
        }
    }

    fn weather_tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
                    "unit": {"type": "string", "enum": ["c", "f"]}, "note": {"type": "string"}
                },
                "required": ["city", "days", "metric", "unit"]
            }}},
            {"type": "function", "function": {"name": "get_time"}}
        ])
    }

    #[test]
    fn arguments_follow_the_required_properties_of_the_schema() {
        let tools = weather_tools();
        let call = tool_call_for(Some(&tools), None, &[user("hi")], 42).unwrap();
        assert_eq!(call.name, "get_weather");
        assert!(call.id.starts_with("call_"));
        let args: Value = serde_json::from_str(&call.arguments).unwrap();
        assert!(args["city"].as_str().is_some_and(|c| !c.is_empty()));
        assert_eq!((args["days"].clone(), args["metric"].clone()), (json!(1), json!(true)));
        assert_eq!(args["unit"], "c");
        assert!(args.get("note").is_none(), "optional properties are left out");
        let again = tool_call_for(Some(&tools), None, &[user("hi")], 42).unwrap();
        assert_eq!((again.id, again.arguments), (call.id, call.arguments), "deterministic");
    }

    #[test]
    fn instances_follow_const_refs_combinators_bounds_and_min_items() {
        let schema = json!({
            "type": "object",
            "properties": {
                "v": {"const": [1, 2]},
                "r": {"$ref": "#/definitions/leaf"},
                "o": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
                "low": {"type": "number", "maximum": -2.5},
                "high": {"type": "integer", "minimum": 3.2},
                "items": {"type": "array", "items": {"type": "integer"}, "minItems": 100},
                "loop": {"$ref": "#"}
            },
            "required": ["v", "r", "o", "low", "high", "items", "loop"],
            "definitions": {"leaf": {"type": "string", "enum": ["x"]}}
        });
        let instance = schema_instance(&schema, &mut 7);
        assert_eq!(instance["v"], json!([1, 2]));
        assert_eq!((&instance["r"], &instance["o"]), (&json!("x"), &json!(true)));
        assert_eq!((&instance["low"], &instance["high"]), (&json!(-2.5), &json!(4)));
        assert_eq!(instance["items"], json!([1, 1, 1, 1, 1, 1, 1, 1]), "at most 8 items");
        // A self-reference is followed only down to the deepest level.
        let mut depth = 0;
        let mut at = &instance;
        while let Some(next) = at.get("loop") {
            (depth, at) = (depth + 1, next);
        }
        assert!((1..=MAX_SCHEMA_DEPTH).contains(&depth), "{depth}");
    }

    #[test]
    fn an_instance_of_a_schema_graph_stops_at_the_value_budget() {
        // Every level refers to the next one ten times: 10^15 values if followed naively.
        let mut defs = serde_json::Map::new();
        for level in 0..15 {
            let next = json!({"$ref": format!("#/$defs/l{}", level + 1)});
            let keys: Vec<String> = (0..10).map(|k| format!("k{k}")).collect();
            let properties: Map<String, Value> = keys.iter().map(|k| (k.clone(), next.clone())).collect();
            defs.insert(
                format!("l{level}"),
                json!({"type": "object", "properties": properties, "required": keys}),
            );
        }
        defs.insert("l15".into(), json!({"type": "string"}));
        let schema = json!({"$ref": "#/$defs/l0", "$defs": defs});
        let started = std::time::Instant::now();
        let instance = schema_instance(&schema, &mut 1);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(instance["k0"].is_object());
    }

    #[test]
    fn tool_choice_picks_the_tool_or_turns_calls_off() {
        let tools = weather_tools();
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        let call = tool_call_for(Some(&tools), Some(&named), &[user("hi")], 1).unwrap();
        assert_eq!((call.name.as_str(), call.arguments.as_str()), ("get_time", "{}"));
        assert!(tool_call_for(Some(&tools), Some(&json!("none")), &[user("hi")], 1).is_none());
        assert!(tool_call_for(Some(&json!([])), None, &[user("hi")], 1).is_none());
        assert!(tool_call_for(None, None, &[user("hi")], 1).is_none());
        let result = RequestMessage {
            role: "tool".into(),
            content: Some(Value::from("sunny")),
            name: None,
        };
        assert!(tool_call_for(Some(&tools), None, &[user("hi"), result], 1).is_none());
    }

    #[test]
    fn fragments_carry_the_id_and_name_first_and_the_arguments_in_pieces() {
        let call = SimToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let fragments = call.fragments();
        assert_eq!(fragments[0]["tool_calls"][0]["id"], "call_1");
        let pieces: Vec<&str> = fragments[1..]
            .iter()
            .map(|f| f["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert!(pieces.len() >= 2);
        assert_eq!(pieces.concat(), "{}");
    }

    #[tokio::test]
    async fn a_request_with_tools_is_answered_with_a_call_streamed_or_not() {
        let sim = start_default().await;
        let body = chat_request("weather?", json!({"tools": weather_tools()}));
        let answer = json_body(post_ok(&sim, &body, &[]).await).await;
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
        assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);

        let body = chat_request("weather?", json!({"tools": weather_tools(), "stream": true}));
        let response = post_ok(&sim, &body, &[]).await;
        let (text, _) = read_stream(response, Duration::from_secs(5)).await;
        let frames = data_frames(&text);
        let arguments: String = frames
            .iter()
            .filter_map(|f| serde_json::from_str::<Value>(f).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            arguments,
            choice["message"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        );
        assert!(text.contains(r#""finish_reason":"tool_calls""#));
        assert!(text.contains("[DONE]"));
    }
}
