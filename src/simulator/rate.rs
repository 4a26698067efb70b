//! The simulator's rate limits: OpenAI's RPM and TPM as two continuous token buckets
//! ([`SimRateLimits`]), the 429s they send, and the `x-ratelimit-*` headers of every chat
//! response that reached them. Written apart from the client's `core::limits` on purpose, so
//! that the two check each other (see the module doc of `simulator`).

use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::time::Instant;

use super::faults::HEADER_RETRY_AFTER_MS;
use super::response::{error_json, json_response, SimBody};
use super::server::InFlight;

/// `x-ratelimit-{limit,remaining,reset}-requests`, in that order.
const HEADERS_RATE_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
/// `x-ratelimit-{limit,remaining,reset}-tokens`, in that order.
const HEADERS_RATE_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// The limits are per minute; buckets refill continuously over this window.
const RATE_WINDOW_MS: f64 = 60_000.0;

/// Slack for floating-point refills: an amount this close to being available
/// counts as available, so a client that waited exactly the advertised
/// `retry-after-ms` is not turned away by rounding.
const BUCKET_EPSILON: f64 = 1e-6;

/// Organization named in rate-limit messages, where OpenAI names the caller's.
const RATE_LIMIT_ORGANIZATION: &str = "org-simulator";
const RATE_LIMIT_HELP: &str = "Visit https://platform.openai.com/account/rate-limits to learn more.";

/// Which of the two limits a rejected request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    /// The error `type` OpenAI sends for this limit.
    fn error_type(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }

    /// How OpenAI's messages name the limit.
    fn per_minute(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests per min (RPM)",
            LimitKind::Tokens => "tokens per min (TPM)",
        }
    }
}

/// One continuous token bucket: holds up to `limit` and refills at `limit`
/// per minute.
#[derive(Debug, Clone, Copy)]
struct SimBucket {
    limit: u32,
    level: f64,
}

/// What the `x-ratelimit-*` headers report about one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BucketState {
    limit: u32,
    remaining: u64,
    /// Milliseconds until the bucket is full again.
    reset_ms: u64,
}

impl SimBucket {
    /// A full bucket, or `None` when the limit is off (0).
    fn new(limit: u32) -> Option<Self> {
        (limit > 0).then(|| Self {
            limit,
            level: f64::from(limit),
        })
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limit)
    }

    fn refill(&mut self, elapsed_ms: f64) {
        let refilled = self.level + elapsed_ms * self.capacity() / RATE_WINDOW_MS;
        self.level = refilled.min(self.capacity());
    }

    /// Milliseconds until the bucket holds `amount`; 0 when it already does.
    fn ms_until(&self, amount: f64) -> f64 {
        let missing = amount - self.level;
        if missing <= BUCKET_EPSILON {
            0.0
        } else {
            missing * RATE_WINDOW_MS / self.capacity()
        }
    }

    /// Tokens (or requests) taken and not yet refilled, as OpenAI's "Used".
    fn used(&self) -> u64 {
        (self.capacity() - self.level).max(0.0).ceil() as u64
    }

    fn state(&self) -> BucketState {
        BucketState {
            limit: self.limit,
            // Whole units only, like OpenAI; the level may dip a hair below 0
            // because of BUCKET_EPSILON.
            remaining: self.level.max(0.0).floor() as u64,
            reset_ms: ceil_ms(self.ms_until(self.capacity())),
        }
    }
}

/// Rounds milliseconds up, ignoring floating-point noise (so 100.000000001
/// is 100, not 101).
fn ceil_ms(ms: f64) -> u64 {
    (ms - BUCKET_EPSILON).ceil().max(0.0) as u64
}

/// The state of both buckets for the `x-ratelimit-*` headers; a limit that is
/// off has no headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RateSnapshot {
    requests: Option<BucketState>,
    tokens: Option<BucketState>,
}

impl RateSnapshot {
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        for (state, names) in [
            (self.requests, &HEADERS_RATE_REQUESTS),
            (self.tokens, &HEADERS_RATE_TOKENS),
        ] {
            let Some(state) = state else { continue };
            let [limit, remaining, reset] = names;
            headers.insert(limit.clone(), HeaderValue::from(state.limit));
            headers.insert(remaining.clone(), HeaderValue::from(state.remaining));
            if let Ok(value) = HeaderValue::from_str(&go_duration(state.reset_ms)) {
                headers.insert(reset.clone(), value);
            }
        }
    }
}

/// A request that must wait: `requested` more from the `kind` bucket of `limit`, `used` of it
/// taken, fits in `retry_ms` (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    kind: LimitKind,
    limit: u32,
    used: u64,
    requested: u64,
    retry_ms: u64,
}

/// Why the limiter turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RejectReason {
    /// Not enough budget yet; there will be in `retry_ms` (at least 1).
    Wait(Wait),
    /// The request costs more tokens than the TPM limit ever allows.
    TooLarge { limit: u32, requested: u64 },
}

#[derive(Debug)]
pub(super) struct Rejection {
    reason: RejectReason,
    /// The buckets as they are (a rejected request takes nothing).
    pub(super) snapshot: RateSnapshot,
}

/// The RPM and TPM buckets, refilled lazily whenever a request arrives.
pub(super) struct SimRateLimits {
    requests: Option<SimBucket>,
    tokens: Option<SimBucket>,
    /// When the buckets were last refilled.
    updated: Instant,
}

impl SimRateLimits {
    pub(super) fn new(rpm: u32, tpm: u32, now: Instant) -> Self {
        Self {
            requests: SimBucket::new(rpm),
            tokens: SimBucket::new(tpm),
            updated: now,
        }
    }

    fn snapshot(&self) -> RateSnapshot {
        RateSnapshot {
            requests: self.requests.as_ref().map(SimBucket::state),
            tokens: self.tokens.as_ref().map(SimBucket::state),
        }
    }

    /// Takes one request and `cost` tokens if both buckets hold them at
    /// `now`, otherwise takes nothing and says why and for how long.
    pub(super) fn admit(&mut self, cost: u64, now: Instant) -> Result<RateSnapshot, Rejection> {
        let elapsed_ms = now.saturating_duration_since(self.updated).as_secs_f64() * 1000.0;
        // `max` keeps the clock monotonic even if a caller's `now` is stale.
        self.updated = self.updated.max(now);
        for bucket in self.requests.iter_mut().chain(self.tokens.iter_mut()) {
            bucket.refill(elapsed_ms);
        }
        // Precision beyond 2^53 tokens is irrelevant: such a request is far
        // over any u32 limit either way.
        let cost_f = cost as f64;
        if let Some(tokens) = &self.tokens {
            if cost_f > tokens.capacity() {
                let reason = RejectReason::TooLarge {
                    limit: tokens.limit,
                    requested: cost,
                };
                return Err(Rejection {
                    reason,
                    snapshot: self.snapshot(),
                });
            }
        }
        // The limit that keeps the request waiting longest is the one to
        // report (requests on a tie), and its wait is when both are enough.
        let blocked = [
            (LimitKind::Requests, self.requests, 1),
            (LimitKind::Tokens, self.tokens, cost),
        ]
        .into_iter()
        .filter_map(|(kind, bucket, requested)| {
            let bucket = bucket?;
            let wait_ms = bucket.ms_until(requested as f64);
            (wait_ms > 0.0).then_some((kind, bucket, requested, wait_ms))
        })
        .reduce(|worst, next| if next.3 > worst.3 { next } else { worst });
        if let Some((kind, bucket, requested, wait_ms)) = blocked {
            let reason = RejectReason::Wait(Wait {
                kind,
                limit: bucket.limit,
                used: bucket.used(),
                requested,
                retry_ms: ceil_ms(wait_ms).max(1),
            });
            return Err(Rejection {
                reason,
                snapshot: self.snapshot(),
            });
        }
        if let Some(requests) = &mut self.requests {
            requests.level -= 1.0;
        }
        if let Some(tokens) = &mut self.tokens {
            tokens.level -= cost_f;
        }
        Ok(self.snapshot())
    }
}

/// OpenAI's 429 for a request the limiter turned away: `rate_limit_exceeded`
/// with the retry headers, except for a request that can never pass.
pub(super) fn rate_limited_response(rejection: &Rejection, model: &str, in_flight: InFlight) -> Response<SimBody> {
    let (message, error_type, retry_ms) = match rejection.reason {
        RejectReason::Wait(wait) => (
            format!(
                "Rate limit reached for {model} in organization {RATE_LIMIT_ORGANIZATION} on {}: \
                 Limit {}, Used {}, Requested {}. Please try again in {}. {RATE_LIMIT_HELP}",
                wait.kind.per_minute(),
                wait.limit,
                wait.used,
                wait.requested,
                go_duration(wait.retry_ms),
            ),
            wait.kind.error_type(),
            Some(wait.retry_ms),
        ),
        RejectReason::TooLarge { limit, requested } => (
            format!(
                "Request too large for {model} in organization {RATE_LIMIT_ORGANIZATION} on {}: \
                 Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order \
                 to run successfully. {RATE_LIMIT_HELP}",
                LimitKind::Tokens.per_minute(),
            ),
            LimitKind::Tokens.error_type(),
            None,
        ),
    };
    let body = error_json(&message, error_type, None, Some("rate_limit_exceeded"));
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body, Some(in_flight));
    if let Some(retry_ms) = retry_ms {
        let headers = response.headers_mut();
        headers.insert(HEADER_RETRY_AFTER_MS, HeaderValue::from(retry_ms));
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_ms.div_ceil(1000)));
    }
    response
}

/// Formats whole milliseconds like Go's `time.Duration.String()`, which is
/// what OpenAI's `x-ratelimit-reset-*` headers and "try again in" messages
/// use: `0s`, `12ms`, `1.5s`, `6m0s`, `1h2m3.004s`.
fn go_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let fraction = match ms % 1000 {
        0 => String::new(),
        millis => format!(".{}", format!("{millis:03}").trim_end_matches('0')),
    };
    match (hours, minutes) {
        (0, 0) => format!("{seconds}{fraction}s"),
        (0, minutes) => format!("{minutes}m{seconds}{fraction}s"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}{fraction}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn go_durations_are_formatted_like_go() {
        for (ms, expected) in [
            (0, "0s"),
            (1, "1ms"),
            (12, "12ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (8640, "8.64s"),
            (59_999, "59.999s"),
            (60_000, "1m0s"),
            (90_500, "1m30.5s"),
            (360_000, "6m0s"),
            (3_600_000, "1h0m0s"),
            (3_723_004, "1h2m3.004s"),
            (90_000_000, "25h0m0s"),
        ] {
            assert_eq!(go_duration(ms), expected, "{ms} ms");
        }
    }

    /// What the headers report about a bucket of `limit` holding `remaining`, full in `reset_ms`.
    fn bucket(limit: u32, remaining: u64, reset_ms: u64) -> BucketState {
        BucketState {
            limit,
            remaining,
            reset_ms,
        }
    }

    /// The rejection of `requested` from a `kind` bucket of `limit` with `used` taken, which
    /// can be sent in `retry_ms`.
    fn wait(kind: LimitKind, limit: u32, used: u64, requested: u64, retry_ms: u64) -> RejectReason {
        RejectReason::Wait(Wait {
            kind,
            limit,
            used,
            requested,
            retry_ms,
        })
    }

    #[test]
    fn buckets_refill_continuously_and_charge_nothing_on_rejection() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // 1 request per second, 10 tokens per second.
        let mut limiter = SimRateLimits::new(60, 600, start);
        let first = limiter.admit(300, start).expect("full buckets");
        assert_eq!(first.requests, Some(bucket(60, 59, 1000)));
        assert_eq!(first.tokens, Some(bucket(600, 300, 30_000)));
        limiter.admit(300, start).expect("the rest of the tokens");

        // One second later 10 tokens are back; 50 more take 4 more seconds.
        let rejection = limiter.admit(50, at(1000)).expect_err("tokens exhausted");
        assert_eq!(rejection.reason, wait(LimitKind::Tokens, 600, 590, 50, 4000));
        assert_eq!(rejection.snapshot.tokens.map(|t| t.remaining), Some(10));
        // The rejected request took nothing, so waiting retry_ms is enough.
        let admitted = limiter.admit(50, at(5000)).expect("refilled");
        assert_eq!(admitted.tokens, Some(bucket(600, 0, 60_000)));
        // 58 requests left + 5 refilled, capped at 60, then one taken.
        assert_eq!(admitted.requests.map(|r| (r.remaining, r.reset_ms)), Some((59, 1000)));

        // Requests alone: 2 per minute, the third waits 30 s.
        let mut limiter = SimRateLimits::new(2, 0, start);
        limiter.admit(1_000_000, start).expect("no token limit");
        let snapshot = limiter.admit(0, at(10)).expect("second request");
        assert!(snapshot.tokens.is_none());
        let rejection = limiter.admit(0, at(10)).expect_err("third request");
        assert_eq!(rejection.reason, wait(LimitKind::Requests, 2, 2, 1, 29_990));
        limiter.admit(0, at(30_000)).expect("refilled");

        // No limits: everything passes and there is nothing to report.
        let mut limiter = SimRateLimits::new(0, 0, start);
        assert_eq!(limiter.admit(u64::MAX, start).ok(), Some(RateSnapshot::default()));
    }

    #[test]
    fn buckets_reject_requests_larger_than_the_tpm_limit() {
        let start = Instant::now();
        let mut limiter = SimRateLimits::new(10, 100, start);
        for _ in 0..3 {
            let rejection = limiter.admit(101, start).expect_err("too large");
            let reason = RejectReason::TooLarge {
                limit: 100,
                requested: 101,
            };
            assert_eq!(rejection.reason, reason);
        }
        let snapshot = limiter.admit(100, start).expect("exactly the limit fits");
        assert_eq!(snapshot.requests.map(|r| r.remaining), Some(9));
        assert_eq!(snapshot.tokens.map(|t| t.remaining), Some(0));
    }

    #[tokio::test]
    async fn rpm_limit_answers_429_with_retry_headers_until_the_bucket_refills() {
        let sim = start_rate_limited(60, 0).await;
        let client = client();
        let request = hi_request();
        let started = std::time::Instant::now();
        for i in 0..60 {
            let response = post_with(&client, &sim, &request).await;
            assert_eq!(response.status(), 200, "request {i}");
        }
        let limited = post_with(&client, &sim, &request).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        assert_eq!(limited.status(), 429);
        // The bucket refills one request per second and has been refilling
        // since the first request, at most `elapsed_ms` ago.
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!(
            retry_ms <= 1000 && retry_ms >= 1000_u64.saturating_sub(elapsed_ms),
            "{retry_ms}"
        );
        assert_eq!(header(&limited, "retry-after"), "1");
        assert_eq!(header(&limited, "x-ratelimit-limit-requests"), "60");
        assert_eq!(header(&limited, "x-ratelimit-remaining-requests"), "0");
        assert!(!has_rate_headers(&limited, "tokens"));
        let body = json_body(limited).await;
        assert_eq!(body["error"]["type"], "requests");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(body["error"]["param"].is_null());
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with(
                "Rate limit reached for gpt-test in organization org-simulator on requests per min (RPM): \
                 Limit 60, Used 60, Requested 1. Please try again in "
            ),
            "{message}"
        );

        tokio::time::sleep(Duration::from_millis(retry_ms)).await;
        let response = post_with(&client, &sim, &request).await;
        assert_eq!(response.status(), 200);
        let stats = sim.stats();
        assert_eq!((stats.chat_requests, stats.rate_limited), (62, 1));
        assert_eq!((stats.faults_injected, stats.random_failures), (0, 0));
    }

    #[tokio::test]
    async fn tpm_limit_charges_prompt_tokens_plus_the_completion_cap() {
        // 100 tokens per second.
        let sim = start_rate_limited(0, 6000).await;
        let prompt = hi_prompt_tokens();
        let started = std::time::Instant::now();

        // The bucket is full, so the first request's numbers are exact.
        let capped = chat_request("Hi", json!({"max_tokens": 3000}));
        let response = post_ok(&sim, &capped, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "6000");
        assert_eq!(header_u64(&response, "x-ratelimit-remaining-tokens"), 3000 - prompt);
        // (prompt + 3000) tokens at 100 per second, in milliseconds.
        let reset = go_duration((prompt + 3000) * 10);
        assert_eq!(header(&response, "x-ratelimit-reset-tokens"), reset);
        assert!(!has_rate_headers(&response, "requests"));
        // Only 16 tokens were generated, but the cap is what was charged.
        assert_eq!(json_body(response).await["usage"]["completion_tokens"], 16);

        // About 3000 - prompt left: too few for prompt + 3000.
        let capped = chat_request("Hi", json!({"max_completion_tokens": 3000}));
        let limited = post_ok(&sim, &capped, &[]).await;
        assert_eq!(limited.status(), 429);
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!(retry_ms > 0 && retry_ms <= 2 * prompt * 10, "{retry_ms}");
        assert_eq!(header_u64(&limited, "retry-after"), retry_ms.div_ceil(1000));
        let body = json_body(limited).await;
        assert_eq!(body["error"]["type"], "tokens");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let message = body["error"]["message"].as_str().expect("message");
        // "Used" is read from the bucket at that moment: the clock is real, so on a loaded
        // machine a token or two may have refilled since the first request.
        let used: u64 = message
            .split("Used ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .expect("a Used count");
        let refilled = started.elapsed().as_millis() as u64 / 10 + 1;
        assert!(
            message.contains("on tokens per min (TPM): Limit 6000, Used "),
            "{message}"
        );
        assert!(used <= prompt + 3000 && used + refilled >= prompt + 3000, "{message}");
        assert!(message.contains(&format!("Requested {}.", prompt + 3000)), "{message}");

        // Without a cap the cost is the prompt plus the answer's length, and
        // the rejected request above took nothing.
        let response = post_ok(&sim, &hi_request(), &[("x-sim-response-tokens", "5")]).await;
        assert_eq!(response.status(), 200);
        let remaining = header_u64(&response, "x-ratelimit-remaining-tokens");
        let expected = 3000 - prompt - (prompt + 5);
        let refilled = started.elapsed().as_millis() as u64 / 10 + 1;
        assert!(remaining >= expected && remaining <= expected + refilled, "{remaining}");
        assert_eq!(json_body(response).await["usage"]["completion_tokens"], 5);
        assert_eq!(sim.stats().rate_limited, 1);
    }

    #[tokio::test]
    async fn request_larger_than_the_tpm_limit_always_gets_429() {
        let sim = start_rate_limited(10, 100).await;
        let prompt = hi_prompt_tokens();
        let huge = chat_request("Hi", json!({"max_tokens": 200}));
        for _ in 0..3 {
            let response = post_ok(&sim, &huge, &[]).await;
            assert_eq!(response.status(), 429);
            // Waiting cannot help, so no retry hint is given.
            assert!(!response.headers().contains_key("retry-after"));
            assert!(!response.headers().contains_key("retry-after-ms"));
            // Nothing was charged.
            assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "10");
            assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), "100");
            assert_eq!(header(&response, "x-ratelimit-reset-tokens"), "0s");
            let body = json_body(response).await;
            assert_eq!(body["error"]["type"], "tokens");
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            let message = body["error"]["message"].as_str().expect("message");
            let expected = format!(
                "Request too large for gpt-test in organization org-simulator on tokens per min (TPM): \
                 Limit 100, Requested {}.",
                prompt + 200
            );
            assert!(message.starts_with(&expected), "{message}");
        }
        let small = chat_request("Hi", json!({"max_tokens": 10}));
        let response = post_ok(&sim, &small, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining-tokens"), 100 - prompt - 10);
        assert_eq!(sim.stats().rate_limited, 3);
    }

    #[tokio::test]
    async fn rate_limit_headers_use_go_durations_on_streaming_and_429_responses() {
        // One request per minute; 1000 tokens per second.
        let sim = start_rate_limited(1, 60_000).await;
        let prompt = hi_prompt_tokens();
        let request = hi_stream_request();
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "1");
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(header(&response, "x-ratelimit-reset-requests"), "1m0s");
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "60000");
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining-tokens"),
            60_000 - prompt - 16
        );
        assert_eq!(
            header(&response, "x-ratelimit-reset-tokens"),
            format!("{}ms", prompt + 16)
        );
        let (_, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);

        let limited = post_ok(&sim, &hi_request(), &[]).await;
        assert_eq!(limited.status(), 429);
        let retry_ms = header_u64(&limited, "retry-after-ms");
        assert!((55_000..=60_000).contains(&retry_ms), "{retry_ms}");
        assert_eq!(header_u64(&limited, "retry-after"), retry_ms.div_ceil(1000));
        assert_eq!(header(&limited, "x-ratelimit-remaining-requests"), "0");
        // The one request refills in what is left of the minute: `59.987s`
        // (or `1m0s` if less than a millisecond went by).
        let reset = header(&limited, "x-ratelimit-reset-requests");
        assert_eq!(reset, go_duration(retry_ms));
        assert!(
            reset == "1m0s" || (reset.starts_with('5') && !reset.ends_with("ms")),
            "{reset}"
        );
        assert!(has_rate_headers(&limited, "tokens"));
        let message = json_body(limited).await["error"]["message"].clone();
        let expected = format!("Please try again in {reset}.");
        assert!(message.as_str().is_some_and(|m| m.contains(&expected)), "{message}");
    }

    #[tokio::test]
    async fn set_limits_replaces_the_limits_with_full_buckets() {
        let sim = start_default().await;
        let request = hi_request();
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert!(!has_rate_headers(&response, "requests") && !has_rate_headers(&response, "tokens"));

        sim.set_limits(1, 0);
        // Invalid requests are rejected before the limiter and cost nothing.
        let invalid = post_ok(&sim, &json!({"messages": []}), &[]).await;
        assert_eq!(invalid.status(), 400);
        assert!(!has_rate_headers(&invalid, "requests"));
        let response = post_ok(&sim, &request, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "1");
        assert!(!has_rate_headers(&response, "tokens"));
        assert_eq!(post_ok(&sim, &request, &[]).await.status(), 429);

        sim.set_limits(1, 0);
        assert_eq!(post_ok(&sim, &request, &[]).await.status(), 200);
        sim.set_limits(0, 0);
        for _ in 0..3 {
            let response = post_ok(&sim, &request, &[]).await;
            assert_eq!(response.status(), 200);
            assert!(!has_rate_headers(&response, "requests"));
        }
        assert_eq!(sim.stats().rate_limited, 1);
    }
}
