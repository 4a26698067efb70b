//! The Redis connection of one client, the time budget of each operation, and what happened to
//! those operations (the `coordination` metrics and the one-time fallback warning).
//!
//! The connection is a redis-rs `ConnectionManager` for one Redis, or a cluster connection for a
//! Redis Cluster (`nodes`); either is made on the first operation (inside the runtime) without
//! waiting for it to connect, and reconnects in the background when a server goes away (the
//! cluster one also follows slots that move). With `rediss://`, `ca` is trusted beside the
//! system roots. Every operation runs under `operationTimeoutMs`. After a failed one, operations are
//! skipped for [`RETRY_AFTER_FAILURE`] (calls go straight to the local limiter instead of each
//! paying the timeout), then the next one tries Redis again: the first that succeeds resumes
//! sharing.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};
use tokio::time::Instant;

use super::CoordinationConfig;
use crate::core::metrics::Metrics;

/// The connection an operation is given: cheap to clone, each clone usable on its own
/// (`redis::aio::ConnectionLike`), so scripts and commands take it by value. A cluster
/// connection sends each command to the node serving its key's slot (a script's keys share one
/// hash tag, so one node), and re-sends a script in full on a node that answers `NOSCRIPT`.
#[derive(Clone)]
pub enum RedisConn {
    /// One Redis (`url`).
    Single(ConnectionManager),
    /// A Redis Cluster (`nodes`).
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What a connection is made from: the client of one Redis or of a cluster (boxed: both are
/// large, and made once).
enum Target {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
}

/// How long after a failed operation Redis is left alone.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts of the connection manager.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Whether calls currently share their budget through Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinationMode {
    /// The last Redis operation succeeded (or none has run yet).
    Shared,
    /// The last Redis operation failed: calls use the local limiter until one succeeds.
    Local,
}

impl CoordinationMode {
    /// `'shared'` or `'local'`, as metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Local => "local",
        }
    }
}

/// Counters of a client's Redis use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinationStats {
    pub mode: CoordinationMode,
    /// Redis operations started (scripts run).
    pub operations: u64,
    /// Operations that failed or outlasted `operationTimeoutMs`.
    pub redis_errors: u64,
    /// Rate-limit admissions that used the local limiter because Redis was unavailable.
    pub fallbacks: u64,
}

/// Why an operation gave no answer. Deliberately without detail: Redis's own error text may
/// name the host, and the caller only needs to know to fall back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Warning states: none due, one due (not yet shown), shown.
const WARNING_NONE: u8 = 0;
const WARNING_DUE: u8 = 1;
const WARNING_SHOWN: u8 = 2;

/// One client's link to Redis. Shared (`Send + Sync`) by all its calls.
pub struct Coordinator {
    cfg: CoordinationConfig,
    /// `None` only if the checked settings could not make a client: every operation then
    /// fails over to the local limiter.
    target: Option<Target>,
    connection: OnceLock<RedisConn>,
    /// Operations are skipped until then after a failure.
    skip_until: Mutex<Option<Instant>>,
    local: AtomicU8,
    operations: AtomicU64,
    redis_errors: AtomicU64,
    fallbacks: AtomicU64,
    warning: AtomicU8,
}

impl Coordinator {
    /// A coordinator for `cfg`. Does not connect: the first operation does.
    pub fn new(cfg: CoordinationConfig) -> Self {
        if cfg.is_tls() {
            // rustls needs a process-wide crypto provider for the TLS connection (the HTTP
            // transport installs the same one).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let target = make_target(&cfg);
        Coordinator {
            cfg,
            target,
            connection: OnceLock::new(),
            skip_until: Mutex::new(None),
            local: AtomicU8::new(0),
            operations: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            warning: AtomicU8::new(WARNING_NONE),
        }
    }

    pub fn config(&self) -> &CoordinationConfig {
        &self.cfg
    }

    /// The connection, made on first use (inside the runtime: the manager spawns its driver).
    fn connection(&self) -> Option<RedisConn> {
        if let Some(c) = self.connection.get() {
            return Some(c.clone());
        }
        let timeout = self.cfg.operation_timeout.max(Duration::from_millis(250));
        let made = match self.target.as_ref()? {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_max_delay(MAX_RECONNECT_DELAY)
                    .set_number_of_retries(2);
                RedisConn::Single(ConnectionManager::new_lazy_with_config((**client).clone(), config).ok()?)
            }
            Target::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                RedisConn::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Some(self.connection.get_or_init(|| made).clone())
    }

    /// Runs one Redis operation under `operationTimeoutMs`, counting it. `Err` when it failed,
    /// timed out, or Redis is being left alone after a recent failure.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = Instant::now();
        {
            let skip = self.skip_until.lock().unwrap_or_else(PoisonError::into_inner);
            if skip.is_some_and(|until| now < until) {
                return Err(Unavailable);
            }
        }
        let Some(conn) = self.connection() else {
            self.failed(now);
            return Err(Unavailable);
        };
        Metrics::inc(&self.operations);
        match tokio::time::timeout(self.cfg.operation_timeout, op(conn)).await {
            Ok(Ok(value)) => {
                self.local.store(0, Ordering::Release);
                Ok(value)
            }
            Ok(Err(_)) | Err(_) => {
                self.failed(Instant::now());
                Err(Unavailable)
            }
        }
    }

    fn failed(&self, now: Instant) {
        Metrics::inc(&self.redis_errors);
        self.local.store(1, Ordering::Release);
        let until = now.checked_add(RETRY_AFTER_FAILURE).unwrap_or(now);
        *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(until);
        let _ = self
            .warning
            .compare_exchange(WARNING_NONE, WARNING_DUE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A call used the local limiter because Redis was unavailable.
    pub fn record_fallback(&self) {
        Metrics::inc(&self.fallbacks);
    }

    /// The one-time warning, the first time it is asked for after Redis first failed; `None`
    /// before that and ever after. Names the URL without its credentials.
    pub fn take_warning(&self) -> Option<String> {
        self.warning
            .compare_exchange(WARNING_DUE, WARNING_SHOWN, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(format!(
            "chatgpt-native: Redis at {} failed or did not answer within `coordination.operationTimeoutMs` ({} ms); \
             until it answers again, each process uses {}% of `rateLimit` and its own key health, circuit breaker and cache",
            self.cfg.shown_url(),
            self.cfg.operation_timeout.as_millis(),
            (self.cfg.local_share * 100.0).round()
        ))
    }

    pub fn stats(&self) -> CoordinationStats {
        CoordinationStats {
            mode: if self.local.load(Ordering::Acquire) == 0 {
                CoordinationMode::Shared
            } else {
                CoordinationMode::Local
            },
            operations: self.operations.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters (`resetMetrics`); the mode stays what it is.
    pub fn reset_stats(&self) {
        for counter in [&self.operations, &self.redis_errors, &self.fallbacks] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// The client of `cfg`'s Redis or cluster (`None` if it cannot be made: `CoordinationConfig::
/// build` checked the URLs and certificates, so only a system without readable roots gets here).
fn make_target(cfg: &CoordinationConfig) -> Option<Target> {
    let certificates = trusted_roots(cfg).map(|root_cert| TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    });
    if cfg.is_cluster() {
        let mut builder = ClusterClient::builder(cfg.cluster_nodes.iter().map(String::as_str))
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS);
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        return builder.build().ok().map(|c| Target::Cluster(Box::new(c)));
    }
    let client = match certificates {
        Some(certificates) => redis::Client::build_with_tls(cfg.url.as_str(), certificates),
        None => redis::Client::open(cfg.url.as_str()),
    };
    client.ok().map(|c| Target::Single(Box::new(c)))
}

/// Attempts of a cluster command before it fails (a moved slot, a node reconnecting); the
/// operation's own budget bounds them anyway.
const CLUSTER_RETRIES: u32 = 2;
/// Shortest and longest wait between those attempts, in milliseconds.
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 10;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;

/// With `ca` (TLS only), the roots a server's certificate may chain to, as PEM: the system's
/// and `ca`. redis-rs trusts only the given roots when any are given, so the system's are added
/// here. `None`: no `ca`, redis-rs uses the system roots itself.
fn trusted_roots(cfg: &CoordinationConfig) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if cfg.ca.is_empty() || !cfg.is_tls() {
        return None;
    }
    let mut pem = Vec::new();
    // Roots that cannot be read are left out, as Node does for its extra roots: `ca` still
    // works.
    for cert in rustls_native_certs::load_native_certs().certs {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    for given in &cfg.ca {
        pem.extend_from_slice(given);
        pem.push(b'\n');
    }
    Some(pem)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redis::cluster_routing::Slot;

    use super::*;
    use crate::core::coordination::test_redis::{TestCa, TestCluster, TestRedis};
    use crate::core::coordination::{CoordinationOptions, SharedLimiter};
    use crate::core::limits::{RateLimitConfig, RateLimiter};

    const KEY: &str = "sk-test-topology-0123456789";

    fn limits(rpm: Option<u32>) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_minute: rpm,
            tokens_per_minute: None,
        }
    }

    fn unlimited() -> RateLimiter {
        RateLimiter::new(limits(None))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// A coordinator as one process would have it; a generous operation budget by default
    /// (these tests are about topology, on a machine that may be busy).
    fn process(opts: CoordinationOptions) -> Arc<Coordinator> {
        let opts = CoordinationOptions {
            key_prefix: opts.key_prefix.or(Some("t".into())),
            operation_timeout_ms: opts.operation_timeout_ms.or(Some(2_000)),
            ..opts
        };
        Arc::new(Coordinator::new(CoordinationConfig::build(opts).unwrap()))
    }

    fn cluster_process(cluster: &TestCluster) -> Arc<Coordinator> {
        process(CoordinationOptions {
            nodes: cluster.urls(),
            ..Default::default()
        })
    }

    /// The content of `key`'s one hash tag.
    fn tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = key[open..].find('}').unwrap() + open;
        &key[open + 1..close]
    }

    #[test]
    fn a_keys_buckets_share_one_cluster_slot_and_keys_spread_over_slots() {
        let coordinator = process(CoordinationOptions {
            url: "redis://127.0.0.1:9".into(),
            ..Default::default()
        });
        let mut slots = std::collections::HashSet::new();
        for upstream in [None, Some("primary https://api.example.test/v1")] {
            for i in 0..15 {
                let api_key = format!("sk-test-{i}-{KEY}");
                let limiter = SharedLimiter::new(Arc::clone(&coordinator), upstream, &api_key, limits(Some(1)));
                let mut key_slots = std::collections::HashSet::new();
                for model in ["gpt-4o-mini", "gpt-4o", "a}b{c", "", &"x".repeat(500)] {
                    let key = limiter.bucket(model).key().to_owned();
                    let slot = Slot::for_key(&key);
                    // Redis Cluster hashes only the tag: any further key with the same tag
                    // (the key's health, another field's) lands on the same node.
                    assert_eq!(slot, Slot::for_key(tag(&key)), "{key}");
                    assert_eq!(slot, Slot::for_key(format!("{key}:other")), "{key}");
                    key_slots.insert(slot);
                }
                assert_eq!(key_slots.len(), 1, "every model of one key is in the key's slot");
                slots.extend(key_slots);
            }
        }
        assert!(slots.len() >= 20, "keys spread over slots: {} distinct", slots.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_share_one_bucket_through_a_cluster() {
        let cluster = TestCluster::start();
        let a = Arc::new(SharedLimiter::new(
            cluster_process(&cluster),
            None,
            KEY,
            limits(Some(12)),
        ));
        let b = Arc::new(SharedLimiter::new(
            cluster_process(&cluster),
            None,
            KEY,
            limits(Some(12)),
        ));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let limiter = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tasks.push(tokio::spawn(async move {
                let bucket = limiter.bucket("gpt-4o-mini");
                let local = unlimited();
                let got =
                    tokio::time::timeout(Duration::from_millis(1_500), limiter.acquire(&bucket, 0, far(), &local))
                        .await;
                matches!(got, Ok(Ok(Some(_))))
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        // 12 per minute: one refills every 5 s, none within the 1.5 s window.
        assert_eq!(granted, 12);
        for limiter in [&a, &b] {
            let stats = limiter.coordinator().stats();
            assert_eq!(
                (stats.mode, stats.redis_errors, stats.fallbacks),
                (CoordinationMode::Shared, 0, 0)
            );
        }
    }

    /// Reserves once in the bucket of each of 30 models; how many went through Redis.
    /// 30 API keys' limiters: a bucket's hash tag is its key's (the key's health shares the
    /// slot), so these spread over the cluster's slots and nodes.
    fn many_keys(coordinator: &Arc<Coordinator>) -> Vec<SharedLimiter> {
        (0..30)
            .map(|i| {
                SharedLimiter::new(
                    Arc::clone(coordinator),
                    None,
                    &format!("sk-test-{i}-{KEY}"),
                    limits(Some(1_000)),
                )
            })
            .collect()
    }

    /// Reserves on 30 keys' buckets through `coordinator` and checks every one went through the
    /// cluster, every node holds buckets, and nothing failed; returns the limiters.
    async fn every_node_serves(cluster: &TestCluster, coordinator: &Arc<Coordinator>) -> Vec<SharedLimiter> {
        let limiters = many_keys(coordinator);
        assert_eq!(reserve_on_many_slots(&limiters).await, 30);
        let keys = cluster.keys_per_node();
        assert!(keys.iter().all(|&n| n > 0), "keys per node: {keys:?}");
        assert_eq!(coordinator.stats().redis_errors, 0);
        limiters
    }

    /// How many of one reservation per limiter in `limiters` went through Redis.
    async fn reserve_on_many_slots(limiters: &[SharedLimiter]) -> usize {
        let mut shared = 0;
        for limiter in limiters {
            let bucket = limiter.bucket("sim-gpt");
            let local = unlimited();
            let got = limiter.acquire(&bucket, 0, far(), &local);
            if tokio::time::timeout(Duration::from_secs(5), got)
                .await
                .unwrap()
                .unwrap()
                .is_some()
            {
                shared += 1;
            }
        }
        shared
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buckets_on_every_node_work_even_after_noscript_and_a_killed_node_falls_back_until_it_returns() {
        let mut cluster = TestCluster::start();
        let coordinator = process(CoordinationOptions {
            nodes: cluster.urls(),
            operation_timeout_ms: Some(500),
            ..Default::default()
        });
        // Each node runs the scripts (loaded by EVAL after its NOSCRIPT) on buckets of its own.
        let limiters = every_node_serves(&cluster, &coordinator).await;
        assert_eq!(coordinator.take_warning(), None);
        // A node that forgot the scripts answers NOSCRIPT to EVALSHA: each is sent again in full.
        cluster.flush_scripts();
        assert_eq!(reserve_on_many_slots(&limiters).await, 30);
        assert_eq!(coordinator.stats().redis_errors, 0);

        cluster.nodes[1].kill();
        let started = std::time::Instant::now();
        let shared = reserve_on_many_slots(&limiters).await;
        assert!(shared < 30, "the killed node's buckets fell back");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no hang: {:?}",
            started.elapsed()
        );
        let stats = coordinator.stats();
        assert_eq!(stats.mode, CoordinationMode::Local);
        assert!(stats.redis_errors >= 1 && stats.fallbacks >= 1, "{stats:?}");
        let warning = coordinator.take_warning().unwrap();
        assert!(warning.contains(&cluster.nodes[0].port.to_string()), "{warning}");

        cluster.nodes[1].restart();
        cluster.wait_until_ok();
        let resumed = async {
            while reserve_on_many_slots(&limiters).await < 30 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), resumed).await.unwrap();
        assert_eq!(coordinator.stats().mode, CoordinationMode::Shared);
        assert_eq!(coordinator.take_warning(), None, "warned once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_unreachable_at_first_is_used_once_it_is_up() {
        let ports = TestCluster::free_ports();
        let coordinator = process(CoordinationOptions {
            nodes: ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect(),
            operation_timeout_ms: Some(500),
            ..Default::default()
        });
        let limiters = many_keys(&coordinator);
        let local = unlimited();
        let started = std::time::Instant::now();
        let limiter = &limiters[0];
        assert!(limiter
            .acquire(&limiter.bucket("m"), 0, far(), &local)
            .await
            .unwrap()
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(coordinator.stats().mode, CoordinationMode::Local);

        let _cluster = TestCluster::start_on(ports);
        let resumed = async {
            while reserve_on_many_slots(&limiters).await < 30 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), resumed).await.unwrap();
        assert_eq!(coordinator.stats().mode, CoordinationMode::Shared);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_cluster_with_the_private_ca_serves_buckets_on_every_node() {
        let ca = TestCa::make();
        let cluster = TestCluster::start_tls(&ca);
        assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")));
        let coordinator = process(CoordinationOptions {
            nodes: cluster.urls(),
            ca: vec![ca.ca_pem.clone()],
            ..Default::default()
        });
        every_node_serves(&cluster, &coordinator).await;
    }

    #[test]
    fn a_private_ca_is_trusted_beside_the_system_roots() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let ca = TestCa::make();
        let cfg = CoordinationConfig::build(CoordinationOptions {
            url: "rediss://127.0.0.1:6380".into(),
            ca: vec![ca.ca_pem.clone()],
            ..Default::default()
        })
        .unwrap();
        let system = rustls_native_certs::load_native_certs().certs;
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&trusted_roots(&cfg).unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(roots.len(), system.len() + 1);
        assert_eq!(roots[..system.len()], system[..]);
        let given = CertificateDer::from_pem_slice(&ca.ca_pem).unwrap();
        assert_eq!(roots.last(), Some(&given));
        // Without `ca`, redis-rs loads the system roots itself.
        let plain = CoordinationConfig { ca: Vec::new(), ..cfg };
        assert!(trusted_roots(&plain).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rediss_with_the_private_ca_shares_and_without_it_falls_back() {
        let ca = TestCa::make();
        let redis = TestRedis::start_tls(&ca, Some("tls-secret-pw"));
        let url = format!("rediss://:tls-secret-pw@127.0.0.1:{}", redis.port);
        let trusting = |ca_pem: Vec<Vec<u8>>| {
            process(CoordinationOptions {
                url: url.clone(),
                ca: ca_pem,
                ..Default::default()
            })
        };
        let a = SharedLimiter::new(trusting(vec![ca.ca_pem.clone()]), None, KEY, limits(Some(1)));
        let b = SharedLimiter::new(trusting(vec![ca.ca_pem.clone()]), None, KEY, limits(Some(1)));
        assert!(a
            .acquire(&a.bucket("m"), 0, far(), &unlimited())
            .await
            .unwrap()
            .is_some());
        // The bucket's only request is spent, through TLS: the other process waits for it.
        let local = unlimited();
        let waited =
            tokio::time::timeout(Duration::from_millis(500), b.acquire(&b.bucket("m"), 0, far(), &local)).await;
        assert!(waited.is_err(), "the other process saw the shared bucket");
        assert_eq!(b.coordinator().stats().mode, CoordinationMode::Shared);

        // Without the CA the server's certificate is not trusted: a fallback, not a failure.
        let untrusting = process(CoordinationOptions {
            url: url.clone(),
            operation_timeout_ms: Some(500),
            ..Default::default()
        });
        let c = SharedLimiter::new(Arc::clone(&untrusting), None, KEY, limits(Some(1)));
        let started = std::time::Instant::now();
        assert!(c
            .acquire(&c.bucket("m"), 0, far(), &unlimited())
            .await
            .unwrap()
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(untrusting.stats().mode, CoordinationMode::Local);
        let warning = untrusting.take_warning().unwrap();
        assert!(
            warning.contains("rediss://") && !warning.contains("tls-secret-pw"),
            "{warning}"
        );
        assert!(!format!("{:?}", untrusting.config()).contains("tls-secret-pw"));
    }
}
