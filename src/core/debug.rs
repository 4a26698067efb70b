//! `debug: true`: what a call logs, as the `chatgpt` package logs it: the prompt's token count
//! and the request body before the call, the response object after a non-streamed reply, plus a
//! line for a call that failed. Every entry is scrubbed of keys and credentials by the client
//! (`redact`) before it gets here; the prompt is included, since the caller asked for it.
//!
//! Where entries are printed is the embedder's choice ([`DebugLog`]): the Node.js binding prints
//! them with `console.log`, so they interleave with the program's own output; the default,
//! [`StdoutLog`], prints to stdout.

use futures::future::{self, BoxFuture};

/// One thing a call logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugEntry {
    /// Before a call is sent: its prompt tokens and its request body (JSON text).
    Request { prompt_tokens: u32, body: String },
    /// After a non-streamed reply: the response (JSON text).
    Response { body: String },
    /// A line of text (a call that failed).
    Line(String),
}

/// Prints debug entries.
pub trait DebugLog: Send + Sync {
    /// Print `entry`. Resolves once it is printed, so a call's entries appear in order, each
    /// before what the call does next.
    fn log(&self, entry: DebugEntry) -> BoxFuture<'_, ()>;
}

/// Prints to stdout, in the `chatgpt` package's layout.
pub struct StdoutLog;

impl DebugLog for StdoutLog {
    fn log(&self, entry: DebugEntry) -> BoxFuture<'_, ()> {
        match entry {
            DebugEntry::Request { prompt_tokens, body } => println!("sendMessage ({prompt_tokens} tokens) {body}"),
            DebugEntry::Response { body } => println!("{body}"),
            DebugEntry::Line(line) => println!("{line}"),
        }
        Box::pin(future::ready(()))
    }
}
