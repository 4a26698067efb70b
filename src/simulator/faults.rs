//! Scripted and random failures: [`Fault`] and [`FaultKind`] (queued with
//! [`Simulator::enqueue_fault`](super::Simulator::enqueue_fault) or sent per request in the
//! `x-sim-fault` header), the seeded dice behind `failureRate`, and answering an admitted
//! request with whichever failure it drew. Mid-stream faults are carried out by `stream`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use super::answer::{splitmix64, Answer};
use super::request::{bad_request, ChatRequest};
use super::response::{
    error_value, json_response, to_bytes, with_json_headers, BoxError, ErrorFields, SimBody, SimChunk,
};
use super::server::{InFlight, Shared};
use super::stream::{answer_normally, sleep_if_needed};

/// The request header a request scripts its own fault with.
const HEADER_FAULT: &str = "x-sim-fault";
/// Also sent by the rate limiter's 429s.
pub(super) const HEADER_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const HEADER_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// OpenAI's message for a 429 whose code is `insufficient_quota`.
const QUOTA_MESSAGE: &str = "You exceeded your current quota, please check your plan and billing details.";

/// What a scripted [`Fault`] does to the one request it applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// Reply at once (no ttft) with [`Fault::status`] (default 500) and an
    /// OpenAI error body, plus the retry headers the fault names.
    #[default]
    Status,
    /// Close the connection without sending a single response byte.
    Reset,
    /// Streaming: send the role chunk and `afterChunks` deltas, then abort the
    /// connection mid-body. Non-streaming: send the headers and part of the
    /// body, then abort.
    Disconnect,
    /// Streaming: send the role chunk and `afterChunks` deltas, then nothing
    /// more until the client goes away or the simulator closes.
    /// Non-streaming: never send the headers.
    Stall,
    /// Streaming: after `afterChunks` deltas send a frame whose JSON is
    /// invalid, then `[DONE]`. Non-streaming: a 200 whose body is invalid JSON.
    Malformed,
    /// Streaming: after `afterChunks` deltas send an OpenAI error payload as
    /// an SSE frame (see [`Fault::sse_event`]) and end the body cleanly
    /// without `[DONE]`. Non-streaming: like `status` with status 500.
    ErrorEvent,
    /// Streaming: after `afterChunks` deltas end the body cleanly with neither
    /// a finish chunk nor `[DONE]`. Non-streaming: a 200 with truncated JSON.
    Truncate,
    /// Streaming: a complete stream (finish chunk, usage chunk if requested)
    /// without the final `data: [DONE]`. Non-streaming: a normal answer.
    NoDone,
    /// Wait [`Fault::delay_ms`] before the response headers, then answer
    /// normally.
    Delay,
}

/// A scripted failure for one chat request, deserialized from the camelCase
/// JSON of the `x-sim-fault` header or passed to
/// [`Simulator::enqueue_fault`](super::Simulator::enqueue_fault).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// What happens to the request.
    pub kind: FaultKind,
    /// `status` kind: the HTTP status to reply with (default 500).
    pub status: Option<u16>,
    /// Error body `message` (default depends on the status).
    pub message: Option<String>,
    /// Error body `type` (default depends on the status).
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// Error body `code` (default depends on the status).
    pub code: Option<String>,
    /// Error body `param` (default null).
    pub param: Option<String>,
    /// `status` kind: value of the `retry-after` header, sent as given.
    #[serde(default, deserialize_with = "string_or_number")]
    pub retry_after: Option<String>,
    /// `status` kind: value of the `retry-after-ms` header, sent as given.
    #[serde(default, deserialize_with = "string_or_number")]
    pub retry_after_ms: Option<String>,
    /// `status` kind: when set, sent as `x-should-retry: true|false`.
    pub should_retry: Option<bool>,
    /// Streaming `disconnect`/`stall`/`malformed`/`errorEvent`/`truncate`:
    /// number of content deltas sent before the fault (default 0; the role
    /// chunk always comes first).
    #[serde(default)]
    pub after_chunks: u32,
    /// `errorEvent` kind: when true the error is sent as
    /// `event: error\ndata: {...}`, otherwise as a bare `data: {...}` frame.
    #[serde(default)]
    pub sse_event: bool,
    /// `delay` kind: extra milliseconds before the response headers.
    #[serde(default)]
    pub delay_ms: u64,
}

/// Accepts `"2"` as well as `2` for header-valued fields, since a JSON
/// author can hardly be blamed for writing a number of seconds as a number.
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }
    Ok(
        Option::<StringOrNumber>::deserialize(deserializer)?.map(|value| match value {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }),
    )
}

/// The fault a request scripts for itself in `x-sim-fault`, if any; `Err` is a ready 400 body.
pub(super) fn fault_from_headers(headers: &HeaderMap) -> Result<Option<Fault>, Bytes> {
    let Some(value) = headers.get(HEADER_FAULT) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| bad_request("Invalid x-sim-fault header: not text.", None))?;
    let fault = serde_json::from_str::<Fault>(text)
        .map_err(|e| bad_request(&format!("Invalid x-sim-fault header: {e}."), None))?;
    Ok(Some(fault))
}

/// Decides the random failures: SplitMix64 from the configured seed, rolled
/// once per admitted request.
pub(super) struct FailureDice {
    state: u64,
    rate: f64,
}

impl FailureDice {
    pub(super) fn new(seed: u64, rate: f64) -> Self {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        Self { state: seed, rate }
    }

    /// The status this request fails with, or `None` if it does not fail.
    pub(super) fn roll(&mut self) -> Option<u16> {
        if self.rate <= 0.0 {
            return None;
        }
        let value = splitmix64(&mut self.state);
        // The top 53 bits as a uniform float in [0, 1), so a rate of 1.0
        // always fails.
        let unit = (value >> 11) as f64 / (1_u64 << 53) as f64;
        (unit < self.rate).then_some(match value % 3 {
            0 => 500,
            1 => 502,
            _ => 503,
        })
    }
}

/// Answers a request the rate limiter admitted: with its scripted fault if it
/// has one, else with a random failure if the dice say so, else normally.
pub(super) async fn respond(
    shared: Arc<Shared>,
    chat: ChatRequest,
    answer: Answer,
    header_fault: Option<Fault>,
    in_flight: InFlight,
) -> Result<Response<SimBody>, BoxError> {
    // Only now, with a request we would answer, is a queued fault consumed.
    let fault = header_fault.or_else(|| shared.faults().pop_front());
    // Rolled for every admitted request, even one with a scripted fault, so
    // that the n-th admitted request gets the same verdict whatever faults
    // are scripted around it.
    let random_failure = shared.dice().roll();
    let Some(fault) = fault else {
        if let Some(status) = random_failure {
            shared.stats().random_failures += 1;
            let fault = Fault {
                status: Some(status),
                ..Fault::default()
            };
            return Ok(fault_status_response(&fault, in_flight));
        }
        return answer_normally(shared, answer, chat, None, in_flight).await;
    };
    shared.stats().faults_injected += 1;
    match fault.kind {
        FaultKind::Status => Ok(fault_status_response(&fault, in_flight)),
        FaultKind::Reset => Err("simulated connection reset".into()),
        // Without a stream there is no event to break: answer like a
        // `status` fault, whose status defaults to 500.
        FaultKind::ErrorEvent if !chat.stream => Ok(fault_status_response(&fault, in_flight)),
        FaultKind::Delay => {
            sleep_if_needed(Duration::from_millis(fault.delay_ms)).await;
            answer_normally(shared, answer, chat, None, in_flight).await
        }
        FaultKind::NoDone if !chat.stream => answer_normally(shared, answer, chat, None, in_flight).await,
        _ if chat.stream => answer_normally(shared, answer, chat, Some(fault), in_flight).await,
        FaultKind::Stall => {
            // Never answer; hyper drops this future when the client hangs
            // up, and close() aborts the connection task.
            let never = std::future::pending::<std::convert::Infallible>().await;
            match never {}
        }
        // Non-streaming disconnect, malformed, truncate: a 200 that breaks,
        // sent after the time a real answer would have taken.
        kind => {
            sleep_if_needed(answer.total_delay(&shared.config)).await;
            let full = answer.completion_json();
            let half = full.slice(..full.len() / 2);
            match kind {
                FaultKind::Disconnect => {
                    // Promise the full length, deliver half, then abort.
                    let (tx, body) = SimBody::channel(Some(full.len() as u64), in_flight);
                    tokio::spawn(async move {
                        if tx.send(SimChunk::Data(half)).await.is_ok() {
                            let _ = tx.send(SimChunk::Abort).await;
                        }
                    });
                    Ok(with_json_headers(StatusCode::OK, body))
                }
                FaultKind::Malformed => Ok(json_response(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"id\": \"broken\""),
                    Some(in_flight),
                )),
                _ => Ok(json_response(StatusCode::OK, half, Some(in_flight))),
            }
        }
    }
}

/// The OpenAI error for a fault, with per-status defaults for the fields the
/// fault leaves out.
pub(super) fn fault_error(fault: &Fault, default_status: u16) -> ErrorFields {
    let status = fault.status.unwrap_or(default_status);
    let quota = status == 429 && fault.code.as_deref() == Some("insufficient_quota");
    let (message, error_type, code) = if quota {
        (QUOTA_MESSAGE, "insufficient_quota", Some("insufficient_quota"))
    } else {
        default_error(status)
    };
    ErrorFields {
        message: fault.message.clone().unwrap_or_else(|| message.to_string()),
        error_type: fault.error_type.clone().unwrap_or_else(|| error_type.to_string()),
        param: fault.param.clone(),
        code: fault.code.clone().or_else(|| code.map(str::to_string)),
    }
}

/// Messages, types and codes modelled on what OpenAI sends for each status.
fn default_error(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
    match status {
        400 => ("Invalid request.", "invalid_request_error", None),
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => ("You are not allowed to access this resource.", "permission_error", None),
        404 => (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        408 => ("Request timed out.", "timeout_error", None),
        409 => ("Conflict.", "invalid_request_error", None),
        413 => ("Request too large.", "invalid_request_error", None),
        422 => ("Unprocessable entity.", "invalid_request_error", None),
        429 => (
            "Rate limit reached for requests per min (RPM). Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        502 => ("Bad gateway.", "server_error", None),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        504 => ("Gateway timeout.", "server_error", None),
        501 | 505..=599 => ("The server had an error.", "server_error", None),
        _ => ("Request failed.", "invalid_request_error", None),
    }
}

fn fault_status_response(fault: &Fault, in_flight: InFlight) -> Response<SimBody> {
    // An out-of-range status in a scripted fault still yields an error
    // response rather than a panic or a success.
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = to_bytes(&error_value(&fault_error(fault, status.as_u16())));
    let mut response = json_response(status, body, Some(in_flight));
    let headers = response.headers_mut();
    // Values that are not valid header text are skipped, not fatal.
    let mut set = |name: HeaderName, value: Option<&str>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    };
    set(RETRY_AFTER, fault.retry_after.as_deref());
    set(HEADER_RETRY_AFTER_MS, fault.retry_after_ms.as_deref());
    set(
        HEADER_SHOULD_RETRY,
        fault.should_retry.map(|r| if r { "true" } else { "false" }),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// The body of a streamed request with `fault` scripted, read until `idle` passes silently.
    async fn faulted_stream(sim: &Simulator, fault: &str, idle: Duration) -> (String, StreamEnd) {
        read_stream(post_fault(sim, &hi_stream_request(), fault).await, idle).await
    }

    #[test]
    fn fault_json_parses_camel_case_fields() {
        let fault: Fault = serde_json::from_str(
            r#"{"kind":"errorEvent","status":429,"type":"requests","retryAfter":2,
                "retryAfterMs":"150","shouldRetry":false,"afterChunks":3,"sseEvent":true,
                "delayMs":5}"#,
        )
        .expect("parses");
        assert_eq!(fault.kind, FaultKind::ErrorEvent);
        assert_eq!(fault.status, Some(429));
        assert_eq!(fault.error_type.as_deref(), Some("requests"));
        assert_eq!(fault.retry_after.as_deref(), Some("2"));
        assert_eq!(fault.retry_after_ms.as_deref(), Some("150"));
        assert_eq!(fault.should_retry, Some(false));
        assert_eq!((fault.after_chunks, fault.sse_event, fault.delay_ms), (3, true, 5));
        let no_done: Fault = serde_json::from_str(r#"{"kind":"noDone"}"#).expect("parses");
        assert_eq!(no_done.kind, FaultKind::NoDone);
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"bogus"}"#).is_err());
    }

    #[tokio::test]
    async fn status_fault_sends_the_status_retry_headers_and_error_code() {
        let sim = start(SimulatorConfig {
            ttft: Duration::from_secs(10),
            ..SimulatorConfig::default()
        })
        .await;
        sim.enqueue_fault(Fault {
            kind: FaultKind::Status,
            status: Some(429),
            retry_after: Some("2".into()),
            retry_after_ms: Some("150".into()),
            should_retry: Some(true),
            ..Fault::default()
        });
        // ttft is 10 s: a status fault must answer at once.
        let response = tokio::time::timeout(Duration::from_secs(2), post(&sim, &hi_stream_request(), &[]))
            .await
            .expect("answered at once")
            .expect("response");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["retry-after-ms"], "150");
        assert_eq!(response.headers()["x-should-retry"], "true");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "requests");

        let quota = r#"{"kind":"status","status":429,"code":"insufficient_quota"}"#;
        let response = post_fault(&sim, &hi_request(), quota).await;
        assert!(!response.headers().contains_key("retry-after"));
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["message"], QUOTA_MESSAGE);

        let server = r#"{"kind":"status"}"#;
        let response = post_fault(&sim, &hi_request(), server).await;
        assert_eq!(response.status(), 500);
        assert_eq!(json_body(response).await["error"]["type"], "server_error");
        assert_eq!(sim.stats().faults_injected, 3);
    }

    #[tokio::test]
    async fn reset_fault_gives_a_connection_error_instead_of_a_status() {
        let sim = start_default().await;
        for stream in [false, true] {
            sim.enqueue_fault(Fault {
                kind: FaultKind::Reset,
                ..Fault::default()
            });
            let error = post(&sim, &chat_request("Hi", json!({"stream": stream})), &[])
                .await
                .expect_err("no response");
            assert!(error.status().is_none());
            assert!(error.is_request() || error.is_connect() || error.is_body(), "{error:?}");
        }
        wait_until_idle(&sim).await;
        // The server keeps serving afterwards.
        let response = post_ok(&sim, &hi_request(), &[]).await;
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn disconnect_fault_breaks_the_body_after_the_given_chunks() {
        let sim = start_default().await;
        let fault = r#"{"kind":"disconnect","afterChunks":3}"#;
        let response = post_fault(&sim, &hi_stream_request(), fault).await;
        assert_eq!(response.status(), 200);
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Error);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 3, "{text}");
        assert_eq!(content_deltas(&frames).len(), 3);

        let response = post_fault(&sim, &hi_request(), r#"{"kind":"disconnect"}"#).await;
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.is_err());
        wait_until_idle(&sim).await;
    }

    #[tokio::test]
    async fn stall_fault_goes_silent_until_the_client_gives_up() {
        let sim = start_default().await;
        let (text, end) = faulted_stream(&sim, r#"{"kind":"stall","afterChunks":2}"#, Duration::from_millis(300)).await;
        assert_eq!(end, StreamEnd::TimedOut);
        assert_eq!(content_deltas(&data_frames(&text)).len(), 2);
        // Dropping the response closed the connection; the server notices.
        wait_until_idle(&sim).await;

        let fault = r#"{"kind":"stall"}"#;
        let pending = post(&sim, &hi_request(), &[("x-sim-fault", fault)]);
        assert!(tokio::time::timeout(Duration::from_millis(300), pending).await.is_err());
        wait_until_idle(&sim).await;
    }

    #[tokio::test]
    async fn malformed_fault_sends_invalid_json() {
        let sim = start_default().await;
        let (text, end) = faulted_stream(&sim, r#"{"kind":"malformed","afterChunks":1}"#, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 1 + 1 + 1, "{text}");
        assert!(serde_json::from_str::<Value>(&frames[2]).is_err());
        assert_eq!(frames[3], "[DONE]");

        let response = post_fault(&sim, &hi_request(), r#"{"kind":"malformed"}"#).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("complete body");
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }

    #[tokio::test]
    async fn error_event_fault_sends_an_error_payload_in_both_forms() {
        let sim = start_default().await;
        let request = hi_stream_request();
        for sse_event in [false, true] {
            let fault = json!({"kind": "errorEvent", "afterChunks": 2, "sseEvent": sse_event,
                "message": "boom", "code": "oops"})
            .to_string();
            let response = post_fault(&sim, &request, &fault).await;
            let (text, end) = read_stream(response, Duration::from_secs(5)).await;
            assert_eq!(end, StreamEnd::Clean);
            assert!(!text.contains("[DONE]"));
            assert_eq!(text.contains("event: error\n"), sse_event, "{text}");
            let frames = data_frames(&text);
            assert_eq!(frames.len(), 1 + 2 + 1);
            let error: Value = serde_json::from_str(&frames[3]).expect("error json");
            assert_eq!(error["error"]["message"], "boom");
            assert_eq!(error["error"]["type"], "server_error");
            assert_eq!(error["error"]["code"], "oops");
            assert!(error["error"]["param"].is_null());
        }
        let response = post_fault(&sim, &hi_request(), r#"{"kind":"errorEvent"}"#).await;
        assert_eq!(response.status(), 500);
        assert_eq!(json_body(response).await["error"]["type"], "server_error");
    }

    #[tokio::test]
    async fn truncate_fault_ends_without_finish_or_done() {
        let sim = start_default().await;
        let (text, end) = faulted_stream(&sim, r#"{"kind":"truncate","afterChunks":4}"#, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        assert!(!text.contains("[DONE]") && !text.contains("\"finish_reason\":\"stop\""));
        assert_eq!(content_deltas(&data_frames(&text)).len(), 4);

        let response = post_fault(&sim, &hi_request(), r#"{"kind":"truncate"}"#).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("complete body");
        assert!(!bytes.is_empty());
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }

    #[tokio::test]
    async fn no_done_fault_omits_only_the_done_marker() {
        let sim = start_default().await;
        let request = chat_request("Hi", json!({"stream": true, "stream_options": {"include_usage": true}}));
        let response = post_fault(&sim, &request, r#"{"kind":"noDone"}"#).await;
        let (text, end) = read_stream(response, Duration::from_secs(5)).await;
        assert_eq!(end, StreamEnd::Clean);
        assert!(!text.contains("[DONE]"));
        let frames = data_frames(&text);
        assert_eq!(frames.len(), 1 + 16 + 1 + 1);
        assert!(frames[17].contains("\"finish_reason\":\"stop\""));
        assert!(frames[18].contains("\"completion_tokens\":16"));
    }

    #[tokio::test]
    async fn delay_fault_postpones_a_normal_answer() {
        let sim = start_default().await;
        let started = tokio::time::Instant::now();
        let response = post_fault(&sim, &hi_request(), r#"{"kind":"delay","delayMs":250}"#).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(json_body(response).await["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn header_fault_overrides_the_queue_without_consuming_it() {
        let sim = start_default().await;
        sim.enqueue_fault(Fault {
            kind: FaultKind::Status,
            status: Some(503),
            ..Fault::default()
        });
        let header = r#"{"kind":"status","status":418}"#;
        let response = post_fault(&sim, &hi_request(), header).await;
        assert_eq!(response.status(), 418);
        assert_eq!(sim.pending_faults(), 1);
        let response = post_ok(&sim, &hi_request(), &[]).await;
        assert_eq!(response.status(), 503);
        assert_eq!(sim.pending_faults(), 0);
    }

    #[tokio::test]
    async fn queued_faults_are_taken_in_order_once_each() {
        let sim = start_default().await;
        for status in [500, 502, 429] {
            sim.enqueue_fault(Fault {
                kind: FaultKind::Status,
                status: Some(status),
                ..Fault::default()
            });
        }
        assert_eq!(sim.pending_faults(), 3);
        // Non-chat requests and rejected chat requests do not consume faults.
        get_ok(&sim, "/models").await;
        post_ok(&sim, &json!({"messages": []}), &[]).await;
        assert_eq!(sim.pending_faults(), 3);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(post_ok(&sim, &hi_request(), &[]).await.status().as_u16());
        }
        assert_eq!(statuses, [500, 502, 429, 200]);
        assert_eq!(sim.stats().faults_injected, 3);

        sim.enqueue_fault(Fault::default());
        sim.enqueue_fault(Fault::default());
        sim.clear_faults();
        assert_eq!(sim.pending_faults(), 0);
        let response = post_ok(&sim, &hi_request(), &[]).await;
        assert_eq!(response.status(), 200);
    }

    #[test]
    fn failure_dice_follow_the_seed_and_the_rate() {
        let rolls = |seed: u64, rate: f64| {
            let mut dice = FailureDice::new(seed, rate);
            (0..1000).map(|_| dice.roll()).collect::<Vec<_>>()
        };
        assert_eq!(rolls(9, 0.3), rolls(9, 0.3));
        assert_ne!(rolls(9, 0.3), rolls(10, 0.3));
        let failures = rolls(9, 0.3).iter().flatten().count();
        assert!((240..=360).contains(&failures), "{failures}");
        for status in [500, 502, 503] {
            assert!(rolls(9, 0.3).contains(&Some(status)));
        }
        for off in [0.0, -1.0, f64::NAN] {
            assert!(rolls(9, off).iter().all(Option::is_none));
        }
        for always in [1.0, 7.0, f64::INFINITY] {
            assert!(rolls(9, always).iter().all(Option::is_some));
        }
    }

    #[tokio::test]
    async fn random_failures_follow_the_seed() {
        async fn run(seed: u64) -> (Vec<u16>, SimulatorStats) {
            let sim = start(SimulatorConfig {
                failure_rate: 0.5,
                seed,
                ..SimulatorConfig::default()
            })
            .await;
            let client = client();
            let request = hi_request();
            let mut statuses = Vec::new();
            for _ in 0..200 {
                let response = post_with(&client, &sim, &request).await;
                let status = response.status().as_u16();
                let body = json_body(response).await;
                if status != 200 {
                    assert_eq!(body["error"]["type"], "server_error", "{body}");
                    assert!(body["error"]["code"].is_null());
                }
                statuses.push(status);
            }
            (statuses, sim.stats())
        }
        let (first, stats) = run(7).await;
        let (again, _) = run(7).await;
        let (other, _) = run(8).await;
        assert_eq!(first, again);
        assert_ne!(first, other);

        let failures = first.iter().filter(|status| **status != 200).count() as u64;
        assert!((70..=130).contains(&failures), "{failures}");
        for status in [500, 502, 503] {
            assert!(first.contains(&status), "{first:?}");
        }
        assert!(first.iter().all(|s| [200, 500, 502, 503].contains(s)));
        let mut dice = FailureDice::new(7, 0.5);
        let predicted: Vec<u16> = (0..200).map(|_| dice.roll().unwrap_or(200)).collect();
        assert_eq!(first, predicted);
        assert_eq!(stats.random_failures, failures);
        assert_eq!(
            (stats.chat_requests, stats.faults_injected, stats.rate_limited),
            (200, 0, 0)
        );
        // A failed request produced no answer, so only the others add usage.
        assert_eq!(stats.completion_tokens, (200 - failures) * 16);
    }
}
