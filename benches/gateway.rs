//! End-to-end cost of the gateway, in one run, on this machine:
//! the same requests sent (1) straight to the mock upstream, (2) through a
//! bare Pingora `ProxyHttp` pass-through (the physical limit of any Pingora
//! proxy), and (3) through Tollgate on conf/demo.yaml.
//!
//! Reports added latency p50/p99 at concurrency 1, requests per second at
//! saturation, and streaming time to first byte, as ratios.
//!
//!   cargo bench --bench gateway            (BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_SAMPLES tune it;
//!                                          BENCH_CONFIG names another configuration)
//!
//! The bare proxy lives here too: this binary runs it when started with
//! `--bare-proxy LISTEN UPSTREAM`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, run_bare_proxy, spawn_mock, tollgate_command, wait_for, Procs};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const KEY: &str = "sk-bench";

struct Target {
    name: &'static str,
    url: String,
    stream_url: String,
}

fn body(stream: bool) -> String {
    let history: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"role":"user","content":"message {i} {}"}}"#, "lorem ipsum ".repeat(8)))
        .collect();
    format!(r#"{{"model":"gpt-5.5","stream":{stream},"messages":[{}]}}"#, history.join(","))
}

fn post(client: &reqwest::Client, url: &str, body: &str) -> reqwest::RequestBuilder {
    client.post(url).bearer_auth(KEY).header("content-type", "application/json").body(body.to_string())
}

async fn one(client: &reqwest::Client, url: &str, body: &str) -> Duration {
    let start = Instant::now();
    let r = post(client, url, body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap();
    start.elapsed()
}

async fn first_byte(client: &reqwest::Client, url: &str, body: &str) -> Duration {
    let start = Instant::now();
    let mut r = post(client, url, body).send().await.unwrap();
    let _ = r.chunk().await.unwrap();
    let t = start.elapsed();
    while r.chunk().await.unwrap().is_some() {}
    t
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Result_ {
    p50: Duration,
    p99: Duration,
    rps: f64,
    ttfb_p50: Duration,
}

/// Latency and time to first byte, with the targets' samples interleaved
/// (direct, bare, tollgate, direct, ...) so that whatever else the machine
/// does at a moment weighs on every target alike.
async fn sequential(targets: &[Target], samples: u64) -> Vec<(Duration, Duration, Duration)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let (whole, streaming) = (body(false), body(true));
    for t in targets {
        for _ in 0..200 {
            one(&client, &t.url, &whole).await;
        }
    }
    let mut lat = vec![Vec::new(); targets.len()];
    let mut ttfb = vec![Vec::new(); targets.len()];
    for i in 0..samples {
        for (n, t) in targets.iter().enumerate() {
            lat[n].push(one(&client, &t.url, &whole).await);
            if i % 2 == 0 {
                ttfb[n].push(first_byte(&client, &t.stream_url, &streaming).await);
            }
        }
    }
    lat.iter_mut()
        .zip(ttfb.iter_mut())
        .map(|(lat, ttfb)| {
            lat.sort();
            ttfb.sort();
            (percentile(lat, 0.5), percentile(lat, 0.99), percentile(ttfb, 0.5))
        })
        .collect()
}

/// Requests per second at saturation, one target at a time.
async fn saturation(t: &Target, seconds: u64, concurrency: u64) -> f64 {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let whole = body(false);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, done) = (client.clone(), t.url.clone(), whole.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                one(&client, &url, &body).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn measure(targets: &[Target], samples: u64, seconds: u64, concurrency: u64) -> Vec<Result_> {
    let latencies = sequential(targets, samples).await;
    let mut results = Vec::new();
    for (t, (p50, p99, ttfb_p50)) in targets.iter().zip(latencies) {
        results.push(Result_ { p50, p99, rps: saturation(t, seconds, concurrency).await, ttfb_p50 });
    }
    results
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--bare-proxy" {
        run_bare_proxy(&args[2], &args[3]);
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks benches to list themselves
    }
    let samples = env_or("BENCH_SAMPLES", 2000);
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);

    let (mock_port, bare_port, gw_port, metrics_port) = (free_port(), free_port(), free_port(), free_port());
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_mock(mock_port));
    procs.0.push(
        Command::new(std::env::current_exe().unwrap())
            .args(["--bare-proxy", &format!("127.0.0.1:{bare_port}"), &format!("127.0.0.1:{mock_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // BENCH_CONFIG: another configuration (one without accounts bills nothing).
    let config = std::env::var("BENCH_CONFIG")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.yaml").to_string());
    procs.0.push(
        tollgate_command(&config, gw_port, metrics_port, mock_port)
            .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .spawn()
            .unwrap(),
    );
    wait_for(bare_port);
    wait_for(gw_port);

    let path = "/openai/v1/chat/completions";
    let targets = [
        Target {
            name: "direct",
            url: format!("http://127.0.0.1:{mock_port}{path}"),
            stream_url: format!("http://127.0.0.1:{mock_port}{path}"),
        },
        Target {
            name: "bare pingora",
            url: format!("http://127.0.0.1:{bare_port}{path}"),
            stream_url: format!("http://127.0.0.1:{bare_port}{path}"),
        },
        Target {
            name: "tollgate",
            url: format!("http://127.0.0.1:{gw_port}/v1/chat/completions"),
            stream_url: format!("http://127.0.0.1:{gw_port}/v1/chat/completions"),
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "gateway bench: {samples} sequential samples per target (interleaved), {seconds}s at concurrency {concurrency}, body {} bytes",
        body(false).len()
    );
    let results = rt.block_on(measure(&targets, samples, seconds, concurrency));
    println!("{:<14} {:>10} {:>10} {:>12} {:>12}", "target", "p50 µs", "p99 µs", "req/s", "ttfb p50 µs");
    for (t, r) in targets.iter().zip(&results) {
        println!(
            "{:<14} {:>10.1} {:>10.1} {:>12.0} {:>12.1}",
            t.name,
            us(r.p50),
            us(r.p99),
            r.rps,
            us(r.ttfb_p50)
        );
    }
    let (direct, bare, gw) = (&results[0], &results[1], &results[2]);
    println!();
    println!(
        "added p50 over direct:   bare {:+.1} µs, tollgate {:+.1} µs",
        us(bare.p50) - us(direct.p50),
        us(gw.p50) - us(direct.p50)
    );
    println!(
        "added p99 over direct:   bare {:+.1} µs, tollgate {:+.1} µs",
        us(bare.p99) - us(direct.p99),
        us(gw.p99) - us(direct.p99)
    );
    println!("tollgate p50 minus bare pingora p50: {:+.1} µs", us(gw.p50) - us(bare.p50));
    println!(
        "throughput ratio tollgate / bare pingora: {:.2}x   (tollgate / direct: {:.2}x)",
        gw.rps / bare.rps,
        gw.rps / direct.rps
    );
    println!(
        "stream ttfb ratio tollgate / bare pingora: {:.2}x   (tollgate ttfb minus bare: {:+.1} µs)",
        us(gw.ttfb_p50) / us(bare.ttfb_p50),
        us(gw.ttfb_p50) - us(bare.ttfb_p50)
    );
}
