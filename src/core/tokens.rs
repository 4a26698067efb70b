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

    /// Tokens in `text`, special-token text counted as plain text. Large texts are counted on
    /// every core at once (see [`split_for_parallel_count`]), and away from the async workers
    /// (see [`off_async_worker`]).
    pub fn count(self, text: &str) -> usize {
        if text.is_empty() {
            return 0;
        }
        if text.len() < OFF_WORKER_MIN_BYTES {
            return self.count_serial(text);
        }
        off_async_worker(|| self.count_large(text))
    }

    fn count_large(self, text: &str) -> usize {
        if text.len() < PARALLEL_MIN_BYTES {
            return self.count_serial(text);
        }
        let threads = cores();
        if threads < 2 {
            return self.count_serial(text);
        }
        let pieces = split_for_parallel_count(text, threads);
        if pieces.len() < 2 {
            return self.count_serial(text);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = pieces
                .iter()
                .map(|piece| scope.spawn(move || self.bpe().encode_ordinary(piece).len()))
                .collect();
            // A piece whose thread failed (it cannot: encoding does not panic) is counted here.
            handles
                .into_iter()
                .zip(&pieces)
                .map(|(h, piece)| h.join().unwrap_or_else(|_| self.count_serial(piece)))
                .sum()
        })
    }

    fn count_serial(self, text: &str) -> usize {
        self.encode(text).len()
    }

    /// Token ids of `text`, special-token text encoded as plain text.
    ///
    /// tiktoken's pre-tokenizer regex overflows its stack (a panic, which would abort Node) on
    /// very long whitespace runs, so text containing a run of [`LONG_WHITESPACE`] or more
    /// whitespace characters is encoded piecewise instead: the run is cut into short pieces,
    /// keeping its last character with the text that follows (where tiktoken attaches it). For
    /// such input the result may differ from tiktoken's by a token per cut; everything else is
    /// encoded exactly.
    pub fn encode(self, text: &str) -> Vec<u32> {
        if !has_long_whitespace_run(text) {
            return self.bpe().encode_ordinary(text);
        }
        let mut out = Vec::new();
        for piece in split_long_whitespace(text) {
            out.extend(self.bpe().encode_ordinary(piece));
        }
        out
    }
}

/// Whitespace runs this long (in characters) are encoded piecewise; see [`Encoding::encode`].
pub const LONG_WHITESPACE: usize = 1024;
/// Size of the pieces a long run is cut into.
const WHITESPACE_PIECE: usize = 256;

fn has_long_whitespace_run(text: &str) -> bool {
    // Cheap pre-check on bytes: fewer than LONG_WHITESPACE bytes in total cannot hold such a run.
    if text.len() < LONG_WHITESPACE {
        return false;
    }
    let mut run = 0usize;
    for c in text.chars() {
        if c.is_whitespace() {
            run += 1;
            if run >= LONG_WHITESPACE {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Cut `text` so that no piece holds a whitespace run of [`LONG_WHITESPACE`] characters.
fn split_long_whitespace(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0; // start of the current piece
    let mut run_start: Option<usize> = None;
    let mut run_len = 0usize;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c.is_whitespace() {
            if run_start.is_none() {
                run_start = Some(i);
                run_len = 0;
            }
            run_len += 1;
            // Cut inside a long run every WHITESPACE_PIECE characters, but never right before its
            // last character (that one stays with the following text).
            let next_is_space = iter.peek().is_some_and(|(_, n)| n.is_whitespace());
            if run_len >= WHITESPACE_PIECE && next_is_space {
                let end = i + c.len_utf8();
                let next_next_is_space = {
                    let mut look = iter.clone();
                    look.next();
                    look.peek().is_some_and(|(_, n)| n.is_whitespace()) || look.peek().is_none()
                };
                if next_next_is_space {
                    pieces.push(&text[start..end]);
                    start = end;
                    run_len = 0;
                }
            }
        } else {
            run_start = None;
        }
    }
    pieces.push(&text[start..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// Cores available to this process, read once: `available_parallelism` reads cgroup files, far
/// too slow for a per-call check on a path that counts many short texts.
/// Texts this long take a millisecond or more to tokenize; see [`off_async_worker`].
pub const OFF_WORKER_MIN_BYTES: usize = 16 * 1024;

/// Run `f`, which is CPU-bound for a millisecond or more, without stalling other calls.
///
/// On a worker of a multi-threaded tokio runtime (a long prompt is counted inside the call's
/// future) this is `block_in_place`: the worker's queue and I/O move to another thread while
/// `f` runs, so the calls it was driving are not held up. The addon's runtime may have a
/// single worker (see the binding's `runtime.rs`), where a stall would hold up every call.
/// Anywhere else (the JavaScript thread, a blocking-pool thread, a current-thread runtime,
/// where `block_in_place` would panic) `f` just runs.
pub fn off_async_worker<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Below this size one thread is faster than spawning several.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Cut `text` into about `parts` pieces whose token counts add up exactly to the whole's.
///
/// BPE merges never cross the pre-tokenizer's pieces, and in both encodings' patterns a run of
/// line breaks is a piece of its own that ends where the next non-whitespace character begins
/// (no pattern lets a letter, digit or symbol piece start with `\n`). So a cut right after
/// `\n\n` and before a non-whitespace character is a piece boundary, and counts are additive
/// there. Texts without such a place stay whole.
pub fn split_for_parallel_count(text: &str, parts: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let target = text.len() / parts.max(1);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    while out.len() + 1 < parts {
        let from = start + target;
        if from >= bytes.len() {
            break;
        }
        let cut = (from..bytes.len().saturating_sub(1))
            .find(|&i| i >= 2 && bytes[i - 1] == b'\n' && bytes[i - 2] == b'\n' && !bytes[i].is_ascii_whitespace());
        match cut {
            // `i` follows an ASCII byte, so it is a char boundary.
            Some(i) => {
                out.push(&text[start..i]);
                start = i;
            }
            None => break,
        }
    }
    out.push(&text[start..]);
    out
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

/// At least [`message_tokens`] for any encoding, without tokenizing: every BPE token stands for
/// at least one byte, so a text has at most as many tokens as bytes.
pub fn message_tokens_upper_bound(m: &PromptMessage) -> usize {
    let mut n = TOKENS_PER_MESSAGE + m.role.len() + m.content.len();
    if let Some(name) = &m.name {
        n += TOKENS_PER_NAME + name.len();
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
    use std::time::Duration;

    /// On a one-worker runtime, work passed to `off_async_worker` must not hold up the other
    /// tasks: here it waits for a message only another task can send. Run inline on the
    /// worker, it would wait out the 10 s and fail.
    #[test]
    fn work_off_the_async_worker_lets_other_tasks_run() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
            let blocked = tokio::spawn(async move {
                off_async_worker(|| {
                    let _ = started_tx.send(());
                    rx.recv_timeout(Duration::from_secs(10)).is_ok()
                })
            });
            let other = tokio::spawn(async move {
                let _ = started_rx.await;
                let _ = tx.send(());
            });
            let (got, _) = tokio::join!(blocked, other);
            got.unwrap()
        });
        assert!(got, "the other task ran while the work was in progress");
    }

    #[test]
    fn work_off_the_async_worker_runs_inline_elsewhere() {
        assert_eq!(off_async_worker(|| 7), 7);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(async { off_async_worker(|| 8) }), 8);
        let text = "word ".repeat(OFF_WORKER_MIN_BYTES / 5 + 10);
        let inside = rt.block_on(async { Encoding::O200kBase.count(&text) });
        assert_eq!(inside, Encoding::O200kBase.count_serial(&text));
    }

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
    fn the_byte_bound_is_never_below_the_count() {
        let texts = [
            "",
            "a",
            "bench 12345",
            "  spaces   and\ttabs\n\n",
            "日本語のテキスト、句読点。",
            "\u{1F600}\u{1F680} emoji",
            "ü",
            "0123456789".repeat(50).as_str(),
        ]
        .map(str::to_owned);
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for t in &texts {
                for name in [None, Some("bob".to_owned())] {
                    let m = PromptMessage {
                        role: "user".into(),
                        content: t.clone(),
                        name,
                    };
                    assert!(message_tokens_upper_bound(&m) >= message_tokens(enc, &m), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn parallel_counts_equal_serial_counts() {
        let unit = "First paragraph with words.\n\n  indented second\n\n\n\nThird: 42 + 7 = 49 \u{1F600}\n\n日本語の段落です。\r\n\r\nend   \n\n";
        let text = unit.repeat(20_000);
        assert!(text.len() > PARALLEL_MIN_BYTES);
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let pieces = split_for_parallel_count(&text, 4);
            assert!(pieces.len() > 1);
            assert_eq!(pieces.concat(), text);
            let summed: usize = pieces.iter().map(|p| enc.count_serial(p)).sum();
            assert_eq!(summed, enc.count_serial(&text));
            assert_eq!(enc.count(&text), enc.count_serial(&text));
        }
    }

    #[test]
    fn huge_whitespace_runs_do_not_crash_the_tokenizer() {
        for ws in [" ", "\n", "\t", " \n"] {
            let text = format!("start{}word and more", ws.repeat(1_000_000 / ws.len()));
            for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
                let n = enc.count(&text);
                assert!(n > 3, "{n}");
                assert_eq!(enc.count(&text), n, "deterministic");
            }
        }
    }

    #[test]
    fn whitespace_runs_below_the_limit_encode_exactly() {
        let text = format!("a{}b{}c", " ".repeat(LONG_WHITESPACE - 1), "\n".repeat(500));
        assert!(!has_long_whitespace_run(&text));
        assert_eq!(
            Encoding::O200kBase.encode(&text),
            Encoding::O200kBase.bpe().encode_ordinary(&text)
        );
    }

    #[test]
    fn long_runs_are_cut_without_losing_text() {
        let text = format!("x{}y", " ".repeat(5000));
        let pieces = split_long_whitespace(&text);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text);
        assert!(
            pieces.last().unwrap().ends_with(" y"),
            "the last space stays with the word"
        );
        // Cutting a long run changes the count by at most a token per cut.
        let exact_piecewise: usize = pieces
            .iter()
            .map(|p| Encoding::O200kBase.bpe().encode_ordinary(p).len())
            .sum();
        assert_eq!(Encoding::O200kBase.count(&text), exact_piecewise);
    }

    #[test]
    fn text_without_paragraph_breaks_stays_whole() {
        let text = "word ".repeat(100_000);
        assert_eq!(split_for_parallel_count(&text, 4).len(), 1);
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
