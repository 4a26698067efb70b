//! The practical limit for `bench/throughput.mjs`: a bare Rust loop of reqwest POSTs with the
//! same body and concurrency, no JavaScript, no client features. Prints requests per second and,
//! on Linux, CPU µs per request.
//!
//! `cargo run --release --example bare_reqwest -- <base-url> <requests> <concurrency>`

// A benchmark program, not the product: a failed setup or request should stop it loudly.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let (base, total, concurrency) = common::args();
    let url = format!("{base}/chat/completions");
    // reqwest is built without a default crypto provider (see transport.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let body = format!(
                        r#"{{"model":"sim-gpt","messages":[{{"role":"user","content":"bench {i}"}}],"max_tokens":1000,"stream":false}}"#
                    );
                    let resp = client
                        .post(&url)
                        .header("authorization", "Bearer sk-bench")
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("request");
                    let bytes = resp.bytes().await.expect("body");
                    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                    assert!(v["choices"][0]["message"]["content"].is_string());
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    common::report(total, started);
}
