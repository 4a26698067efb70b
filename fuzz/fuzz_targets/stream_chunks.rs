//! Fuzz target: folding stream events into a completion (`StreamState::on_event`).
//!
//! Each line of the input is one event's data (a line starting with `!` is an `event: error`),
//! so JSON chunks, surrogate escapes split across lines, `[DONE]` and garbage all reach it. The
//! deltas delivered must always add up to the accumulated text, and nothing may panic.
#![no_main]

use chatgpt_native::core::chat::{StreamState, StreamStep};
use chatgpt_native::core::sse::SseEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let mut state = StreamState::default();
    let mut delivered = String::new();
    for line in text.split('\n') {
        let (event, data) = match line.strip_prefix('!') {
            Some(data) => (Some("error".to_owned()), data),
            None => (None, line),
        };
        let ev = SseEvent {
            event,
            data: data.to_owned(),
            id: None,
        };
        match state.on_event(&ev) {
            Ok(StreamStep::Delta(delta)) => {
                assert!(!delta.is_empty(), "empty deltas are not delivered");
                delivered.push_str(&delta);
            }
            Ok(StreamStep::Nothing) => {}
            Ok(StreamStep::Done) | Err(_) => break,
        }
        assert_eq!(delivered, state.text);
    }
    let _ = state.finish();
});
