//! The client's Rust core without JavaScript: the same loop as `bare_reqwest.rs` (same body,
//! concurrency and simulator), but each request goes through `ChatClient::send` (prompt, limits,
//! breaker, key pool, parsing, conversation store), on a runtime shaped like the addon's. Its CPU per request minus the bare loop's is
//! what the core adds; `bench/throughput.mjs` minus this is what the JavaScript side adds.
//!
//! `cargo run --release --features core-only --example core_loop -- <base-url> <requests> <concurrency>`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chatgpt_native::core::client::{ChatClient, SendRequest};
use chatgpt_native::core::config::{ClientConfig, ClientOptions};
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
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1".into());
    let total: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let mut params = Map::new();
    params.insert("model".into(), Value::from("sim-gpt"));
    let cfg = ClientConfig::build(ClientOptions {
        api_key: Some("sk-bench".into()),
        api_base_url: Some(base),
        system_message: Some(String::new()),
        completion_params: Some(params),
        cache: Some(None),
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
                        system_message: None,
                        completion_params: None,
                        message_id: None,
                        parent_message_id: None,
                        conversation_id: None,
                        name: None,
                        stream: false,
                        timeout: None,
                        cache: false,
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
    let secs = started.elapsed().as_secs_f64();
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
