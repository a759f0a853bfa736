//! Zero-downtime upgrade and graceful stop, as an operator does them: a new
//! `tollgate serve --upgrade` takes the listening sockets over
//! `upgrade_sock` when the old process gets SIGQUIT; a stream the old
//! process is serving runs to its end, new requests reach the new process
//! without a refused connection, and the old process leaves as soon as its
//! last stream is done instead of sleeping out the grace period. SIGTERM
//! likewise lets open streams finish and exits at once when nothing is in
//! flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, free_port, start_mock, TempDir, KEY};
use serde_json::json;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &std::path::Path, upgrade: bool) -> Gateway {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["serve", "--config"]).arg(config).env("RUST_LOG", "warn").stdout(Stdio::null());
    if upgrade {
        cmd.arg("--upgrade");
    }
    Gateway(cmd.spawn().unwrap())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The part of a request id that names the process: its last 8 hex
/// digits (see `proxy::context`).
fn process_of(request_id: &str) -> String {
    request_id[request_id.len().saturating_sub(8)..].to_string()
}

/// A running mock and a config for one gateway on a free port.
struct Setup {
    _mock: Gateway,
    dir: TempDir,
    config: std::path::PathBuf,
    port: u16,
}

fn setup() -> Setup {
    let (mock, mock_child) = start_mock();
    let dir = TempDir::new();
    let (port, metrics_port) = (free_port(), free_port());
    let sock = dir.0.join("upgrade.sock");
    let config = dir.0.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server:
  threads: 2
  upgrade_sock: "{sock}"
  pid_file: "{pid}"
  grace_period_seconds: 60
  graceful_shutdown_timeout_seconds: 5
  keepalive_timeout_seconds: 2
listeners: [{{ address: "127.0.0.1:{port}" }}]
metrics: {{ address: "127.0.0.1:{metrics_port}" }}
providers:
  - {{ name: openai, kind: openai, base_url: "{mock}/openai/v1", api_keys: ["k"], forward_headers: ["x-mock-*"] }}
models:
  - {{ id: openai/gpt-5.5, aliases: [gpt-5.5], provider: openai }}
mounts:
  - {{ prefix: /, formats: [openai, anthropic] }}
keys:
  - {{ name: test, key: "{KEY}" }}
"#,
            sock = sock.display(),
            pid = dir.0.join("tollgate.pid").display(),
        ),
    )
    .unwrap();
    Setup { _mock: Gateway(mock_child), dir, config, port }
}

/// A chat stream of `deltas` deltas, `gap_ms` apart.
async fn slow_stream(url: &str, deltas: u32, gap_ms: u32) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(KEY)
        .header("x-mock-chunks", deltas.to_string())
        .header("x-mock-chunk-delay-ms", gap_ms.to_string())
        .json(&json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

/// Reads a chat stream to its end; the number of deltas it carried.
async fn read_to_end(mut stream: reqwest::Response, mut body: String) -> usize {
    while let Some(chunk) = stream.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    common::sse_events(&body)
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect::<String>()
        .split_whitespace()
        .count()
}

#[tokio::test]
async fn an_upgrade_keeps_open_streams_and_serves_new_requests() {
    let Setup { config, port, dir, .. } = &setup();
    let sock = dir.0.join("upgrade.sock");
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let mut old = serve(config, false);
    wait_until("the first process", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());

    // 20 deltas 500 ms apart: about 10 s, across the upgrade and past
    // Pingora's 5 s pause between handing the sockets over and draining.
    let mut stream = slow_stream(&url, 20, 500).await;
    let old_process = process_of(stream.headers()["x-request-id"].to_str().unwrap());
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();

    // The new process waits on the socket for the listeners; the old one
    // hands them over on SIGQUIT, then drains.
    let _new = serve(config, true);
    wait_until("the new process to wait on the upgrade socket", || sock.exists());
    signal(&old, "QUIT");

    // New requests, on new connections, while the old stream goes on: none
    // is refused, and soon they are the new process's.
    let mut served_by_new = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_by_new && Instant::now() < deadline {
        let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let r = fresh
            .post(&url)
            .bearer_auth(KEY)
            .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("a request during the upgrade failed: {e}"));
        assert_eq!(r.status(), 200);
        served_by_new = process_of(r.headers()["x-request-id"].to_str().unwrap()) != old_process;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_by_new, "the new process never answered");

    assert_eq!(read_to_end(stream, first).await, 20, "the stream lost deltas");
    // The old process leaves once its stream is done and the caller's
    // kept-alive connection has idled out (2 s), not after the 60 s grace period.
    let done = Instant::now();
    wait_until("the old process to exit", || old.0.try_wait().unwrap().is_some());
    assert!(done.elapsed() < Duration::from_secs(5), "the old process lingered {:?}", done.elapsed());
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_then_exits() {
    let Setup { config, port, .. } = &setup();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");

    // Idle: out at once, though the grace period is 60 s.
    let mut idle = serve(config, false);
    wait_until("the gateway", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    signal(&idle, "TERM");
    let asked = Instant::now();
    wait_until("an idle gateway to exit", || idle.0.try_wait().unwrap().is_some());
    assert!(asked.elapsed() < Duration::from_secs(3), "an idle gateway took {:?}", asked.elapsed());

    // Busy: the stream runs to its end, then the process leaves.
    let mut busy = serve(config, false);
    wait_until("the gateway", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    let mut stream = slow_stream(&url, 8, 500).await;
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    signal(&busy, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(busy.0.try_wait().unwrap().is_none(), "exited with a stream in flight");
    assert_eq!(read_to_end(stream, first).await, 8, "the stream lost deltas");
    let done = Instant::now();
    wait_until("the gateway to exit", || busy.0.try_wait().unwrap().is_some());
    assert!(done.elapsed() < Duration::from_secs(3), "it lingered {:?}", done.elapsed());
}

/// What a wrk-like load saw: answers, requests sent and never answered,
/// and connections refused (a node that stopped listening).
#[derive(Debug, Default)]
struct Report {
    answered: usize,
    lost: usize,
    refused: usize,
    processes: std::collections::BTreeSet<String>,
}

/// `connections` keep-alive connections, each sending its next request as
/// soon as the last answer is in, until `stop`; a connection the server
/// asks to close (`Connection: close`) is replaced by a new one.
fn load(port: u16, connections: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Report>> {
    (0..connections)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut report = Report::default();
                let body = r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}"#;
                let request = format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        report.refused += 1;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                    while !stop.load(Ordering::Relaxed) {
                        if conn.write_all(request.as_bytes()).is_err() {
                            report.lost += 1;
                            break;
                        }
                        match read_answer(&mut reader) {
                            Some((id, close)) => {
                                report.answered += 1;
                                report.processes.insert(process_of(&id));
                                if close {
                                    break;
                                }
                            }
                            None => {
                                report.lost += 1;
                                break;
                            }
                        }
                    }
                }
                report
            })
        })
        .collect()
}

/// One HTTP/1.1 answer: its request id and whether it closes the connection.
fn read_answer(reader: &mut impl std::io::BufRead) -> Option<(String, bool)> {
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    if !status.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (mut length, mut close, mut id) = (0usize, false, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        } else if line == "connection: close" {
            close = true;
        } else if let Some(v) = line.strip_prefix("x-request-id:") {
            id = v.trim().to_string();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((id, close))
}

fn total(handles: Vec<std::thread::JoinHandle<Report>>) -> Report {
    let mut all = Report::default();
    for h in handles {
        let r = h.join().unwrap();
        all.answered += r.answered;
        all.lost += r.lost;
        all.refused += r.refused;
        all.processes.extend(r.processes);
    }
    all
}

#[tokio::test]
async fn an_upgrade_under_load_loses_no_request() {
    let Setup { config, port, dir, .. } = &setup();
    let sock = dir.0.join("upgrade.sock");
    let mut old = serve(config, false);
    wait_until("the first process", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(*port, 16, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _new = serve(config, true);
    wait_until("the new process to wait on the upgrade socket", || sock.exists());
    signal(&old, "QUIT");
    // Pingora hands the sockets over, serves 5 s more, then drains.
    wait_until("the old process to exit", || old.0.try_wait().unwrap().is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let report = total(handles);
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.refused, 0, "a listener was always there: {report:?}");
    assert!(report.answered > 1000, "{report:?}");
    assert!(report.processes.len() >= 2, "both processes answered: {report:?}");
}

#[tokio::test]
async fn a_sigterm_under_load_loses_no_request() {
    let Setup { config, port, .. } = &setup();
    let mut gateway = serve(config, false);
    wait_until("the gateway", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(*port, 16, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&gateway, "TERM");
    wait_until("the gateway to exit", || gateway.0.try_wait().unwrap().is_some());
    stop.store(true, Ordering::Relaxed);
    let report = total(handles);
    // Connections refused once it stopped listening are no lost request:
    // behind DNS they go to another node.
    assert_eq!(report.lost, 0, "{report:?}");
    assert!(report.answered > 500, "{report:?}");
}

fn signal(gateway: &Gateway, name: &str) {
    let pid = gateway.0.id().to_string();
    assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}
