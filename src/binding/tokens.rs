//! Token counting exports: `countTokens`, `countTokensAsync`, `countMessageTokens`, `encode`,
//! `decode`. Thin conversions around `core::tokens`; the encoders are loaded once per process.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::convert::caught;
use super::errors::{invalid_arg, promise_or_rejection, to_napi_error};
use super::options::{describe, Opts};
use super::requests::read_content;
use crate::core::chat::{self, PromptMessage};
use crate::core::content::Content;
use crate::core::error::{ChatError, ErrorCode};
use crate::core::tokens::Encoding;
use crate::core::tools::read_tool_calls;

/// Which tokenizer to use. `encoding` wins over `model`; with neither, `o200k_base`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct TokenizerOptions {
    /// A model name: gpt-4o, gpt-4.1, gpt-5 and o-series models use `o200k_base`; gpt-4 and
    /// gpt-3.5 models use `cl100k_base`.
    pub model: Option<String>,
    /// An encoding name.
    #[napi(ts_type = "'o200k_base' | 'cl100k_base'")]
    pub encoding: Option<String>,
}

impl TokenizerOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["model", "encoding"];
}

/// A chat message to count, in the request body's shape (openai-node's
/// `ChatCompletionMessageParam`). The messages `buildMessages` returns (`toolCalls`,
/// `toolCallId`) are read too.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CountableMessage {
    pub role: String,
    /// A string, or content parts: images count by OpenAI's formula (see `ContentPart`). An
    /// `assistant` message that only called tools may have none.
    #[napi(ts_type = "string | ContentPart[] | null")]
    pub content: Option<serde_json::Value>,
    pub name: Option<String>,
    /// An `assistant` message's tool calls: each call's id, name and arguments count as text.
    #[napi(js_name = "tool_calls", ts_type = "ChatCompletionMessageToolCall[]")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` message's answered call, counted as text.
    #[napi(js_name = "tool_call_id")]
    pub tool_call_id: Option<String>,
}

fn read_text(env: &Env, text: &Unknown, what: &str) -> Result<String> {
    if text.get_type()? != ValueType::String {
        return Err(invalid_arg(
            env,
            format!("Expected `{what}` to be a string, got {}", describe(env, text)),
        ));
    }
    unsafe { text.cast() }
}

/// `TokenizerOptions`, with unknown names rejected.
fn read_encoding(env: &Env, options: Option<Unknown>) -> Result<Encoding> {
    let o = Opts::from_arg(env, options, "options")?;
    o.allow_only(TokenizerOptions::NAMES, &[])?;
    encoding_of(env, &o)
}

/// The encoding `o` names (`encoding` wins over `model`).
fn encoding_of(env: &Env, o: &Opts) -> Result<Encoding> {
    if let Some(name) = o.string("encoding")? {
        return Encoding::from_name(&name).ok_or_else(|| {
            invalid_arg(
                env,
                format!("Expected `encoding` to be 'o200k_base' or 'cl100k_base', got {name:?}"),
            )
        });
    }
    Ok(o.string("model")?
        .map(|m| Encoding::for_model(&m))
        .unwrap_or(Encoding::O200kBase))
}

/// Count the tokens of `text`. Special-token text such as `<|endoftext|>` counts as plain
/// text, as the API bills it. Runs on the calling thread: prefer `countTokensAsync` for
/// megabytes.
#[napi(ts_args_type = "text: string, options?: TokenizerOptions")]
pub fn count_tokens(env: Env, text: Unknown, options: Option<Unknown>) -> Result<u32> {
    let text = read_text(&env, &text, "text")?;
    let enc = read_encoding(&env, options)?;
    Ok(enc.count(&text) as u32)
}

/// `countTokens` off the JavaScript thread. Invalid arguments reject the Promise.
#[napi(
    ts_args_type = "text: string, options?: TokenizerOptions",
    ts_return_type = "Promise<number>"
)]
pub fn count_tokens_async<'env>(
    env: &'env Env,
    text: Unknown<'env>,
    options: Option<Unknown<'env>>,
) -> Result<PromiseRaw<'env, u32>> {
    promise_or_rejection(env, || {
        let text = read_text(env, &text, "text")?;
        let enc = read_encoding(env, options)?;
        start_count(env, text, enc)
    })
}

fn start_count(env: &Env, text: String, enc: Encoding) -> Result<PromiseRaw<'_, u32>> {
    super::settle::spawn(
        env,
        async move {
            tokio::task::spawn_blocking(move || enc.count(&text) as u32)
                .await
                // Only a panic (a bug) or a runtime shutting down ends the blocking task early.
                .map_err(|_| ChatError::new(ErrorCode::Internal, "Token counting ended before it finished"))
        },
        |env, counted| counted.map_err(|e| to_napi_error(env, &e)),
    )
}

/// Prompt tokens of a chat request as the API bills them: per message 3 tokens plus role,
/// content and name (a name costs 1 more), plus 3 for reply priming. Tool calls and a tool
/// message's `tool_call_id` count as their text (OpenAI documents no formula for them, so that
/// part is an estimate): the count `sendMessage` and `sendMessages` budget with, and
/// `buildMessages` reports as `numTokens`.
#[napi(ts_args_type = "messages: Array<CountableMessage | PromptMessageJs>, options?: TokenizerOptions")]
pub fn count_message_tokens(env: Env, messages: Unknown, options: Option<Unknown>) -> Result<u32> {
    let enc = read_encoding(&env, options)?;
    let is_array = messages.get_type()? == ValueType::Object && unsafe { messages.cast::<Object>() }?.is_array()?;
    if !is_array {
        return Err(invalid_arg(
            &env,
            format!("Expected `messages` to be an array, got {}", describe(&env, &messages)),
        ));
    }
    let array: Array = unsafe { messages.cast() }?;
    // Not `len` up front: a sparse `new Array(2 ** 32 - 1)` costs its creator nothing. The loop
    // itself stops at the first element that is not a message.
    let mut prompt = Vec::with_capacity((array.len() as usize).min(1024));
    for i in 0..array.len() {
        let item: Option<Unknown> = array
            .get(i)
            .map_err(|e| invalid_arg(&env, format!("Reading `messages[{i}]` threw {}", caught(&env, &e))))?;
        let o = Opts::from_arg(&env, item, &format!("messages[{i}]"))?.with_prefix(format!("messages[{i}]."));
        if item.is_none_or(|v| matches!(v.get_type(), Ok(ValueType::Undefined | ValueType::Null))) {
            return Err(invalid_arg(
                &env,
                format!("Expected `messages[{i}]` to be an object, got undefined"),
            ));
        }
        let field = |key: &str| -> Result<String> {
            o.string(key)?
                .ok_or_else(|| invalid_arg(&env, format!("Expected `messages[{i}].{key}` to be a string")))
        };
        // Read in this order (role, content, name), so an error names the first bad field.
        let role = field("role")?;
        let content_name = format!("messages[{i}].content");
        let content = match o.raw("content")? {
            // As `sendMessages` takes it: a message with only tool calls.
            None if role == "assistant" => Content::default(),
            raw => match read_content(&env, raw, &content_name)? {
                (_, Some(parts)) => Content::Parts(parts),
                (text, None) => Content::Text(text),
            },
        };
        let name = o.string("name")?;
        let tool_calls = match either_spelling(&env, &o, "tool_calls", "toolCalls")? {
            Some(key) => match o.json(key)? {
                Some(calls) => Some(read_tool_calls(&calls, &o.option_name(key)).map_err(|e| to_napi_error(&env, &e))?),
                None => None,
            },
            None => None,
        };
        let tool_call_id = match either_spelling(&env, &o, "tool_call_id", "toolCallId")? {
            Some(key) => o.string(key)?,
            None => None,
        };
        prompt.push(PromptMessage {
            role,
            content,
            name,
            tool_calls,
            tool_call_id,
        });
    }
    Ok(chat::prompt_tokens(enc, &prompt) as u32)
}

/// Which of a message's two spellings of a field is given: `wire` (the request body's, as
/// openai-node writes messages) or `camel` (as `buildMessages` returns them); both is an error.
fn either_spelling<'k>(env: &Env, o: &Opts, wire: &'k str, camel: &'k str) -> Result<Option<&'k str>> {
    match (o.raw(wire)?.is_some(), o.raw(camel)?.is_some()) {
        (true, true) => Err(invalid_arg(
            env,
            format!(
                "Expected `{}` or `{}`, not both",
                o.option_name(wire),
                o.option_name(camel)
            ),
        )),
        (true, false) => Ok(Some(wire)),
        (false, true) => Ok(Some(camel)),
        (false, false) => Ok(None),
    }
}

/// Token ids of `text` (special-token text encoded as plain text), identical to tiktoken's except
/// for a run of more than 1 KiB without whitespace, which is encoded in pieces so its cost stays
/// linear (see the README's "Counting tokens").
#[napi(ts_args_type = "text: string, options?: TokenizerOptions")]
pub fn encode(env: Env, text: Unknown, options: Option<Unknown>) -> Result<Uint32Array> {
    let text = read_text(&env, &text, "text")?;
    let enc = read_encoding(&env, options)?;
    Ok(Uint32Array::new(enc.encode(&text)))
}

/// Text of token ids. Ids that end mid-character decode to U+FFFD.
#[napi(ts_args_type = "tokens: Uint32Array | number[], options?: TokenizerOptions")]
pub fn decode(env: Env, tokens: Unknown, options: Option<Unknown>) -> Result<String> {
    let enc = read_encoding(&env, options)?;
    let ids: Vec<u32> = match tokens.get_type()? {
        ValueType::Object => {
            let obj: Object = unsafe { tokens.cast() }?;
            if obj.is_typedarray()? {
                let arr: Uint32Array = unsafe { tokens.cast() }?;
                arr.to_vec()
            } else if obj.is_array()? {
                read_token_ids(&env, unsafe { tokens.cast() }?)?
            } else {
                return Err(invalid_arg(
                    &env,
                    "Expected `tokens` to be a Uint32Array or an array of numbers",
                ));
            }
        }
        _ => {
            return Err(invalid_arg(
                &env,
                format!(
                    "Expected `tokens` to be a Uint32Array or an array of numbers, got {}",
                    describe(&env, &tokens)
                ),
            ))
        }
    };
    let bytes = enc
        .bpe()
        .decode_bytes(&ids)
        .map_err(|e| invalid_arg(&env, format!("Expected `tokens` to be valid token ids: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An array of token ids, read element by element: each must be an integer from 0 to 2^32 - 1.
fn read_token_ids(env: &Env, array: Array) -> Result<Vec<u32>> {
    let mut ids = Vec::with_capacity((array.len() as usize).min(1 << 20));
    for i in 0..array.len() {
        let item: Option<Unknown> = array
            .get(i)
            .map_err(|e| invalid_arg(env, format!("Reading `tokens[{i}]` threw {}", caught(env, &e))))?;
        let id = match item {
            Some(v) if v.get_type()? == ValueType::Number => {
                let n: f64 = unsafe { v.cast() }?;
                (n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n)).then_some(n as u32)
            }
            _ => None,
        };
        match id {
            Some(id) => ids.push(id),
            None => {
                let got = item.map_or_else(|| "undefined".to_owned(), |v| describe(env, &v));
                return Err(invalid_arg(
                    env,
                    format!("Expected `tokens[{i}]` to be a non-negative integer token id, got {got}"),
                ));
            }
        }
    }
    Ok(ids)
}

/// Options of `splitText`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SplitTextOptions {
    /// Most tokens in one chunk.
    pub max_tokens: u32,
    /// Tokens of whole trailing sentences repeated at the start of the next chunk; less than
    /// half of `maxTokens`.
    /// @default 0
    pub overlap_tokens: Option<u32>,
    /// The model whose tokenizer counts (see `TokenizerOptions`).
    pub model: Option<String>,
    #[napi(ts_type = "'o200k_base' | 'cl100k_base'")]
    pub encoding: Option<String>,
}

impl SplitTextOptions {
    /// The names the reader accepts: the fields above, as JavaScript spells them.
    pub const NAMES: &'static [&'static str] = &["maxTokens", "overlapTokens", "model", "encoding"];
}

/// One chunk of `splitText`.
#[napi(object)]
pub struct TextChunk {
    pub text: String,
    /// Its exact token count, at most `maxTokens`.
    pub tokens: u32,
}

/// Split a long document into chunks of at most `maxTokens` tokens that end at paragraph, then
/// sentence boundaries (Latin and CJK punctuation), never inside a character, and are filled
/// as full as whole sentences allow. Chunk edges are trimmed of whitespace.
#[napi(ts_args_type = "text: string, options: SplitTextOptions")]
pub fn split_text(env: Env, text: Unknown, options: Unknown) -> Result<Vec<TextChunk>> {
    let text = read_text(&env, &text, "text")?;
    let o = Opts::from_arg(&env, Some(options), "options")?;
    o.allow_only(SplitTextOptions::NAMES, &[])?;
    let max_tokens = o
        .positive_u32("maxTokens")?
        .ok_or_else(|| invalid_arg(&env, "Expected `maxTokens` to be a positive integer, got undefined"))?;
    let overlap_tokens = o.non_negative_int("overlapTokens")?.unwrap_or(0);
    let encoding = encoding_of(&env, &o)?;
    let chunks = crate::core::chunking::split_text(
        &text,
        crate::core::chunking::SplitOptions {
            max_tokens: max_tokens as usize,
            overlap_tokens: overlap_tokens as usize,
            encoding,
        },
    )
    .map_err(|e| {
        use crate::core::chunking::SplitError;
        invalid_arg(
            &env,
            match e {
                SplitError::ZeroMaxTokens => "Expected `maxTokens` to be a positive integer, got 0".to_owned(),
                SplitError::OverlapTooLarge { overlap, max } => {
                    format!("Expected `overlapTokens` to be less than half of `maxTokens` ({max}), got {overlap}")
                }
                SplitError::CharacterTooLarge { character, tokens, max } => format!(
                    "Expected `maxTokens` to be at least {tokens}: the character {character:?} alone takes {tokens} tokens, got {max}"
                ),
            },
        )
    })?;
    Ok(chunks
        .into_iter()
        .map(|c| TextChunk {
            text: c.text,
            tokens: c.tokens as u32,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::options::check_option_names;

    #[test]
    fn options_names_are_the_struct_fields() {
        check_option_names(
            include_str!("tokens.rs"),
            &[
                ("TokenizerOptions", TokenizerOptions::NAMES),
                ("SplitTextOptions", SplitTextOptions::NAMES),
            ],
        );
    }
}
