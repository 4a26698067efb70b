//! A complete `messages` array from a caller who keeps the history (`sendMessages`): checked,
//! then sent as given, with no system message added, no history walk and no store.
//!
//! Each message needs a known `role` and a `content` that is a string or content parts (an
//! `assistant` message may have none, as one carrying only tool calls does). Every field is sent
//! as it came. `tool_calls` and `tool_call_id` are checked and counted as a conversation's tool
//! turns are (`chat::message_tokens`); any other field (beyond role, content and name) counts as
//! its JSON text.

use std::sync::Arc;

use serde_json::Value;

use super::chat::{self, PromptMessage};
use super::content::{parse_parts, Content};
use super::error::ChatError;
use super::tokens::Encoding;
use super::tools::read_tool_calls;

/// Most messages one `sendMessages` call may send.
pub const MAX_MESSAGES: usize = 100_000;

/// The roles a caller's message may have.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// A caller's messages: what counting and the cache key read, and the JSON the body carries.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnMessages {
    /// Role, content, name, tool calls and answered call of each message.
    pub prompt: Vec<PromptMessage>,
    /// The JSON text of the other fields, all messages together: counted as text in the prompt's
    /// tokens.
    pub other_fields: String,
    /// The `messages` array as sent.
    pub json: String,
}

impl OwnMessages {
    /// Prompt tokens as the API bills them (the other fields counted as their JSON text).
    pub fn tokens(&self, enc: Encoding) -> usize {
        chat::prompt_tokens(enc, &self.prompt).saturating_add(enc.count(&self.other_fields))
    }
}

/// Read a caller's `messages` array; errors name `path` and the field (`messages[2].role`).
pub fn parse_messages(value: &Value, path: &str) -> Result<Arc<OwnMessages>, ChatError> {
    let Value::Array(items) = value else {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to be an array of messages"
        )));
    };
    if items.is_empty() || items.len() > MAX_MESSAGES {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to have from 1 to {MAX_MESSAGES} messages, got {}",
            items.len()
        )));
    }
    let mut prompt = Vec::with_capacity(items.len());
    let mut other_fields = String::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(message) = item else {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{at}` to be a message object"
            )));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.clone(),
            other => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}.role` to be one of {}, got {}",
                    ROLES.map(|r| format!("'{r}'")).join(", "),
                    other.map_or_else(|| "undefined".to_owned(), Value::to_string)
                )))
            }
        };
        let content = match message.get("content") {
            Some(Value::String(text)) => Content::Text(text.clone()),
            Some(parts @ Value::Array(_)) => Content::Parts(parse_parts(parts, &format!("{at}.content"))?),
            None | Some(Value::Null) if role == "assistant" => Content::default(),
            _ => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}.content` to be a string or an array of content parts"
                )))
            }
        };
        let name = match message.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(_) => return Err(ChatError::invalid_arg(format!("Expected `{at}.name` to be a string"))),
        };
        let tool_call_id = match message.get("tool_call_id") {
            Some(Value::String(id)) => Some(id.clone()),
            None | Some(Value::Null) if role != "tool" => None,
            _ => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{at}.tool_call_id` to be a string (a tool message answers one tool call)"
                )))
            }
        };
        let tool_calls = match message.get("tool_calls") {
            None | Some(Value::Null) => None,
            Some(calls) => Some(read_tool_calls(calls, &format!("{at}.tool_calls"))?),
        };
        for (key, value) in message {
            if !matches!(
                key.as_str(),
                "role" | "content" | "name" | "tool_calls" | "tool_call_id"
            ) {
                other_fields.push_str(key);
                other_fields.push(':');
                other_fields.push_str(&value.to_string());
                other_fields.push('\n');
            }
        }
        // Counted as a conversation's tool turns are (`chat::message_tokens`), so this budget,
        // the history's and `countMessageTokens` agree.
        prompt.push(PromptMessage {
            role,
            content,
            name,
            tool_calls,
            tool_call_id,
        });
    }
    Ok(Arc::new(OwnMessages {
        prompt,
        other_fields,
        json: value.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;
    use serde_json::json;

    #[test]
    fn messages_are_sent_as_given_and_counted_with_their_other_fields() {
        let given = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
            {"role": "assistant", "content": null, "refusal": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]);
        let own = parse_messages(&given, "messages").unwrap();
        let sent: Value = serde_json::from_str(&own.json).unwrap();
        assert_eq!(sent, given);
        assert_eq!(own.prompt.len(), 4);
        assert_eq!(own.prompt[1].name.as_deref(), Some("ann"));
        let enc = Encoding::O200kBase;
        assert_eq!(
            own.tokens(enc),
            chat::prompt_tokens(enc, &own.prompt) + enc.count(&own.other_fields)
        );
        // Tool calls and call ids are counted as a conversation's are, not as JSON text.
        assert_eq!(own.other_fields, "refusal:null\n");
        assert_eq!(own.prompt[2].tool_calls.as_ref().map(Vec::len), Some(1));
        assert_eq!(own.prompt[3].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn bad_messages_are_invalid_arguments_naming_the_field() {
        let cases = [
            (json!({}), "`messages`"),
            (json!([]), "`messages`"),
            (json!([1]), "`messages[0]`"),
            (json!([{"role": "robot", "content": "x"}]), "`messages[0].role`"),
            (json!([{"role": "user"}]), "`messages[0].content`"),
            (json!([{"role": "user", "content": 5}]), "`messages[0].content`"),
            (
                json!([{"role": "user", "content": [{"type": "x"}]}]),
                "`messages[0].content[0].type`",
            ),
            (
                json!([{"role": "user", "content": "x", "name": 1}]),
                "`messages[0].name`",
            ),
            (json!([{"role": "tool", "content": "x"}]), "`messages[0].tool_call_id`"),
            (
                json!([{"role": "user", "content": "x", "tool_call_id": 1}]),
                "`messages[0].tool_call_id`",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]),
                "`messages[0].tool_calls[0].function`",
            ),
        ];
        for (value, named) in cases {
            let e = parse_messages(&value, "messages").unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg);
            assert!(e.message.contains(named), "{value}: {}", e.message);
        }
    }
}
