//! The client's Rust core without JavaScript: the same loop as `bare_reqwest.rs` (same body,
//! concurrency and simulator), but each request goes through `ChatClient::send` (prompt, limits,
//! breaker, key pool, parsing, conversation store), on a runtime shaped like the addon's. Its CPU per request minus the bare loop's is
//! what the core adds; `bench/throughput.mjs` minus this is what the JavaScript side adds.
//!
//! `cargo run --release --features core-only --example core_loop -- <base-url> <requests> <concurrency>`

// A benchmark program, not the product: a failed setup or request should stop it loudly.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chatgpt_native::core::client::{ChatClient, SendRequest};
use chatgpt_native::core::config::{ClientConfig, ClientOptions, Setting};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

fn main() {
    // The addon's runtime shape (see src/binding/runtime.rs): a worker per core less one.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (base, total, concurrency) = common::args();
    let mut params = Map::new();
    params.insert("model".into(), Value::from("sim-gpt"));
    let cfg = ClientConfig::build(ClientOptions {
        api_key: Some("sk-bench".into()),
        api_base_url: Some(base),
        system_message: Some(String::new()),
        completion_params: Some(params),
        cache: Setting::Off,
        ..Default::default()
    })
    .expect("config");
    let client = Arc::new(ChatClient::new(cfg, None).expect("client"));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let cancel = CancellationToken::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let req = SendRequest {
                        text: format!("bench {i}"),
                        parts: None,
                        messages: None,
                        system_message: None,
                        completion_params: None,
                        message_id: None,
                        parent_message_id: None,
                        conversation_id: None,
                        name: None,
                        stream: false,
                        timeout: None,
                        cache: false,
                        headers: None,
                        tool_results: Vec::new(),
                    };
                    let reply = client.send(req, None, &cancel).await.expect("reply");
                    assert!(!reply.text.is_empty());
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    common::report(total, started);
}
