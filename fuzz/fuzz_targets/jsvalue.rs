//! Fuzz target: the bounded JavaScript-to-JSON conversion (`core::jsvalue`) over arbitrary heaps.
//!
//! The bytes decode into a modelled JavaScript heap (`ModelHeap::from_bytes`: shared children,
//! cycles, deep chains, sparse arrays, non-finite numbers, throwing getters). Nothing may panic
//! or recurse without bound; a conversion that succeeds stays within the documented depth and
//! count limits.
#![no_main]

use chatgpt_native::core::jsvalue::{self, ModelHeap, MAX_DEPTH, MAX_VALUES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Depth and number of values of a converted document.
fn measure(v: &Value, depth: usize, count: &mut usize) -> usize {
    *count += 1;
    let children: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map.values().collect(),
        _ => return depth,
    };
    children.into_iter().map(|c| measure(c, depth + 1, count)).max().unwrap_or(depth)
}

fuzz_target!(|data: &[u8]| {
    let (mut heap, root) = ModelHeap::from_bytes(data);
    if let Ok(value) = jsvalue::to_json(&mut heap, &root, "completionParams") {
        let mut count = 0;
        let depth = measure(&value, 0, &mut count);
        assert!(depth <= MAX_DEPTH, "depth {depth}");
        assert!(count <= MAX_VALUES, "{count} values");
    }
});
