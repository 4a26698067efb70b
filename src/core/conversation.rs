//! Conversations: storing every sent user message and every reply, and rebuilding a prompt's
//! history by walking `parent_message_id` links within a token budget.
//!
//! The `chatgpt` package's algorithm, fixed:
//! - it re-encoded the whole prompt once per ancestor (quadratic); here each message is counted
//!   once, cached by (encoding, id), so a 1,000-message walk is linear;
//! - it ignored OpenAI's per-message overhead (prompts overflowed with
//!   `context_length_exceeded`); here every message costs its role, content, name and the
//!   documented 3-token wrapper, plus 3 tokens of reply priming;
//! - when the system and user messages alone exceeded the budget it silently sent only the system
//!   message; here that is an `ERR_CHATGPT_CONTEXT_TOO_LONG` error with the counts;
//! - a missing ancestor or the budget stops the walk, and the result says so.
//!
//! Stores are pluggable through [`ConversationStore`]: the default [`MessageStore`] is a bounded
//! in-memory cache (quick_cache, lock-striped so concurrent calls do not serialise on one mutex);
//! the binding adapts JavaScript stores (`getMessageById` / `upsertMessage`, Keyv-style `get` /
//! `set`) to the same trait.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::future::{self, BoxFuture};
use quick_cache::sync::Cache;

use super::chat::{self, PromptMessage, ToolCall};
use super::content::{Content, ContentPart};
use super::error::{ChatError, ErrorCode};
use super::tokens::Encoding;

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub role: String,
    pub text: String,
    pub name: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// A reply's tool calls (empty when it called none).
    pub tool_calls: Vec<ToolCall>,
    /// A tool result's (`role: 'tool'`) answered call.
    pub tool_call_id: Option<String>,
    /// The content parts of a message sent with them (`text` then holds their text parts); a
    /// rebuilt history sends the parts again.
    pub content: Option<Arc<[ContentPart]>>,
}

impl StoredMessage {
    fn as_prompt(&self) -> PromptMessage {
        PromptMessage {
            role: self.role.clone(),
            content: match &self.content {
                Some(parts) => Content::Parts(parts.clone()),
                None => Content::Text(self.text.clone()),
            },
            name: self.name.clone(),
            tool_calls: (!self.tool_calls.is_empty()).then(|| self.tool_calls.clone()),
            tool_call_id: self.tool_call_id.clone(),
        }
    }
}

/// Where conversation messages live. Implementations must be cheap to call concurrently.
pub trait ConversationStore: Send + Sync {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<StoredMessage>>, ChatError>>;
    fn upsert(&self, message: StoredMessage) -> BoxFuture<'_, Result<(), ChatError>>;
}

/// Bounded in-memory message store (the default).
pub struct MessageStore {
    cache: Cache<ById, Arc<StoredMessage>>,
}

/// A stored message as its own key, hashed and compared by id: inserting shares the message's
/// allocation instead of copying its id into a key.
#[derive(Clone)]
struct ById(Arc<StoredMessage>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so lookups by `&str` find it.
        self.0.id.as_str().hash(state);
    }
}

impl quick_cache::Equivalent<ById> for str {
    fn equivalent(&self, key: &ById) -> bool {
        self == key.0.id
    }
}

impl MessageStore {
    /// A store that keeps at most `capacity` messages, evicting the least useful first.
    pub fn new(capacity: usize) -> Self {
        MessageStore {
            cache: Cache::new(capacity.max(1)),
        }
    }

    pub fn get_now(&self, id: &str) -> Option<Arc<StoredMessage>> {
        self.cache.get(id)
    }

    pub fn insert(&self, message: StoredMessage) {
        let message = Arc::new(message);
        self.cache.insert(ById(message.clone()), message);
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

impl ConversationStore for MessageStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<StoredMessage>>, ChatError>> {
        Box::pin(future::ready(Ok(self.get_now(id))))
    }

    fn upsert(&self, message: StoredMessage) -> BoxFuture<'_, Result<(), ChatError>> {
        self.insert(message);
        Box::pin(future::ready(Ok(())))
    }
}

/// Why the history walk stopped before the root of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The next ancestor did not fit the token budget.
    Budget,
    /// An ancestor id was not in the store (evicted, or never stored there).
    MissingParent,
}

impl Truncation {
    pub fn as_str(self) -> &'static str {
        match self {
            Truncation::Budget => "budget",
            Truncation::MissingParent => "missing-parent",
        }
    }
}

/// A prompt ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPrompt {
    /// System message (if any), history oldest first, then the new user message.
    pub messages: Vec<PromptMessage>,
    /// Prompt tokens as the API bills them; an upper bound instead when `prompt_tokens_exact`
    /// is false (see [`Budget::exact`]).
    pub prompt_tokens: u32,
    pub prompt_tokens_exact: bool,
    /// What the window leaves for the reply, capped at `max_response_tokens` (at least 1).
    pub max_tokens: u32,
    /// Ancestors included.
    pub history_messages: u32,
    pub truncated: Option<Truncation>,
}

/// Per-message token counts, computed once per (encoding, message id); system messages, which
/// repeat on every call, once per (encoding, content).
pub struct TokenCountCache {
    cache: Cache<(Encoding, String), u32>,
    system: Cache<(Encoding, u64), u32>,
}

impl TokenCountCache {
    pub fn new(capacity: usize) -> Self {
        TokenCountCache {
            cache: Cache::new(capacity.max(1)),
            system: Cache::new(64),
        }
    }

    /// Tokens of a system message. Counting the default system message (about 40 tokens) on every
    /// call was ~15% of a cheap call's CPU; it is the same text each time.
    fn count_system(&self, enc: Encoding, m: &PromptMessage) -> usize {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(m.role.as_bytes());
        h.update(&[0]);
        m.content.hash_into(&mut h);
        h.update(&[0]);
        h.update(m.name.as_deref().unwrap_or("").as_bytes());
        let key = (enc, h.digest());
        if let Some(n) = self.system.get(&key) {
            return n as usize;
        }
        let n = chat::message_tokens(enc, m);
        self.system.insert(key, n as u32);
        n
    }

    fn count(&self, enc: Encoding, m: &StoredMessage) -> u32 {
        let key = (enc, m.id.clone());
        if let Some(n) = self.cache.get(&key) {
            return n;
        }
        let n = chat::message_tokens(enc, &m.as_prompt()) as u32;
        self.cache.insert(key, n);
        n
    }

    /// Record a count already known (a message just sent), so the next walk does not recount.
    pub fn remember(&self, enc: Encoding, m: &StoredMessage, n: u32) {
        self.cache.insert((enc, m.id.clone()), n);
    }
}

/// The budget inputs of one prompt.
pub struct Budget {
    pub max_model_tokens: u32,
    pub max_response_tokens: u32,
    pub encoding: Encoding,
    /// Count the prompt exactly even when an upper bound settles every decision. `false` lets a
    /// short first message (no history) skip the tokenizer: see [`UNCOUNTED_MAX_TOKENS`].
    pub exact: bool,
}

/// A prompt without history whose byte-based upper bound is at most this many tokens, and fits
/// the window with the full `max_response_tokens` to spare, is sent without being tokenized: the
/// bound already proves it fits and that `max_tokens` is `max_response_tokens`, and tokenizing a
/// short message was ~5% of a cheap call's CPU. The bound (a BPE token is at least one byte)
/// then stands in for the prompt in the rate limiter's reservation, which is settled with the
/// real usage afterwards; the cap keeps that over-reservation small. (With a configured
/// `rateLimit.tokensPerMinute` the client always counts, so no request looks too large.)
pub const UNCOUNTED_MAX_TOKENS: u32 = 1024;

/// Build `[system?, ...history, ...new]` within `max_model_tokens - max_response_tokens`. `new`
/// is what the call adds: its tool results, then its user message (none for `sendMessage('')`,
/// as in the `chatgpt` package).
pub async fn build_prompt(
    store: &dyn ConversationStore,
    counts: &TokenCountCache,
    budget: &Budget,
    system: Option<PromptMessage>,
    new: impl IntoIterator<Item = PromptMessage>,
    parent_message_id: Option<&str>,
) -> Result<BuiltPrompt, ChatError> {
    let user: Vec<PromptMessage> = new.into_iter().collect();
    let enc = budget.encoding;
    let limit = budget.max_model_tokens.saturating_sub(budget.max_response_tokens);
    let system_tokens = system.as_ref().map_or(0, |m| counts.count_system(enc, m));
    if !budget.exact && parent_message_id.is_none() {
        let user_bound: usize = user.iter().map(chat::message_tokens_upper_bound).sum();
        let bound = (chat::REPLY_PRIMING_TOKENS + system_tokens + user_bound) as u32;
        // Within `limit` the reply gets all of `max_response_tokens`, whatever the exact count.
        if user_bound as u32 <= UNCOUNTED_MAX_TOKENS && bound <= limit {
            let mut messages = Vec::with_capacity(2);
            messages.extend(system);
            messages.extend(user);
            return Ok(BuiltPrompt {
                messages,
                prompt_tokens: bound,
                prompt_tokens_exact: false,
                max_tokens: budget.max_response_tokens.max(1),
                history_messages: 0,
                truncated: None,
            });
        }
    }
    let user_tokens: usize = user.iter().map(|m| chat::message_tokens(enc, m)).sum();
    let mut used = (chat::REPLY_PRIMING_TOKENS + system_tokens + user_tokens) as u32;
    if used > limit {
        let mut e = ChatError::new(
            ErrorCode::ContextTooLong,
            format!(
                "The prompt needs {used} tokens (system message {system_tokens}, user message {user_tokens}, \
                 reply priming {}) but only {limit} fit (`maxModelTokens` {} - `maxResponseTokens` {}); \
                 shorten the message or split it with splitText()",
                chat::REPLY_PRIMING_TOKENS,
                budget.max_model_tokens,
                budget.max_response_tokens
            ),
        );
        e.prompt_tokens = Some(used);
        e.max_prompt_tokens = Some(limit);
        return Err(e);
    }

    // Walk newest to oldest; a visited set guards against cycles in a user-supplied store.
    let mut history: Vec<Arc<StoredMessage>> = Vec::new();
    let mut truncated = None;
    let mut visited: HashSet<String> = HashSet::new();
    let mut next = parent_message_id.map(str::to_owned);
    while let Some(id) = next.take() {
        if !visited.insert(id.clone()) {
            break;
        }
        let Some(message) = store.get(&id).await? else {
            truncated = Some(Truncation::MissingParent);
            break;
        };
        let n = counts.count(enc, &message);
        if used + n > limit {
            truncated = Some(Truncation::Budget);
            break;
        }
        used += n;
        next = message.parent_message_id.clone();
        history.push(message);
    }

    // A `tool` result whose calling reply did not fit (or is missing) cannot be sent: the API
    // rejects a `tool` message that follows no `tool_calls`.
    while history.last().is_some_and(|m| m.role == "tool") {
        if let Some(orphan) = history.pop() {
            used = used.saturating_sub(counts.count(enc, &orphan));
        }
    }
    let mut messages = Vec::with_capacity(history.len() + 2);
    messages.extend(system);
    messages.extend(history.iter().rev().map(|m| m.as_prompt()));
    messages.extend(user);
    let max_tokens = budget
        .max_model_tokens
        .saturating_sub(used)
        .min(budget.max_response_tokens)
        .max(1);
    Ok(BuiltPrompt {
        messages,
        prompt_tokens: used,
        prompt_tokens_exact: true,
        max_tokens,
        history_messages: history.len() as u32,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, parent: Option<&str>, text: &str) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            role: if id.starts_with('u') { "user" } else { "assistant" }.into(),
            text: text.into(),
            name: None,
            parent_message_id: parent.map(str::to_owned),
            conversation_id: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            content: None,
        }
    }

    fn prompt_message(role: &str, text: &str) -> PromptMessage {
        PromptMessage {
            role: role.into(),
            content: text.into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }

    fn user(text: &str) -> PromptMessage {
        prompt_message("user", text)
    }

    fn budget(max_model: u32, max_response: u32) -> Budget {
        Budget {
            exact: true,
            max_model_tokens: max_model,
            max_response_tokens: max_response,
            encoding: Encoding::O200kBase,
        }
    }

    /// u1 <- a1 <- u2 <- a2: a four-message conversation.
    fn chain() -> MessageStore {
        let store = MessageStore::new(100);
        store.insert(msg("u1", None, "hello there"));
        store.insert(msg("a1", Some("u1"), "hi, how can I help"));
        store.insert(msg("u2", Some("a1"), "tell me a joke"));
        store.insert(msg("a2", Some("u2"), "why did the chicken cross the road"));
        store
    }

    #[test]
    fn the_store_finds_messages_by_id_and_an_upsert_replaces_one() {
        let store = MessageStore::new(10);
        store.insert(msg("a1", None, "first"));
        store.insert(msg("u2", Some("a1"), "second"));
        assert_eq!(store.get_now("a1").unwrap().text, "first");
        assert_eq!(store.get_now("u2").unwrap().parent_message_id.as_deref(), Some("a1"));
        store.insert(msg("a1", None, "edited"));
        assert_eq!(store.get_now("a1").unwrap().text, "edited");
        assert_eq!(store.len(), 2);
        assert!(store.get_now("a").is_none());
    }

    /// u1 <- a1 (called a tool) <- t1 (its result) <- a2.
    fn tool_chain() -> MessageStore {
        let store = MessageStore::new(100);
        store.insert(msg("u1", None, "weather?"));
        let mut call = msg("a1", Some("u1"), "");
        call.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: chat::ToolFunction {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
        }];
        store.insert(call);
        let mut result = msg("t1", Some("a1"), "sunny");
        result.role = "tool".into();
        result.tool_call_id = Some("call_1".into());
        store.insert(result);
        store.insert(msg("a2", Some("t1"), "It is sunny."));
        store
    }

    #[tokio::test]
    async fn tool_calls_and_results_are_rebuilt_and_counted() {
        let (store, counts) = (tool_chain(), TokenCountCache::new(100));
        let p = build_prompt(
            &store,
            &counts,
            &budget(4000, 1000),
            None,
            Some(user("thanks")),
            Some("a2"),
        )
        .await
        .unwrap();
        let body: serde_json::Value = serde_json::to_value(&p.messages).unwrap();
        assert_eq!(body[1]["role"], "assistant");
        assert!(body[1]["content"].is_null(), "a call-only reply has null content");
        assert_eq!(body[1]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            body[2],
            serde_json::json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"})
        );
        assert!(body[3].get("tool_calls").is_none() && body[3].get("tool_call_id").is_none());
        assert_eq!(
            p.prompt_tokens,
            chat::prompt_tokens(Encoding::O200kBase, &p.messages) as u32
        );
        let without_calls: Vec<PromptMessage> = p
            .messages
            .iter()
            .map(|m| PromptMessage {
                tool_calls: None,
                tool_call_id: None,
                ..m.clone()
            })
            .collect();
        assert!(
            p.prompt_tokens > chat::prompt_tokens(Encoding::O200kBase, &without_calls) as u32,
            "the calls and the result's id count"
        );
    }

    #[tokio::test]
    async fn a_tool_result_whose_call_did_not_fit_is_left_out() {
        let (store, counts) = (tool_chain(), TokenCountCache::new(100));
        let enc = Encoding::O200kBase;
        let new = [user("thanks")];
        // Room for the new message, a2 and t1, but not a1 (the call t1 answers).
        let needed = chat::prompt_tokens(enc, &new)
            + [("a2", "It is sunny."), ("t1", "sunny")]
                .iter()
                .map(|(id, _)| chat::message_tokens(enc, &store.get_now(id).unwrap().as_prompt()))
                .sum::<usize>();
        let p = build_prompt(
            &store,
            &counts,
            &budget(needed as u32 + 5 + 1000, 1000),
            None,
            new,
            Some("a2"),
        )
        .await
        .unwrap();
        let roles: Vec<&str> = p.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["assistant", "user"], "t1 without a1 would be rejected");
        assert_eq!(p.truncated, Some(Truncation::Budget));
        assert_eq!(p.prompt_tokens, chat::prompt_tokens(enc, &p.messages) as u32);
    }

    #[tokio::test]
    async fn history_is_rebuilt_oldest_first_between_system_and_user() {
        let store = chain();
        let counts = TokenCountCache::new(100);
        let system = prompt_message("system", "be nice");
        let p = build_prompt(
            &store,
            &counts,
            &budget(4000, 1000),
            Some(system),
            Some(user("another")),
            Some("a2"),
        )
        .await
        .unwrap();
        let texts: Vec<&str> = p.messages.iter().map(|m| m.content.as_text().unwrap()).collect();
        assert_eq!(
            texts,
            [
                "be nice",
                "hello there",
                "hi, how can I help",
                "tell me a joke",
                "why did the chicken cross the road",
                "another"
            ]
        );
        assert_eq!(p.history_messages, 4);
        assert_eq!(p.truncated, None);
        assert_eq!(
            p.prompt_tokens as usize,
            chat::prompt_tokens(Encoding::O200kBase, &p.messages)
        );
        assert_eq!(p.max_tokens, 1000);
    }

    /// The prompt for "another" answering `a2` of [`chain`], in a window of `max_model`
    /// tokens of which 100 are kept for the reply.
    async fn another_after_a2(store: &MessageStore, counts: &TokenCountCache, max_model: u32) -> BuiltPrompt {
        build_prompt(
            store,
            counts,
            &budget(max_model, 100),
            None,
            Some(user("another")),
            Some("a2"),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_walk_stops_exactly_at_the_budget_edge() {
        let store = chain();
        let counts = TokenCountCache::new(100);
        let enc = Encoding::O200kBase;
        let base = chat::prompt_tokens(enc, &[user("another")]) as u32;
        let a2 = chat::message_tokens(enc, &store.get_now("a2").unwrap().as_prompt()) as u32;
        let u2 = chat::message_tokens(enc, &store.get_now("u2").unwrap().as_prompt()) as u32;
        // Room for exactly a2 and u2: a1 must be left out.
        let limit = base + a2 + u2;
        let p = another_after_a2(&store, &counts, limit + 100).await;
        assert_eq!(p.history_messages, 2);
        assert_eq!(p.truncated, Some(Truncation::Budget));
        assert_eq!(p.prompt_tokens, limit);
        // One token less and u2 no longer fits.
        let p = another_after_a2(&store, &counts, limit + 99).await;
        assert_eq!(p.history_messages, 1);
    }

    #[tokio::test]
    async fn max_tokens_is_what_the_window_leaves_capped_at_the_response_budget() {
        let store = chain();
        let counts = TokenCountCache::new(100);
        let p = build_prompt(&store, &counts, &budget(60, 50), None, Some(user("hi")), None)
            .await
            .unwrap();
        assert_eq!(p.max_tokens, 50);
        assert_eq!(p.prompt_tokens, 3 + 3 + 1 + 1);
    }

    #[tokio::test]
    async fn a_missing_ancestor_stops_the_walk_and_says_so() {
        let store = chain();
        let counts = TokenCountCache::new(100);
        let p = build_prompt(
            &store,
            &counts,
            &budget(4000, 1000),
            None,
            Some(user("x")),
            Some("gone"),
        )
        .await
        .unwrap();
        assert_eq!(p.history_messages, 0);
        assert_eq!(p.truncated, Some(Truncation::MissingParent));
    }

    #[tokio::test]
    async fn system_plus_user_over_budget_is_an_error_with_counts() {
        let store = chain();
        let counts = TokenCountCache::new(100);
        let long = "word ".repeat(200);
        let err = build_prompt(&store, &counts, &budget(100, 50), None, Some(user(&long)), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ContextTooLong);
        assert_eq!(err.max_prompt_tokens, Some(50));
        assert!(err.prompt_tokens.unwrap() > 50);
    }

    #[tokio::test]
    async fn a_cyclic_store_does_not_loop_forever() {
        let store = MessageStore::new(10);
        store.insert(msg("a", Some("b"), "one"));
        store.insert(msg("b", Some("a"), "two"));
        let counts = TokenCountCache::new(10);
        let p = build_prompt(&store, &counts, &budget(4000, 100), None, Some(user("x")), Some("a"))
            .await
            .unwrap();
        assert_eq!(p.history_messages, 2);
    }

    #[tokio::test]
    async fn a_thousand_message_walk_counts_each_message_once() {
        let store = MessageStore::new(2000);
        let mut parent: Option<String> = None;
        for i in 0..1000 {
            let id = format!("m{i}");
            store.insert(msg(&id, parent.as_deref(), "a short message of a few tokens"));
            parent = Some(id);
        }
        let counts = TokenCountCache::new(2000);
        let b = budget(1_000_000, 1000);
        let p = build_prompt(&store, &counts, &b, None, Some(user("x")), parent.as_deref())
            .await
            .unwrap();
        assert_eq!(p.history_messages, 1000);
        assert_eq!(counts.cache.len(), 1000);
        let again = build_prompt(&store, &counts, &b, None, Some(user("x")), parent.as_deref())
            .await
            .unwrap();
        assert_eq!(again.prompt_tokens, p.prompt_tokens);
        assert_eq!(counts.cache.len(), 1000, "second walk used the cached counts");
    }

    #[tokio::test]
    async fn a_repeated_system_message_is_counted_once() {
        let store = chain();
        let counts = TokenCountCache::new(10);
        let system = prompt_message("system", "You are terse.");
        let b = budget(4000, 100);
        let first = build_prompt(&store, &counts, &b, Some(system.clone()), Some(user("a")), None)
            .await
            .unwrap();
        let second = build_prompt(&store, &counts, &b, Some(system.clone()), Some(user("a")), None)
            .await
            .unwrap();
        assert_eq!(first.prompt_tokens, second.prompt_tokens);
        assert_eq!(
            first.prompt_tokens as usize,
            chat::prompt_tokens(Encoding::O200kBase, &first.messages)
        );
        assert_eq!(counts.system.len(), 1);
    }

    fn lazy(max_model: u32, max_response: u32) -> Budget {
        Budget {
            exact: false,
            ..budget(max_model, max_response)
        }
    }

    #[tokio::test]
    async fn a_short_first_message_is_sent_with_an_upper_bound_instead_of_a_count() {
        let (store, counts) = (MessageStore::new(10), TokenCountCache::new(10));
        let text = "bench 12345: 日本語 \u{1F600}";
        let p = build_prompt(&store, &counts, &lazy(4000, 1000), None, Some(user(text)), None)
            .await
            .unwrap();
        let exact = chat::prompt_tokens(Encoding::O200kBase, &p.messages) as u32;
        assert!(!p.prompt_tokens_exact);
        assert!(p.prompt_tokens >= exact, "{} < {exact}", p.prompt_tokens);
        assert_eq!(p.max_tokens, 1000);
        assert_eq!(p.messages.len(), 1);
        // The same prompt built exactly: same messages and max_tokens, the exact count.
        let e = build_prompt(&store, &counts, &budget(4000, 1000), None, Some(user(text)), None)
            .await
            .unwrap();
        assert!(e.prompt_tokens_exact);
        assert_eq!(e.prompt_tokens, exact);
        assert_eq!((e.messages, e.max_tokens), (p.messages, p.max_tokens));
    }

    #[tokio::test]
    async fn the_upper_bound_is_not_used_when_it_could_change_the_outcome() {
        let store = chain();
        let counts = TokenCountCache::new(10);
        // History: the walk needs real counts.
        let p = build_prompt(&store, &counts, &lazy(4000, 100), None, Some(user("hi")), Some("a2"))
            .await
            .unwrap();
        assert!(p.prompt_tokens_exact);
        assert_eq!(p.history_messages, 4);
        // A bound over the window although the message fits: counted, and it fits.
        let text = "word ".repeat(12);
        let exact = chat::prompt_tokens(Encoding::O200kBase, &[user(&text)]) as u32;
        let p = build_prompt(&store, &counts, &lazy(exact + 10, 10), None, Some(user(&text)), None)
            .await
            .unwrap();
        assert!(p.prompt_tokens_exact);
        assert_eq!(p.prompt_tokens, exact);
        // Longer than UNCOUNTED_MAX_TOKENS bytes: counted.
        let long = "a ".repeat(UNCOUNTED_MAX_TOKENS as usize);
        let p = build_prompt(&store, &counts, &lazy(128_000, 1000), None, Some(user(&long)), None)
            .await
            .unwrap();
        assert!(p.prompt_tokens_exact);
    }

    #[tokio::test]
    async fn a_message_stored_with_parts_is_sent_again_with_them_and_its_images_counted() {
        use crate::core::content::{ImageUrl, UNKNOWN_IMAGE_TOKENS};
        let store = MessageStore::new(10);
        let parts: Arc<[ContentPart]> = Arc::from(vec![
            ContentPart::Text { text: "look".into() },
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: "https://example.com/a.png".into(),
                    detail: None,
                },
            },
        ]);
        store.insert(StoredMessage {
            content: Some(parts.clone()),
            ..msg("u1", None, "look")
        });
        let counts = TokenCountCache::new(10);
        let p = build_prompt(
            &store,
            &counts,
            &budget(4000, 100),
            None,
            Some(user("and?")),
            Some("u1"),
        )
        .await
        .unwrap();
        assert_eq!(p.messages[0].content, Content::Parts(parts));
        let enc = Encoding::O200kBase;
        let text_only = chat::prompt_tokens(enc, &[user("look"), user("and?")]) as u32;
        assert_eq!(p.prompt_tokens, text_only + UNKNOWN_IMAGE_TOKENS);
    }

    #[test]
    fn the_store_is_bounded() {
        let store = MessageStore::new(100);
        for i in 0..1000 {
            store.insert(msg(&i.to_string(), None, "x"));
        }
        assert!(store.len() <= 100, "len {}", store.len());
        assert!(store.get_now("999").is_some(), "the newest survives");
    }

    #[tokio::test]
    async fn without_a_user_message_the_prompt_is_the_system_message_and_the_history() {
        let store = MessageStore::new(10);
        store.insert(msg("u1", None, "question"));
        store.insert(msg("a1", Some("u1"), "answer"));
        let counts = TokenCountCache::new(10);
        let system = PromptMessage {
            role: "system".into(),
            content: "Be brief.".into(),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        };
        for b in [budget(4000, 1000), lazy(4000, 1000)] {
            let p = build_prompt(&store, &counts, &b, Some(system.clone()), None, Some("a1"))
                .await
                .unwrap();
            let sent: Vec<_> = p
                .messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.as_text().unwrap()))
                .collect();
            assert_eq!(
                sent,
                [("system", "Be brief."), ("user", "question"), ("assistant", "answer")]
            );
            assert_eq!(
                p.prompt_tokens,
                chat::prompt_tokens(Encoding::O200kBase, &p.messages) as u32
            );
            let alone = build_prompt(&store, &counts, &b, Some(system.clone()), None, None)
                .await
                .unwrap();
            assert_eq!(alone.messages, std::slice::from_ref(&system));
        }
    }
}
