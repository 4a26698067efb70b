//! Lone UTF-16 surrogates in the server's JSON.
//!
//! JSON writes a character outside the Basic Multilingual Plane as a pair of surrogate escapes
//! (`"\ud83c\udf89"` is 🎉). Some servers split the pair between two stream chunks, so each
//! chunk holds half of one character: a lone surrogate. JavaScript strings can hold one; Rust
//! strings cannot, and serde_json rejects the whole document over it. The rule here: a pair is
//! one character; a high surrogate escaped at the very end of a stream delta is held back and
//! joined with a low one escaped at the very start of the next delta; every other lone
//! surrogate becomes U+FFFD. No reply fails for one.
//!
//! * [`replace_lone_surrogates`] rewrites every surrogate escape that is not half of a pair
//!   into `\uFFFD` in the JSON text, before serde_json sees it. The rewrite keeps every byte
//!   offset, and text without a `\ud`/`\uD` escape (nearly all text) is returned as is after
//!   one substring search.
//! * [`decode_string`] decodes one JSON string literal itself, and hands a trailing high
//!   surrogate to the caller instead of decoding it, which is what a stream delta needs.

use std::borrow::Cow;

use memchr::{memchr, memmem};

const REPLACEMENT: char = '\u{FFFD}';

/// Whether `json` may hold a surrogate escape. `false` is certain; `true` may be an escaped
/// backslash followed by `ud` (`"\\ud83c"` is the text `\ud83c`, not an escape).
pub fn may_hold_surrogate_escape(json: &[u8]) -> bool {
    memmem::find(json, b"\\ud").is_some() || memmem::find(json, b"\\uD").is_some()
}

/// `json` with every surrogate escape that is not half of a valid pair replaced by `\uFFFD`.
/// Borrowed, unchanged, when there is none. Only `\uXXXX` escapes are rewritten, digit for
/// digit, so the result has the same length and structure, and is valid JSON exactly when
/// `json` is (or was only invalid for its lone surrogates).
pub fn replace_lone_surrogates(json: &[u8]) -> Cow<'_, [u8]> {
    if !may_hold_surrogate_escape(json) {
        return Cow::Borrowed(json);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(off) = json.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        let at = i + off;
        if json.get(at + 1) != Some(&b'u') {
            // `\\`, `\n`, ...: skip the escaped character too, so `\\ud83c` stays text.
            i = at + 2;
            continue;
        }
        let Some(unit) = hex4(json, at + 2) else {
            i = at + 2;
            continue;
        };
        i = at + 6;
        let lone = match unit {
            0xD800..=0xDBFF => {
                if low_escape_at(json, i).is_some() {
                    i += 6;
                    false
                } else {
                    true
                }
            }
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let v = out.get_or_insert_with(|| json.to_vec());
            if let Some(digits) = v.get_mut(at + 2..at + 6) {
                digits.copy_from_slice(b"FFFD");
            }
        }
    }
    out.map_or(Cow::Borrowed(json), Cow::Owned)
}

/// Decodes the JSON string literal `literal` (with its quotes, as serde_json's `RawValue`
/// holds it); `None` when it is not a string (`null`, a number, ...).
///
/// `pending` carries a high surrogate across stream deltas. On entry, a high surrogate held
/// from the previous delta: joined with a low surrogate escaped at the very start of this
/// literal, else written as U+FFFD before it (an empty literal keeps holding it). On exit, a
/// high surrogate escaped at the very end of this literal, not written. Every other lone
/// surrogate, and any malformed escape, becomes U+FFFD.
pub fn decode_string<'a>(literal: &'a str, pending: &mut Option<u16>) -> Option<Cow<'a, str>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let bytes = inner.as_bytes();
    if bytes.is_empty() || (pending.is_none() && memchr(b'\\', bytes).is_none()) {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len() + 4);
    let mut i = 0;
    if let Some(high) = pending.take() {
        match low_escape_at(bytes, 0) {
            Some(low) => {
                out.push(join(high, low));
                i = 6;
            }
            None => out.push(REPLACEMENT),
        }
    }
    while let Some(off) = bytes.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        let at = i + off;
        // `i` and `at` sit on ASCII bytes (start, or after an escape; a backslash), so both
        // are character boundaries.
        out.push_str(inner.get(i..at).unwrap_or_default());
        let escaped = bytes.get(at + 1).copied();
        i = at + 2;
        let simple = match escaped {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let Some(unit) = hex4(bytes, at + 2) else {
                    out.push(REPLACEMENT);
                    continue;
                };
                i = at + 6;
                match unit {
                    0xD800..=0xDBFF => {
                        if let Some(low) = low_escape_at(bytes, i) {
                            out.push(join(unit, low));
                            i += 6;
                        } else if i == bytes.len() {
                            *pending = Some(unit);
                        } else {
                            out.push(REPLACEMENT);
                        }
                    }
                    _ => out.push(char::from_u32(u32::from(unit)).unwrap_or(REPLACEMENT)),
                }
                continue;
            }
            // Not valid JSON; serde_json rejects it before it gets here.
            _ => REPLACEMENT,
        };
        out.push(simple);
    }
    out.push_str(inner.get(i..).unwrap_or_default());
    Some(Cow::Owned(out))
}

/// [`decode_string`] for a string that is complete in itself: a trailing high surrogate is
/// U+FFFD too.
pub fn decode_string_lossy(literal: &str) -> Option<Cow<'_, str>> {
    let mut pending = None;
    let mut s = decode_string(literal, &mut pending)?;
    if pending.is_some() {
        s.to_mut().push(REPLACEMENT);
    }
    Some(s)
}

/// The four hex digits at `at`, as a UTF-16 code unit.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at.checked_add(4)?)?;
    digits.iter().try_fold(0u16, |acc, &b| {
        let d = char::from(b).to_digit(16)?;
        Some((acc << 4) | d as u16)
    })
}

/// The low surrogate escaped at `at` (`\uDC00`-`\uDFFF`), if one is.
fn low_escape_at(bytes: &[u8], at: usize) -> Option<u16> {
    if bytes.get(at..at.checked_add(2)?)? != b"\\u" {
        return None;
    }
    hex4(bytes, at + 2).filter(|u| (0xDC00..=0xDFFF).contains(u))
}

/// The character of a surrogate pair.
fn join(high: u16, low: u16) -> char {
    let cp = 0x10000 + ((u32::from(high) & 0x3FF) << 10) + (u32::from(low) & 0x3FF);
    char::from_u32(cp).unwrap_or(REPLACEMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(json: &str) -> String {
        String::from_utf8(replace_lone_surrogates(json.as_bytes()).into_owned()).unwrap()
    }

    fn lossy(literal: &str) -> String {
        decode_string_lossy(literal).unwrap().into_owned()
    }

    #[test]
    fn pairs_are_kept_and_lone_surrogates_replaced() {
        assert_eq!(replaced(r#"["\ud83c\udf89"]"#), r#"["\ud83c\udf89"]"#);
        assert_eq!(replaced(r#"["\uD83C\uDF89"]"#), r#"["\uD83C\uDF89"]"#);
        assert_eq!(replaced(r#"["\ud83c"]"#), r#"["\uFFFD"]"#);
        assert_eq!(replaced(r#"["\udf89"]"#), r#"["\uFFFD"]"#);
        assert_eq!(replaced(r#"["a\ud83cb\udf89c"]"#), r#"["a\uFFFDb\uFFFDc"]"#);
        // Two highs: the first is lone, the second pairs.
        assert_eq!(replaced(r#"["\ud83c\ud83c\udf89"]"#), r#"["\uFFFD\ud83c\udf89"]"#);
        // Low then high: both lone.
        assert_eq!(replaced(r#"["\udf89\ud83c"]"#), r#"["\uFFFD\uFFFD"]"#);
        // Mixed case hex.
        assert_eq!(replaced(r#"["\uD83c\uDf89","\uDbFf"]"#), r#"["\uD83c\uDf89","\uFFFD"]"#);
    }

    #[test]
    fn escaped_backslashes_are_not_escapes() {
        for json in [r#"["\\ud83c"]"#, r#"["\\\\ud83c"]"#, r#"["\\u00e9\\uDF89"]"#] {
            assert!(
                matches!(replace_lone_surrogates(json.as_bytes()), Cow::Borrowed(_)),
                "{json}"
            );
        }
        // An odd number of backslashes: the last one escapes the `u`.
        assert_eq!(replaced(r#"["\\\ud83c"]"#), r#"["\\\uFFFD"]"#);
        assert_eq!(lossy(r#""\\ud83c""#), "\\ud83c");
        assert_eq!(lossy(r#""\\\ud83c""#), "\\\u{FFFD}");
    }

    #[test]
    fn replaced_text_parses_with_serde() {
        for json in [
            r#"{"a":"\ud83c"}"#,
            r#"{"a":"x\udf89y","b":["\uDBFF\uDFFF","\ud800"]}"#,
            r#"{"\ud83c":1}"#,
        ] {
            let fixed = replace_lone_surrogates(json.as_bytes());
            assert!(serde_json::from_str::<serde_json::Value>(json).is_err(), "{json}");
            let v: serde_json::Value = serde_json::from_slice(&fixed).unwrap();
            assert!(v.to_string().contains('\u{FFFD}'), "{json}");
        }
        let v: serde_json::Value = serde_json::from_slice(&replace_lone_surrogates(br#"["\uDBFF\uDFFF"]"#)).unwrap();
        assert_eq!(v[0], "\u{10FFFF}");
    }

    #[test]
    fn text_without_surrogate_escapes_is_borrowed() {
        for json in [&br#"{"a":"plain \n \u00e9 \\ \""}"#[..], b"", b"\\", b"\\u", b"\\ud8"] {
            assert!(matches!(replace_lone_surrogates(json), Cow::Borrowed(_)));
        }
        assert!(matches!(
            decode_string(r#""plain text""#, &mut None),
            Some(Cow::Borrowed("plain text"))
        ));
    }

    #[test]
    fn truncated_and_malformed_escapes_never_panic() {
        for json in [
            &b"\\ud8"[..],
            b"\\ud83c\\",
            b"\\ud83c\\u",
            b"\\ud83c\\udf8",
            b"\\u",
            b"\\",
        ] {
            let _ = replace_lone_surrogates(json);
        }
        for literal in [
            "\"\\ud8\"",
            "\"\\\"",
            "\"\\u\"",
            "\"\\x\"",
            "\"",
            "",
            "\"\\ud83c\\udf\"",
        ] {
            let _ = decode_string_lossy(literal);
        }
        assert_eq!(lossy(r#""\ud83c\udf""#), "\u{FFFD}\u{FFFD}df");
    }

    #[test]
    fn decoding_matches_serde_for_valid_strings() {
        for literal in [
            r#""""#,
            r#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            r#""\u00e9t\u00E9 \u4e2d""#,
            r#""\ud83c\udf89 and \uD83D\uDE00""#,
            r#""мир 🎉""#,
        ] {
            let expected: String = serde_json::from_str(literal).unwrap();
            assert_eq!(lossy(literal), expected, "{literal}");
        }
        assert_eq!(decode_string("null", &mut None), None);
        assert_eq!(decode_string("7", &mut None), None);
    }

    #[test]
    fn a_trailing_high_surrogate_is_held_and_joined_with_the_next_low() {
        let mut pending = None;
        assert_eq!(decode_string(r#""party \ud83c""#, &mut pending).unwrap(), "party ");
        assert_eq!(pending, Some(0xD83C));
        // An empty delta keeps holding it.
        assert_eq!(decode_string(r#""""#, &mut pending).unwrap(), "");
        assert_eq!(pending, Some(0xD83C));
        assert_eq!(decode_string(r#""\udf89 time""#, &mut pending).unwrap(), "🎉 time");
        assert_eq!(pending, None);
        // A held high without a low next: U+FFFD, then the text.
        let mut pending = Some(0xD83C);
        assert_eq!(decode_string(r#""x""#, &mut pending).unwrap(), "\u{FFFD}x");
        let mut pending = Some(0xD83C);
        assert_eq!(decode_string(r#""\ud83c""#, &mut pending).unwrap(), "\u{FFFD}");
        assert_eq!(pending, Some(0xD83C));
        // A low surrogate not at the start is lone, whatever is held.
        let mut pending = None;
        assert_eq!(decode_string(r#""a\udf89""#, &mut pending).unwrap(), "a\u{FFFD}");
        // A non-string leaves the held surrogate alone.
        let mut pending = Some(0xD83C);
        assert_eq!(decode_string("null", &mut pending), None);
        assert_eq!(pending, Some(0xD83C));
    }

    #[test]
    fn lone_surrogates_anywhere_become_replacement_characters() {
        assert_eq!(lossy(r#""\ud83c""#), "\u{FFFD}");
        assert_eq!(lossy(r#""\udf89""#), "\u{FFFD}");
        assert_eq!(lossy(r#""a\ud83cb""#), "a\u{FFFD}b");
        assert_eq!(lossy(r#""\udf89\ud83c""#), "\u{FFFD}\u{FFFD}");
        assert_eq!(lossy(r#""\ud83c\ud83c\udf89""#), "\u{FFFD}🎉");
        assert_eq!(lossy(r#""\uD83C\uDF89\uDBFF\uDFFF""#), "🎉\u{10FFFF}");
    }
}
