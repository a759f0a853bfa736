//! Memory per open stream: N chat streams held open (the mock sends the
//! head and a first event, then stays silent) through a bare Pingora
//! pass-through and through Tollgate (billed, every limit of the plan on),
//! one proxy at a time; the proxy's resident memory (VmRSS) before and
//! after, per stream.
//!
//!   cargo bench --bench stream_memory          (STREAMS=2000,10000 tunes it;
//!                                               STREAM_CONFIG=unbilled.yaml runs
//!                                               Tollgate without billing or limits)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, run_bare_proxy, spawn_mock, tollgate_command, wait_for, write_bench_configs, Procs};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-bench";

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens `n` streams to `port` at `path`; returns them once each has its
/// first event.
async fn open_streams(port: u16, path: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let body = r#"{"model":"gpt-5.5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\n\
         x-mock-chunks: 2\r\nx-mock-chunk-delay-ms: 600000\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut open = Vec::with_capacity(n);
    for batch in (0..n).collect::<Vec<_>>().chunks(200) {
        let tasks = batch.iter().map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.write_all(request.as_bytes()).await.unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("data: ") {
                    let got = s.read(&mut buf).await.unwrap();
                    assert!(got > 0, "closed: {}", String::from_utf8_lossy(&seen));
                    seen.extend_from_slice(&buf[..got]);
                }
                s
            })
        });
        for t in futures_util::future::join_all(tasks).await {
            open.push(t.unwrap());
        }
    }
    open
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--bare-proxy" {
        run_bare_proxy(&args[2], &args[3]);
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let counts: Vec<usize> = std::env::var("STREAMS")
        .unwrap_or_else(|_| "2000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let dir = std::env::temp_dir().join(format!("tollgate-stream-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tollgate.yaml");
    // Billed, with every limit of the plan on (benches/configs.py): each
    // stream holds its hold, its concurrency slot and its limits' permit.
    write_bench_configs(&dir);
    let chosen = std::env::var("STREAM_CONFIG").unwrap_or_else(|_| "limits.yaml".into());
    let demo = std::fs::read_to_string(dir.join(chosen)).unwrap();
    std::fs::write(
        &config,
        demo.replace(
            "server:\n  threads: 2",
            "server:\n  threads: 2\n  max_connections_per_address: 0\n  keepalive_timeout_seconds: 600",
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| streams | proxy | RSS before (KB) | RSS after (KB) | KB per stream |");
    println!("|---|---|---|---|---|");
    for &n in &counts {
        let mut per_stream = Vec::new();
        for name in ["bare pingora", "tollgate"] {
            let (mock_port, port, metrics_port) = (free_port(), free_port(), free_port());
            let mut procs = Procs(Vec::new());
            procs.0.push(spawn_mock(mock_port));
            let (child, path) = if name == "tollgate" {
                let child = tollgate_command(&config.to_string_lossy(), port, metrics_port, mock_port)
                    .env("RUST_LOG", "warn")
                    .spawn()
                    .unwrap();
                (child, "/v1/chat/completions")
            } else {
                let child = Command::new(std::env::current_exe().unwrap())
                    .args(["--bare-proxy", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{mock_port}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                (child, "/openai/v1/chat/completions")
            };
            let pid = child.id();
            procs.0.push(child);
            wait_for(port);
            // Warm up: runtimes, pools and allocator arenas exist before the count.
            drop(rt.block_on(open_streams(port, path, 200)));
            std::thread::sleep(Duration::from_millis(500));
            let before = rss_kb(pid);
            let streams = rt.block_on(open_streams(port, path, n));
            std::thread::sleep(Duration::from_millis(1000));
            let after = rss_kb(pid);
            let kb = (after.saturating_sub(before)) as f64 / n as f64;
            println!("| {n} | {name} | {before} | {after} | {kb:.1} |");
            per_stream.push(kb);
            drop(streams);
        }
        println!("| {n} | tollgate / bare | | | {:.3}x |", per_stream[1] / per_stream[0]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
