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
/// Most seed nodes of a Redis Cluster accepted (`nodes`): a few are enough to find the rest.
pub const MAX_CLUSTER_NODES: usize = 64;
/// Most CA certificates (`ca`) accepted, in all.
pub const MAX_CA_CERTIFICATES: usize = 1024;
/// Largest `ca` accepted, in bytes, in all.
pub const MAX_CA_BYTES: usize = 4 * 1024 * 1024;

/// What the caller gave as `coordination`, before checks.
#[derive(Clone, Default)]
pub struct CoordinationOptions {
    /// `redis://` or `rediss://` (TLS); may carry a user and password. Empty when `nodes` is
    /// given.
    pub url: String,
    pub key_prefix: Option<String>,
    pub operation_timeout_ms: Option<u64>,
    pub local_share: Option<f64>,
    /// Whether the response cache (when `cache` is on) has its second level in Redis; default
    /// true.
    pub cache: Option<bool>,
    /// Seed nodes of a Redis Cluster (each a `redis://` or `rediss://` URL) instead of `url`.
    pub nodes: Vec<String>,
    /// PEM certificates trusted beside the system roots for `rediss://`.
    pub ca: Vec<Vec<u8>>,
}

impl fmt::Debug for CoordinationOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinationOptions")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("local_share", &self.local_share)
            .field("cache", &self.cache)
            .field("nodes", &self.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>())
            .field("ca", &self.ca.len())
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
    /// Seed nodes of a Redis Cluster, credentials included (never shown); empty for one Redis
    /// at `url`. With nodes, `url` is the first of them.
    pub cluster_nodes: Vec<String>,
    /// PEM certificates trusted beside the system roots (only with `rediss://`).
    pub ca: Vec<Vec<u8>>,
}

impl fmt::Debug for CoordinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinationConfig")
            .field("url", &self.shown_url())
            .field("key_prefix", &self.key_prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("local_share", &self.local_share)
            .field("shared_cache", &self.shared_cache)
            .field("cluster", &!self.cluster_nodes.is_empty())
            .field("ca", &self.ca.len())
            .finish()
    }
}

/// Checks one Redis URL; errors call it `name` and show it without credentials.
fn check_url(url: &str, name: &str) -> Result<(), ChatError> {
    let shown = redact_url(url);
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{name}` to be at most {MAX_URL_CHARS} characters"
        )));
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("redis://") || lower.starts_with("rediss://")) {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{name}` to be a redis:// or rediss:// URL, got {shown:?}"
        )));
    }
    if let Err(e) = redis::Client::open(url) {
        let detail = super::redact::scrub_credentials(&e.to_string()).into_owned();
        return Err(ChatError::invalid_arg(format!(
            "Expected `{name}` to be a valid Redis URL, got {shown:?} ({detail})"
        )));
    }
    Ok(())
}

/// Checks that `nodes` (each a valid URL) can seed one cluster client: database 0 (the only
/// one a Redis Cluster has), and the same credentials and TLS mode on every node.
fn check_cluster_nodes(nodes: &[String]) -> Result<(), ChatError> {
    use redis::IntoConnectionInfo;
    for (i, node) in nodes.iter().enumerate() {
        let db = node
            .as_str()
            .into_connection_info()
            .map_or(0, |info| info.redis_settings().db());
        if db != 0 {
            return Err(ChatError::invalid_arg(format!(
                "Expected `coordination.nodes[{i}]` to use database 0 (a Redis Cluster has no other), got {:?}",
                redact_url(node)
            )));
        }
    }
    if let Err(e) = redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str)) {
        let detail = super::redact::scrub_credentials(&e.to_string()).into_owned();
        return Err(ChatError::invalid_arg(format!(
            "Expected `coordination.nodes` to be nodes of one cluster, with the same user and password ({detail})"
        )));
    }
    Ok(())
}

fn is_tls(url: &str) -> bool {
    url.to_ascii_lowercase().starts_with("rediss://")
}

/// Checks `ca`: each entry holds PEM certificates, within [`MAX_CA_CERTIFICATES`] and
/// [`MAX_CA_BYTES`] in all.
fn check_ca(ca: &[Vec<u8>]) -> Result<(), ChatError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bytes = ca.iter().map(Vec::len).fold(0usize, usize::saturating_add);
    let mut certificates = 0usize;
    for (i, pem) in ca.iter().enumerate() {
        let name = if ca.len() == 1 {
            "coordination.ca".to_owned()
        } else {
            format!("coordination.ca[{i}]")
        };
        let mut found = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            if cert.is_err() {
                found = 0;
                break;
            }
            found = found.saturating_add(1);
        }
        if found == 0 {
            return Err(ChatError::invalid_arg(format!(
                "Expected `{name}` to hold PEM certificates (-----BEGIN CERTIFICATE-----), found none"
            )));
        }
        certificates = certificates.saturating_add(found);
    }
    if bytes > MAX_CA_BYTES || certificates > MAX_CA_CERTIFICATES {
        return Err(ChatError::invalid_arg(format!(
            "Expected `coordination.ca` to be at most {MAX_CA_BYTES} bytes and {MAX_CA_CERTIFICATES} certificates, \
             got {bytes} bytes and {certificates} certificates"
        )));
    }
    Ok(())
}

impl CoordinationConfig {
    /// Checks `opts`; errors name the option and the value (the URL without its credentials).
    pub fn build(opts: CoordinationOptions) -> Result<Self, ChatError> {
        let (url, cluster_nodes) = match (opts.url.is_empty(), opts.nodes.is_empty()) {
            (_, true) => {
                check_url(&opts.url, "coordination.url")?;
                (opts.url, Vec::new())
            }
            (true, false) => {
                if opts.nodes.len() > MAX_CLUSTER_NODES {
                    return Err(ChatError::invalid_arg(format!(
                        "Expected `coordination.nodes` to be 1 to {MAX_CLUSTER_NODES} URLs, got {}",
                        opts.nodes.len()
                    )));
                }
                for (i, node) in opts.nodes.iter().enumerate() {
                    check_url(node, &format!("coordination.nodes[{i}]"))?;
                }
                if opts.nodes.iter().any(|n| is_tls(n)) != opts.nodes.iter().all(|n| is_tls(n)) {
                    return Err(ChatError::invalid_arg(
                        "Expected `coordination.nodes` to be all redis:// or all rediss:// URLs, got both".to_owned(),
                    ));
                }
                check_cluster_nodes(&opts.nodes)?;
                (opts.nodes.first().cloned().unwrap_or_default(), opts.nodes)
            }
            (false, false) => {
                return Err(ChatError::invalid_arg(
                    "Expected `coordination.url` (one Redis) or `coordination.nodes` (a Redis Cluster), got both"
                        .to_owned(),
                ))
            }
        };
        if !opts.ca.is_empty() {
            if !is_tls(&url) {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `coordination.ca` only with rediss:// URLs (TLS), got {:?}",
                    redact_url(&url)
                )));
            }
            check_ca(&opts.ca)?;
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
            cluster_nodes,
            ca: opts.ca,
        })
    }

    /// Whether Redis is a cluster (`nodes` was given).
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// Whether the connection is TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        is_tls(&self.url)
    }

    /// The URL as it may be shown: credentials replaced. For a cluster, its first seed nodes.
    pub fn shown_url(&self) -> String {
        const SHOWN_NODES: usize = 3;
        if self.cluster_nodes.is_empty() {
            return redact_url(&self.url).into_owned();
        }
        let mut shown = self
            .cluster_nodes
            .iter()
            .take(SHOWN_NODES)
            .map(|n| redact_url(n).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(more) = self.cluster_nodes.len().checked_sub(SHOWN_NODES).filter(|&m| m > 0) {
            shown.push_str(&format!(" and {more} more"));
        }
        format!("the cluster of {shown}")
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

    #[test]
    fn cluster_nodes_and_ca_are_checked_naming_the_option_and_never_the_password() {
        let with = |f: &dyn Fn(&mut CoordinationOptions)| {
            let mut o = CoordinationOptions::default();
            f(&mut o);
            CoordinationConfig::build(o)
        };
        let nodes = |urls: &[&str]| urls.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>();
        let cfg = with(&|o| {
            o.nodes = nodes(&[
                "redis://:hunter2-secret@10.0.0.1:7000",
                "redis://:hunter2-secret@10.0.0.2:7000",
            ])
        })
        .unwrap();
        assert!(cfg.is_cluster());
        assert_eq!(cfg.url, "redis://:hunter2-secret@10.0.0.1:7000");
        assert!(cfg.shown_url().contains("10.0.0.2:7000") && !cfg.shown_url().contains("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));

        let refused = |f: &dyn Fn(&mut CoordinationOptions), named: &str| {
            let e = with(f).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg);
            assert!(e.message.contains(named), "{}", e.message);
            assert!(!e.message.contains("hunter2"), "{}", e.message);
        };
        refused(
            &|o| {
                o.url = "redis://:hunter2-secret@10.0.0.1".into();
                o.nodes = nodes(&["redis://10.0.0.2:7000"]);
            },
            "got both",
        );
        refused(
            &|o| o.nodes = vec!["redis://10.0.0.1:7000".into(); 65],
            "coordination.nodes",
        );
        refused(
            &|o| o.nodes = nodes(&["redis://10.0.0.1:7000", "http://:hunter2-secret@10.0.0.2"]),
            "coordination.nodes[1]",
        );
        refused(
            &|o| o.nodes = nodes(&["redis://10.0.0.1:7000", "rediss://:hunter2-secret@10.0.0.2"]),
            "all redis:// or all rediss://",
        );
        refused(
            &|o| o.nodes = nodes(&["redis://:hunter2-secret@10.0.0.1:7000", "redis://:other@10.0.0.2:7000"]),
            "same user and password",
        );
        refused(
            &|o| o.nodes = nodes(&["redis://:hunter2-secret@10.0.0.1:7000/2"]),
            "coordination.nodes[0]",
        );
        refused(
            &|o| {
                o.url = "redis://:hunter2-secret@10.0.0.1".into();
                o.ca = vec![b"-----BEGIN CERTIFICATE-----".to_vec()];
            },
            "coordination.ca",
        );
        refused(
            &|o| {
                o.url = "rediss://:hunter2-secret@10.0.0.1".into();
                o.ca = vec![b"not a certificate".to_vec()];
            },
            "coordination.ca",
        );
        refused(
            &|o| {
                o.nodes = nodes(&["rediss://10.0.0.1:7000"]);
                o.ca = vec![b"not a certificate".to_vec(), b"x".to_vec()];
            },
            "coordination.ca[0]",
        );
    }
}
