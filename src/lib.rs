//! chatgpt-native: a fast, resilient client for OpenAI-compatible chat-completions APIs, built
//! as a Node.js addon. `core` is plain Rust (HTTP, SSE, protocol, simulator); `binding` is the
//! thin napi layer that converts JavaScript values and errors and calls into `core`.

pub mod binding;
pub mod core;
