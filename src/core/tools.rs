//! Tool calling options: checking `tools` and `toolChoice` (openai-node's shapes) before they are
//! written into a request as `tools` / `tool_choice`, and reading `toolResults`, the answers to a
//! reply's tool calls that a follow-up sends (and the conversation store keeps).

use serde_json::{Map, Value};

use super::error::ChatError;
use super::jsvalue::js_string;

/// Most entries of `tools` (OpenAI's own limit) and of `toolResults`.
pub const MAX_TOOLS: usize = 128;

/// One answer to a tool call: what `toolResults` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The `id` of the call answered (`reply.toolCalls[i].id`).
    pub tool_call_id: String,
    /// The result as sent to the model: a string as given, any other JSON value stringified.
    pub content: String,
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => js_string(s, 40),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn invalid(option: &str, expected: &str, got: &Value) -> ChatError {
    ChatError::invalid_arg(format!("Expected `{option}` to be {expected}, got {}", kind_of(got)))
}

/// A non-empty string field of `object`, or the error naming `option.key`.
fn required_string<'a>(object: &'a Map<String, Value>, key: &str, option: &str) -> Result<&'a str, ChatError> {
    let value = object.get(key).unwrap_or(&Value::Null);
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(&format!("{option}.{key}"), "a non-empty string", value))
}

/// `tools`: `[{ type: 'function', function: { name, description?, parameters?, strict? } }]`.
/// `option` names it in messages (`tools`, `completionParams.tools`).
pub fn check_tools(tools: &Value, option: &str) -> Result<(), ChatError> {
    let list = tools
        .as_array()
        .ok_or_else(|| invalid(option, "an array of tools", tools))?;
    if list.len() > MAX_TOOLS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{option}` to have at most {MAX_TOOLS} tools, got {}",
            list.len()
        )));
    }
    for (i, tool) in list.iter().enumerate() {
        let name = format!("{option}[{i}]");
        let object = tool
            .as_object()
            .ok_or_else(|| invalid(&name, "a tool object ({ type: 'function', function })", tool))?;
        let kind = object.get("type").unwrap_or(&Value::Null);
        if kind.as_str() != Some("function") {
            return Err(invalid(&format!("{name}.type"), "'function'", kind));
        }
        let function = object.get("function").unwrap_or(&Value::Null);
        let function = function
            .as_object()
            .ok_or_else(|| invalid(&format!("{name}.function"), "an object", function))?;
        required_string(function, "name", &format!("{name}.function"))?;
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            if !parameters.is_object() {
                return Err(invalid(
                    &format!("{name}.function.parameters"),
                    "a JSON Schema object",
                    parameters,
                ));
            }
        }
    }
    Ok(())
}

/// `toolChoice`: `'auto' | 'none' | 'required' | { type: 'function', function: { name } }`.
pub fn check_tool_choice(choice: &Value, option: &str) -> Result<(), ChatError> {
    const EXPECTED: &str = "'auto', 'none', 'required' or { type: 'function', function: { name } }";
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(()),
        Value::Object(object) => {
            let function = object.get("function").and_then(Value::as_object);
            match (object.get("type").and_then(Value::as_str), function) {
                (Some("function"), Some(function)) => {
                    required_string(function, "name", &format!("{option}.function")).map(|_| ())
                }
                _ => Err(invalid(option, EXPECTED, choice)),
            }
        }
        _ => Err(invalid(option, EXPECTED, choice)),
    }
}

/// `toolResults`: `[{ toolCallId, content }]`, at least one, `content` a string or any JSON value
/// (stringified, as a tool's result must reach the model as text).
pub fn read_tool_results(results: &Value, option: &str) -> Result<Vec<ToolResult>, ChatError> {
    const EXPECTED: &str = "a non-empty array of { toolCallId, content }";
    let list = results
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid(option, EXPECTED, results))?;
    if list.len() > MAX_TOOLS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{option}` to have at most {MAX_TOOLS} results, got {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, result)| {
            let name = format!("{option}[{i}]");
            let object = result
                .as_object()
                .ok_or_else(|| invalid(&name, "an object ({ toolCallId, content })", result))?;
            let tool_call_id = required_string(object, "toolCallId", &name)?.to_owned();
            let content = match object.get("content") {
                None | Some(Value::Null) => {
                    return Err(invalid(
                        &format!("{name}.content"),
                        "a string or a JSON value",
                        &Value::Null,
                    ))
                }
                Some(Value::String(s)) => s.clone(),
                // A JSON value always serialises.
                Some(other) => serde_json::to_string(other).unwrap_or_default(),
            };
            Ok(ToolResult { tool_call_id, content })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;
    use serde_json::json;

    fn message(e: ChatError) -> String {
        assert_eq!(e.code, ErrorCode::InvalidArg);
        e.message.clone()
    }

    #[test]
    fn tools_of_openai_nodes_shape_pass_and_others_name_the_bad_field() {
        let good = json!([
            {"type": "function", "function": {"name": "f"}},
            {"type": "function", "function": {"name": "g", "description": "d", "parameters": {"type": "object"}, "strict": true}},
        ]);
        check_tools(&good, "tools").unwrap();
        for (bad, named) in [
            (json!({}), "`tools`"),
            (json!([1]), "`tools[0]`"),
            (json!([{"type": "code", "function": {"name": "f"}}]), "`tools[0].type`"),
            (json!([{"type": "function"}]), "`tools[0].function`"),
            (
                json!([{"type": "function", "function": {"name": ""}}]),
                "`tools[0].function.name`",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                "`tools[0].function.parameters`",
            ),
        ] {
            let m = message(check_tools(&bad, "tools").unwrap_err());
            assert!(m.contains(named), "{m}");
        }
        let many = Value::Array(vec![
            json!({"type": "function", "function": {"name": "f"}});
            MAX_TOOLS + 1
        ]);
        assert!(message(check_tools(&many, "tools").unwrap_err()).contains("at most"));
    }

    #[test]
    fn tool_choice_is_a_mode_or_a_named_function() {
        for good in [
            json!("auto"),
            json!("none"),
            json!("required"),
            json!({"type": "function", "function": {"name": "f"}}),
        ] {
            check_tool_choice(&good, "toolChoice").unwrap();
        }
        for bad in [
            json!("sometimes"),
            json!(1),
            json!({"type": "function"}),
            json!({"function": {"name": "f"}}),
        ] {
            let m = message(check_tool_choice(&bad, "toolChoice").unwrap_err());
            assert!(m.contains("`toolChoice"), "{m}");
        }
    }

    #[test]
    fn tool_results_stringify_json_content_and_name_what_is_missing() {
        let results = read_tool_results(
            &json!([{"toolCallId": "a", "content": "text"}, {"toolCallId": "b", "content": {"x": [1]}}]),
            "toolResults",
        )
        .unwrap();
        assert_eq!(results[0].content, "text");
        assert_eq!(results[1].content, r#"{"x":[1]}"#);
        assert_eq!(results[1].tool_call_id, "b");
        for (bad, named) in [
            (json!([]), "`toolResults`"),
            (json!("x"), "`toolResults`"),
            (json!([{"content": "x"}]), "`toolResults[0].toolCallId`"),
            (json!([{"toolCallId": "a"}]), "`toolResults[0].content`"),
        ] {
            let m = message(read_tool_results(&bad, "toolResults").unwrap_err());
            assert!(m.contains(named), "{m}");
        }
    }
}
