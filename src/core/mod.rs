//! Plain-Rust core of chatgpt-native: no napi here, so everything is testable with `cargo test`
//! and reusable by other front ends. One module per concern; the crate root has the map.

pub mod admission;
pub mod bounds;
pub mod breaker;
pub mod cache;
pub mod call;
pub mod chat;
pub mod chunking;
pub mod client;
pub mod config;
pub mod content;
pub mod conversation;
pub mod coordination;
pub mod debug;
pub mod error;
pub mod flight;
pub mod jsvalue;
pub mod keys;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod redact;
pub mod retry;
pub mod sse;
pub mod stream;
pub mod structured;
pub mod surrogates;
pub mod time;
pub mod tokens;
pub mod tools;
pub mod transport;
pub mod turn;
pub mod upstreams;
