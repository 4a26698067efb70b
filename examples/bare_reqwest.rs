//! The practical limit for `bench/throughput.mjs`: a bare Rust loop of reqwest POSTs with the
//! same body and concurrency, no JavaScript, no client features. Prints requests per second and,
//! on Linux, CPU µs per request.
//!
//! `cargo run --release --example bare_reqwest -- <base-url> <requests> <concurrency>`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1".into());
    let total: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
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
    let secs = started.elapsed().as_secs_f64();
    // Requests per second, then (on Linux) this process's CPU time per request in µs.
    match cpu_seconds() {
        Some(cpu) => println!("{:.1} {:.2}", total as f64 / secs, cpu * 1e6 / total as f64),
        None => println!("{:.1}", total as f64 / secs),
    }
}

/// User + system CPU time of this process so far, from /proc (clock ticks of 10 ms).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
