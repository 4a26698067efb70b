//! Fuzz target: the SSE decoder over arbitrary bytes in arbitrary splits.
//!
//! The input's first byte says how many split points follow (0-15), each next byte is the
//! length of one piece, and the rest is the stream. Decoding it in those pieces, or one byte at a
//! time, must give exactly the events of decoding it whole; a tiny size limit must fail cleanly.
#![no_main]

use chatgpt_native::core::sse::{SseDecoder, SseEvent};
use libfuzzer_sys::fuzz_target;

/// Events of `pieces` fed in order, and whether the decoder refused the input.
fn decode(pieces: &[&[u8]], limit: usize) -> (Vec<SseEvent>, bool) {
    let mut decoder = SseDecoder::new(limit);
    let mut out = Vec::new();
    for piece in pieces {
        if decoder.feed(piece, &mut out).is_err() {
            return (out, true);
        }
    }
    decoder.finish(&mut out);
    (out, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&count, rest)) = input.split_first() else {
        return;
    };
    let (lengths, data) = rest.split_at(usize::from(count % 16).min(rest.len()));
    let mut pieces = Vec::new();
    let mut tail = data;
    for &len in lengths {
        let (piece, after) = tail.split_at(usize::from(len).min(tail.len()));
        pieces.push(piece);
        tail = after;
    }
    pieces.push(tail);

    let limit = 1 << 20;
    let (whole, whole_failed) = decode(&[data], limit);
    assert!(!whole_failed, "inputs are far below the limit");
    assert_eq!(decode(&pieces, limit), (whole.clone(), false), "split at {lengths:?}");
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(decode(&bytes, limit), (whole, false), "byte by byte");
    let _ = decode(&pieces, 16);
});
