//! The bounds every await point of a call runs under: its cancellation token, its whole-call
//! deadline (`timeoutMs`), the attempt's deadline (`attemptTimeoutMs`) and, for body reads, the
//! idle timeout (`idleTimeoutMs`). A stream's wait for its first token is not a body read in that
//! sense: a model may think for minutes before it answers, and that wait is bounded by the
//! deadlines only (the idle timeout counts from the first token on).
//!
//! Bounding each await point rather than the whole call keeps the text received so far, so a
//! timeout or abort mid-stream can still report `partialText`.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cache::Flight;
use super::error::{ChatError, ErrorCode};
use super::time::instant_after;

/// When a call gives up: its own deadline, or for the shared request of coalesced calls, the
/// latest deadline of the callers waiting for it (it grows as callers join).
#[derive(Clone, Copy)]
pub enum Deadline<'a> {
    Fixed(Instant),
    Shared(&'a Flight),
}

impl Deadline<'_> {
    fn at(&self) -> Instant {
        match self {
            Deadline::Fixed(at) => *at,
            Deadline::Shared(flight) => flight.deadline(),
        }
    }

    /// Completes once the deadline has passed, re-reading it after each wait (a shared one may
    /// have been extended meanwhile).
    async fn passed(self) {
        loop {
            let at = self.at();
            tokio::time::sleep_until(at).await;
            if self.at() <= Instant::now() {
                return;
            }
        }
    }
}

/// An attempt's own deadline, earlier than the call's, and the bound it came from (for the
/// message).
#[derive(Clone, Copy)]
struct AttemptDeadline {
    at: Instant,
    timeout: Duration,
}

/// Races one await point against cancellation, the call's deadline, the attempt's deadline (when
/// `attemptTimeoutMs` is set) and, for body reads, the idle timeout.
pub struct CallBounds<'a> {
    deadline: Deadline<'a>,
    /// The bound `deadline` came from (for the message).
    timeout: Duration,
    idle: Duration,
    cancel: &'a CancellationToken,
    attempt: Option<AttemptDeadline>,
}

impl<'a> CallBounds<'a> {
    /// Bounds ending at `deadline`, which came from `timeout`; body reads also end after `idle`
    /// without data.
    pub fn new(deadline: Deadline<'a>, timeout: Duration, idle: Duration, cancel: &'a CancellationToken) -> Self {
        CallBounds {
            deadline,
            timeout,
            idle,
            cancel,
            attempt: None,
        }
    }

    /// Bounds ending `timeout` from now, with body reads also ending after `idle` without data.
    #[cfg(test)]
    pub fn from_now(timeout: Duration, idle: Duration, cancel: &'a CancellationToken) -> Self {
        // Saturating: `timeout` may be `NO_TIMEOUT` (`timeoutMs: 0`), which `+` would overflow.
        Self::new(
            Deadline::Fixed(instant_after(Instant::now(), timeout)),
            timeout,
            idle,
            cancel,
        )
    }

    /// The bounds of one attempt: also ended by `attempt_timeout`, when that ends first.
    pub fn for_attempt(&self, attempt_timeout: Option<Duration>) -> CallBounds<'a> {
        let attempt = attempt_timeout
            .map(|timeout| AttemptDeadline {
                at: instant_after(Instant::now(), timeout),
                timeout,
            })
            .filter(|a| a.at < self.deadline());
        CallBounds {
            deadline: self.deadline,
            timeout: self.timeout,
            idle: self.idle,
            cancel: self.cancel,
            attempt,
        }
    }

    /// When the call gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline.at()
    }

    /// The whole-call bound (`timeoutMs`) the deadline came from.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `fut`, unless the call is cancelled or a deadline passes first.
    pub async fn wait<T>(&self, fut: impl Future<Output = Result<T, ChatError>>) -> Result<T, ChatError> {
        self.bound(fut, false).await
    }

    /// A read of the response body: `fut` under the idle timeout as well.
    pub async fn read_body<T>(&self, fut: impl Future<Output = Result<T, ChatError>>) -> Result<T, ChatError> {
        self.bound(fut, true).await
    }

    /// A read of a stream's body before its first token: bounded by the deadlines and
    /// cancellation, not by the idle timeout.
    pub async fn read_before_first_token<T>(
        &self,
        fut: impl Future<Output = Result<T, ChatError>>,
    ) -> Result<T, ChatError> {
        self.bound(fut, false).await
    }

    /// Sleep until `at`, unless the call is cancelled or a deadline passes first.
    pub async fn sleep_until(&self, at: Instant) -> Result<(), ChatError> {
        self.wait(async {
            tokio::time::sleep_until(at).await;
            Ok(())
        })
        .await
    }

    async fn bound<T>(&self, fut: impl Future<Output = Result<T, ChatError>>, idle: bool) -> Result<T, ChatError> {
        if self.cancel.is_cancelled() {
            return Err(ChatError::aborted());
        }
        // Most awaits of a call are ready at once (the in-memory store, a free concurrency slot,
        // a body that arrived with its headers): answer those without arming timers, since each
        // armed timer takes a lock on the timer wheel to register and another to deregister.
        let mut fut = std::pin::pin!(fut);
        if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
            return r;
        }
        // Boxed so the timers take room only in calls that wait.
        Box::pin(self.race(fut, idle)).await
    }

    /// `bound`'s waiting half: `fut` against cancellation and the deadlines.
    async fn race<T>(
        &self,
        fut: Pin<&mut impl Future<Output = Result<T, ChatError>>>,
        idle: bool,
    ) -> Result<T, ChatError> {
        let idle_limit = if idle { Some(self.idle) } else { None };
        let idle_sleep = async move {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let attempt = self.attempt;
        let attempt_sleep = async move {
            match attempt {
                Some(a) => tokio::time::sleep_until(a.at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ChatError::aborted()),
            _ = self.deadline.passed() => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The request timed out after {} ms (`timeoutMs`)", self.timeout.as_millis()),
            )),
            _ = attempt_sleep => Err(ChatError::new(
                ErrorCode::Timeout,
                format!(
                    "The attempt timed out after {} ms (`attemptTimeoutMs`)",
                    self.attempt.map_or(0, |a| a.timeout.as_millis())
                ),
            )),
            _ = idle_sleep => Err(ChatError::new(
                ErrorCode::Timeout,
                format!("The stream was idle for more than {} ms (`idleTimeoutMs`)", self.idle.as_millis()),
            )),
            r = fut => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounds_without_a_timeout_do_not_overflow() {
        let cancel = CancellationToken::new();
        let bounds = CallBounds::from_now(crate::core::time::NO_TIMEOUT, Duration::from_secs(1), &cancel);
        let waited = bounds.wait(async { Ok::<_, ChatError>(7) }).await;
        assert_eq!(waited.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_times_out_at_the_deadline() {
        let cancel = CancellationToken::new();
        let bounds = CallBounds::from_now(Duration::from_millis(50), Duration::from_secs(10), &cancel);
        let r: Result<(), _> = bounds.wait(std::future::pending()).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_applies_only_to_body_reads() {
        let cancel = CancellationToken::new();
        let bounds = CallBounds::from_now(Duration::from_secs(100), Duration::from_millis(20), &cancel);
        let r: Result<(), _> = bounds.read_body(std::future::pending()).await;
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.message.contains("idleTimeoutMs"));
        // A plain wait outlives the idle timeout and ends at the deadline.
        let started = Instant::now();
        let r: Result<(), _> = bounds.wait(std::future::pending()).await;
        assert!(r.unwrap_err().message.contains("timeoutMs"));
        assert!(started.elapsed() >= Duration::from_secs(99));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_first_token_outlives_the_idle_timeout_and_ends_at_the_attempts_deadline() {
        let cancel = CancellationToken::new();
        let call = CallBounds::from_now(Duration::from_secs(100), Duration::from_millis(500), &cancel);
        // A first token after 1.5 s arrives, where the idle timeout alone would have ended the read.
        let started = Instant::now();
        let slow_token = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok("token")
        };
        assert_eq!(call.read_before_first_token(slow_token).await.unwrap(), "token");
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        // Once the tokens flow, the idle timeout is back.
        let r: Result<(), _> = call.read_body(std::future::pending()).await;
        assert!(r.unwrap_err().message.contains("idleTimeoutMs"));
        // With `attemptTimeoutMs`, that bounds the wait for the first token.
        let attempt = call.for_attempt(Some(Duration::from_secs(2)));
        let started = Instant::now();
        let r: Result<(), _> = attempt.read_before_first_token(std::future::pending()).await;
        assert!(r.unwrap_err().message.contains("attemptTimeoutMs"));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn cancellation_wins_over_a_ready_future() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let bounds = CallBounds::new(Deadline::Fixed(Instant::now()), Duration::ZERO, Duration::ZERO, &cancel);
        let r: Result<(), _> = bounds.read_body(async { Ok(()) }).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Aborted);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_ends_at_its_own_deadline_before_the_calls() {
        let cancel = CancellationToken::new();
        let call = CallBounds::from_now(Duration::from_secs(100), Duration::from_secs(100), &cancel);
        let attempt = call.for_attempt(Some(Duration::from_millis(30)));
        let r: Result<(), _> = attempt.wait(std::future::pending()).await;
        assert!(r.unwrap_err().message.contains("attemptTimeoutMs"));
        // An attempt bound past the call's deadline changes nothing.
        assert!(call.for_attempt(Some(Duration::from_secs(500))).attempt.is_none());
    }
}
