//! Fuzz target: reading an image's size (PNG, JPEG, GIF, WebP headers) from arbitrary bytes.
//!
//! Nothing may panic, and whatever size comes out, its token cost stays within the formula's
//! most (16 tiles of a 2048x2048 image).
#![no_main]

use chatgpt_native::core::content::{image_dimensions, image_tokens, ImageDetail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Some(size) = image_dimensions(input) {
        assert!(size.width > 0 && size.height > 0);
        assert!(image_tokens(size, ImageDetail::High) <= 170 * 16 + 85);
    }
});
