//! Fuzz target: the lone-surrogate handling (`core::surrogates`) against serde_json.
//!
//! * The rewrite keeps the length, and JSON whose syntax is valid (serde_json's raw reader does
//!   not check surrogates) never fails a full parse over an escape once rewritten.
//! * Decoding a string literal gives what serde_json gives wherever serde_json accepts it, and
//!   with lone surrogates, what serde_json gives for the rewritten literal.
#![no_main]

use chatgpt_native::core::surrogates::{decode_string_lossy, replace_lone_surrogates};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|input: &[u8]| {
    let fixed = replace_lone_surrogates(input);
    assert_eq!(fixed.len(), input.len());
    if serde_json::from_slice::<Box<RawValue>>(input).is_ok() {
        // It may still fail for other reasons the raw reader skips (numbers out of range).
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&fixed) {
            let msg = e.to_string();
            assert!(!msg.contains("surrogate") && !msg.contains("escape"), "{msg}");
        }
    }
    let Ok(literal) = std::str::from_utf8(input) else {
        return;
    };
    let ours = decode_string_lossy(literal);
    if !(literal.len() >= 2 && literal.starts_with('"') && literal.ends_with('"')) {
        return;
    }
    if let Ok(expected) = serde_json::from_str::<String>(literal) {
        assert_eq!(ours.as_deref(), Some(expected.as_str()));
    }
    if let Ok(expected) = serde_json::from_slice::<String>(&fixed) {
        assert_eq!(ours.as_deref(), Some(expected.as_str()));
    }
});
