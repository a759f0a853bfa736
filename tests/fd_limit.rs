//! A node out of file descriptors says so: the caller gets a 503 that
//! is the gateway's own (not "upstream unavailable"), the log names "too
//! many open files", and the metrics count accept and connect failures
//! by cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, repo, start_mock, Guard, TempDir, KEY};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: usize = 96;

#[test]
fn running_out_of_file_descriptors_is_reported_as_such() {
    let dir = TempDir::new();
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let (port, metrics_port) = (free_port(), free_port());
    let log = dir.0.join("gateway.log");
    // The hard limit is the cap: raising the soft limit cannot pass it.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {LIMIT} && exec \"$0\" serve --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .arg(repo().join("conf/demo.yaml"))
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("TOLLGATE_MOCK_URL", &mock)
        .env("TOLLGATE_DEMO_KEY", KEY)
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_DB", dir.0.join("t.db"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _gateway = Guard(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first connection is accepted while descriptors remain; the rest
    // fill the node's table (and then its accept queue).
    let mut first = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut held = Vec::new();
    for _ in 0..LIMIT * 2 {
        if let Ok(s) = TcpStream::connect(&addr) {
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let body = r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        first,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = first.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("gateway_overloaded"), "{answer}");
    assert!(!answer.contains("upstream_unavailable"), "{answer}");
    drop(held);
    std::thread::sleep(Duration::from_millis(1500));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("too many open files"), "{text}");
    let mut metrics = TcpStream::connect(format!("127.0.0.1:{metrics_port}")).unwrap();
    metrics.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut scrape = String::new();
    let _ = metrics.read_to_string(&mut scrape);
    assert!(
        scrape.contains(
            "tollgate_upstream_connect_errors_total{cause=\"too_many_open_files\",provider=\"openai\"}"
        ),
        "{scrape}"
    );
    assert!(scrape.contains("tollgate_accept_errors_total{cause=\"too_many_open_files\"}"), "{scrape}");
}
