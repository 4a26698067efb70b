//! Saturating time arithmetic for durations and instants that come from outside: a server's
//! `retry-after`, `retry-after-ms`, HTTP dates and `x-ratelimit-reset-*`, and the caller's
//! timeouts.
//!
//! `Duration::from_secs_f64` panics on values past `u64::MAX` seconds (`retry-after: 1e20`), and
//! `Instant + Duration` panics when the sum leaves the clock's range (`retry-after: 1e19`). A
//! panic there would take a call down with it, so every such conversion in the crate goes
//! through these functions, which saturate instead.
//!
//! Server-imposed waits are also capped at [`SERVER_WAIT_CAP`]: a server may ask for an hour, but
//! the client then pauses for a minute and fails calls whose deadline falls earlier (see
//! `limits` and `keys`), rather than freezing every call for the hour.

#![warn(clippy::arithmetic_side_effects)]

use std::time::Duration;

use tokio::time::Instant;

/// Longest pause a server can impose on the client: a `retry-after`, a rate-limit reset or a key
/// cool-down (openai-node's limit for `retry-after`, and what the README promises).
pub const SERVER_WAIT_CAP: Duration = Duration::from_secs(60);

/// The furthest an instant is ever placed in the future (about 30 years, as tokio does for
/// "never"): far enough to mean "not in this process's life", near enough to be representable on
/// every platform's monotonic clock.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A caller's "no timeout" (`timeoutMs: 0`, as the `chatgpt` package reads a falsy `timeoutMs`).
/// Deadlines are only ever computed from it through [`instant_after`], which places it at
/// [`FAR_FUTURE`].
pub const NO_TIMEOUT: Duration = Duration::MAX;

/// A caller's `timeoutMs` as a bound: `0` is [`NO_TIMEOUT`].
pub fn timeout_from_ms(ms: u64) -> Duration {
    if ms == 0 {
        NO_TIMEOUT
    } else {
        Duration::from_millis(ms)
    }
}

/// `secs` seconds as a `Duration`, saturating at `Duration::MAX` (also for `+inf`). `None` for
/// NaN and negative values, which are not durations at all.
pub fn duration_from_secs_f64(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `ms` milliseconds as a `Duration`, with the same rules as [`duration_from_secs_f64`].
pub fn duration_from_millis_f64(ms: f64) -> Option<Duration> {
    duration_from_secs_f64(ms / 1000.0)
}

/// A server-imposed wait, capped at [`SERVER_WAIT_CAP`].
pub fn cap_server_wait(wait: Duration) -> Duration {
    wait.min(SERVER_WAIT_CAP)
}

/// `now + delay`, never panicking: delays beyond [`FAR_FUTURE`] are treated as `FAR_FUTURE`, and
/// should even that not fit the clock, the latest representable instant found by halving is used.
pub fn instant_after(now: Instant, delay: Duration) -> Instant {
    let mut delay = delay.min(FAR_FUTURE);
    loop {
        if let Some(at) = now.checked_add(delay) {
            return at;
        }
        if delay.is_zero() {
            return now;
        }
        delay = delay.checked_div(2).unwrap_or(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_seconds_saturate_instead_of_panicking() {
        for secs in [1e19, 1e20, 1e300, f64::MAX, f64::INFINITY] {
            let d = duration_from_secs_f64(secs).unwrap();
            assert!(
                d >= Duration::from_secs(10_000_000_000_000_000_000 / 10),
                "{secs}: {d:?}"
            );
        }
        assert_eq!(duration_from_secs_f64(f64::INFINITY), Some(Duration::MAX));
        assert_eq!(duration_from_millis_f64(1e300), Some(Duration::MAX));
        assert_eq!(duration_from_secs_f64(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(duration_from_millis_f64(150.5), Some(Duration::from_micros(150_500)));
    }

    #[test]
    fn nan_and_negative_values_are_not_durations() {
        assert_eq!(duration_from_secs_f64(f64::NAN), None);
        assert_eq!(duration_from_secs_f64(-1.0), None);
        assert_eq!(duration_from_secs_f64(f64::NEG_INFINITY), None);
        assert_eq!(duration_from_secs_f64(-0.0), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn instants_far_in_the_future_saturate() {
        let now = Instant::now();
        assert_eq!(instant_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        let far = instant_after(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(86_400 * 365), "{:?}", far - now);
        assert_eq!(instant_after(now, Duration::from_secs(10_000_000_000_000_000_000)), far);
        assert_eq!(instant_after(now, Duration::ZERO), now);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_timeout_is_no_timeout_and_its_deadline_does_not_overflow() {
        assert_eq!(timeout_from_ms(0), NO_TIMEOUT);
        assert_eq!(timeout_from_ms(1500), Duration::from_millis(1500));
        let now = Instant::now();
        assert_eq!(instant_after(now, timeout_from_ms(0)), instant_after(now, FAR_FUTURE));
    }

    #[test]
    fn server_waits_are_capped_at_a_minute() {
        assert_eq!(cap_server_wait(Duration::MAX), SERVER_WAIT_CAP);
        assert_eq!(cap_server_wait(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
