//! The tokio runtimes the addon runs on.
//!
//! Calls run on napi-rs's process-wide runtime, which we build ourselves at load time so that it
//! has one worker thread per core *less one*: the JavaScript thread is busy too (it makes every
//! call, settles every Promise and runs every callback), and a worker per core on top of it
//! leaves the process with more busy threads than cores. On a 2-core machine at 64 calls in
//! flight, one worker instead of two took about 1.7 µs of CPU off each call and put 12% more
//! calls per second through (bench/throughput.mjs, interleaved A/B against the same simulator).
//! `TOKIO_WORKER_THREADS`, tokio's own variable, overrides the count.
//!
//! A simulator is a server, so it gets a runtime of its own with a worker per core: it then
//! uses every core, as a real server would, and in a test process its work does not queue
//! behind (or slow down) the client's.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

/// Worker threads for calls: `TOKIO_WORKER_THREADS` if set, else one per core less one for the
/// JavaScript thread, and at least one.
fn call_worker_threads() -> usize {
    let from_env = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    match from_env {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1),
    }
}

/// Runs when the addon loads, before anything can use the runtime. If building it fails (it
/// cannot, short of the OS refusing threads) napi-rs builds its default one on first use.
#[napi_derive::module_init]
fn init_call_runtime() {
    let built = Builder::new_multi_thread()
        .worker_threads(call_worker_threads())
        .thread_name("chatgpt-native")
        .enable_all()
        .build();
    if let Ok(rt) = built {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

/// The simulators' runtime, made on first use: a worker per core (or `TOKIO_WORKER_THREADS`).
/// Called on a JavaScript thread, outside any runtime, where dropping a spare one is allowed.
pub fn simulator_runtime() -> std::io::Result<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = Builder::new_multi_thread()
        .thread_name("chatgpt-sim")
        .enable_all()
        .build()?;
    // Two simulators starting at once may both build one; the loser's is dropped unused.
    Ok(RT.get_or_init(|| rt))
}
