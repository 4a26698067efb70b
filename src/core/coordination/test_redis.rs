//! Throwaway redis-servers for the unit tests: the pinned one `scripts/redis.mjs` unpacks into
//! `.redis/` (run to install it when missing), on 127.0.0.1 on free ports, in temporary
//! directories, without persistence; killed when the handle is dropped (a failing test too).
//!
//! Three shapes: one server ([`TestRedis::start`]), one server speaking only TLS with a
//! certificate of a private CA made with the `openssl` CLI ([`TestRedis::start_tls`],
//! [`TestCa`]), and a 3-master Redis Cluster joined with `redis-cli --cluster create`
//! ([`TestCluster`]), whose nodes can be killed and restarted where they were.

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
        let file = |name: &str| ca.dir.join(name).display().to_string();
        let args = [
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
        .to_vec();
        let mut args = args;
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

/// Runs the pinned `redis-cli` with `args`; its standard output.
fn redis_cli(args: &[&str]) -> String {
    let output = Command::new(root().join(".redis/usr/bin/redis-cli"))
        .args(args)
        .env("LD_LIBRARY_PATH", library_path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Redis Cluster of three masters (no replicas), each on a free port whose cluster bus port
/// (port + 10000) is free too.
pub struct TestCluster {
    pub nodes: Vec<TestRedis>,
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
        let nodes: Vec<TestRedis> = ports
            .into_iter()
            .map(|port| {
                let args = ["--port", &port.to_string(), "--cluster-enabled", "yes"]
                    .map(str::to_owned)
                    .to_vec();
                TestRedis::spawn(port, temp_dir("redis-cluster", port), args, false)
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(&create);
        let cluster = TestCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        for node in &self.nodes {
            let port = node.port.to_string();
            while !redis_cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok") {
                assert!(started.elapsed() < READY_TIMEOUT, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The nodes' URLs, as `coordination.nodes` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }

    /// How many keys each node holds, in the order of `nodes`.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                redis_cli(&["-p", &n.port.to_string(), "dbsize"])
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A private certificate authority made with the `openssl` CLI, and a server certificate it
/// signed for 127.0.0.1 and localhost, in a temporary directory removed on drop.
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
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
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
