//! End-to-end cost of the gateway, in one run, on this machine:
//! the same requests sent (1) straight to the mock upstream, (2) through a
//! bare Pingora `ProxyHttp` pass-through (the physical limit of any Pingora
//! proxy), and (3) through Tollgate on conf/demo.yaml with every limit of
//! its plan on, and (4) through Tollgate unbilled (benches/configs.py).
//!
//! Reports added latency p50/p99 at concurrency 1, requests per second at
//! saturation (in slices taken in turn, BENCH_SLICES, one a second), and
//! streaming time to first byte, as ratios; the whole
//! measure is repeated (BENCH_ROUNDS, 2), so the configurations alternate.
//!
//!   cargo bench --bench gateway            (BENCH_SECONDS, BENCH_SLICES, BENCH_CONCURRENCY, BENCH_SAMPLES, BENCH_ROUNDS
//!                                          tune it; BENCH_CONFIG names the configurations to run instead,
//!                                          separated by `:`, each named after its file)
//!
//! BENCH_BASELINE_BIN=/path/to/an/older/tollgate (several, separated by
//! `:`) runs those binaries too, on the same configurations, as further
//! targets of the same rounds, each named after its file: an A/B of
//! builds in one run, where the machine's drift between runs cannot pass
//! for a change (copy `target/release/tollgate` aside, named after its
//! commit, before building the next).
//!
//! The bare proxy lives here too: this binary runs it when started with
//! `--bare-proxy LISTEN UPSTREAM`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    free_port, run_bare_proxy, spawn_mock, tollgate_command_of, wait_for, write_bench_configs, Procs,
};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const KEY: &str = "sk-bench";

#[derive(Clone)]
struct Target {
    name: String,
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
    /// p90, p99.9 and the slowest: the shape of the tail.
    tail: [Duration; 3],
    rps: f64,
    ttfb_p50: Duration,
}

/// Latency and time to first byte, with the targets' samples interleaved
/// (direct, bare, tollgate, direct, ...) so that whatever else the machine
/// does at a moment weighs on every target alike.
async fn sequential(targets: &[Target], samples: u64) -> Vec<(Duration, Duration, Duration, [Duration; 3])> {
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
            let tail = [percentile(lat, 0.9), percentile(lat, 0.999), percentile(lat, 1.0)];
            (percentile(lat, 0.5), percentile(lat, 0.99), percentile(ttfb, 0.5), tail)
        })
        .collect()
}

/// Requests sent at `concurrency` to `url` for `time`, and the time they
/// took (the last ones end after the deadline).
async fn saturate(client: &reqwest::Client, url: &str, time: Duration, concurrency: u64) -> (u64, Duration) {
    let whole = body(false);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + time;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, done) = (client.clone(), url.to_string(), whole.clone(), done.clone());
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
    (done.load(Ordering::Relaxed), started.elapsed())
}

/// Requests per second at saturation, each target `seconds` in all, in
/// slices of about a second taken in turn (direct, bare, tollgate,
/// direct, ...): the machine's drift over a round (other tenants, the
/// clock's speed) weighs on every target alike, as the interleaved
/// latency samples do, where whole turns of several seconds each let one
/// target's turn fall on a fast or slow stretch of its own.
async fn saturation(targets: &[Target], seconds: u64, concurrency: u64) -> Vec<f64> {
    let slices = env_or("BENCH_SLICES", seconds).max(1);
    let slice = Duration::from_secs(seconds) / u32::try_from(slices).unwrap();
    let clients: Vec<reqwest::Client> = targets
        .iter()
        .map(|_| reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap())
        .collect();
    let mut done = vec![0u64; targets.len()];
    let mut took = vec![Duration::ZERO; targets.len()];
    for _ in 0..slices {
        for (n, t) in targets.iter().enumerate() {
            let (d, time) = saturate(&clients[n], &t.url, slice, concurrency).await;
            done[n] += d;
            took[n] += time;
        }
    }
    done.iter().zip(&took).map(|(d, t)| *d as f64 / t.as_secs_f64()).collect()
}

async fn measure(targets: &[Target], samples: u64, seconds: u64, concurrency: u64) -> Vec<Result_> {
    let latencies = sequential(targets, samples).await;
    let rps = saturation(targets, seconds, concurrency).await;
    latencies
        .into_iter()
        .zip(rps)
        .map(|((p50, p99, ttfb_p50, tail), rps)| Result_ { p50, p99, tail, rps, ttfb_p50 })
        .collect()
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

    let (mock_port, bare_port) = (free_port(), free_port());
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
    // Two configurations by default (benches/configs.py writes them from
    // conf/demo.yaml): billed with every limit of the plan on, and
    // unbilled. BENCH_CONFIG names the ones to run instead (`:` between).
    let configs: Vec<(String, String)> = match std::env::var("BENCH_CONFIG") {
        Ok(configs) => configs
            .split(':')
            .filter(|c| !c.is_empty())
            .map(|c| {
                let stem = std::path::Path::new(c).file_stem().map(|s| s.to_string_lossy().into_owned());
                (stem.unwrap_or_else(|| "tollgate".into()), c.to_string())
            })
            .collect(),
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("tollgate-bench-conf-{}", std::process::id()));
            write_bench_configs(&dir);
            let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
            vec![("billed+limits".into(), path("limits.yaml")), ("unbilled".into(), path("unbilled.yaml"))]
        }
    };
    let mut binaries = vec![(String::new(), env!("CARGO_BIN_EXE_tollgate").to_string())];
    for baseline in
        std::env::var("BENCH_BASELINE_BIN").unwrap_or_default().split(':').filter(|b| !b.is_empty())
    {
        let name = std::path::Path::new(baseline).file_name().map(|n| n.to_string_lossy().into_owned());
        binaries.push((format!(" ({})", name.unwrap_or_default()), baseline.to_string()));
    }
    let mut gateways = Vec::new();
    for (name, config) in &configs {
        for (suffix, binary) in &binaries {
            let (port, metrics) = (free_port(), free_port());
            procs.0.push(
                tollgate_command_of(binary, config, port, metrics, mock_port)
                    .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()))
                    .spawn()
                    .unwrap(),
            );
            gateways.push((format!("{name}{suffix}"), port));
        }
    }
    wait_for(bare_port);
    for (_, port) in &gateways {
        wait_for(*port);
    }

    let path = "/openai/v1/chat/completions";
    let mut targets = vec![
        Target {
            name: "direct".into(),
            url: format!("http://127.0.0.1:{mock_port}{path}"),
            stream_url: format!("http://127.0.0.1:{mock_port}{path}"),
        },
        Target {
            name: "bare pingora".into(),
            url: format!("http://127.0.0.1:{bare_port}{path}"),
            stream_url: format!("http://127.0.0.1:{bare_port}{path}"),
        },
    ];
    for (name, port) in &gateways {
        targets.push(Target {
            name: name.clone(),
            url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
            stream_url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rounds = env_or("BENCH_ROUNDS", 2);
    println!(
        "gateway bench: {rounds} rounds; each: {samples} sequential samples per target (interleaved), \
         {seconds}s at concurrency {concurrency} per target, in slices taken in turn; body {} bytes",
        body(false).len()
    );
    for round in 1..=rounds {
        // The gateways take turns going first: a target's place in the
        // order (what ran just before it) is not to pass for its cost.
        let mut order = targets.clone();
        order[2..].rotate_left((round as usize - 1) % (targets.len() - 2).max(1));
        let results = rt.block_on(measure(&order, samples, seconds, concurrency));
        println!("\nround {round}");
        report(&order, &results);
    }
}

fn report(targets: &[Target], results: &[Result_]) {
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12}",
        "target", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "req/s", "ttfb p50 µs"
    );
    for (t, r) in targets.iter().zip(results) {
        println!(
            "{:<26} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>12.1}",
            t.name,
            us(r.p50),
            us(r.tail[0]),
            us(r.p99),
            us(r.tail[1]),
            us(r.tail[2]),
            r.rps,
            us(r.ttfb_p50)
        );
    }
    let (direct, bare) = (&results[0], &results[1]);
    for (t, gw) in targets.iter().zip(results).skip(2) {
        println!(
            "{}: p50 {:+.1} µs and p99 {:+.1} µs over bare pingora (bare {:+.1} / {:+.1} over direct); \
             throughput {:.2}x bare ({:.2}x direct); stream ttfb {:+.1} µs over bare",
            t.name,
            us(gw.p50) - us(bare.p50),
            us(gw.p99) - us(bare.p99),
            us(bare.p50) - us(direct.p50),
            us(bare.p99) - us(direct.p99),
            gw.rps / bare.rps,
            gw.rps / direct.rps,
            us(gw.ttfb_p50) - us(bare.ttfb_p50),
        );
    }
}
