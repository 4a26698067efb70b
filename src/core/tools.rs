//! Tool calling options: checking `tools` and `toolChoice` (openai-node's shapes) before they are
//! written into a request as `tools` / `tool_choice`, reading `toolResults`, the answers to a
//! reply's tool calls that a follow-up sends (and the conversation store keeps), or the same
//! answers given as `sendMessage`'s input (`{ role: 'tool', toolCallId, content }`), and reading a
//! message's `tool_calls` (for counting them).

use serde_json::{Map, Value};

use super::chat::{ToolCall, ToolFunction, MAX_TOOL_CALLS};
use super::error::ChatError;
use super::jsvalue::{describe_json, expected_arg};

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

/// A non-empty string field of `object`, or the error naming `option.key`.
fn required_string<'a>(object: &'a Map<String, Value>, key: &str, option: &str) -> Result<&'a str, ChatError> {
    let value = object.get(key).unwrap_or(&Value::Null);
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| expected_arg(&format!("{option}.{key}"), "a non-empty string", value))
}

/// `tools`: `[{ type: 'function', function: { name, description?, parameters?, strict? } }]`.
/// `option` names it in messages (`tools`, `completionParams.tools`).
pub fn check_tools(tools: &Value, option: &str) -> Result<(), ChatError> {
    let list = tools
        .as_array()
        .ok_or_else(|| expected_arg(option, "an array of tools", tools))?;
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
            .ok_or_else(|| expected_arg(&name, "a tool object ({ type: 'function', function })", tool))?;
        let kind = object.get("type").unwrap_or(&Value::Null);
        if kind.as_str() != Some("function") {
            return Err(expected_arg(&format!("{name}.type"), "'function'", kind));
        }
        let function = object.get("function").unwrap_or(&Value::Null);
        let function = function
            .as_object()
            .ok_or_else(|| expected_arg(&format!("{name}.function"), "an object", function))?;
        required_string(function, "name", &format!("{name}.function"))?;
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            if !parameters.is_object() {
                return Err(expected_arg(
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
                _ => Err(expected_arg(option, EXPECTED, choice)),
            }
        }
        _ => Err(expected_arg(option, EXPECTED, choice)),
    }
}

/// `toolResults`: `[{ toolCallId, content }]`, at least one, `content` a string or any JSON value
/// (stringified, as a tool's result must reach the model as text).
pub fn read_tool_results(results: &Value, option: &str) -> Result<Vec<ToolResult>, ChatError> {
    const EXPECTED: &str = "a non-empty array of { toolCallId, content }";
    let list = results
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| expected_arg(option, EXPECTED, results))?;
    check_result_count(list, option)?;
    list.iter()
        .enumerate()
        .map(|(i, result)| {
            let name = format!("{option}[{i}]");
            let object = result
                .as_object()
                .ok_or_else(|| expected_arg(&name, "an object ({ toolCallId, content })", result))?;
            read_tool_result(object, &name)
        })
        .collect()
}

fn check_result_count(list: &[Value], option: &str) -> Result<(), ChatError> {
    if list.len() > MAX_TOOLS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{option}` to have at most {MAX_TOOLS} results, got {}",
            list.len()
        )));
    }
    Ok(())
}

/// One result, `{ toolCallId, content }`; `name` names it in errors (`toolResults[0]`, `text`).
fn read_tool_result(object: &Map<String, Value>, name: &str) -> Result<ToolResult, ChatError> {
    // The wire spelling is a likely slip (openai-node's messages use it): say which one is read.
    if !object.contains_key("toolCallId") && object.contains_key("tool_call_id") {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{name}.toolCallId` to be a non-empty string, got undefined (`{name}.tool_call_id` is the \
             request body's spelling; write `toolCallId`)"
        )));
    }
    let tool_call_id = required_string(object, "toolCallId", name)?.to_owned();
    let content = match object.get("content") {
        None | Some(Value::Null) => {
            return Err(expected_arg(
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
}

/// The fields a tool message given as `sendMessage`'s input may have.
const TOOL_MESSAGE_FIELDS: [&str; 3] = ["role", "toolCallId", "content"];

/// Whether `value` is a message object (it has a `role`) rather than a content part.
fn is_message(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.contains_key("role"))
}

/// `sendMessage`'s input read as tool messages: `{ role: 'tool', toolCallId, content }` or an
/// array of them, the same results as the `toolResults` option takes. `None` when `input` is not
/// such an input: a string, an object without `role`, or an array none of whose items has a
/// `role` (content parts). `name` names the input in errors (`text`, `inputs[3].text`).
pub fn read_tool_messages(input: &Value, name: &str) -> Option<Result<Vec<ToolResult>, ChatError>> {
    match input {
        Value::Object(_) if is_message(input) => Some(read_tool_message(input, name).map(|r| vec![r])),
        Value::Array(items) if items.iter().any(is_message) => Some(read_tool_message_list(items, name)),
        _ => None,
    }
}

fn read_tool_message_list(items: &[Value], name: &str) -> Result<Vec<ToolResult>, ChatError> {
    check_result_count(items, name)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{name}[{i}]");
            if !is_message(item) {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}` to be a tool message {{ role: 'tool', toolCallId, content }}, got {}: content \
                     parts and tool messages do not mix in one input",
                    describe_json(item)
                )));
            }
            read_tool_message(item, &at)
        })
        .collect()
}

/// One `{ role: 'tool', toolCallId, content }`; other fields are refused, so a misspelt one
/// cannot be dropped unnoticed.
fn read_tool_message(item: &Value, name: &str) -> Result<ToolResult, ChatError> {
    let Some(object) = item.as_object() else {
        return Err(expected_arg(
            name,
            "a tool message { role: 'tool', toolCallId, content }",
            item,
        ));
    };
    let role = object.get("role").unwrap_or(&Value::Null);
    if role.as_str() != Some("tool") {
        return Err(expected_arg(
            &format!("{name}.role"),
            "'tool' (a tool message { role: 'tool', toolCallId, content }; other messages go through `sendMessages`)",
            role,
        ));
    }
    let result = read_tool_result(object, name)?;
    if let Some(other) = object.keys().find(|k| !TOOL_MESSAGE_FIELDS.contains(&k.as_str())) {
        let shown: String = other.chars().take(40).collect();
        return Err(ChatError::invalid_arg(format!(
            "Unknown field `{name}.{shown}` of a tool message: it has `role`, `toolCallId` and `content`"
        )));
    }
    Ok(result)
}

/// A message's `tool_calls` (`path` names it): openai-node's `ChatCompletionMessageToolCall[]`,
/// each `{ id, type: 'function', function: { name, arguments } }`, at most [`MAX_TOOL_CALLS`].
/// Other fields of a call are allowed (and not counted).
pub fn read_tool_calls(value: &Value, path: &str) -> Result<Vec<ToolCall>, ChatError> {
    const EXPECTED: &str = "an array of tool calls { id, type: 'function', function: { name, arguments } }";
    let list = value.as_array().ok_or_else(|| expected_arg(path, EXPECTED, value))?;
    if list.len() > MAX_TOOL_CALLS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to have at most {MAX_TOOL_CALLS} tool calls, got {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, call)| {
            let at = format!("{path}[{i}]");
            let object = call
                .as_object()
                .ok_or_else(|| expected_arg(&at, "a tool call { id, type: 'function', function }", call))?;
            let id = required_string(object, "id", &at)?.to_owned();
            let kind = object.get("type").unwrap_or(&Value::Null);
            if kind.as_str() != Some("function") {
                return Err(expected_arg(&format!("{at}.type"), "'function'", kind));
            }
            let function = object.get("function").unwrap_or(&Value::Null);
            let function = function
                .as_object()
                .ok_or_else(|| expected_arg(&format!("{at}.function"), "an object { name, arguments }", function))?;
            let name = required_string(function, "name", &format!("{at}.function"))?.to_owned();
            let arguments = function.get("arguments").unwrap_or(&Value::Null);
            let arguments = arguments
                .as_str()
                .ok_or_else(|| expected_arg(&format!("{at}.function.arguments"), "a string (JSON text)", arguments))?
                .to_owned();
            Ok(ToolCall {
                id,
                kind: "function".into(),
                function: ToolFunction { name, arguments },
            })
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

    #[test]
    fn tool_messages_as_input_read_as_tool_results_would() {
        let one = json!({"role": "tool", "toolCallId": "a", "content": {"x": 1}});
        let as_results = read_tool_results(&json!([{"toolCallId": "a", "content": {"x": 1}}]), "toolResults").unwrap();
        assert_eq!(read_tool_messages(&one, "text").unwrap().unwrap(), as_results);
        let two = json!([{"role": "tool", "toolCallId": "a", "content": "1"}, {"role": "tool", "toolCallId": "b", "content": "2"}]);
        let read = read_tool_messages(&two, "text").unwrap().unwrap();
        assert_eq!(
            read.iter().map(|r| r.tool_call_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Not tool messages: left to the other readers.
        for other in [
            json!("hi"),
            json!({}),
            json!([{"type": "text", "text": "x"}]),
            json!([]),
        ] {
            assert!(read_tool_messages(&other, "text").is_none(), "{other}");
        }
    }

    #[test]
    fn bad_tool_messages_name_the_field() {
        for (bad, named) in [
            (json!({"role": "user", "content": "x"}), "`text.role`"),
            (json!({"role": "tool", "content": "x"}), "`text.toolCallId`"),
            (
                json!({"role": "tool", "tool_call_id": "a", "content": "x"}),
                "write `toolCallId`",
            ),
            (json!({"role": "tool", "toolCallId": "a"}), "`text.content`"),
            (
                json!({"role": "tool", "toolCallId": "a", "content": "x", "name": "n"}),
                "`text.name`",
            ),
            (
                json!([{"role": "tool", "toolCallId": "a", "content": "x"}, {"type": "text", "text": "x"}]),
                "`text[1]`",
            ),
            (
                json!([{"type": "text", "text": "x"}, {"role": "tool", "content": "x"}]),
                "`text[0]`",
            ),
        ] {
            let m = message(read_tool_messages(&bad, "text").unwrap().unwrap_err());
            assert!(m.contains(named), "{bad}: {m}");
        }
        let many = Value::Array(vec![
            json!({"role": "tool", "toolCallId": "a", "content": "x"});
            MAX_TOOLS + 1
        ]);
        assert!(message(read_tool_messages(&many, "text").unwrap().unwrap_err()).contains("at most"));
    }

    #[test]
    fn tool_calls_are_read_strictly_naming_the_bad_field() {
        let calls = read_tool_calls(
            &json!([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}, "index": 0}]),
            "messages[1].tool_calls",
        )
        .unwrap();
        assert_eq!(calls[0].id, "c1");
        assert_eq!(calls[0].function.arguments, "{}");
        for (bad, named) in [
            (json!({}), "`m.tool_calls`"),
            (json!([1]), "`m.tool_calls[0]`"),
            (
                json!([{"type": "function", "function": {"name": "f", "arguments": ""}}]),
                "`m.tool_calls[0].id`",
            ),
            (
                json!([{"id": "c", "function": {"name": "f", "arguments": ""}}]),
                "`m.tool_calls[0].type`",
            ),
            (json!([{"id": "c", "type": "function"}]), "`m.tool_calls[0].function`"),
            (
                json!([{"id": "c", "type": "function", "function": {"arguments": ""}}]),
                "`m.tool_calls[0].function.name`",
            ),
            (
                json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]),
                "`m.tool_calls[0].function.arguments`",
            ),
        ] {
            let m = message(read_tool_calls(&bad, "m.tool_calls").unwrap_err());
            assert!(m.contains(named), "{bad}: {m}");
        }
    }
}
