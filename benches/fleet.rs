//! A node with its hot state on Redis against the same node embedded, in
//! one run, on this machine: `conf/demo.yaml` (billed) as it is, and the
//! same with `hot_state` on a local `redis-server` this bench starts (the
//! wallet's hold and every limit in one script call per admit, one per
//! settle). Reports c1 latency (samples interleaved), requests per second
//! at saturation (each target twice, alternated), and from Redis's own
//! `INFO commandstats` and `INFO cpu`: round trips per billed request and
//! Redis CPU per request, so one Redis core's capacity in requests per
//! second for the whole fleet is known.
//!
//!   cargo bench --bench fleet       (BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_SAMPLES tune it)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, spawn_mock, tollgate_command, wait_for, Procs};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn body() -> String {
    let history: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"role":"user","content":"message {i} {}"}}"#, "lorem ipsum ".repeat(8)))
        .collect();
    format!(r#"{{"model":"gpt-5.5","messages":[{}]}}"#, history.join(","))
}

async fn one(client: &reqwest::Client, url: &str, body: &str) -> Duration {
    let start = Instant::now();
    let r = client
        .post(url)
        .bearer_auth("sk-bench")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap();
    start.elapsed()
}

async fn saturation(url: &str, seconds: u64, concurrency: u64) -> (f64, u64) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body, done) = (client.clone(), url.to_string(), body(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    one(&client, &url, &body).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    (n as f64 / started.elapsed().as_secs_f64(), n)
}

/// CPU seconds a process has used (user and system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command's closing parenthesis: utime and stime are the
    // 12th and 13th fields, in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Redis's counters: script and other command calls, and CPU seconds.
fn redis_stats(conn: &mut redis::Connection) -> (u64, u64, f64) {
    let commands: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let (mut scripts, mut others) = (0, 0);
    for line in commands.lines().filter(|l| l.starts_with("cmdstat_")) {
        let calls: u64 = line
            .split_once("calls=")
            .and_then(|(_, rest)| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if ["cmdstat_fcall:", "cmdstat_evalsha:", "cmdstat_eval:"].iter().any(|p| line.starts_with(p)) {
            scripts += calls;
        } else if !line.starts_with("cmdstat_info:") && !line.starts_with("cmdstat_config") {
            others += calls;
        }
    }
    let cpu: String = redis::cmd("INFO").arg("cpu").query(conn).unwrap();
    let seconds = |name: &str| -> f64 {
        cpu.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    (scripts, others, seconds("used_cpu_user:") + seconds("used_cpu_sys:"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let samples = env_or("BENCH_SAMPLES", 2000);
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let mut procs = Procs(Vec::new());
    let (mock_port, redis_port) = (free_port(), free_port());
    procs.0.push(spawn_mock(mock_port));
    let redis_dir = std::env::temp_dir().join(format!("tollgate-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&redis_dir).unwrap();
    procs.0.push(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&redis_dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (bash scripts/setup.sh installs it)"),
    );
    wait_for(redis_port);
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.yaml");
    let on_redis = redis_dir.join("redis.yaml");
    let yaml = std::fs::read_to_string(demo).unwrap().replacen(
        "store:\n",
        &format!(
            "hot_state:\n  redis_url: \"redis://127.0.0.1:{redis_port}/\"\n  on_failure: closed\nstore:\n"
        ),
        1,
    );
    std::fs::write(&on_redis, yaml).unwrap();
    let (embedded_port, redis_gw_port) = (free_port(), free_port());
    let mut pids = Vec::new();
    for (config, port, db) in
        [(demo, embedded_port, "embedded"), (on_redis.to_str().unwrap(), redis_gw_port, "redis")]
    {
        let child = tollgate_command(config, port, free_port(), mock_port)
            .env("TOLLGATE_DB", redis_dir.join(format!("{db}.db")))
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        pids.push(child.id());
        procs.0.push(child);
        wait_for(port);
    }
    let targets = [
        ("direct", format!("http://127.0.0.1:{mock_port}/openai/v1/chat/completions")),
        ("embedded", format!("http://127.0.0.1:{embedded_port}/v1/chat/completions")),
        ("redis", format!("http://127.0.0.1:{redis_gw_port}/v1/chat/completions")),
    ];
    let mut conn =
        redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).unwrap().get_connection().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("fleet bench: {samples} c1 samples per target (interleaved), {seconds}s at c{concurrency}, each target twice");
    rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(8).build().unwrap();
        let whole = body();
        let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
        for (_, url) in &targets {
            for _ in 0..200 {
                one(&client, url, &whole).await;
            }
        }
        let (s0, o0, cpu0) = redis_stats(&mut conn);
        let mut c1_redis_requests = 0;
        for _ in 0..samples {
            for (i, (_, url)) in targets.iter().enumerate() {
                lat[i].push(one(&client, url, &whole).await);
            }
            c1_redis_requests += 1;
        }
        let (s1, o1, cpu1) = redis_stats(&mut conn);
        println!("{:<10} {:>10} {:>10}", "target", "c1 p50 µs", "c1 p99 µs");
        for (i, (name, _)) in targets.iter().enumerate() {
            lat[i].sort();
            let p = |q: f64| lat[i][((lat[i].len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
            println!("{name:<10} {:>10.1} {:>10.1}", p(0.5), p(0.99));
        }
        // Commands a script runs count in commandstats too.
        println!(
            "c1: {:.2} round trips (script calls) per billed request on Redis, running {:.1} commands inside them; Redis CPU {:.1} µs a request",
            (s1 - s0) as f64 / c1_redis_requests as f64,
            (o1 - o0) as f64 / c1_redis_requests as f64,
            (cpu1 - cpu0) * 1e6 / c1_redis_requests as f64
        );
        let mut rps = vec![Vec::new(); targets.len()];
        let mut redis_cpu = Vec::new();
        let mut gateway_cpu = vec![Vec::new(); targets.len()];
        for _round in 0..2 {
            for (i, (_, url)) in targets.iter().enumerate() {
                let before = redis_stats(&mut conn);
                let pid = if i > 0 { Some(pids[i - 1]) } else { None };
                let cpu_before = pid.map_or(0.0, cpu_seconds);
                let (r, n) = saturation(url, seconds, concurrency).await;
                let after = redis_stats(&mut conn);
                if let Some(pid) = pid {
                    gateway_cpu[i].push((cpu_seconds(pid) - cpu_before) * 1e6 / n as f64);
                }
                if i == 2 {
                    redis_cpu.push(((after.2 - before.2) * 1e6 / n as f64, (after.0 - before.0) as f64 / n as f64));
                }
                rps[i].push(r);
            }
        }
        for (i, (name, _)) in targets.iter().enumerate().skip(1) {
            println!(
                "{name:<10} gateway process CPU per request: {:.1} µs, {:.1} µs (10 ms ticks)",
                gateway_cpu[i][0], gateway_cpu[i][1]
            );
        }
        println!("{:<10} {:>12} {:>12}", "target", "c32 run 1", "c32 run 2");
        for (i, (name, _)) in targets.iter().enumerate() {
            println!("{name:<10} {:>12.0} {:>12.0}", rps[i][0], rps[i][1]);
        }
        for (run, (embedded, on_redis)) in rps[1].iter().zip(&rps[2]).enumerate() {
            println!("run {}: redis / embedded throughput {:.2}x", run + 1, on_redis / embedded);
        }
        for (run, (cpu_us, scripts)) in redis_cpu.iter().enumerate() {
            println!(
                "run {}: Redis {:.1} µs CPU and {:.2} script calls per request: one Redis core serves about {:.0} requests/s for the fleet",
                run + 1,
                cpu_us,
                scripts,
                1e6 / cpu_us
            );
        }
    });
    let _ = std::fs::remove_dir_all(&redis_dir);
}
