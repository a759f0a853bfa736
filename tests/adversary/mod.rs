//! The billing adversary's parts (issue #16): a seeded generator of calls
//! and of how each one ends, gateway processes started, stopped and
//! restarted on one store, and the accounts that call; the drivers that
//! play each ending ([`drive`]) and what a caller received, read in its
//! own format ([`answer`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod answer;
mod drive;

pub use answer::{cost, price, read_answer, Answer};
pub use drive::{drive, Observed};

use crate::common::{call, repo, Guard, KEY, ROUTES};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

/// `ADVERSARY_SEED`, or one drawn from the clock.
pub fn seed() -> u64 {
    std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 % 1_000_000_007
    })
}

// ---- gateway processes on one store -------------------------------------

pub struct Gateway {
    pub url: String,
    pub admin: String,
    pub child: Guard,
}

/// The demo configuration with one-second hold leases and grace period.
pub fn config(dir: &Path) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replacen("billing:\n", "billing:\n  hold_lease_seconds: 1\n", 1)
        .replacen(
            "server:\n",
            "server:\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n",
            1,
        );
    let path = dir.join("adversary.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

pub fn start(config: &Path, mock: &str, db: &Path, log: &Path) -> Gateway {
    let (url, admin, child) = crate::common::serve_on_store(config, mock, db, Some(log));
    Gateway { url, admin, child: Guard(child) }
}

/// SIGTERM, then waits (bounded) for the process to end.
pub async fn terminate(gateway: &mut Gateway) -> Duration {
    let pid = gateway.child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let begun = Instant::now();
    while gateway.child.0.try_wait().unwrap().is_none() {
        assert!(begun.elapsed() < Duration::from_secs(30), "the gateway did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    begun.elapsed()
}

pub const ADMIN_TOKEN: &str = "tollgate-admin-demo";

pub async fn admin(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

// ---- who calls ------------------------------------------------------------

/// An API key and the account it bills.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: i64,
    pub key_id: i64,
    pub key: String,
    pub cap_nano: Option<i64>,
}

/// The demo account (plenty) and accounts with small wallets, multipliers
/// and keys with small spend caps: (account, usd, multiplier, key caps).
pub async fn callers(admin_url: &str) -> Vec<Caller> {
    let mut out = vec![Caller { account: 1, key_id: 1, key: KEY.into(), cap_nano: None }];
    let accounts: [(&str, u32, &[Option<&str>]); 4] = [
        ("0.02", 1, &[None, Some("0.004")]),
        ("0.003", 1, &[None]),
        ("2", 1, &[Some("0.01"), Some("0.002")]),
        ("0.05", 4, &[None]),
    ];
    for (n, (usd, multiplier, caps)) in accounts.iter().enumerate() {
        let (s, account) = admin(
            admin_url,
            "POST",
            "/admin/v1/accounts",
            Some(json!({"name": format!("adv{n}"), "plan": "pro"})),
        )
        .await;
        assert_eq!(s, 201, "{account}");
        let id = account["id"].as_i64().unwrap();
        let topup =
            json!({"amount_usd": usd, "multiplier": multiplier, "idempotency_key": format!("adv-topup-{n}")});
        let (s, body) =
            admin(admin_url, "POST", &format!("/admin/v1/accounts/{id}/topups"), Some(topup)).await;
        assert_eq!(s, 200, "{body}");
        for (k, cap) in caps.iter().enumerate() {
            let mut key = json!({"name": format!("adv{n}-{k}")});
            if let Some(cap) = cap {
                key["spend_cap_usd"] = json!(cap);
            }
            let (s, created) =
                admin(admin_url, "POST", &format!("/admin/v1/accounts/{id}/keys"), Some(key)).await;
            assert_eq!(s, 201, "{created}");
            out.push(Caller {
                account: id,
                key_id: created["id"].as_i64().unwrap(),
                key: created["key"].as_str().unwrap().to_string(),
                cap_nano: cap.map(|c| (c.parse::<f64>().unwrap() * 1e9).round() as i64),
            });
        }
    }
    out
}

// ---- what each call is and how it ends ------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Read to the end.
    Complete,
    /// The caller drops the connection once it has this many body bytes.
    LeftAt(usize),
    /// The caller drops the connection after the response head.
    LeftAfterHead,
    /// The caller gives up before the head (the provider is slow to answer).
    LeftBeforeHead,
    /// Reads the head, sleeps past the hold's lease, reads the rest.
    Slow,
    /// The provider's error event after `k` deltas, then a clean close.
    ErrorAfter(u64),
    /// The provider drops the connection after `k` deltas.
    Cut(u64),
    /// The provider answers this error status before any byte.
    Status(u16),
    /// A usage report no reader understands.
    Unmetered(&'static str),
    /// The provider reports this many output tokens whatever it sent.
    OverReport(u64),
    /// Streaming (slowly read or not) when the gateway gets SIGTERM.
    Shutdown { slow: bool },
    /// Waiting for the provider's head when the gateway gets SIGTERM.
    ShutdownBeforeHead,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub n: usize,
    pub caller: Caller,
    pub format: &'static str,
    pub model: &'static str,
    pub stream: bool,
    pub path: String,
    pub auth: &'static str,
    pub body: Vec<u8>,
    pub chunks: u64,
    pub delay_ms: u64,
    pub ending: Ending,
    pub idem: Option<String>,
    pub tag: String,
    /// How long after its job starts it is sent.
    pub wait: Duration,
}

impl Plan {
    pub fn provider(&self) -> &'static str {
        match self.model {
            "gpt-5.5" => "openai",
            "claude-sonnet-4-6" => "anthropic",
            _ => "gemini",
        }
    }

    /// The same request again (same key, path and body), ending another way.
    pub fn again(&self, n: usize, ending: Ending) -> Plan {
        Plan { n, ending, tag: format!("adv-{n}"), wait: Duration::ZERO, ..self.clone() }
    }
}

/// A request body: `call`'s, with usage asked of Chat streams and, at
/// random when `limit`, the caller's own output limit.
fn body(
    rng: &mut Rng,
    format: &str,
    model: &str,
    stream: bool,
    text: &str,
    limit: bool,
) -> (String, &'static str, Vec<u8>) {
    let c = call(format, model, stream, text);
    let mut body = c.body;
    if format == "openai" && stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if limit && rng.chance(40) {
        let limit = rng.range(4, 64);
        match format {
            "openai" => body["max_tokens"] = json!(limit),
            "responses" => body["max_output_tokens"] = json!(limit),
            "anthropic" => body["max_tokens"] = json!(limit),
            _ => body["generationConfig"] = json!({"maxOutputTokens": limit}),
        }
    }
    (c.path, c.auth.0, serde_json::to_vec(&body).unwrap())
}

fn text(rng: &mut Rng, n: usize) -> String {
    let words: [&str; 8] = ["bill", "every", "byte", "once", "tollgate", "ledger", "wallet", "hold"];
    let mut t = format!("call {n}:");
    for _ in 0..rng.range(0, 60) {
        t.push(' ');
        t.push_str(rng.pick(&words));
    }
    t
}

fn ending(rng: &mut Rng, stream: bool, chunks: u64) -> Ending {
    let roll = rng.range(0, 99);
    match roll {
        0..=23 => Ending::Complete,
        24..=35 if stream => Ending::LeftAt(rng.range(1, chunks * 60) as usize),
        24..=35 => Ending::LeftAfterHead,
        36..=39 => Ending::LeftBeforeHead,
        40..=48 => Ending::Slow,
        49..=60 if stream => Ending::ErrorAfter(rng.range(0, chunks - 1)),
        49..=72 => Ending::Cut(rng.range(0, chunks - 1)),
        73..=82 => Ending::Status(rng.pick(&[500, 503, 429, 400])),
        83..=93 => Ending::Unmetered(rng.pick(&["negative", "fractional", "missing", "wrapped"])),
        _ => Ending::OverReport(rng.range(chunks, 20_000)),
    }
}

/// `count` calls in jobs (a job of two runs them at once), each with its
/// ending; about a quarter under an `Idempotency-Key`, some reusing an
/// earlier one with the same request, some with another request, some
/// twice at once.
pub fn plan_calls(rng: &mut Rng, callers: &[Caller], count: usize) -> Vec<Vec<Plan>> {
    let mut jobs: Vec<Vec<Plan>> = Vec::new();
    // Earlier requests under an `Idempotency-Key`, to send again.
    let mut kept: Vec<Plan> = Vec::new();
    let mut n = 0;
    while n < count {
        let who = if rng.chance(50) { 0 } else { rng.range(1, callers.len() as u64 - 1) as usize };
        let idem = rng.chance(25);
        if idem && !kept.is_empty() && rng.chance(60) {
            let k = &kept[rng.next() as usize % kept.len()];
            let plan = if rng.chance(60) {
                // The same request: a replay, a 409, or a new run if the first did not complete.
                let stream = k.stream;
                let mut e = ending(rng, stream, k.chunks);
                if matches!(e, Ending::ErrorAfter(_)) && !stream {
                    e = Ending::Complete;
                }
                k.again(n, e)
            } else {
                // Another request under the key: a 422 while the key is held.
                let mut other = k.again(n, Ending::Complete);
                let changed = format!("{} again", text(rng, n));
                let (path, _, body) = body(rng, other.format, other.model, other.stream, &changed, true);
                (other.path, other.body) = (path, body);
                other
            };
            jobs.push(vec![plan]);
            n += 1;
            continue;
        }
        let (format, model) = rng.pick(&ROUTES);
        let stream = rng.chance(65);
        let chunks = rng.range(1, 40);
        let prompt = text(rng, n);
        let (path, auth, body) = body(rng, format, model, stream, &prompt, true);
        let plan = Plan {
            n,
            caller: callers[who].clone(),
            format,
            model,
            stream,
            path,
            auth,
            body,
            chunks,
            delay_ms: rng.range(2, 12),
            ending: ending(rng, stream, chunks),
            idem: idem.then(|| format!("adv-idem-{n}")),
            tag: format!("adv-{n}"),
            wait: Duration::ZERO,
        };
        let mut plan = plan;
        if idem && plan.ending == Ending::Slow && rng.chance(50) {
            // A provider slow enough that the call outlives the lease, and
            // the same request again while it runs.
            (plan.chunks, plan.delay_ms) = (30, 60);
            let mut late = plan.again(n + 1, Ending::Complete);
            late.wait = Duration::from_millis(1100);
            kept.push(plan.clone());
            jobs.push(vec![plan, late]);
            n += 2;
            continue;
        }
        let mut job = vec![plan.clone()];
        if idem {
            kept.push(plan.clone());
            if rng.chance(35) {
                // Twice at once: one runs, the other gets a 409 or the replay.
                job.push(plan.again(n + 1, Ending::Complete));
                n += 1;
            }
        }
        jobs.push(job);
        n += 1;
    }
    jobs
}

/// Slow streams for the shutdown: running when the gateway gets SIGTERM.
pub fn plan_shutdown(rng: &mut Rng, callers: &[Caller], first: usize, count: usize) -> Vec<Plan> {
    (first..first + count)
        .map(|n| {
            let who = if rng.chance(50) { 0 } else { rng.range(1, callers.len() as u64 - 1) as usize };
            let (format, model) = rng.pick(&ROUTES);
            let before_head = rng.chance(15);
            let prompt = text(rng, n);
            let (path, auth, body) = body(rng, format, model, !before_head, &prompt, false);
            Plan {
                n,
                caller: callers[who].clone(),
                format,
                model,
                stream: !before_head,
                path,
                auth,
                body,
                chunks: 150,
                delay_ms: 25,
                ending: if before_head {
                    Ending::ShutdownBeforeHead
                } else {
                    Ending::Shutdown { slow: rng.chance(40) }
                },
                idem: rng.chance(30).then(|| format!("adv-idem-{n}")),
                tag: format!("adv-{n}"),
                wait: Duration::ZERO,
            }
        })
        .collect()
}
