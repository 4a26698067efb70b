//! Token counting with tiktoken-rs: which encoding a model uses, and OpenAI's chat formula.
//!
//! Encoders are built once per process (tiktoken-rs singletons: building one costs 50-200 ms)
//! and shared by every thread. Special-token text such as `<|endoftext|>` in user input is
//! counted as ordinary text (`encode_ordinary`), exactly as the API bills it, and never panics.

use tiktoken_rs::CoreBPE;

use super::chat::PromptMessage;

/// The BPE encodings we ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    /// Parse an encoding name as tiktoken spells it.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding a model uses: cl100k for the gpt-4 / gpt-3.5 families and embeddings,
    /// o200k for gpt-4o, gpt-4.1, gpt-5, the o-series, and anything newer or unknown (new
    /// OpenAI models have all been o200k; local servers' own tokenizers are unknowable here).
    pub fn for_model(model: &str) -> Encoding {
        let m = model.rsplit('/').next().unwrap_or(model);
        let cl100k = (m.starts_with("gpt-4")
            && !m.starts_with("gpt-4o")
            && !m.starts_with("gpt-4.1")
            && !m.starts_with("gpt-4.5"))
            || m.starts_with("gpt-3.5")
            || m.starts_with("gpt-35")
            || m.starts_with("text-embedding-3")
            || m.starts_with("text-embedding-ada");
        if cl100k {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    pub fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Tokens in `text`, special-token text counted as plain text.
    pub fn count(self, text: &str) -> usize {
        if text.is_empty() {
            return 0;
        }
        self.bpe().encode_ordinary(text).len()
    }
}

/// OpenAI's documented chat overhead: every message costs 3 tokens plus its fields, a `name`
/// one more, and the reply is primed with 3.
pub const TOKENS_PER_MESSAGE: usize = 3;
pub const TOKENS_PER_NAME: usize = 1;
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// Tokens one message adds to a prompt.
pub fn message_tokens(enc: Encoding, m: &PromptMessage) -> usize {
    let mut n = TOKENS_PER_MESSAGE + enc.count(&m.role) + enc.count(&m.content);
    if let Some(name) = &m.name {
        n += TOKENS_PER_NAME + enc.count(name);
    }
    n
}

/// Prompt tokens of a whole request, as the API bills them.
pub fn prompt_tokens(enc: Encoding, messages: &[PromptMessage]) -> usize {
    messages.iter().map(|m| message_tokens(enc, m)).sum::<usize>() + REPLY_PRIMING_TOKENS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_their_encodings() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4.1-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-5"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("o3-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("gpt-3.5-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("openai/gpt-3.5-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("text-embedding-3-small"), Encoding::Cl100kBase);
    }

    #[test]
    fn special_token_text_counts_as_plain_text() {
        let n = Encoding::Cl100kBase.count("<|endoftext|>");
        assert!(n > 1, "counted as ordinary text, got {n}");
    }

    #[test]
    fn chat_formula_adds_documented_overhead() {
        let enc = Encoding::O200kBase;
        let msgs = [PromptMessage {
            role: "user".into(),
            content: "hello".into(),
            name: None,
        }];
        assert_eq!(prompt_tokens(enc, &msgs), 3 + 1 + 1 + 3);
        let named = [PromptMessage {
            role: "user".into(),
            content: "hello".into(),
            name: Some("bob".into()),
        }];
        assert_eq!(prompt_tokens(enc, &named), 3 + 1 + 1 + 1 + 1 + 3);
    }
}
