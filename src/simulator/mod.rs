//! A local, OpenAI-compatible chat-completions server with scripted faults, a part of its own
//! beside `core`. The addon's tests run against it, `scripts/demo.mjs` and the benchmarks in
//! `bench/` use it as their upstream, and users start it (`ChatGPTSimulator` in JavaScript,
//! [`Simulator`] in Rust) to test their own code against realistic failures without spending
//! tokens.
//!
//! The simulator listens on `127.0.0.1` only and speaks the OpenAI wire format
//! for `GET /v1/models` and `POST /v1/chat/completions` (streaming and
//! non-streaming), also under Azure OpenAI's paths
//! (`/openai/deployments/{deployment}/chat/completions?api-version=...`, the key in the
//! `api-key` header instead of `Authorization: Bearer`). Answers are deterministic: the text
//! is drawn from a fixed vocabulary whose every entry is exactly one token in both `cl100k_base` and
//! `o200k_base`, seeded from a hash of the request's messages, so the same
//! messages always produce the same answer and `usage.completion_tokens` is
//! exact by construction. `usage.prompt_tokens` follows OpenAI's chat formula
//! counted with `o200k_base`.
//!
//! Beyond plain text a request can ask for `n` choices (1 to 8; streamed, their chunks
//! interleave round-robin), `logprobs`/`top_logprobs`, and a `response_format` (`json_object`,
//! or `json_schema` answered with an instance of the schema); the marker `[refuse]` in the last
//! user message gets a refusal, and reasoning models (o1, o3, o4, gpt-5) report hidden
//! `reasoning_tokens` and take `reasoning_effort`. Out-of-range values get OpenAI's 400 naming the
//! parameter. A request without these fields is answered exactly as before they existed.
//!
//! # Scripting faults
//!
//! A [`Fault`] applies to exactly one chat request. It is taken from the
//! request header `x-sim-fault: <json>` when present (this lets a single
//! request script its own failure, and does not touch the queue), otherwise
//! from a FIFO queue filled with [`Simulator::enqueue_fault`]. The JSON form is
//! camelCase, e.g. `{"kind":"status","status":429,"retryAfter":"2"}` or
//! `{"kind":"disconnect","afterChunks":3}`; see [`Fault`] and [`FaultKind`]
//! for every field and its effect on streaming and non-streaming requests.
//! A chat request that is rejected before it is answered (401, 400) does not
//! consume a queued fault.
//!
//! Timing follows what a client would see from a real server: `status`,
//! `reset` (and `errorEvent` without streaming) answer at once; a mid-stream
//! fault fires when the next content delta would have been due (after `ttft`
//! or `token_delay`); non-streaming `disconnect`, `malformed` and `truncate`
//! arrive after the time a complete answer would have taken.
//!
//! The length of an answer can be chosen per request with the header
//! `x-sim-response-tokens: <n>`; timing comes from [`SimulatorConfig`].
//!
//! # Rate limits and random failures
//!
//! [`SimulatorConfig::rate_limit_rpm`] and [`SimulatorConfig::rate_limit_tpm`]
//! model OpenAI's limits as two continuous token buckets: each holds up to its
//! per-minute limit, starts full and refills at limit/60 per second. A chat
//! request costs one request and, like OpenAI's up-front estimate, its prompt
//! tokens plus its `max_completion_tokens`/`max_tokens` (without a cap, the
//! length of the answer it is going to get) times its `n`. A request takes both amounts or
//! nothing: a rejected request is not charged, so a client that waits the
//! advertised `retry-after-ms` gets through unless others used the budget in
//! the meantime. The rejection is a 429 with OpenAI's `rate_limit_exceeded`
//! body, whose `type` (`requests` or `tokens`) names the limit that keeps the
//! request waiting longest, plus `retry-after-ms` and `retry-after`. A request
//! costing more than the whole TPM limit can never pass: it gets OpenAI's
//! "Request too large" 429 without retry headers, since waiting cannot help.
//! Every response to a chat request that reached the limiter (200 or 429,
//! streaming or not, and scripted or random failures) carries the
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers of the
//! limits that are on, the resets being Go durations (`12ms`, `1.5s`, `6m0s`)
//! like OpenAI's. [`Simulator::set_limits`] changes the limits at runtime.
//!
//! [`SimulatorConfig::failure_rate`] makes that share of the chat requests
//! fail at once with a 500, 502 or 503 and an OpenAI `server_error` body. The
//! verdicts come from a PRNG seeded with [`SimulatorConfig::seed`] that is
//! rolled exactly once per request the limiter admits, so the n-th admitted
//! request gets the same verdict in every run (with concurrent requests, the
//! n-th to reach the limiter).
//!
//! A valid chat request meets these in order: the rate limiter (a 429 there
//! consumes no queued fault), then a scripted fault, then the random failure,
//! which applies only when no scripted fault did. A request failed by either
//! has still used its rate budget, as it would upstream. Requests rejected
//! earlier (401, 400, 413) meet none of them.
//!
//! Nothing in here may panic: it runs inside a Node process, so every failure
//! is mapped to an HTTP error or a closed connection. API keys are never
//! echoed in responses and nothing is logged.
//!
//! # An independent model of the server
//!
//! The simulator deliberately re-implements what it has in common with the client instead of
//! calling into `core`: its own RPM/TPM token buckets (`rate`, the server's side of what
//! `core::limits::RateLimiter` paces on the client's side) and its own copy of OpenAI's chat
//! token formula (`answer`). A mistake in the client's version then shows up as a failing test
//! instead of being mirrored by the server it is tested against. The one thing it takes from
//! `core` is the tokenizer (`core::tokens::Encoding`, tiktoken's `o200k_base` behind a wrapper
//! that survives inputs which crash tiktoken): token counts are tiktoken's on both sides anyway.
//!
//! # Layout
//!
//! - `server`: the handle ([`Simulator`]), its configuration and counters, the listener and
//!   connection tasks, shutdown, and the route every request takes.
//! - `request`: reading a chat request (its body and `x-sim-response-tokens`), or its 400.
//! - `rate`: the RPM/TPM buckets, their 429s and the `x-ratelimit-*` headers.
//! - `faults`: [`Fault`] and [`FaultKind`] (queued, or from `x-sim-fault`), the random failures,
//!   and answering a request with the failure it drew.
//! - `answer`: the deterministic text, its choices and usage, and the JSON of answers and chunks.
//! - `formats`: refusals, `response_format` JSON answers, reasoning tokens, token pieces.
//! - `logprobs`: the deterministic log probabilities of `logprobs: true`.
//! - `stream`: delivering an answer, whole or as timed SSE frames, and mid-stream faults.
//! - `response`: the response body type, JSON responses and OpenAI's error bodies.
//! - `tools`: answering a request that offers `tools` with a call to one, streamed in fragments,
//!   and the JSON instance of a schema (tool arguments, `json_schema` answers).
//!
//! Nothing here depends on napi: the binding wraps [`Simulator`] as `ChatGPTSimulator`, and
//! `core-only` builds (plain Rust programs) can start one too.

mod answer;
mod faults;
mod formats;
mod logprobs;
mod rate;
mod request;
mod response;
mod server;
mod stream;
#[cfg(test)]
mod test_support;
mod tools;

pub use faults::{Fault, FaultKind};
pub use server::{Simulator, SimulatorConfig, SimulatorStats};
