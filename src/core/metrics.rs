//! Counters every client keeps: calls, attempts, retries, 429s, failures by code, key failover.
//!
//! Plain atomics, bumped on the request path (a relaxed increment each), read as a snapshot. The
//! gauges (in flight, queued, breaker state, keys cooling) are read live from the components
//! that own them; see `ChatClient::stats`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::error::ErrorCode;

#[derive(Debug, Default)]
pub struct Metrics {
    pub calls_started: AtomicU64,
    pub calls_succeeded: AtomicU64,
    pub calls_failed: AtomicU64,
    /// HTTP attempts sent (first tries and retries).
    pub attempts: AtomicU64,
    /// Attempts that were retries after a failure.
    pub retries: AtomicU64,
    /// 429 responses (and rate-limit stream errors) received.
    pub rate_limited_responses: AtomicU64,
    /// Times a key was cooled down after a 429.
    pub key_cool_downs: AtomicU64,
    /// Times a key was disabled after a 401/403.
    pub keys_disabled: AtomicU64,
    failed_by_code: Mutex<HashMap<ErrorCode, u64>>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub calls_started: u64,
    pub calls_succeeded: u64,
    pub calls_failed: u64,
    pub attempts: u64,
    pub retries: u64,
    pub rate_limited_responses: u64,
    pub key_cool_downs: u64,
    pub keys_disabled: u64,
    pub failed_by_code: Vec<(ErrorCode, u64)>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self, code: ErrorCode) {
        Self::inc(&self.calls_failed);
        let mut map = self.failed_by_code.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(code).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut failed_by_code: Vec<(ErrorCode, u64)> = self
            .failed_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        failed_by_code.sort_by_key(|(k, _)| k.as_str());
        MetricsSnapshot {
            calls_started: get(&self.calls_started),
            calls_succeeded: get(&self.calls_succeeded),
            calls_failed: get(&self.calls_failed),
            attempts: get(&self.attempts),
            retries: get(&self.retries),
            rate_limited_responses: get(&self.rate_limited_responses),
            key_cool_downs: get(&self.key_cool_downs),
            keys_disabled: get(&self.keys_disabled),
            failed_by_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_code() {
        let m = Metrics::default();
        Metrics::inc(&m.calls_started);
        m.record_failure(ErrorCode::RateLimited);
        m.record_failure(ErrorCode::RateLimited);
        m.record_failure(ErrorCode::Http);
        let s = m.snapshot();
        assert_eq!(s.calls_started, 1);
        assert_eq!(s.calls_failed, 3);
        assert_eq!(
            s.failed_by_code,
            vec![(ErrorCode::Http, 1), (ErrorCode::RateLimited, 2)]
        );
    }
}
