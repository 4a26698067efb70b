//! chatgpt-native: a fast, resilient client for OpenAI-compatible chat-completions APIs, built
//! as a Node.js addon. `core` is plain Rust (HTTP, SSE, protocol, simulator); `binding` is the
//! thin napi layer that converts JavaScript values and errors and calls into `core`.

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
