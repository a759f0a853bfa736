//! A Redis for tests, shared by the unit tests (`hot::testing`) and the
//! integration tests (`tests/common/redis.rs` includes this file). With
//! `TOLLGATE_TEST_REDIS_URL` set, that server (and no restarts); otherwise
//! a private `redis-server` on a free port, without persistence, in a
//! temporary directory, killed with its value. A missing `redis-server`
//! fails the test, saying how to install it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const MISSING: &str = "redis-server is needed by the hot-state tests and was not found on PATH. \
     Install it with `bash scripts/setup.sh` (Debian: `apt-get install redis-server`), or set \
     TOLLGATE_TEST_REDIS_URL to a server the tests may write to (redis://host:port/).";

pub struct RedisServer {
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// A one-node Redis Cluster (every slot), where keys of two slots in
    /// one script fail with CROSSSLOT.
    cluster: bool,
}

impl RedisServer {
    /// A server of its own for one test (or the environment's).
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("TOLLGATE_TEST_REDIS_URL") {
            if !url.is_empty() {
                return Self { url, port: 0, dir: PathBuf::new(), child: None, cluster: false };
            }
        }
        Self::private(false)
    }

    /// A private one-node Cluster holding every slot (never the
    /// environment's server).
    pub fn start_cluster() -> Self {
        let server = Self::private(true);
        let port = server.port.to_string();
        let out =
            Command::new("redis-cli").args(["-p", &port, "cluster", "addslotsrange", "0", "16383"]).output();
        let said = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
        assert_eq!(said, "OK", "redis-cli cluster addslotsrange");
        let mut info = String::new();
        for _ in 0..200 {
            let out = Command::new("redis-cli").args(["-p", &port, "cluster", "info"]).output();
            info = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
            if info.contains("cluster_state:ok") {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the one-node cluster did not reach cluster_state:ok in 10 s: {info}");
    }

    fn private(cluster: bool) -> Self {
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("tollgate-redis-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut server = Self { url: String::new(), port: 0, dir, child: None, cluster };
        let mut last = String::new();
        // A free port may be taken by another test before the server binds it.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("a free port: {e}"));
            server.port = port;
            server.url = format!("redis://127.0.0.1:{port}/");
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"]).arg(self.dir.join("nodes.conf"));
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => return Err(format!("redis-server: {e}")),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not answer in 2 s".into())
    }

    /// Stops the server; its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no script, no keys).
    pub fn restart(&mut self) {
        assert!(self.port != 0, "TOLLGATE_TEST_REDIS_URL is set: this test restarts its own Redis");
        self.stop();
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server did not restart: {last}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if self.port != 0 {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
