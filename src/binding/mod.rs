//! The napi layer: the only place `#[napi]` appears. It converts options, callbacks,
//! AbortSignals and errors between JavaScript and `crate::core`, and holds no HTTP or protocol
//! logic of its own.

pub mod api;
pub mod batch;
pub mod convert;
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
