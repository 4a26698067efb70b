//! Fuzz target: reading a complete (non-streamed) response body from arbitrary bytes.
//!
//! Nothing may panic; a response that parses keeps its body as `detail`, which must stay one
//! JSON document (lone surrogate escapes included: JavaScript's JSON.parse reads them).
#![no_main]

use chatgpt_native::core::chat::parse_completion;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|input: &[u8]| {
    if let Ok(completion) = parse_completion(input) {
        assert!(serde_json::from_str::<Box<RawValue>>(completion.detail.get()).is_ok());
        assert!(completion.choices > 0);
    }
});
