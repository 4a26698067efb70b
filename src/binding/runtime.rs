//! The tokio runtimes the addon runs on, and why they live for the whole process.
//!
//! Calls run on a runtime of our own with one worker thread per core *less one*: the JavaScript
//! thread is busy too (it makes every call, settles every Promise and runs every callback), and
//! a worker per core on top of it leaves the process with more busy threads than cores. On a
//! 2-core machine at 64 calls in flight, one worker instead of two took about 1.7 µs of CPU off
//! each call and put 12% more calls per second through (bench/throughput.mjs, interleaved A/B
//! against the same simulator). `TOKIO_WORKER_THREADS`, tokio's own variable, overrides the count.
//!
//! A simulator is a server, so it gets a runtime of its own with a worker per core: it then
//! uses every core, as a real server would, and in a test process its work does not queue
//! behind (or slow down) the client's.
//!
//! Both are process-wide statics, made once and never shut down, rather than napi-rs's
//! runtime. napi-rs shuts its runtime down when the last JavaScript environment that loaded
//! the addon ends (say the only worker thread that used it exits) and builds a default one when
//! the next environment loads it; a runtime handed over with `create_custom_tokio_runtime` is
//! used for the first cycle only, and `#[module_init]` runs once per process, so from the
//! second cycle on calls would run on napi-rs's default threads. Ours are the same for any
//! order of environments starting and ending. Keeping them alive is safe: the addon's image
//! stays loaded once any runtime exists (napi-rs pins it), calls still running when their
//! environment ends finish and find nobody to settle (see `settle.rs`), and an idle worker costs
//! only a parked thread.
//!
//! napi-rs still makes a runtime of its own for every environment cycle and runs `#[napi] async
//! fn` on it; the addon has none (its Promises go through `settle::spawn`), so in the first
//! cycle napi-rs gets a one-worker runtime instead of a worker per core. Later cycles get
//! napi-rs's default, idle.

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

static CALL_RT: OnceLock<Runtime> = OnceLock::new();

/// Runs once per process when the addon image loads. Builds the call runtime early so the first
/// call does not pay for it, and gives napi-rs a one-worker runtime for its own first cycle.
#[napi_derive::module_init]
fn init_runtimes() {
    // A failure here is retried by the first call (see `call_runtime`), which reports it.
    let _ = call_runtime();
    let napi_rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("chatgpt-napi")
        .enable_all()
        .build();
    if let Ok(rt) = napi_rt {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

/// Builds a runtime once per process; `build` runs again on later calls only while it fails.
/// Called on a JavaScript thread (or while the image loads), outside any runtime, where
/// dropping the spare a racing thread built is allowed.
fn process_runtime(
    slot: &'static OnceLock<Runtime>,
    build: impl FnOnce() -> std::io::Result<Runtime>,
) -> std::io::Result<&'static Runtime> {
    if let Some(rt) = slot.get() {
        return Ok(rt);
    }
    let rt = build()?;
    // Two environments loading at once may both build one; the loser's is dropped unused.
    Ok(slot.get_or_init(|| rt))
}

/// The runtime calls run on (see the module doc). Fails only if the OS refuses threads.
pub fn call_runtime() -> std::io::Result<&'static Runtime> {
    process_runtime(&CALL_RT, || {
        Builder::new_multi_thread()
            .worker_threads(call_worker_threads())
            .thread_name("chatgpt-native")
            .enable_all()
            .build()
    })
}

/// The simulators' runtime, made on first use: a worker per core (or `TOKIO_WORKER_THREADS`).
pub fn simulator_runtime() -> std::io::Result<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    process_runtime(&RT, || {
        Builder::new_multi_thread()
            .thread_name("chatgpt-sim")
            .enable_all()
            .build()
    })
}
