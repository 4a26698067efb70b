//! Budgets shared by every process that points at the same Redis (the `coordination` option).
//!
//! Node services run as many processes (cluster mode, PM2, replicas), and they all draw on one
//! organisation's per-model requests and tokens per minute. With `coordination`, the rate
//! buckets, the pause after a 429 and what `x-ratelimit-*` headers teach live in Redis, so N
//! processes together respect the budget instead of sending N times it.
//!
//! - `connection`: the Redis connection (made on first use, reconnected in the background), the
//!   per-operation time budget, and the counters of [`CoordinationStats`].
//! - `scripts`: the Lua scripts that reserve, reconcile and learn atomically on the server.
//! - `shared`: the per-key limiter that admission uses instead of the in-process one.
//! - `breaker`: the circuit breaker of each upstream, kept in Redis (one half-open probe across
//!   processes).
//! - `health`: key health shared by every process (a 429 cool-down, a 401/403 disable), read
//!   by the reservation itself.
//! - `cache`: the response cache's second level, in Redis (with `cache` on).
//!
//! Redis failing is not the service failing: an operation that errors or outlasts
//! `operationTimeoutMs` makes that call use the in-process limiter, scaled to `localShare` of the
//! configured budgets, and a one-time warning says so; the next operation that succeeds resumes
//! sharing.

mod breaker;
mod cache;
mod connection;
mod health;
mod scripts;
mod shared;

use std::fmt;
use std::time::Duration;

pub use breaker::{SharedAdmit, SharedBreaker, SharedPermit};
pub use cache::{Lookup, SharedCache, MAX_ENTRY_BYTES};
pub use connection::{CoordinationMode, CoordinationStats, Coordinator, RedisConn};
pub use health::{HealthMark, SHARED_DISABLE};
pub use scripts::KeyHealth;
pub use shared::{SharedBucket, SharedGrant, SharedLease, SharedLimiter};

use super::error::ChatError;
use super::redact::redact_url;

/// Default for [`CoordinationConfig::key_prefix`].
pub const DEFAULT_KEY_PREFIX: &str = "chatgpt-native";
/// Default for [`CoordinationConfig::operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(50);
/// Default for [`CoordinationConfig::local_share`]: each process may use half the budget on its
/// own while Redis is away (two processes together stay within it).
pub const DEFAULT_LOCAL_SHARE: f64 = 0.5;
/// Longest `keyPrefix` accepted: it is part of every key.
pub const MAX_KEY_PREFIX_CHARS: usize = 128;
/// Longest `operationTimeoutMs` accepted: a wait for Redis longer than this is the caller's wait.
pub const MAX_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest Redis URL accepted.
pub const MAX_URL_CHARS: usize = 4096;

/// What the caller gave as `coordination`, before checks.
#[derive(Clone, Default)]
pub struct CoordinationOptions {
    /// `redis://` or `rediss://` (TLS); may carry a user and password.
    pub url: String,
    pub key_prefix: Option<String>,
    pub operation_timeout_ms: Option<u64>,
    pub local_share: Option<f64>,
    /// Whether the response cache (when `cache` is on) has its second level in Redis; default
    /// true.
    pub cache: Option<bool>,
}

impl fmt::Debug for CoordinationOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinationOptions")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("local_share", &self.local_share)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Checked `coordination` settings.
#[derive(Clone, PartialEq)]
pub struct CoordinationConfig {
    /// The Redis URL, credentials included: never shown (see [`CoordinationConfig::shown_url`]).
    pub url: String,
    /// Start of every key this client writes; processes with the same Redis and prefix share.
    pub key_prefix: String,
    /// Budget of one Redis operation; past it the call falls back to the local limiter.
    pub operation_timeout: Duration,
    /// Share (0 to 1] of `rateLimit` one process uses on its own while Redis is unreachable.
    pub local_share: f64,
    /// The response cache (when on) has its second level in Redis (see `cache.rs`).
    pub shared_cache: bool,
}

impl fmt::Debug for CoordinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinationConfig")
            .field("url", &self.shown_url())
            .field("key_prefix", &self.key_prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("local_share", &self.local_share)
            .field("shared_cache", &self.shared_cache)
            .finish()
    }
}

impl CoordinationConfig {
    /// Checks `opts`; errors name the option and the value (the URL without its credentials).
    pub fn build(opts: CoordinationOptions) -> Result<Self, ChatError> {
        let url = opts.url;
        let shown = redact_url(&url).into_owned();
        if url.chars().count() > MAX_URL_CHARS {
            return Err(ChatError::invalid_arg(format!(
                "Expected `coordination.url` to be at most {MAX_URL_CHARS} characters"
            )));
        }
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("redis://") || lower.starts_with("rediss://")) {
            return Err(ChatError::invalid_arg(format!(
                "Expected `coordination.url` to be a redis:// or rediss:// URL, got {shown:?}"
            )));
        }
        if let Err(e) = redis::Client::open(url.as_str()) {
            let detail = super::redact::scrub_credentials(&e.to_string()).into_owned();
            return Err(ChatError::invalid_arg(format!(
                "Expected `coordination.url` to be a valid Redis URL, got {shown:?} ({detail})"
            )));
        }
        let key_prefix = opts.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
        if key_prefix.is_empty()
            || key_prefix.chars().count() > MAX_KEY_PREFIX_CHARS
            || key_prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_control() || c.is_whitespace())
        {
            return Err(ChatError::invalid_arg(format!(
                "Expected `coordination.keyPrefix` to be 1 to {MAX_KEY_PREFIX_CHARS} characters without braces, \
                 spaces or control characters, got {key_prefix:?}"
            )));
        }
        let operation_timeout = match opts.operation_timeout_ms {
            None => DEFAULT_OPERATION_TIMEOUT,
            Some(ms) if ms > 0 && ms <= MAX_OPERATION_TIMEOUT.as_millis() as u64 => Duration::from_millis(ms),
            Some(ms) => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `coordination.operationTimeoutMs` to be an integer from 1 to {}, got {ms}",
                    MAX_OPERATION_TIMEOUT.as_millis()
                )))
            }
        };
        let local_share = match opts.local_share {
            None => DEFAULT_LOCAL_SHARE,
            Some(share) if share.is_finite() && share > 0.0 && share <= 1.0 => share,
            Some(share) => {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `coordination.localShare` to be a number greater than 0 and at most 1, got {share}"
                )))
            }
        };
        Ok(CoordinationConfig {
            url,
            key_prefix,
            operation_timeout,
            local_share,
            shared_cache: opts.cache.unwrap_or(true),
        })
    }

    /// The URL as it may be shown: credentials replaced.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url).into_owned()
    }
}

#[cfg(test)]
pub(crate) mod test_redis;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;

    fn build(url: &str) -> Result<CoordinationConfig, ChatError> {
        CoordinationConfig::build(CoordinationOptions {
            url: url.into(),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_apply_and_the_password_never_shows() {
        let cfg = build("redis://user:hunter2-secret@127.0.0.1:6379/0").unwrap();
        assert_eq!(cfg.key_prefix, DEFAULT_KEY_PREFIX);
        assert_eq!(cfg.operation_timeout, DEFAULT_OPERATION_TIMEOUT);
        assert_eq!(cfg.local_share, DEFAULT_LOCAL_SHARE);
        assert!(cfg.shared_cache);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.shown_url().contains("hunter2"));
        assert!(build("rediss://:pw@example.test:6380").is_ok());
    }

    #[test]
    fn bad_values_are_refused_naming_the_option_and_never_the_password() {
        for url in ["http://:hunter2-secret@127.0.0.1", "redis://:hunter2-secret@[::1", ""] {
            let e = build(url).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg);
            assert!(e.message.contains("coordination.url"), "{}", e.message);
            assert!(!e.message.contains("hunter2"), "{}", e.message);
        }
        let with = |f: &dyn Fn(&mut CoordinationOptions)| {
            let mut o = CoordinationOptions {
                url: "redis://127.0.0.1".into(),
                ..Default::default()
            };
            f(&mut o);
            CoordinationConfig::build(o).unwrap_err().message.clone()
        };
        assert!(with(&|o| o.key_prefix = Some("a{b}".into())).contains("coordination.keyPrefix"));
        assert!(with(&|o| o.key_prefix = Some(String::new())).contains("coordination.keyPrefix"));
        assert!(with(&|o| o.operation_timeout_ms = Some(0)).contains("coordination.operationTimeoutMs"));
        assert!(with(&|o| o.operation_timeout_ms = Some(60_000)).contains("60000"));
        assert!(with(&|o| o.local_share = Some(0.0)).contains("coordination.localShare"));
        assert!(with(&|o| o.local_share = Some(1.5)).contains("1.5"));
        assert!(with(&|o| o.local_share = Some(f64::NAN)).contains("coordination.localShare"));
    }
}
