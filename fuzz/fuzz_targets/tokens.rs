//! Fuzz target: token counting and `splitText` chunking over arbitrary text.
//!
//! The first byte picks the encoding and the chunk limit; the rest, read as UTF-8 (lossily), is
//! the text. Counting must agree with encoding, and every chunk must hold at most the limit,
//! counted exactly; nothing may panic (tiktoken-rs panics on some inputs it is handed raw).
#![no_main]

use chatgpt_native::core::chunking::{split_text, SplitError, SplitOptions};
use chatgpt_native::core::tokens::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let encoding = if control & 1 == 0 {
        Encoding::O200kBase
    } else {
        Encoding::Cl100kBase
    };
    let text = String::from_utf8_lossy(rest);
    let n = encoding.count(&text);
    assert_eq!(n, encoding.encode(&text).len());
    assert!(n <= text.len());
    let max_tokens = usize::from(control >> 1) + 1;
    let options = SplitOptions {
        max_tokens,
        overlap_tokens: 0,
        encoding,
    };
    match split_text(&text, options) {
        Ok(chunks) => {
            for chunk in chunks {
                assert!(chunk.tokens <= max_tokens);
                assert_eq!(chunk.tokens, encoding.count(&chunk.text));
            }
        }
        Err(SplitError::CharacterTooLarge { .. }) => assert!(max_tokens < 4),
        Err(e) => panic!("{e}"),
    }
});
