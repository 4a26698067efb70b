//! Shared by the benchmark loops in `examples/`: their arguments, this process's CPU time and
//! the result line `bench/throughput.mjs` reads.

use std::time::Instant;

/// `<base-url> <requests> <concurrency>` from the command line, with defaults.
pub fn args() -> (String, usize, usize) {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1".into());
    let total = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let concurrency = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    (base, total, concurrency)
}

/// User + system CPU time of this process so far, from /proc (clock ticks of 10 ms).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Prints requests per second, then (on Linux) this process's CPU µs per request.
pub fn report(total: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    match cpu_seconds() {
        Some(cpu) => println!("{:.1} {:.2}", total as f64 / secs, cpu * 1e6 / total as f64),
        None => println!("{:.1}", total as f64 / secs),
    }
}
