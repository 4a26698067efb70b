//! chatgpt-native: a fast, resilient client for OpenAI-compatible chat-completions APIs, built
//! as a Node.js addon. `core` is plain Rust (HTTP, SSE, protocol); `binding` is the thin napi
//! layer that converts JavaScript values and errors and calls into `core`; `simulator` is a
//! server of its own.
//!
//! # Layout
//!
//! One `sendMessage` call flows through `core` like this:
//!
//! - `config`: options checked once into a `ClientConfig` (defaults, environment fallbacks).
//! - `client`: the hub. `prepare` builds the prompt with `conversation` (history walk within
//!   the token budget, the message store) and `tokens` (the tokenizer); `chat` writes the body;
//!   `call` holds what one call sends and receives, `turn` the request, the reply and the two
//!   messages it stores.
//! - `flight`: answers repeated requests from `cache` and coalesces identical ones in flight
//!   (only when the `cache` option turns it on).
//! - `upstreams`: the servers a call goes to, one `Route` each (transport and `admission`), and
//!   when a call falls back to the next; `coordination`: what every process shares through Redis
//!   (rate buckets, key health, the circuit breaker, the cache's second level; one link per
//!   client, a single Redis or a Cluster, keyed per upstream).
//! - Around each attempt: `admission` passes `limits` (concurrency slot, rate lease),
//!   `breaker` and `keys`; `retry` decides what happens after a failure; `bounds` races every
//!   await against abort, the deadline and the idle timeout (`time` keeps that arithmetic
//!   from panicking).
//! - `transport` sends the request (reqwest); a stream goes through `sse` and `stream`
//!   (deltas to the caller's sink), and `chat` folds chunks, and `surrogates` mends split
//!   UTF-16 escapes, into the reply.
//! - On the way out: `metrics` counts it, `redact` scrubs keys from errors, `error` gives every
//!   failure a stable code (and parses OpenAI error objects).
//! - Beside the flow: `chunking` (token-bounded splitting), `jsvalue` (bounded JSON from
//!   JavaScript values).
//!
//! `binding` wraps `core` for Node.js (the `#[napi]` items live only there); `simulator` is an
//! OpenAI-compatible server with scripted faults that the tests run against.

// Left out of `core-only` builds (see Cargo.toml), which have no Node.js to link against.
#[cfg(not(feature = "core-only"))]
pub mod binding;
pub mod core;
pub mod simulator;

// mimalloc instead of glibc malloc: a call allocates on one thread (JavaScript or a tokio worker)
// and frees on another, which glibc serialises on its arena locks. Measured in
// bench/throughput.mjs (A/B, same simulator): 43 -> 36 µs of CPU per non-streaming call, +10%
// requests/s at concurrency 64.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
