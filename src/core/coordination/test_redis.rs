//! Throwaway redis-servers for the unit tests: the pinned one `scripts/redis.mjs` unpacks into
//! `.redis/` (run to install it when missing), on 127.0.0.1 on free ports, in temporary
//! directories, without persistence; killed when the handle is dropped (a failing test too).
//!
//! Three shapes: one server ([`TestRedis::start`]), one server speaking only TLS with a
//! certificate of a private CA made with the `openssl` CLI ([`TestRedis::start_tls`],
//! [`TestCa`]), and a 3-master Redis Cluster joined with `redis-cli --cluster create`
//! ([`TestCluster`], over TLS too), whose nodes can be killed and restarted where they were.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server or a cluster may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running redis-server.
pub struct TestRedis {
    child: Option<Child>,
    dir: PathBuf,
    /// What it was started with, to restart it the same way.
    args: Vec<String>,
    pub port: u16,
    tls: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The unpacked server, installed by `node scripts/redis.mjs` if needed.
fn server() -> PathBuf {
    let server = root().join(".redis/usr/bin/redis-server");
    if !server.exists() {
        let status = Command::new("node")
            .arg(root().join("scripts/redis.mjs"))
            .stdout(Stdio::null())
            .status()
            .expect("node runs scripts/redis.mjs");
        assert!(status.success(), "scripts/redis.mjs could not install redis-server");
    }
    server
}

/// `.redis/usr/lib` and its subdirectories: where the unpacked libraries are.
fn library_path() -> String {
    let lib = root().join(".redis/usr/lib");
    let mut dirs = vec![lib.clone()];
    if let Ok(entries) = std::fs::read_dir(&lib) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh temporary directory for one server.
fn temp_dir(what: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatgpt-native-{what}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestRedis {
    /// Starts a server on a free port.
    pub fn start() -> TestRedis {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (to restart one where its clients expect it).
    pub fn start_on(port: u16) -> TestRedis {
        Self::start_with(port, None)
    }

    /// Starts a server on `port` that requires `password` when given.
    pub fn start_with(port: u16, password: Option<&str>) -> TestRedis {
        let mut args = vec!["--port".to_owned(), port.to_string()];
        if let Some(p) = password {
            args.extend(["--requirepass".to_owned(), p.to_owned()]);
        }
        Self::spawn(port, temp_dir("redis", port), args, false)
    }

    /// Starts a server on a free port that speaks only TLS, with a certificate `ca` signed for
    /// 127.0.0.1 (clients need not present one), requiring `password` when given.
    pub fn start_tls(ca: &TestCa, password: Option<&str>) -> TestRedis {
        let port = free_port();
        let mut args = tls_args(ca, port);
        if let Some(p) = password {
            args.extend(["--requirepass".to_owned(), p.to_owned()]);
        }
        Self::spawn(port, temp_dir("redis-tls", port), args, true)
    }

    /// Runs redis-server with `args` (beside the common ones) in `dir`, and waits until it
    /// accepts connections on `port`.
    fn spawn(port: u16, dir: PathBuf, args: Vec<String>, tls: bool) -> TestRedis {
        let mut redis = TestRedis {
            child: None,
            dir,
            args,
            port,
            tls,
        };
        redis.restart();
        redis
    }

    /// Starts the server again (after [`kill`](Self::kill)) on its port, with its directory
    /// (a cluster node finds its `nodes.conf` there) and arguments.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(server())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .env("LD_LIBRARY_PATH", library_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server now (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The arguments that make a server speak only TLS on `port`, with `ca`'s server certificate
/// (clients need not present one).
fn tls_args(ca: &TestCa, port: u16) -> Vec<String> {
    let file = |name: &str| ca.dir.join(name).display().to_string();
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &file("server.pem"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs the pinned `redis-cli` with `args` (after `connect`, e.g. its TLS arguments); its
/// standard output. Killed after [`READY_TIMEOUT`] (`--cluster create` waits for the nodes to
/// join for as long as it takes).
fn redis_cli(connect: &[String], args: &[&str]) -> String {
    use std::io::Read;
    let mut child = Command::new(root().join(".redis/usr/bin/redis-cli"))
        .args(connect)
        .args(args)
        .env("LD_LIBRARY_PATH", library_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-cli {args:?} did not finish within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    out
}

/// A Redis Cluster of three masters (no replicas), each on a free port whose cluster bus port
/// (port + 10000) is free too.
pub struct TestCluster {
    pub nodes: Vec<TestRedis>,
    /// What `redis-cli` needs to reach a node (its TLS arguments, for a TLS cluster).
    cli_connect: Vec<String>,
}

/// A port free on 127.0.0.1 whose cluster bus port is free as well.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= u16::MAX - 10_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    /// Three ports for [`start_on`](Self::start_on), each with its bus port free.
    pub fn free_ports() -> [u16; 3] {
        [(); 3].map(|()| free_cluster_port())
    }

    /// Starts three masters, joins them, and waits until every node says `cluster_state:ok`.
    pub fn start() -> TestCluster {
        Self::start_on(Self::free_ports())
    }

    /// [`start`](Self::start) on `ports` (to start it where its clients already expect it).
    pub fn start_on(ports: [u16; 3]) -> TestCluster {
        Self::start_with(ports, None)
    }

    /// [`start`](Self::start), with every node (and the cluster bus) speaking only TLS with a
    /// certificate `ca` signed.
    pub fn start_tls(ca: &TestCa) -> TestCluster {
        Self::start_with(Self::free_ports(), Some(ca))
    }

    fn start_with(ports: [u16; 3], ca: Option<&TestCa>) -> TestCluster {
        let nodes: Vec<TestRedis> = ports
            .into_iter()
            .map(|port| {
                let mut args = match ca {
                    Some(ca) => tls_args(ca, port),
                    None => vec!["--port".to_owned(), port.to_string()],
                };
                args.extend(["--cluster-enabled", "yes"].map(str::to_owned));
                if ca.is_some() {
                    args.extend(["--tls-cluster", "yes"].map(str::to_owned));
                }
                TestRedis::spawn(port, temp_dir("redis-cluster", port), args, ca.is_some())
            })
            .collect();
        let cli_connect = match ca {
            Some(ca) => vec![
                "--tls".to_owned(),
                "--cacert".to_owned(),
                ca.dir.join("ca.pem").display().to_string(),
            ],
            None => Vec::new(),
        };
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(&cli_connect, &create);
        let cluster = TestCluster { nodes, cli_connect };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        for node in &self.nodes {
            let port = node.port.to_string();
            while !redis_cli(&self.cli_connect, &["-p", &port, "cluster", "info"]).contains("cluster_state:ok") {
                assert!(started.elapsed() < READY_TIMEOUT, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The nodes' URLs, as `coordination.nodes` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }

    /// Empties every node's script cache (`SCRIPT FLUSH`), as a restarted server's is.
    pub fn flush_scripts(&self) {
        for n in &self.nodes {
            let answer = redis_cli(&self.cli_connect, &["-p", &n.port.to_string(), "script", "flush"]);
            assert_eq!(answer.trim(), "OK");
        }
    }

    /// How many keys each node holds, in the order of `nodes`.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                redis_cli(&self.cli_connect, &["-p", &n.port.to_string(), "dbsize"])
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A private certificate authority made with the `openssl` CLI, and a server certificate it
/// signed for 127.0.0.1 and localhost, in a temporary directory removed on drop. The
/// certificate serves as a client's too: a TLS cluster's nodes present it to each other on the
/// cluster bus, which always checks it.
pub struct TestCa {
    dir: PathBuf,
    /// The CA's certificate, PEM.
    pub ca_pem: Vec<u8>,
}

impl TestCa {
    pub fn make() -> TestCa {
        let dir = temp_dir("ca", free_port());
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=chatgpt-native test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
        TestCa { dir, ca_pem }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
