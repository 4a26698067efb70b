//! A throwaway redis-server for the unit tests: the pinned one `scripts/redis.mjs` unpacks into
//! `.redis/` (run to install it when missing), on 127.0.0.1 on a free port, in a temporary
//! directory, without persistence; killed when the handle is dropped (a failing test too).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct TestRedis {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
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

impl TestRedis {
    /// Starts a server on a free port.
    pub fn start() -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port)
    }

    /// Starts a server on `port` (to restart one where its clients expect it).
    pub fn start_on(port: u16) -> TestRedis {
        Self::start_with(port, None)
    }

    /// Starts a server on `port` that requires `password` when given.
    pub fn start_with(port: u16, password: Option<&str>) -> TestRedis {
        let dir = std::env::temp_dir().join(format!("chatgpt-native-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(server())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(password.map(|p| ["--requirepass", p]).into_iter().flatten())
            .env("LD_LIBRARY_PATH", library_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = TestRedis {
            child: Some(child),
            dir,
            port,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
