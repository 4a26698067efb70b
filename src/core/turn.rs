//! One conversational turn's data: the call's options ([`SendRequest`]), the finished reply
//! ([`ChatReply`]), and how a completion becomes that reply plus the two messages the
//! conversation store keeps (the user's and the reply's).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::call::Received;
use super::chat::{prompt_tokens, CompletionChoice, RawJson, ToolCall, Usage};
use super::content::ContentPart;
use super::conversation::{BuiltPrompt, StoredMessage, Truncation};
use super::messages::OwnMessages;
use super::tokens::Encoding;
use super::tools::ToolResult;

/// One call's options (the `sendMessage` options minus the JS-only ones).
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// The user message's text; with `parts`, their text parts joined with `'\n'`.
    pub text: String,
    /// Content parts (text and images) sent instead of `text` when given.
    pub parts: Option<Arc<[ContentPart]>>,
    /// A complete prompt sent as given (`sendMessages`): no system message, history or store, and
    /// `text`, `parts`, `name` and the message ids are unused.
    pub messages: Option<Arc<OwnMessages>>,
    /// Overrides the instance's system message for this call; `Some("")` sends none.
    pub system_message: Option<String>,
    /// Merged over the instance's `completionParams`.
    pub completion_params: Option<Map<String, Value>>,
    /// Id of the user message (a UUID v4 when absent).
    pub message_id: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The user's `name` field.
    pub name: Option<String>,
    pub stream: bool,
    /// Overrides the instance's `timeoutMs` for this call.
    pub timeout: Option<Duration>,
    /// Read and write the response cache (and coalesce identical in-flight calls).
    pub cache: bool,
    /// This call's own headers (its `Idempotency-Key` included), set over the instance's on
    /// every attempt; never part of the cache key. Made by [`call_headers`](super::transport::call_headers).
    pub headers: Option<std::sync::Arc<reqwest::header::HeaderMap>>,
    /// Answers to the tool calls of the reply `parent_message_id` names: sent, and stored, as
    /// `tool` messages after it (before the user message, which an empty `text` without `parts`
    /// leaves out).
    pub tool_results: Vec<ToolResult>,
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub id: String,
    pub text: String,
    pub role: String,
    pub parent_message_id: String,
    pub conversation_id: Option<String>,
    pub detail: RawJson,
    /// What this call cost: zero when it sent no request of its own (`cached`).
    pub usage: Usage,
    /// For a `cached` reply, what the request that produced the answer used (the tokens this
    /// call saved); `None` otherwise.
    pub saved: Option<Usage>,
    pub finish_reason: Option<String>,
    pub request_id: Option<String>,
    /// Number of content deltas delivered (0 for non-streaming calls).
    pub deltas: u32,
    /// HTTP attempts the reply took (0 when answered from the cache), for the errors of what
    /// follows it (storing the messages, waiting for `onProgress`'s Promises).
    pub attempts: u32,
    /// Ancestors sent as history, and why the walk stopped early (if it did).
    pub history_messages: u32,
    pub truncated: Option<Truncation>,
    /// Answered without a request of its own: from the response cache, or as an identical call
    /// that shared another's request in flight.
    pub cached: bool,
    /// Answers a caller's own messages (`sendMessages`): nothing was stored, and
    /// `parent_message_id` names no message.
    pub own_messages: bool,
    /// The functions the model asked to call (empty when it called none).
    pub tool_calls: Vec<ToolCall>,
    /// The model's refusal, when it declined (`message.refusal`, or streamed `delta.refusal`).
    pub refusal: Option<String>,
    /// The reply's log probabilities (openai's `ChoiceLogprobs`), when the server sent them.
    pub logprobs: Option<RawJson>,
    /// Every choice, when the request asked for several (`n > 1`); empty otherwise. The fields
    /// above are the first choice's.
    pub choices: Vec<CompletionChoice>,
    /// The JSON value of the reply's text, when the request's `response_format` asked for JSON
    /// (`None` otherwise); set by the client once the reply passed [`parse_output`](super::structured::parse_output).
    pub parsed: Option<Value>,
    /// With `upstreams`: the name of the upstream whose answer this is; set by the client.
    pub upstream: Option<String>,
}

/// A reply and the messages a call stores: its tool results, the user's message (none when a
/// call with tool results has no text), and the reply.
pub struct Settled {
    pub reply: ChatReply,
    pub tool_messages: Vec<StoredMessage>,
    pub user_message: Option<StoredMessage>,
    pub reply_message: StoredMessage,
}

impl Settled {
    /// The reply, and the messages to store in the order they were sent.
    pub fn into_stored(self) -> (ChatReply, Vec<StoredMessage>) {
        let mut messages = self.tool_messages;
        messages.extend(self.user_message);
        messages.push(self.reply_message);
        (self.reply, messages)
    }
}

/// The two messages a call stores: the user's (`messageId`, or a UUID) and the reply's.
pub struct MessageIds {
    pub user: String,
    pub reply: String,
}

impl MessageIds {
    /// The user message's id and a fresh reply id ([`new_completion_id`]).
    pub fn for_user(user: String) -> Self {
        Self {
            user,
            reply: new_completion_id(),
        }
    }
}

/// `chatcmpl-` plus a random UUID: the id of every reply. Never the server's own: some servers
/// send the same completion id for different replies, and the conversation store keys messages
/// by id, so a reused id would put one conversation's turns into another. The server's id stays
/// in `detail`.
pub fn new_completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// The reply to `req` (whose completion `received` holds) and the two messages to store.
pub fn settle(
    req: SendRequest,
    encoding: Encoding,
    prompt: &BuiltPrompt,
    ids: MessageIds,
    received: Received,
) -> Settled {
    let Received {
        completion,
        request_id,
        deltas,
        attempts,
        cached,
        upstream: _,
    } = received;
    let mut completion = completion;
    if req.stream {
        // As `chatgpt` v5 does for a streamed reply (its partials keep the text as received).
        completion.text = trim_js(std::mem::take(&mut completion.text));
        for choice in &mut completion.all_choices {
            choice.text = trim_js(std::mem::take(&mut choice.text));
        }
    }
    let usage = completion.usage.unwrap_or_else(|| {
        // The server sent no usage: estimate it, counting the prompt now if it was not.
        let prompt_tokens = if prompt.prompt_tokens_exact {
            prompt.prompt_tokens
        } else {
            prompt_tokens(encoding, &prompt.messages) as u32
        };
        // Every choice's reply is billed.
        let completion_tokens = if completion.all_choices.is_empty() {
            encoding.count(&completion.text)
        } else {
            completion.all_choices.iter().map(|c| encoding.count(&c.text)).sum()
        };
        let completion_tokens = u32::try_from(completion_tokens).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            estimated: true,
            ..Usage::default()
        }
    });
    if req.stream && completion.usage.is_none() {
        // v5 puts its estimate into a streamed reply's `detail` too, flagged `estimated`.
        let estimate = format!(
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"estimated":true}}"#,
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
        );
        completion.detail = completion.detail.with_usage(&estimate);
    }
    // A reply that sent no request cost nothing now; what the original request used is saved.
    let (usage, saved) = if cached {
        (Usage::default(), Some(usage))
    } else {
        (usage, None)
    };
    let reply = ChatReply {
        id: ids.reply,
        text: completion.text,
        role: completion.role,
        parent_message_id: ids.user.clone(),
        conversation_id: req.conversation_id.clone(),
        detail: completion.detail,
        usage,
        saved,
        finish_reason: completion.finish_reason,
        request_id,
        deltas,
        attempts,
        history_messages: prompt.history_messages,
        truncated: prompt.truncated,
        cached,
        own_messages: req.messages.is_some(),
        tool_calls: completion.tool_calls,
        refusal: completion.refusal,
        logprobs: completion.logprobs,
        choices: completion.all_choices,
        parsed: None,
        upstream: None,
    };
    // Tool results are chained after the reply they answer, in order; the user message (if any)
    // follows them. Without text or parts the last result takes the user message's id, which the
    // reply names as its parent.
    let results = req.tool_results.len();
    let has_user = !req.text.is_empty() || req.parts.is_some();
    let mut parent = req.parent_message_id;
    let mut tool_messages = Vec::with_capacity(results);
    for (i, result) in req.tool_results.into_iter().enumerate() {
        let id = if i + 1 == results && !has_user {
            ids.user.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        tool_messages.push(StoredMessage {
            id: id.clone(),
            role: "tool".into(),
            text: result.content,
            name: None,
            parent_message_id: parent.replace(id),
            conversation_id: req.conversation_id.clone(),
            tool_calls: Vec::new(),
            tool_call_id: Some(result.tool_call_id),
            content: None,
        });
    }
    let user_message = (results == 0 || has_user).then(|| StoredMessage {
        id: ids.user,
        role: "user".into(),
        text: req.text,
        name: req.name,
        parent_message_id: parent,
        conversation_id: req.conversation_id.clone(),
        tool_calls: Vec::new(),
        tool_call_id: None,
        content: req.parts,
    });
    let reply_message = StoredMessage {
        id: reply.id.clone(),
        role: reply.role.clone(),
        text: reply.text.clone(),
        name: None,
        parent_message_id: Some(reply.parent_message_id.clone()),
        conversation_id: req.conversation_id,
        tool_calls: reply.tool_calls.clone(),
        tool_call_id: None,
        content: None,
    };
    Settled {
        reply,
        tool_messages,
        user_message,
        reply_message,
    }
}

/// `text` without the whitespace JavaScript's `String.prototype.trim` removes (Unicode white
/// space, line terminators and the byte order mark); not copied when there is none.
fn trim_js(text: String) -> String {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.len() == text.len() {
        text
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chat::{Completion, PromptMessage};

    /// A call sending "hello", streamed or not, with nothing else set.
    fn request(stream: bool) -> SendRequest {
        SendRequest {
            text: "hello".into(),
            parts: None,
            messages: None,
            system_message: None,
            completion_params: None,
            message_id: None,
            parent_message_id: None,
            conversation_id: None,
            name: None,
            stream,
            timeout: None,
            cache: false,
            headers: None,
            tool_results: Vec::new(),
        }
    }

    /// A prompt of `messages` counted at `prompt_tokens` (exactly or as an upper bound).
    fn prompt(messages: Vec<PromptMessage>, prompt_tokens: u32, prompt_tokens_exact: bool) -> BuiltPrompt {
        BuiltPrompt {
            messages,
            prompt_tokens,
            prompt_tokens_exact,
            max_tokens: 50,
            history_messages: 0,
            truncated: None,
        }
    }

    fn user_hello() -> PromptMessage {
        PromptMessage {
            role: "user".into(),
            content: "hello".into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// One attempt's answer `text` with `usage` and `detail`, not from the cache.
    fn received(text: &str, usage: Option<Usage>, detail: &str) -> Received {
        Received {
            completion: Completion {
                id: None,
                text: text.into(),
                role: "assistant".into(),
                finish_reason: Some("stop".into()),
                usage,
                detail: RawJson::from_text(detail.into()),
                choices: 1,
                tool_calls: Vec::new(),
                refusal: None,
                logprobs: None,
                all_choices: Vec::new(),
            },
            request_id: None,
            deltas: 0,
            attempts: 1,
            cached: false,
            upstream: None,
        }
    }

    #[test]
    fn a_reply_without_usage_gets_an_estimate_and_links_both_stored_messages() {
        let prompt = prompt(vec![user_hello()], 100, false);
        let req = SendRequest {
            parent_message_id: Some("earlier".into()),
            conversation_id: Some("conv".into()),
            ..request(false)
        };
        let mut received = received("hi there", None, "{}");
        received.completion.id = Some("server-id".into());
        received.request_id = Some("req_1".into());
        let ids = MessageIds::for_user("u1".into());
        let settled = settle(req, Encoding::O200kBase, &prompt, ids, received);
        let usage = settled.reply.usage;
        assert!(usage.estimated);
        // The uncounted prompt is counted now (an upper bound of 100 is not reported).
        assert_eq!(
            usage.prompt_tokens,
            prompt_tokens(Encoding::O200kBase, &prompt.messages) as u32
        );
        assert_eq!(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
        assert!(settled.reply.id.starts_with("chatcmpl-"));
        assert_eq!(settled.reply.parent_message_id, "u1");
        assert_eq!(
            settled
                .user_message
                .as_ref()
                .and_then(|m| m.parent_message_id.as_deref()),
            Some("earlier")
        );
        assert_eq!(settled.reply_message.parent_message_id.as_deref(), Some("u1"));
        assert_eq!(settled.reply_message.conversation_id.as_deref(), Some("conv"));
        // Not streamed: the detail is the response as it came.
        assert_eq!(settled.reply.detail.get(), "{}");
    }

    #[test]
    fn tool_results_are_stored_chained_after_the_reply_they_answer() {
        let results = |n: usize| {
            (0..n)
                .map(|i| ToolResult {
                    tool_call_id: format!("call_{i}"),
                    content: format!("result {i}"),
                })
                .collect::<Vec<_>>()
        };
        // Without text: no user message, the last result has the user message's id.
        let req = SendRequest {
            text: String::new(),
            parent_message_id: Some("a1".into()),
            tool_results: results(2),
            ..request(false)
        };
        let ids = MessageIds::for_user("u2".into());
        let settled = settle(
            req,
            Encoding::O200kBase,
            &prompt(Vec::new(), 9, true),
            ids,
            received("ok", None, "{}"),
        );
        assert!(settled.user_message.is_none());
        let tools = &settled.tool_messages;
        assert_eq!(tools[0].parent_message_id.as_deref(), Some("a1"));
        assert_eq!(tools[1].parent_message_id.as_deref(), Some(tools[0].id.as_str()));
        assert_eq!(tools[1].id, "u2");
        assert_eq!((tools[1].role.as_str(), tools[1].text.as_str()), ("tool", "result 1"));
        assert_eq!(tools[1].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(settled.reply.parent_message_id, "u2");
        let (_, stored) = settled.into_stored();
        assert_eq!(stored.len(), 3);
        // With text: the user message follows the results.
        let req = SendRequest {
            parent_message_id: Some("a1".into()),
            tool_results: results(1),
            ..request(false)
        };
        let ids = MessageIds::for_user("u3".into());
        let settled = settle(
            req,
            Encoding::O200kBase,
            &prompt(Vec::new(), 9, true),
            ids,
            received("ok", None, "{}"),
        );
        let user = settled.user_message.unwrap();
        assert_eq!(user.id, "u3");
        assert_eq!(
            user.parent_message_id.as_deref(),
            Some(settled.tool_messages[0].id.as_str())
        );
        assert_ne!(settled.tool_messages[0].id, "u3");
    }

    #[test]
    fn a_streamed_reply_is_trimmed_and_its_detail_carries_the_estimate() {
        let prompt = prompt(Vec::new(), 7, true);
        let req = request(true);
        let received = |text: &str| Received {
            deltas: 1,
            ..received(text, None, r#"{"choices":[{"index":0,"finish_reason":"stop"}]}"#)
        };
        let ids = MessageIds::for_user("u1".into());
        let settled = settle(
            req.clone(),
            Encoding::O200kBase,
            &prompt,
            ids,
            received(" \n\u{feff}hi there\t\n"),
        );
        assert_eq!(settled.reply.text, "hi there");
        assert_eq!(
            settled.reply_message.text, "hi there",
            "stored trimmed, as v5 stores it"
        );
        let usage = settled.reply.usage;
        let detail = settled.reply.detail.to_value();
        assert_eq!(detail["choices"][0]["finish_reason"], "stop");
        assert_eq!(detail["usage"]["prompt_tokens"], 7);
        assert_eq!(detail["usage"]["completion_tokens"], usage.completion_tokens);
        assert_eq!(detail["usage"]["total_tokens"], usage.total_tokens);
        assert_eq!(detail["usage"]["estimated"], true);
        // Text without surrounding white space is kept as it is.
        let ids = MessageIds::for_user("u2".into());
        assert_eq!(
            settle(req, Encoding::O200kBase, &prompt, ids, received("a b"))
                .reply
                .text,
            "a b"
        );
    }

    /// The reply to "hello" (counted exactly at 9 tokens), answered from the cache or not.
    fn settled(usage: Option<Usage>, cached: bool) -> ChatReply {
        let received = Received {
            cached,
            ..received("hi there", usage, "{}")
        };
        let ids = MessageIds::for_user("u1".into());
        settle(
            SendRequest {
                cache: true,
                ..request(false)
            },
            Encoding::O200kBase,
            &prompt(vec![user_hello()], 9, true),
            ids,
            received,
        )
        .reply
    }

    #[test]
    fn a_cached_reply_costs_nothing_and_saves_the_original_usage() {
        let original = Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            estimated: false,
            ..Usage::default()
        };
        let hit = settled(Some(original), true);
        assert!(hit.cached);
        assert_eq!(hit.usage, Usage::default(), "zero tokens, not estimated");
        assert_eq!(hit.saved, Some(original));

        let sent = settled(Some(original), false);
        assert!(!sent.cached);
        assert_eq!(sent.usage, original);
        assert_eq!(sent.saved, None);
    }

    #[test]
    fn an_estimate_counts_every_choice_and_a_streamed_reply_trims_each() {
        let choice = |index: u32, text: &str| CompletionChoice {
            index,
            text: text.into(),
            finish_reason: Some("stop".into()),
            ..CompletionChoice::default()
        };
        let mut received = received(" red ", None, "{}");
        received.completion.all_choices = vec![choice(0, " red "), choice(1, "deep blue sea\n")];
        let ids = MessageIds::for_user("u1".into());
        let settled = settle(
            request(true),
            Encoding::O200kBase,
            &prompt(Vec::new(), 7, true),
            ids,
            received,
        );
        let reply = settled.reply;
        let count = |t: &str| Encoding::O200kBase.count(t) as u32;
        assert_eq!(reply.usage.completion_tokens, count("red") + count("deep blue sea"));
        assert_eq!(reply.text, "red");
        assert_eq!(reply.choices[1].text, "deep blue sea");
        assert_eq!(settled.reply_message.text, "red", "the first choice is stored");
    }

    #[test]
    fn a_cached_reply_without_server_usage_saves_the_estimate() {
        let hit = settled(None, true);
        assert_eq!(hit.usage, Usage::default());
        let saved = hit.saved.unwrap();
        assert!(saved.estimated);
        assert_eq!(saved.prompt_tokens, 9, "the exact prompt count");
        assert_eq!(saved.completion_tokens, Encoding::O200kBase.count("hi there") as u32);
        assert_eq!(saved.total_tokens, saved.prompt_tokens + saved.completion_tokens);
    }
}
