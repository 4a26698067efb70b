//! Token counting with tiktoken-rs: which encoding a model uses, and how many tokens a text is.
//! The chat formula (what messages cost on top of their text) is in `chat`.
//!
//! Encoders are built once per process (tiktoken-rs singletons: building one costs 50-200 ms)
//! and shared by every thread. Special-token text such as `<|endoftext|>` in user input is
//! counted as ordinary text (`encode_ordinary`), exactly as the API bills it, and never panics.
//!
//! Time and memory stay about linear in the text's size: tiktoken-rs spends time and memory
//! per byte that grow with the length of the pre-tokenizer piece it merges (a megabyte of one
//! letter is one piece: about 1 µs and 60 bytes of memory per byte), so no piece longer than
//! [`LONG_RUN_BYTES`] reaches it (see [`Encoding::encode`]).

use tiktoken_rs::CoreBPE;

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
                .map(|piece| scope.spawn(move || self.count_serial(piece)))
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
    /// Two kinds of run are encoded piecewise; all other text is encoded exactly as tiktoken
    /// does:
    /// * tiktoken's pre-tokenizer regex overflows its stack (a panic, which would abort Node)
    ///   on very long whitespace runs, so a run of [`LONG_WHITESPACE`] or more whitespace
    ///   characters is cut into short pieces, keeping its last character with the text that
    ///   follows (where tiktoken attaches it);
    /// * a run of non-whitespace longer than [`LONG_RUN_BYTES`] is cut so that no part of it
    ///   is longer: where a letter meets a digit or punctuation, or a digit meets a letter or
    ///   punctuation (tiktoken's pieces always end there, so such cuts change nothing), else,
    ///   in a run of one kind of character (a megabyte of one letter, say), at any character
    ///   boundary. A cut of the second kind may change the count by a token: under 0.1% of
    ///   such a run (see the tests); text whose letter and punctuation runs are all shorter
    ///   than a kilobyte is encoded exactly.
    ///
    /// Equal consecutive pieces (a run of one character cuts into them) are encoded once.
    pub fn encode(self, text: &str) -> Vec<u32> {
        let long_whitespace = has_long_whitespace_run(text);
        if !long_whitespace && !has_long_run(text) {
            return self.bpe().encode_ordinary(text);
        }
        let parts = if long_whitespace {
            split_long_whitespace(text)
        } else {
            vec![text]
        };
        let mut pieces = Vec::new();
        for part in parts {
            split_long_runs(part, &mut pieces);
        }
        let mut out = Vec::new();
        let mut last: Option<(&str, std::ops::Range<usize>)> = None;
        for piece in pieces {
            let start = out.len();
            match &last {
                Some((prev, range)) if *prev == piece => out.extend_from_within(range.clone()),
                _ => out.extend(self.bpe().encode_ordinary(piece)),
            }
            last = Some((piece, start..out.len()));
        }
        out
    }
}

/// Runs of non-whitespace longer than this many bytes are encoded piecewise; see
/// [`Encoding::encode`]. Longer than words, numbers and URL path segments; tiktoken-rs takes
/// about 0.1-0.3 µs per byte on runs this long, against about 1 µs on a megabyte.
pub const LONG_RUN_BYTES: usize = 1024;

fn has_long_run(text: &str) -> bool {
    if text.len() <= LONG_RUN_BYTES {
        return false;
    }
    // Bytes, not characters: only ASCII whitespace ends a run here, so a run is never shorter
    // than `split_long_runs` measures it, and text this finds no long run in has none.
    let mut run = 0usize;
    for &b in text.as_bytes() {
        if b.is_ascii_whitespace() {
            run = 0;
        } else {
            run += 1;
            if run > LONG_RUN_BYTES {
                return true;
            }
        }
    }
    false
}

/// How a character takes part in tiktoken's pre-tokenizer pieces (both encodings' patterns).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Letter,
    Number,
    /// Neither letter, number nor whitespace: punctuation, symbols, emoji.
    Other,
}

fn char_class(c: char) -> CharClass {
    if c.is_numeric() {
        CharClass::Number
    } else if c.is_alphabetic() || is_combining_mark(c) {
        CharClass::Letter
    } else {
        CharClass::Other
    }
}

/// Common combining marks: o200k's pattern counts them as letters.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// Whether tiktoken's pre-tokenizer always ends a piece between `a` and `b` (adjacent, neither
/// whitespace). Letter, number and punctuation pieces never hold a character of another of
/// these kinds, except that a letter piece may start with one punctuation character, and end
/// with an apostrophe contraction (`'s`) in o200k.
fn is_piece_boundary(a: char, b: char) -> bool {
    use CharClass::{Letter, Number, Other};
    match (char_class(a), char_class(b)) {
        (Letter, Number) | (Number, Letter) | (Number, Other) | (Other, Number) => true,
        (Letter, Other) => b != '\'',
        _ => false,
    }
}

/// Cut `text` so that no run of non-whitespace in a piece is longer than [`LONG_RUN_BYTES`],
/// preferring cuts at piece boundaries (see [`Encoding::encode`]); pieces are pushed to `out`.
/// Where each cut falls depends only on the run it is in.
fn split_long_runs<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    if !has_long_run(text) {
        out.push(text);
        return;
    }
    let mut piece_start = 0;
    // Start of the current run's part in the current piece, and the last piece boundary in it.
    let mut part_start: Option<usize> = None;
    let mut boundary: Option<usize> = None;
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            part_start = None;
            boundary = None;
            prev = None;
            continue;
        }
        let start = *part_start.get_or_insert(i);
        if prev.is_some_and(|p| is_piece_boundary(p, c)) {
            boundary = Some(i);
        }
        prev = Some(c);
        if i + c.len_utf8() - start > LONG_RUN_BYTES {
            // Cut at the last piece boundary, else right before `c`.
            let cut = boundary.filter(|&b| b > start).unwrap_or(i);
            out.push(&text[piece_start..cut]);
            piece_start = cut;
            part_start = Some(cut);
            boundary = None;
        }
    }
    out.push(&text[piece_start..]);
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
        // The first cut `i` in `from..len - 1` (a byte must follow it) with `\n\n` just before
        // it and a non-whitespace byte at it. Each window is the bytes `i - 2..=i`, so the
        // scan starts two bytes before `from` (at 0 when `from < 2`, where `i >= 2` anyway).
        let lo = from.saturating_sub(2);
        let cut = bytes
            .get(lo..bytes.len().saturating_sub(1))
            .and_then(|scan| {
                scan.windows(3)
                    .position(|w| matches!(w, [b'\n', b'\n', c] if !c.is_ascii_whitespace()))
            })
            .map(|p| lo + p + 2);
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

    /// Deterministic pseudo-random text over `alphabet`.
    fn random_text(alphabet: &[char], len: usize, mut seed: u64) -> String {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn long_runs_of_one_kind_count_within_a_tenth_of_a_percent_of_exact() {
        let lower: Vec<char> = ('a'..='z').collect();
        let texts = [
            "a".repeat(100_000),
            "x".repeat(33_333),
            "!".repeat(50_000),
            "我".repeat(20_000),
            "🎉".repeat(10_000),
            random_text(&lower, 100_000, 7),
            random_text(&['a', 'B', 'c', 'D'], 60_000, 11),
            format!("word {} word", random_text(&lower, 30_000, 3)),
        ];
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for text in &texts {
                assert!(has_long_run(text));
                let exact = enc.bpe().encode_ordinary(text).len();
                let ours = enc.count(text);
                let diff = exact.abs_diff(ours);
                // Measured: runs of one character exact, random letters 0.01-0.04% high.
                assert!(diff * 1000 <= exact, "{enc:?} {}: {ours} vs exact {exact}", &text[..8]);
            }
        }
    }

    #[test]
    fn runs_with_piece_boundaries_and_short_runs_encode_exactly() {
        let lower: Vec<char> = ('a'..='z').collect();
        let url = format!(
            "https://example.com/{}",
            random_text(&['a', 'b', '/', '=', '1', '-', '.'], 5000, 5)
        );
        let chinese = "我们的生活很好，你在哪里？今天天气不错。".repeat(300);
        let base64ish = random_text(&['a', 'Q', '7', '+', '/', 'z', '0'], 8000, 9);
        let words = format!("{} ", random_text(&lower, 900, 1)).repeat(50);
        for text in [url, chinese, base64ish, words] {
            for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
                assert_eq!(
                    enc.encode(&text),
                    enc.bpe().encode_ordinary(&text),
                    "{enc:?} {}",
                    &text[..10]
                );
            }
        }
    }

    #[test]
    fn long_runs_are_cut_into_bounded_pieces_without_losing_text() {
        let alphabet = ['a', 'é', '!', '7', ' ', '\n', '\'', '我', '\u{301}'];
        for seed in 1..40 {
            let mut text = random_text(&alphabet, 3000, seed);
            text.push_str(&"z".repeat(5000));
            text.push_str(&random_text(&alphabet, 2000, seed + 100));
            let mut pieces = Vec::new();
            split_long_runs(&text, &mut pieces);
            assert_eq!(pieces.concat(), text);
            for piece in &pieces {
                let longest = piece.split(char::is_whitespace).map(str::len).max().unwrap_or(0);
                assert!(longest <= LONG_RUN_BYTES, "{longest}");
            }
        }
    }

    /// Finishes in about linear time and memory: before the runs were cut, 30 MiB of one
    /// letter took 20 s and 2 GB; timing is not asserted (shared machines are noisy).
    #[test]
    fn multi_mebibyte_runs_are_counted() {
        let text = "a".repeat(30 << 20);
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let started = std::time::Instant::now();
            let n = enc.count(&text);
            eprintln!("{enc:?}: 30 MiB of one letter: {n} tokens in {:?}", started.elapsed());
            assert!(n > text.len() / 16 && n < text.len() / 2, "{n}");
        }
        let lower: Vec<char> = ('a'..='z').collect();
        let text = random_text(&lower, 2 << 20, 13);
        let started = std::time::Instant::now();
        let n = Encoding::O200kBase.count(&text);
        eprintln!("2 MiB of random letters: {n} tokens in {:?}", started.elapsed());
        assert!(n > text.len() / 8, "{n}");
    }

    #[test]
    fn parallel_cuts_match_naive_index_scan() {
        // The cut rule written with plain indexing: after `\n\n`, before a non-whitespace
        // byte, never at the last byte.
        fn naive(text: &str, parts: usize) -> Vec<&str> {
            let bytes = text.as_bytes();
            let target = text.len() / parts.max(1);
            let (mut out, mut start) = (Vec::new(), 0);
            while out.len() + 1 < parts && start + target < bytes.len() {
                let cut = (start + target..bytes.len() - 1).find(|&i| {
                    i >= 2 && bytes[i - 1] == b'\n' && bytes[i - 2] == b'\n' && !bytes[i].is_ascii_whitespace()
                });
                let Some(i) = cut else { break };
                out.push(&text[start..i]);
                start = i;
            }
            out.push(&text[start..]);
            out
        }
        let alphabet = ["\n", "\n\n", "a", " ", "é", "\r\n"];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..40 {
            for _ in 0..50 {
                let text: String = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for parts in 0..6 {
                    assert_eq!(
                        split_for_parallel_count(&text, parts),
                        naive(&text, parts),
                        "{text:?} {parts}"
                    );
                }
            }
        }
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
}
