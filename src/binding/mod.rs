//! The napi layer: the only place `#[napi]` appears. It converts options, callbacks,
//! AbortSignals and errors between JavaScript and `crate::core`, and holds no HTTP or protocol
//! logic of its own.
//!
//! `api` is the `ChatGPTAPI` class; `requests` reads what its methods accept (option shapes and
//! readers, on `options`' checked access to JS objects); `message` and `metrics` are what they
//! return; `batch` and `progress` relay `onItem` and `onProgress`; `store` and `debug` adapt the
//! JavaScript conversation stores and the `debug` printer; `tokens` and `simulator` are
//! the other exports.

pub mod api;
pub mod batch;
pub mod convert;
pub mod debug;
pub mod errors;
pub mod init;
pub mod message;
pub mod metrics;
pub mod options;
pub mod progress;
pub mod requests;
pub mod runtime;
pub mod settle;
pub mod simulator;
pub mod store;
pub mod tokens;
