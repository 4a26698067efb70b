//! Structured outputs and reasoning models: checking the `responseFormat` and `reasoningEffort`
//! options (openai-node's shapes) before they are written into a request as `response_format` /
//! `reasoning_effort`, and reading a reply that `response_format` asked to be JSON into the value
//! it holds (`reply.parsed`), or the error saying why it holds none.
//!
//! A JSON reply is read once the completion is complete (never per delta), as openai-node's
//! `parse` does: a cut reply (`finish_reason: 'length'`) and a refusal reject before any parsing,
//! since neither is the JSON asked for.

use serde_json::{Map, Value};

use super::chat::Params;
use super::error::{ChatError, ErrorCode};
use super::jsvalue::{expected_arg, js_string, MAX_DEPTH};

/// The `reasoning_effort` values OpenAI documents for its reasoning models.
pub const REASONING_EFFORTS: [&str; 4] = ["minimal", "low", "medium", "high"];

/// Longest `json_schema.name` OpenAI accepts.
const MAX_SCHEMA_NAME: usize = 64;

/// What a request's `response_format` asks the reply to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Free text (no `response_format`, or `{ type: 'text' }`): the reply is not read.
    #[default]
    Text,
    /// `json_object` or `json_schema`: the reply must be one JSON document.
    Json,
}

impl OutputFormat {
    /// The format `params` (a call's merged parameters) ask for.
    pub fn of(params: &Params) -> Self {
        let kind = params
            .get("response_format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str);
        match kind {
            Some("json_object" | "json_schema") => OutputFormat::Json,
            _ => OutputFormat::Text,
        }
    }
}

/// What a finished choice holds, as [`parse_output`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceOutput<'a> {
    pub text: &'a str,
    pub finish_reason: Option<&'a str>,
    /// The choice's `refusal`, when the model refused.
    pub refusal: Option<&'a str>,
    /// The choice called tools (its text, often empty, is then no answer to parse).
    pub tool_calls: bool,
}

/// The JSON value a choice's text holds, for a request whose `response_format` asked for JSON.
/// A cut reply (`OutputLength`, with `text`) and a refusal (`Refusal`, with `refusal`) fail
/// before parsing; text that is not one JSON document, or nests deeper than [`MAX_DEPTH`]
/// levels, fails with `OutputParse` (with `text`). A choice that called tools without writing
/// text has no value (`None`): the JSON answer comes after the tools' results (`runTools`).
pub fn parse_output(choice: ChoiceOutput<'_>) -> Result<Option<Value>, ChatError> {
    if choice.finish_reason == Some("length") {
        let mut e = ChatError::new(
            ErrorCode::OutputLength,
            "The reply was cut by the token limit (finish_reason `length`) before its JSON was complete; raise `maxResponseTokens` or `max_completion_tokens`",
        );
        e.text = Some(choice.text.to_owned());
        return Err(e);
    }
    // As openai-node's `parse`: an empty refusal is none.
    if let Some(refusal) = choice.refusal.filter(|r| !r.is_empty()) {
        let mut e = ChatError::new(
            ErrorCode::Refusal,
            format!("The model refused to answer: {}", js_string(refusal, 200)),
        );
        e.refusal = Some(refusal.to_owned());
        return Err(e);
    }
    if choice.tool_calls && choice.text.trim().is_empty() {
        return Ok(None);
    }
    let parse_failure = |why: String| {
        let mut e = ChatError::new(ErrorCode::OutputParse, format!("The reply is not valid JSON: {why}"));
        e.text = Some(choice.text.to_owned());
        e
    };
    if nesting_depth(choice.text) > MAX_DEPTH {
        return Err(parse_failure(format!("it nests deeper than {MAX_DEPTH} levels")));
    }
    serde_json::from_str(choice.text)
        .map(Some)
        .map_err(|e| parse_failure(e.to_string()))
}

/// The deepest nesting of arrays and objects in `text` read as JSON (brackets inside strings do
/// not count), without recursion: the bound is checked before a parser recurses into it.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `responseFormat`: `{ type: 'text' } | { type: 'json_object' } | { type: 'json_schema',
/// json_schema: { name, schema?, strict?, description? } }`. `option` names it in messages
/// (`responseFormat`, `completionParams.response_format`).
pub fn check_response_format(format: &Value, option: &str) -> Result<(), ChatError> {
    const EXPECTED: &str = "{ type: 'text' | 'json_object' | 'json_schema' }";
    let object = format
        .as_object()
        .ok_or_else(|| expected_arg(option, EXPECTED, format))?;
    let kind = object.get("type").unwrap_or(&Value::Null);
    match kind.as_str() {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => check_json_schema(object, &format!("{option}.json_schema")),
        _ => Err(expected_arg(
            &format!("{option}.type"),
            "'text', 'json_object' or 'json_schema'",
            kind,
        )),
    }
}

/// `json_schema: { name, schema?, strict?, description? }` of a `json_schema` response format.
fn check_json_schema(format: &Map<String, Value>, option: &str) -> Result<(), ChatError> {
    let spec = format.get("json_schema").unwrap_or(&Value::Null);
    let spec = spec
        .as_object()
        .ok_or_else(|| expected_arg(option, "an object ({ name, schema?, strict?, description? })", spec))?;
    let name = spec.get("name").unwrap_or(&Value::Null);
    let valid_name = name.as_str().is_some_and(|n| {
        (1..=MAX_SCHEMA_NAME).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !valid_name {
        return Err(expected_arg(
            &format!("{option}.name"),
            "1 to 64 letters, digits, '_' or '-'",
            name,
        ));
    }
    if let Some(schema) = spec.get("schema").filter(|s| !s.is_null()) {
        if !schema.is_object() {
            return Err(expected_arg(
                &format!("{option}.schema"),
                "a JSON Schema object",
                schema,
            ));
        }
    }
    if let Some(strict) = spec.get("strict").filter(|s| !s.is_null()) {
        if !strict.is_boolean() {
            return Err(expected_arg(&format!("{option}.strict"), "a boolean", strict));
        }
    }
    if let Some(description) = spec.get("description") {
        if !description.is_string() {
            return Err(expected_arg(&format!("{option}.description"), "a string", description));
        }
    }
    Ok(())
}

/// `reasoningEffort`: one of [`REASONING_EFFORTS`].
pub fn check_reasoning_effort(effort: &Value, option: &str) -> Result<(), ChatError> {
    match effort.as_str() {
        Some(e) if REASONING_EFFORTS.contains(&e) => Ok(()),
        _ => Err(expected_arg(option, "'minimal', 'low', 'medium' or 'high'", effort)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output<'a>(text: &'a str, finish_reason: Option<&'a str>, refusal: Option<&'a str>) -> ChoiceOutput<'a> {
        ChoiceOutput {
            text,
            finish_reason,
            refusal,
            tool_calls: false,
        }
    }

    #[test]
    fn a_complete_json_reply_is_its_value() {
        let value = parse_output(output(" {\"a\": [1, \"}\"]}\n", Some("stop"), None)).unwrap();
        assert_eq!(value, Some(json!({ "a": [1, "}"] })));
        assert_eq!(parse_output(output("null", None, None)).unwrap(), Some(Value::Null));
    }

    #[test]
    fn a_reply_that_only_called_tools_has_no_value_and_is_no_failure() {
        let called = ChoiceOutput {
            tool_calls: true,
            ..output("", Some("tool_calls"), None)
        };
        assert_eq!(parse_output(called).unwrap(), None);
        // Text beside the calls is still read.
        let with_text = ChoiceOutput {
            tool_calls: true,
            ..output("{\"a\":1}", Some("tool_calls"), None)
        };
        assert_eq!(parse_output(with_text).unwrap(), Some(json!({ "a": 1 })));
        // Without calls, empty text is no JSON.
        let e = parse_output(output("", Some("tool_calls"), None)).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputParse);
    }

    #[test]
    fn text_that_is_not_json_fails_with_the_text() {
        for text in ["", "{\"a\": 1", "Sure! {\"a\": 1}", "{} {}"] {
            let e = parse_output(output(text, Some("stop"), None)).unwrap_err();
            assert_eq!(e.code, ErrorCode::OutputParse, "{text:?}");
            assert_eq!(e.text.as_deref(), Some(text));
        }
    }

    #[test]
    fn a_cut_reply_fails_as_cut_before_it_is_parsed() {
        // Valid JSON, but cut: the rest of the answer is missing.
        let e = parse_output(output("{}", Some("length"), None)).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputLength);
        assert_eq!(e.text.as_deref(), Some("{}"));
        // Even with a refusal, the cut is reported, as openai-node's `parse` checks it first.
        let e = parse_output(output("{\"a", Some("length"), Some("no"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputLength);
    }

    #[test]
    fn a_refusal_fails_with_the_refusal() {
        let e = parse_output(output("", Some("stop"), Some("I can't help with that."))).unwrap_err();
        assert_eq!(e.code, ErrorCode::Refusal);
        assert_eq!(e.refusal.as_deref(), Some("I can't help with that."));
        assert!(e.text.is_none());
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_output(output(&deep(MAX_DEPTH), Some("stop"), None)).is_ok());
        let e = parse_output(output(&deep(MAX_DEPTH + 1), Some("stop"), None)).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputParse);
        // Far deeper than any stack allows for a recursive parser: refused by the scan.
        let e = parse_output(output(&deep(1_000_000), Some("stop"), None)).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputParse);
        // Brackets inside strings (escaped quotes included) are text.
        let quoted = format!("[\"\\\"{}\"]", "[".repeat(100));
        assert!(parse_output(output(&quoted, Some("stop"), None)).is_ok());
    }

    #[test]
    fn response_formats_of_every_documented_shape_are_accepted() {
        for format in [
            json!({ "type": "text" }),
            json!({ "type": "json_object" }),
            json!({ "type": "json_schema", "json_schema": { "name": "a-B_9" } }),
            json!({ "type": "json_schema", "json_schema": {
                "name": "x".repeat(64), "schema": { "type": "object" }, "strict": true, "description": "d"
            } }),
            json!({ "type": "json_schema", "json_schema": { "name": "n", "schema": null, "strict": null } }),
        ] {
            check_response_format(&format, "responseFormat").unwrap_or_else(|e| panic!("{format}: {e}"));
        }
    }

    #[test]
    fn bad_response_formats_are_refused_naming_the_field_and_the_value() {
        let cases = [
            (json!("json_object"), "`responseFormat`", "\"json_object\""),
            (json!({ "type": "yaml" }), "`responseFormat.type`", "\"yaml\""),
            (json!({}), "`responseFormat.type`", "null"),
            (json!({ "type": "json_schema" }), "`responseFormat.json_schema`", "null"),
            (
                json!({ "type": "json_schema", "json_schema": { "name": "" } }),
                "`responseFormat.json_schema.name`",
                "\"\"",
            ),
            (
                json!({ "type": "json_schema", "json_schema": { "name": "has space" } }),
                "`responseFormat.json_schema.name`",
                "\"has space\"",
            ),
            (
                json!({ "type": "json_schema", "json_schema": { "name": "x".repeat(65) } }),
                "`responseFormat.json_schema.name`",
                "xxx",
            ),
            (
                json!({ "type": "json_schema", "json_schema": { "name": "n", "schema": [] } }),
                "`responseFormat.json_schema.schema`",
                "an array",
            ),
            (
                json!({ "type": "json_schema", "json_schema": { "name": "n", "strict": "yes" } }),
                "`responseFormat.json_schema.strict`",
                "\"yes\"",
            ),
        ];
        for (format, field, got) in cases {
            let e = check_response_format(&format, "responseFormat").unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg);
            assert!(
                e.message.contains(field) && e.message.contains(got),
                "{format}: {}",
                e.message
            );
        }
    }

    #[test]
    fn reasoning_effort_is_one_of_the_documented_levels() {
        for effort in REASONING_EFFORTS {
            check_reasoning_effort(&json!(effort), "reasoningEffort").unwrap();
        }
        for bad in [json!("max"), json!(""), json!(2), json!(null)] {
            let e = check_reasoning_effort(&bad, "reasoningEffort").unwrap_err();
            assert!(e.message.contains("`reasoningEffort`"), "{}", e.message);
        }
    }

    #[test]
    fn only_json_formats_ask_for_a_json_reply() {
        let of = |format: Value| {
            let mut map = Map::new();
            map.insert("response_format".into(), format);
            OutputFormat::of(&Params::new(map))
        };
        assert_eq!(of(json!({ "type": "json_object" })), OutputFormat::Json);
        assert_eq!(
            of(json!({ "type": "json_schema", "json_schema": {} })),
            OutputFormat::Json
        );
        assert_eq!(of(json!({ "type": "text" })), OutputFormat::Text);
        assert_eq!(OutputFormat::of(&Params::new(Map::new())), OutputFormat::Text);
    }
}
