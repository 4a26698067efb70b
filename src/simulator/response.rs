//! Building responses: the body type every response uses ([`SimBody`], a buffer or a channel
//! from a producer task, carrying the request's in-flight marker), JSON responses with their
//! `x-request-id`, SSE frames, and OpenAI's JSON error bodies.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::server::InFlight;

/// Frames buffered between a stream's producer task and hyper. Small, so a
/// slow reader applies backpressure to the producer like a real server would.
const STREAM_CHANNEL_CAPACITY: usize = 32;

/// Sent on every response, like OpenAI's.
const HEADER_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a handler's error is: hyper closes the connection without answering.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The four fields of an OpenAI error object.
pub(super) struct ErrorFields {
    pub(super) message: String,
    pub(super) error_type: String,
    pub(super) param: Option<String>,
    pub(super) code: Option<String>,
}

/// `{"error": {...}}` as OpenAI sends it (absent fields are `null`).
pub(super) fn error_value(fields: &ErrorFields) -> Value {
    json!({
        "error": {
            "message": fields.message,
            "type": fields.error_type,
            "param": fields.param,
            "code": fields.code,
        }
    })
}

/// [`error_value`] as a ready body.
pub(super) fn error_json(message: &str, error_type: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    to_bytes(&error_value(&ErrorFields {
        message: message.to_string(),
        error_type: error_type.to_string(),
        param: param.map(str::to_string),
        code: code.map(str::to_string),
    }))
}

/// A fresh `x-request-id: req_<32 hex>`, like OpenAI's, on every response.
pub(super) fn insert_request_id(headers: &mut HeaderMap) {
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER_REQUEST_ID, value);
    }
}

/// `body` with `status`, `content-type: application/json` and a request id.
pub(super) fn with_json_headers(status: StatusCode, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    insert_request_id(headers);
    response
}

/// A complete JSON response; `in_flight` is released when hyper is done with the body.
pub(super) fn json_response(status: StatusCode, body: Bytes, in_flight: Option<InFlight>) -> Response<SimBody> {
    with_json_headers(status, SimBody::full(body, in_flight))
}

/// One SSE `data:` frame.
pub(super) fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Compact JSON text.
pub(super) fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// Seconds since the Unix epoch, for `created` (0 if the clock is before it).
pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a stream producer hands to the response body.
pub(super) enum SimChunk {
    Data(Bytes),
    /// Abort the connection mid-body (the `disconnect` fault).
    Abort,
}

/// The response body type: either a complete buffer or frames from a
/// producer task. It carries the request's [`InFlight`] marker so that the
/// in-flight count drops exactly when hyper finishes or drops the body.
pub(super) struct SimBody {
    inner: BodyInner,
    exact_len: Option<u64>,
    _in_flight: Option<InFlight>,
}

enum BodyInner {
    Full(Option<Bytes>),
    Channel {
        rx: mpsc::Receiver<SimChunk>,
        aborting: bool,
    },
}

impl SimBody {
    /// A complete body, sent with a `content-length`.
    pub(super) fn full(bytes: Bytes, in_flight: Option<InFlight>) -> Self {
        Self {
            exact_len: Some(bytes.len() as u64),
            inner: BodyInner::Full(Some(bytes)),
            _in_flight: in_flight,
        }
    }

    /// A body fed through a channel; `exact_len` makes hyper send a
    /// `content-length` instead of chunked encoding.
    pub(super) fn channel(exact_len: Option<u64>, in_flight: InFlight) -> (mpsc::Sender<SimChunk>, Self) {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CAPACITY);
        let body = Self {
            inner: BodyInner::Channel { rx, aborting: false },
            exact_len,
            _in_flight: Some(in_flight),
        };
        (tx, body)
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            BodyInner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyInner::Channel { rx, aborting } => {
                if *aborting {
                    return Poll::Ready(Some(Err("simulated disconnect".into())));
                }
                match ready!(rx.poll_recv(cx)) {
                    Some(SimChunk::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    Some(SimChunk::Abort) => {
                        // hyper discards bytes it has buffered but not yet
                        // written when a body errors. Returning Pending once
                        // (with an immediate wake-up) makes it flush the
                        // frames sent so far, so the client really receives
                        // them before the connection dies.
                        *aborting = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, BodyInner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact_len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[tokio::test]
    async fn every_response_has_a_unique_request_id() {
        let sim = start_default().await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let response = post_ok(&sim, &hi_request(), &[]).await;
            let id = response.headers()["x-request-id"].to_str().expect("text").to_string();
            assert!(id.starts_with("req_") && id.len() == 36, "{id}");
            assert!(id["req_".len()..].chars().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
        let missing = get_ok(&sim, "/nope").await;
        assert!(missing.headers().contains_key("x-request-id"));
    }
}
