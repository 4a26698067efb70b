//! Retry policy: which failures are worth another attempt, and how long to wait first.
//!
//! The rules follow openai-node, with two fixes: quota exhaustion
//! (429 `insufficient_quota`) is never retried, since it is billing, not load; and no retry is
//! started that cannot finish before the call's deadline.
//!
//! Delays come from `backon`'s exponential schedule (`retryBaseMs`, doubling, capped at
//! `retryMaxMs`, with jitter adding up to the same again, so a fleet of clients does not retry
//! in lock-step). A server's `retry-after-ms` / `retry-after` wins over the schedule, up to
//! [`RETRY_AFTER_CAP`]; longer waits are the server saying "not soon", so the error is returned.
//!
//! Callers should not wrap `sendMessage` in another retry loop: retry layers multiply (3 retries
//! inside 3 retries is 16 requests).

#![warn(clippy::arithmetic_side_effects)]

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::error::{ChatError, ErrorCode};

/// Longest server-requested wait honoured (openai-node's limit); the same cap bounds the rate
/// limiter's pauses and the key pool's cool-downs.
pub const RETRY_AFTER_CAP: Duration = super::time::SERVER_WAIT_CAP;

/// Retry settings of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(500),
            max: Duration::from_millis(8000),
        }
    }
}

impl RetryPolicy {
    /// The delay schedule for one call.
    pub fn schedule(&self, seed: Option<u64>) -> ExponentialBackoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_max_times(self.max_retries as usize);
        match seed {
            Some(seed) => builder.with_jitter_seed(seed).with_jitter().build(),
            None => builder.with_jitter().build(),
        }
    }
}

/// Whether a failed attempt may be retried, judging by the failure alone.
pub fn is_retryable(e: &ChatError) -> bool {
    if let Some(forced) = e.should_retry {
        return forced;
    }
    match e.code {
        ErrorCode::Network | ErrorCode::Timeout => true,
        ErrorCode::RateLimited => true,
        ErrorCode::Http => matches!(e.status, Some(408 | 409) | Some(500..=599)),
        // An error event inside a 200 stream is the server failing mid-request.
        ErrorCode::StreamError => e.error_type.as_deref() != Some("invalid_request_error"),
        ErrorCode::StreamIncomplete => true,
        _ => false,
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Give up and return the error.
    Stop,
}

/// Decide for a retryable failure: the server's wait if it gave one (and it is not too long),
/// else the next delay of the schedule; `Stop` when the schedule is exhausted or the wait would
/// not leave time before `remaining` runs out.
pub fn decide(e: &ChatError, schedule: &mut ExponentialBackoff, remaining: Duration) -> Decision {
    if !is_retryable(e) {
        return Decision::Stop;
    }
    let Some(scheduled) = schedule.next() else {
        return Decision::Stop;
    };
    let delay = match e.retry_after {
        Some(wait) if wait > RETRY_AFTER_CAP => return Decision::Stop,
        Some(wait) => wait,
        None => scheduled,
    };
    // A retry needs the wait plus some time to run; without it, fail now with the real error
    // rather than later with a timeout.
    if delay.saturating_add(Duration::from_millis(10)) >= remaining {
        return Decision::Stop;
    }
    Decision::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ErrorCode, status: Option<u16>) -> ChatError {
        let mut e = ChatError::new(code, "x");
        e.status = status;
        e
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn retryable_and_final_failures_are_told_apart() {
        for (code, status) in [
            (ErrorCode::Network, None),
            (ErrorCode::Timeout, None),
            (ErrorCode::RateLimited, Some(429)),
            (ErrorCode::Http, Some(408)),
            (ErrorCode::Http, Some(409)),
            (ErrorCode::Http, Some(500)),
            (ErrorCode::Http, Some(503)),
        ] {
            assert!(is_retryable(&err(code, status)), "{code:?} {status:?}");
        }
        for (code, status) in [
            (ErrorCode::Http, Some(400)),
            (ErrorCode::Auth, Some(401)),
            (ErrorCode::Auth, Some(403)),
            (ErrorCode::Http, Some(404)),
            (ErrorCode::Http, Some(422)),
            (ErrorCode::InsufficientQuota, Some(429)),
            (ErrorCode::Aborted, None),
            (ErrorCode::BadResponse, None),
            (ErrorCode::ContextTooLong, None),
        ] {
            assert!(!is_retryable(&err(code, status)), "{code:?} {status:?}");
        }
    }

    #[test]
    fn x_should_retry_overrides_the_status() {
        let mut e = err(ErrorCode::Http, Some(400));
        e.should_retry = Some(true);
        assert!(is_retryable(&e));
        let mut e = err(ErrorCode::Http, Some(500));
        e.should_retry = Some(false);
        assert!(!is_retryable(&e));
    }

    #[test]
    fn the_schedule_doubles_from_base_to_max_with_bounded_jitter() {
        let policy = RetryPolicy {
            max_retries: 6,
            base: Duration::from_millis(500),
            max: Duration::from_millis(4000),
        };
        let delays: Vec<Duration> = policy.schedule(Some(7)).collect();
        assert_eq!(delays.len(), 6);
        let nominal = [500, 1000, 2000, 4000, 4000, 4000];
        for (d, n) in delays.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(*d >= n && *d < n * 2, "{d:?} not in [{n:?}, {:?})", n * 2);
        }
    }

    #[test]
    fn retry_after_wins_over_the_schedule_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let mut schedule = policy.schedule(Some(1));
        let mut e = err(ErrorCode::RateLimited, Some(429));
        e.retry_after = Some(Duration::from_millis(1234));
        assert_eq!(
            decide(&e, &mut schedule, LONG),
            Decision::RetryAfter(Duration::from_millis(1234))
        );
        e.retry_after = Some(Duration::from_secs(61));
        assert_eq!(decide(&e, &mut schedule, LONG), Decision::Stop);
    }

    #[test]
    fn no_retry_is_started_that_cannot_finish_in_time() {
        let policy = RetryPolicy::default();
        let mut e = err(ErrorCode::Http, Some(503));
        e.retry_after = Some(Duration::from_secs(2));
        assert_eq!(
            decide(&e, &mut policy.schedule(Some(1)), Duration::from_secs(1)),
            Decision::Stop
        );
        assert!(matches!(
            decide(&e, &mut policy.schedule(Some(1)), Duration::from_secs(5)),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn max_retries_bounds_the_attempts() {
        let policy = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        let mut schedule = policy.schedule(Some(3));
        let e = err(ErrorCode::Http, Some(500));
        assert!(matches!(decide(&e, &mut schedule, LONG), Decision::RetryAfter(_)));
        assert!(matches!(decide(&e, &mut schedule, LONG), Decision::RetryAfter(_)));
        assert_eq!(decide(&e, &mut schedule, LONG), Decision::Stop);
        let none = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(decide(&e, &mut none.schedule(None), LONG), Decision::Stop);
    }
}
