//! The data of one call on its way upstream, named: the request every attempt sends, the
//! bounds and delta delivery it runs with, and what comes back. Shared by the client's attempt
//! loop and the coalescing of identical calls (`flight`).

use std::sync::atomic::AtomicU32;

use bytes::Bytes;

use super::bounds::CallBounds;
use super::chat::Completion;
use super::stream::Delivery;

/// One call's request as it goes upstream: what every attempt sends.
pub struct Outbound {
    pub body: Bytes,
    pub stream: bool,
    /// What the rate limiter reserves before sending: prompt plus the most the reply may use.
    pub estimate: u32,
    /// The model asked for, when rate limits are shared (it names the bucket); else empty.
    pub model: String,
    /// The call's own headers, the same on every attempt (so its `Idempotency-Key` is too).
    pub headers: Option<std::sync::Arc<reqwest::header::HeaderMap>>,
    /// The number of choices asked for (`n`, 1 when absent): how a stream is folded, and how
    /// many choices the reply carries.
    pub choices: usize,
    /// What `response_format` asks the reply to be: a JSON reply that is not JSON is not cached.
    pub output: super::structured::OutputFormat,
}

/// One call on its way upstream: its request, its bounds, and where its deltas go.
pub struct CallPlan<'c, 'd> {
    pub request: Outbound,
    pub bounds: &'c CallBounds<'c>,
    pub delivery: Delivery<'c, 'd>,
    /// Where the attempts started so far are published, for callers that wait on this call
    /// without running it (a shared flight's): their own timeout or abort reports `attempts` too.
    pub attempts: Option<&'c AtomicU32>,
}

/// A completion as one call received it.
pub struct Received {
    pub completion: Completion,
    /// `x-request-id` of the response (none for a cache hit).
    pub request_id: Option<String>,
    /// Content deltas delivered to this caller.
    pub deltas: u32,
    /// HTTP attempts the answer took (0 for a cache hit).
    pub attempts: u32,
    /// Served from the response cache.
    pub cached: bool,
    /// With `upstreams`: the index of the upstream whose answer this is (for a cached answer,
    /// the one that produced it).
    pub upstream: Option<usize>,
}
