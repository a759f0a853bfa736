//! Starts the real `tollgate` and `tollgate-mock` binaries on free ports
//! for a test, and stops them when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod money;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "sk-tollgate-test";

/// A port nothing listens on, never one this process handed out before:
/// the tests of one binary run at once, and a probe's port is free again
/// as soon as the probe closes, before the server given it binds (two
/// servers then race for it, and a test talks to the wrong one). It is
/// drawn below the kernel's range of ephemeral ports, which the kernel
/// hands to every outgoing connection without asking: a port from that
/// range (what binding port 0 gives) can become some connection's source
/// port in that gap, and the server then cannot bind it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let (low, high) = below_ephemeral_ports();
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = std::collections::hash_map::RandomState::new();
    let mut attempt = 0_u64;
    loop {
        attempt += 1;
        let port = if low < high {
            let draw = std::hash::BuildHasher::hash_one(&seed, attempt);
            low + u16::try_from(draw % u64::from(high - low)).unwrap()
        } else {
            // No room below the range: what the kernel offers.
            TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        };
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// The ports the tests draw from: up to 10,000 just below the kernel's
/// ephemeral range (32768-60999 unless the machine says otherwise).
fn below_ephemeral_ports() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let first: u16 = range.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(32768);
    (first.saturating_sub(10_000).max(10_000), first)
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
    /// The admin API (token `tollgate-admin-demo` on the demo config).
    pub admin: String,
    /// The gateway's SQLite file.
    pub db: PathBuf,
    pub metrics: String,
    pub mock: String,
    /// Where the gateway's stderr (its logs) goes, when asked for.
    pub log: Option<PathBuf>,
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

/// A gateway process on `config` with its store at `db` (processes may
/// share one, as an upgrade's do), its log appended to `log` at `info`, or
/// dropped at `warn`: its proxy and admin URLs once both listen, and the
/// process (the caller stops it).
pub fn serve_on_store(config: &Path, mock: &str, db: &Path, log: Option<&Path>) -> (String, String, Child) {
    serve_on_store_under(&[], config, mock, db, log)
}

/// The same, the gateway started by `wrapper` (a program and its
/// arguments, the gateway's command line after them), when not empty.
pub fn serve_on_store_under(
    wrapper: &[&str],
    config: &Path,
    mock: &str,
    db: &Path,
    log: Option<&Path>,
) -> (String, String, Child) {
    let (port, admin_port, metrics_port) = (free_port(), free_port(), free_port());
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(env!("CARGO_BIN_EXE_tollgate"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_tollgate")),
    };
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("TOLLGATE_MOCK_URL", mock)
        .env("TOLLGATE_DEMO_KEY", KEY)
        .env("TOLLGATE_DB", db)
        .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
        .stdout(Stdio::null());
    if let Some(log) = log {
        cmd.stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap());
    }
    let child = cmd.spawn().unwrap();
    let (url, admin) = (format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{admin_port}"));
    wait_for(&url);
    wait_for(&admin);
    (url, admin, child)
}

pub fn wait_for(url: &str) {
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
    let (port, child) = start_mock_with(&[]);
    (format!("http://127.0.0.1:{port}"), child)
}

/// The mock with more arguments (TLS, ALPN); its port. A free port can
/// be taken before the mock binds it (the kernel hands the same range to
/// outgoing connections as their own ports): the mock then exits, and
/// is started again on another.
pub fn start_mock_with(args: &[&str]) -> (u16, Child) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        if listens(&mut child, &format!("127.0.0.1:{port}")) {
            return (port, child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("the mock found no port to listen on");
}

/// Whether `child` is up and listening on `addr` (false once it exited).
fn listens(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            // What answered may be another process on a port taken
            // before the mock's bind: the mock has then exited.
            std::thread::sleep(Duration::from_millis(30));
            return child.try_wait().ok().flatten().is_none();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process killed when this is dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

    /// [`Stack::demo`] with the gateway's logs (at `info`) kept in a file.
    pub fn demo_logged() -> Self {
        Self::demo_logged_at("info")
    }

    /// [`Stack::demo_logged`] with `RUST_LOG` set to `level`.
    pub fn demo_logged_at(level: &str) -> Self {
        let dir = TempDir::new();
        let log = dir.0.join("gateway.log");
        let mut stack =
            Self::launch(&repo().join("conf/demo.yaml"), Some(dir), &[("RUST_LOG", level)], Some(&log));
        stack.log = Some(log);
        stack
    }

    /// The log once `ready` holds of it (the logging hook runs after the
    /// response is out), or as it is after 5 s.
    pub async fn log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log_text();
            if ready(&log) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every whole line the gateway logged so far: a line still being
    /// written (read between two of its writes) is left for the next read.
    pub fn log_text(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.log.as_ref().expect("a logged stack")).unwrap_or_default();
        text.truncate(text.rfind('\n').map_or(0, |end| end + 1));
        text
    }

    pub fn with_config(config: &Path, dir: Option<TempDir>, env: &[(&str, &str)]) -> Self {
        Self::launch(config, dir, env, None)
    }

    /// As [`Stack::custom`], with the gateway's logs kept in a file.
    pub fn custom_logged(yaml: &str) -> Self {
        let dir = TempDir::new();
        let path = dir.0.join("tollgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let log = dir.0.join("gateway.log");
        let mut stack = Self::launch(&path, Some(dir), &[("RUST_LOG", "info")], Some(&log));
        stack.log = Some(log);
        stack
    }

    fn launch(config: &Path, dir: Option<TempDir>, env: &[(&str, &str)], log: Option<&Path>) -> Self {
        let (mock, mock_child) = start_mock();
        let port = free_port();
        let metrics_port = free_port();
        let admin_port = free_port();
        let dir = Some(dir.unwrap_or_else(TempDir::new));
        let db = dir.as_ref().unwrap().0.join("tollgate.db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("TOLLGATE_MOCK_URL", &mock)
            .env("TOLLGATE_DEMO_KEY", KEY)
            .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("TOLLGATE_DB", &db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(log) = log {
            cmd.stderr(std::fs::File::create(log).unwrap());
        }
        let child = cmd.spawn().unwrap();
        let gateway = format!("http://127.0.0.1:{port}");
        wait_for(&gateway);
        // The admin listener is a service of its own, up a moment apart
        // from the proxy's: a test's first admin call must not race it.
        if std::fs::read_to_string(config).is_ok_and(|c| c.contains("\nadmin:")) {
            wait_for(&format!("127.0.0.1:{admin_port}"));
        }
        Self {
            gateway,
            admin: format!("http://127.0.0.1:{admin_port}"),
            db,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            mock,
            log: None,
            _procs: vec![Proc(child), Proc(mock_child)],
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// The gateway's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self._procs[0].0.id()
    }

    /// What the mock received with `x-mock-tag: tag`.
    pub async fn received(&self, tag: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/_mock/requests?tag={tag}", self.mock);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        // The metrics listener is a service of its own, up a moment apart
        // from the proxy's (a first scrape raced it under CI's load).
        wait_for(&self.metrics);
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

/// One model call in a client format, as the official SDKs send it.
pub struct Call {
    pub path: String,
    pub auth: (&'static str, String),
    pub body: serde_json::Value,
}

/// A call to `model` in `format` (`openai`, `responses`, `anthropic`, `gemini`).
pub fn call(format: &str, model: &str, stream: bool, text: &str) -> Call {
    use serde_json::json;
    let bearer = ("authorization", format!("Bearer {KEY}"));
    match format {
        "openai" => Call {
            path: "/v1/chat/completions".into(),
            auth: bearer,
            body: json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}),
        },
        "responses" => Call {
            path: "/v1/responses".into(),
            auth: bearer,
            body: json!({"model": model, "stream": stream, "input": text}),
        },
        "anthropic" => Call {
            path: "/v1/messages".into(),
            auth: ("x-api-key", KEY.to_string()),
            body: json!({"model": model, "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": text}]}),
        },
        "gemini" => Call {
            path: if stream {
                format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
            } else {
                format!("/v1beta/models/{model}:generateContent")
            },
            auth: ("x-goog-api-key", KEY.to_string()),
            body: json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        },
        other => panic!("no such format {other}"),
    }
}

/// Every client format against a model of its own kind and a translated one.
pub const ROUTES: [(&str, &str); 8] = [
    ("openai", "gpt-5.5"),
    ("responses", "gpt-5.5"),
    ("anthropic", "claude-sonnet-4-6"),
    ("gemini", "gemini-3-flash-preview"),
    ("openai", "claude-sonnet-4-6"),
    ("responses", "gemini-3-flash-preview"),
    ("anthropic", "gpt-5.5"),
    ("gemini", "claude-sonnet-4-6"),
];

impl Stack {
    /// Sends `call` with extra headers.
    pub async fn send(&self, call: &Call, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = client().post(self.url(&call.path)).header(call.auth.0, &call.auth.1).json(&call.body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// The sum of a counter over all its label sets.
    pub async fn counter(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
