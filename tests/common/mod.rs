//! Starts the real `tollgate` and `tollgate-mock` binaries on free ports
//! for a test, and stops them when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "sk-tollgate-test";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    pub gateway: String,
    pub metrics: String,
    pub mock: String,
    _procs: Vec<Proc>,
    _dir: Option<TempDir>,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tollgate-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = url.trim_start_matches("http://").trim_start_matches("https://");
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{url} did not come up");
}

pub fn start_mock() -> (String, Child) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&url);
    (url, child)
}

impl Stack {
    /// The mock and the gateway on `conf/demo.yaml`, with the test key.
    pub fn demo() -> Self {
        Self::with_config(&repo().join("conf/demo.yaml"), None, &[])
    }

    /// The mock and the gateway on `extra` appended to a test config.
    pub fn custom(yaml: &str) -> Self {
        let dir = TempDir::new();
        let path = dir.0.join("tollgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::with_config(&path, Some(dir), &[])
    }

    pub fn with_config(config: &Path, dir: Option<TempDir>, env: &[(&str, &str)]) -> Self {
        let (mock, mock_child) = start_mock();
        let port = free_port();
        let metrics_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("TOLLGATE_MOCK_URL", &mock)
            .env("TOLLGATE_DEMO_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let gateway = format!("http://127.0.0.1:{port}");
        wait_for(&gateway);
        Self {
            gateway,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            mock,
            _procs: vec![Proc(child), Proc(mock_child)],
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// What the mock received with `x-mock-tag: tag`.
    pub async fn received(&self, tag: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/_mock/requests?tag={tag}", self.mock);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics)).await.unwrap().text().await.unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A unique tag per call, to find one's own requests in the mock's journal.
pub fn tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Events of an SSE body, as (event name, data).
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_string());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}
