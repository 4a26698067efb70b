//! The Redis connection of one client, the time budget of each operation, and what happened to
//! those operations (the `coordination` metrics and the one-time fallback warning).
//!
//! The connection is a redis-rs `ConnectionManager`, made on the first operation (inside the
//! runtime) without waiting for it to connect; it reconnects in the background when Redis goes
//! away. Every operation runs under `operationTimeoutMs`. After a failed one, operations are
//! skipped for [`RETRY_AFTER_FAILURE`] (calls go straight to the local limiter instead of each
//! paying the timeout), then the next one tries Redis again: the first that succeeds resumes
//! sharing.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::CoordinationConfig;
use crate::core::metrics::Metrics;

/// The connection an operation is given: cheap to clone, each clone usable on its own
/// (`redis::aio::ConnectionLike`), so scripts and commands take it by value.
pub type RedisConn = ConnectionManager;

/// How long after a failed operation Redis is left alone.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts of the connection manager.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Whether calls currently share their budget through Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinationMode {
    /// The last Redis operation succeeded (or none has run yet).
    Shared,
    /// The last Redis operation failed: calls use the local limiter until one succeeds.
    Local,
}

impl CoordinationMode {
    /// `'shared'` or `'local'`, as metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Local => "local",
        }
    }
}

/// Counters of a client's Redis use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinationStats {
    pub mode: CoordinationMode,
    /// Redis operations started (scripts run).
    pub operations: u64,
    /// Operations that failed or outlasted `operationTimeoutMs`.
    pub redis_errors: u64,
    /// Rate-limit admissions that used the local limiter because Redis was unavailable.
    pub fallbacks: u64,
}

/// Why an operation gave no answer. Deliberately without detail: Redis's own error text may
/// name the host, and the caller only needs to know to fall back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Warning states: none due, one due (not yet shown), shown.
const WARNING_NONE: u8 = 0;
const WARNING_DUE: u8 = 1;
const WARNING_SHOWN: u8 = 2;

/// One client's link to Redis. Shared (`Send + Sync`) by all its calls.
pub struct Coordinator {
    cfg: CoordinationConfig,
    client: Option<redis::Client>,
    manager: OnceLock<ConnectionManager>,
    /// Operations are skipped until then after a failure.
    skip_until: Mutex<Option<Instant>>,
    local: AtomicU8,
    operations: AtomicU64,
    redis_errors: AtomicU64,
    fallbacks: AtomicU64,
    warning: AtomicU8,
}

impl Coordinator {
    /// A coordinator for `cfg`. Does not connect: the first operation does.
    pub fn new(cfg: CoordinationConfig) -> Self {
        if cfg.url.to_ascii_lowercase().starts_with("rediss://") {
            // rustls needs a process-wide crypto provider for the TLS connection (the HTTP
            // transport installs the same one).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // Checked by `CoordinationConfig::build`; `None` would only make every operation fail
        // over to the local limiter.
        let client = redis::Client::open(cfg.url.as_str()).ok();
        Coordinator {
            cfg,
            client,
            manager: OnceLock::new(),
            skip_until: Mutex::new(None),
            local: AtomicU8::new(0),
            operations: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            warning: AtomicU8::new(WARNING_NONE),
        }
    }

    pub fn config(&self) -> &CoordinationConfig {
        &self.cfg
    }

    /// The connection, made on first use (inside the runtime: the manager spawns its driver).
    fn connection(&self) -> Option<RedisConn> {
        if let Some(m) = self.manager.get() {
            return Some(m.clone());
        }
        let client = self.client.clone()?;
        let timeout = Some(self.cfg.operation_timeout.max(Duration::from_millis(250)));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_max_delay(MAX_RECONNECT_DELAY)
            .set_number_of_retries(2);
        let made = ConnectionManager::new_lazy_with_config(client, config).ok()?;
        Some(self.manager.get_or_init(|| made).clone())
    }

    /// Runs one Redis operation under `operationTimeoutMs`, counting it. `Err` when it failed,
    /// timed out, or Redis is being left alone after a recent failure.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = Instant::now();
        {
            let skip = self.skip_until.lock().unwrap_or_else(PoisonError::into_inner);
            if skip.is_some_and(|until| now < until) {
                return Err(Unavailable);
            }
        }
        let Some(conn) = self.connection() else {
            self.failed(now);
            return Err(Unavailable);
        };
        Metrics::inc(&self.operations);
        match tokio::time::timeout(self.cfg.operation_timeout, op(conn)).await {
            Ok(Ok(value)) => {
                self.local.store(0, Ordering::Release);
                Ok(value)
            }
            Ok(Err(_)) | Err(_) => {
                self.failed(Instant::now());
                Err(Unavailable)
            }
        }
    }

    fn failed(&self, now: Instant) {
        Metrics::inc(&self.redis_errors);
        self.local.store(1, Ordering::Release);
        let until = now.checked_add(RETRY_AFTER_FAILURE).unwrap_or(now);
        *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(until);
        let _ = self
            .warning
            .compare_exchange(WARNING_NONE, WARNING_DUE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A call used the local limiter because Redis was unavailable.
    pub fn record_fallback(&self) {
        Metrics::inc(&self.fallbacks);
    }

    /// The one-time warning, the first time it is asked for after Redis first failed; `None`
    /// before that and ever after. Names the URL without its credentials.
    pub fn take_warning(&self) -> Option<String> {
        self.warning
            .compare_exchange(WARNING_DUE, WARNING_SHOWN, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(format!(
            "chatgpt-native: Redis at {} failed or did not answer within `coordination.operationTimeoutMs` ({} ms); \
             rate limits fall back to {}% of `rateLimit` in each process until it answers again",
            self.cfg.shown_url(),
            self.cfg.operation_timeout.as_millis(),
            (self.cfg.local_share * 100.0).round()
        ))
    }

    pub fn stats(&self) -> CoordinationStats {
        CoordinationStats {
            mode: if self.local.load(Ordering::Acquire) == 0 {
                CoordinationMode::Shared
            } else {
                CoordinationMode::Local
            },
            operations: self.operations.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters (`resetMetrics`); the mode stays what it is.
    pub fn reset_stats(&self) {
        for counter in [&self.operations, &self.redis_errors, &self.fallbacks] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
