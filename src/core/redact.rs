//! Scrubbing secrets from text that leaves the client: error messages and error fields built
//! from what a server sent, debug log lines, and URLs shown to the caller.
//!
//! Three kinds of secret are removed:
//! - every configured API key (all of `apiKey` / `apiKeys`), wherever it appears, and a prefix
//!   of one (12 characters or more) where a server or our own 500-character cap cut it short.
//!   A key becomes its fingerprint (`sk-…abcd`), which is enough to tell keys apart;
//! - the credentials of any `Authorization` scheme a server may echo: `Bearer <token>` and
//!   `Basic <token>` keep the scheme and lose the token;
//! - the userinfo of any URL (`http://user:pass@host` becomes `http://<redacted>@host`).
//!
//! Errors are scrubbed where they leave the client (`ChatClient::send` and `warmup`), which knows
//! the keys, and once more where the binding turns any error into a `ChatGPTError`, which does
//! not know them but removes the other two kinds.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::error::{ChatError, ErrorInfo};

/// What a removed secret is replaced with (keys are replaced with their fingerprint instead).
pub const REDACTED: &str = "<redacted>";

/// Shortest prefix of a key treated as that key cut short. Shorter keys only match whole.
const MIN_KEY_PREFIX: usize = 12;

/// A scheme's token in an echoed `Authorization` header (or anywhere else).
static AUTH_TOKEN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(?i)\b(bearer|basic)(\s+|%20|\+)[^\s"'<>,;\\]+"#).ok());
/// A URL's userinfo: from `scheme://` up to the `@` before the host.
static URL_USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s@"'<>]*@"#).ok());

/// Remove authorization tokens and URL credentials: everything that can be scrubbed without
/// knowing the keys.
pub fn scrub_credentials(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if let Some(re) = AUTH_TOKEN.as_ref() {
        if let Cow::Owned(s) = re.replace_all(&out, format!("${{1}}${{2}}{REDACTED}").as_str()) {
            out = Cow::Owned(s);
        }
    }
    if let Some(re) = URL_USERINFO.as_ref() {
        if let Cow::Owned(s) = re.replace_all(&out, format!("${{1}}{REDACTED}@").as_str()) {
            out = Cow::Owned(s);
        }
    }
    out
}

/// `url` without the credentials in its userinfo, for showing it.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    match URL_USERINFO.as_ref() {
        Some(re) => re.replace_all(url, format!("${{1}}{REDACTED}@").as_str()),
        None => Cow::Borrowed(url),
    }
}

/// Scrubs the configured keys, and everything [`scrub_credentials`] does.
#[derive(Clone, Default)]
pub struct Redactor {
    keys: Vec<KeyMask>,
}

#[derive(Clone)]
struct KeyMask {
    key: String,
    fingerprint: String,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} keys)", self.keys.len())
    }
}

impl Redactor {
    /// A redactor for these keys (empty ones are ignored).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut keys: Vec<KeyMask> = keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(|k| KeyMask {
                key: k.to_owned(),
                fingerprint: fingerprint(k),
            })
            .collect();
        // Longest first, so a key that contains another is masked whole.
        keys.sort_by_key(|k| std::cmp::Reverse(k.key.len()));
        keys.dedup_by(|a, b| a.key == b.key);
        Redactor { keys }
    }

    /// `text` without keys (whole or cut short), authorization tokens or URL credentials.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for mask in &self.keys {
            if let Some(s) = mask.apply(&out) {
                out = Cow::Owned(s);
            }
        }
        match scrub_credentials(&out) {
            Cow::Owned(s) => Cow::Owned(s),
            Cow::Borrowed(_) => out,
        }
    }

    /// Scrub every text field of `e` a server can fill, except `partialText`, which is the
    /// model's own text.
    pub fn scrub_error(&self, e: &mut ChatError) {
        let info: &mut ErrorInfo = e;
        scrub_in_place(&mut info.message, |t| self.scrub(t));
        let fields = [
            &mut info.status_text,
            &mut info.error_type,
            &mut info.param,
            &mut info.server_code,
            &mut info.request_id,
        ];
        for text in fields.into_iter().flatten() {
            scrub_in_place(text, |t| self.scrub(t));
        }
        if let Some(cause) = &mut info.cause {
            self.scrub_error(cause);
        }
    }
}

/// Replace `text` with `scrub(text)` when that changed anything.
pub fn scrub_in_place(text: &mut String, scrub: impl for<'t> Fn(&'t str) -> Cow<'t, str>) {
    if let Cow::Owned(s) = scrub(text) {
        *text = s;
    }
}

impl KeyMask {
    /// `text` with every occurrence of the key, or of a long enough prefix of it, replaced by
    /// the fingerprint; `None` when there is none.
    fn apply(&self, text: &str) -> Option<String> {
        let key = self.key.as_bytes();
        let mut probe_len = key.len().min(MIN_KEY_PREFIX);
        while !self.key.is_char_boundary(probe_len) {
            probe_len -= 1;
        }
        let probe = self.key.get(..probe_len).filter(|p| !p.is_empty())?;
        if !text.contains(probe) {
            return None;
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut from = 0;
        while let Some(found) = text.get(from..).and_then(|rest| rest.find(probe)) {
            let start = from.saturating_add(found);
            // Extend the match as far as the text agrees with the key.
            let mut end = start.saturating_add(probe_len);
            while end < bytes.len()
                && bytes
                    .get(end)
                    .is_some_and(|b| key.get(end.saturating_sub(start)) == Some(b))
            {
                end += 1;
            }
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(text.get(copied..start)?);
            out.push_str(&self.fingerprint);
            copied = end;
            from = end.max(start.saturating_add(1));
            while !text.is_char_boundary(from) {
                from += 1;
            }
        }
        out.push_str(text.get(copied..)?);
        Some(out)
    }
}

/// `sk-…abcd` (or `…` alone for keys too short to show anything safely).
pub fn fingerprint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    let prefix: String = chars
        .iter()
        .take_while(|c| **c != '-')
        .chain(std::iter::once(&'-'))
        .take(4)
        .collect();
    let prefix = if prefix.ends_with('-') { prefix } else { String::new() };
    let tail: String = chars.iter().skip(chars.len().saturating_sub(4)).collect();
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;

    const KEY: &str = "sk-proj-SECRETsecret0123456789abcd";

    #[test]
    fn configured_keys_become_fingerprints_wherever_they_appear() {
        let r = Redactor::new([KEY, "sk-other-key-000000009999"]);
        let text = format!("key {KEY} and again:{KEY}. also sk-other-key-000000009999");
        let out = r.scrub(&text);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(!out.contains("000000009999"), "{out}");
        assert!(out.contains("sk-…abcd"), "{out}");
        assert!(out.contains("sk-…9999"), "{out}");
    }

    #[test]
    fn a_key_cut_short_is_masked_too() {
        let r = Redactor::new([KEY]);
        let cut = &KEY[..20];
        let text = format!("OpenAI error 500: echo {cut}");
        let out = r.scrub(&text);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(out.ends_with("sk-…abcd"), "{out}");
    }

    #[test]
    fn authorization_tokens_and_url_credentials_are_removed() {
        let out = scrub_credentials(r#"{"authorization":"Bearer abc.def-123","x":"basic dXNlcjpwYXNz"}"#);
        assert_eq!(out, r#"{"authorization":"Bearer <redacted>","x":"basic <redacted>"}"#);
        let out = scrub_credentials("failed for https://user:pa55@example.com:8443/v1 and http://h/p@q");
        assert_eq!(
            out,
            "failed for https://<redacted>@example.com:8443/v1 and http://h/p@q"
        );
        assert_eq!(redact_url("http://127.0.0.1:1/v1"), "http://127.0.0.1:1/v1");
        assert_eq!(
            redact_url("http://token@127.0.0.1:1/v1"),
            "http://<redacted>@127.0.0.1:1/v1"
        );
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        let r = Redactor::new([KEY]);
        assert!(matches!(
            r.scrub("OpenAI error 401 Unauthorized: bad key"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(r.scrub("naïve ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_server_field_of_an_error_is_scrubbed_but_not_the_partial_text() {
        let r = Redactor::new([KEY]);
        let mut e = ChatError::new(ErrorCode::Auth, format!("Incorrect API key provided: Bearer {KEY}"));
        e.param = Some(KEY.to_owned());
        e.server_code = Some(format!("bad:{KEY}"));
        e.error_type = Some(KEY.to_owned());
        e.request_id = Some(KEY.to_owned());
        e.status_text = Some(KEY.to_owned());
        e.partial_text = Some("the model's text".to_owned());
        r.scrub_error(&mut e);
        let all = format!("{:?}", e);
        assert!(!all.contains("SECRET"), "{all}");
        assert_eq!(e.partial_text.as_deref(), Some("the model's text"));
    }

    #[test]
    fn short_or_multibyte_keys_only_match_whole() {
        let r = Redactor::new(["short-key", "ключ-ключ-ключ-ключ"]);
        assert_eq!(
            r.scrub("a short-key here"),
            format!("a {} here", fingerprint("short-key"))
        );
        assert_eq!(r.scrub("a short-ke"), "a short-ke");
        let out = r.scrub("x ключ-ключ-ключ-кл");
        assert!(!out.contains("ключ-ключ-ключ"), "{out}");
    }

    #[test]
    fn fingerprints_show_only_the_tail() {
        assert_eq!(fingerprint("sk-abcdefghijklmnop1234"), "sk-…1234");
        assert_eq!(fingerprint("short"), "…");
        assert!(!fingerprint("sk-proj-secretsecretsecret9876").contains("secret"));
    }
}
