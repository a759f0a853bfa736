//! A graceful upgrade never spends a balance twice (issue #16 item 1):
//! while the old and the new process overlap on one store, each sees the
//! other's holds and charges before it admits a call, so a wallet held by
//! a stream on the old process is not spent again on the new one; after
//! both are gone, a restart finds every wallet equal to its ledger, none
//! below zero, and every delivered answer charged once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, free_port, repo, start_mock, TempDir};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "tollgate-admin-demo";

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Gateway {
    fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.0.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    fn wait_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One gateway on the demo config, with an upgrade socket, on fixed ports.
struct Setup {
    _mock: Gateway,
    mock: String,
    dir: TempDir,
    config: PathBuf,
    port: u16,
    admin_port: u16,
    metrics_port: u16,
}

fn setup() -> Setup {
    let (mock, mock_child) = start_mock();
    let dir = TempDir::new();
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
        "server:\n",
        &format!(
            "server:\n  upgrade_sock: \"{}\"\n  pid_file: \"{}\"\n  grace_period_seconds: 60\n  \
             keepalive_timeout_seconds: 1\n",
            dir.0.join("upgrade.sock").display(),
            dir.0.join("tollgate.pid").display()
        ),
        1,
    );
    let config = dir.0.join("tollgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    Setup {
        _mock: Gateway(mock_child),
        mock,
        dir,
        config,
        port: free_port(),
        admin_port: free_port(),
        metrics_port: free_port(),
    }
}

fn serve(s: &Setup, upgrade: bool, log: &Path) -> Gateway {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["serve", "--config"])
        .arg(&s.config)
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{}", s.port))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{}", s.metrics_port))
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", s.admin_port))
        .env("TOLLGATE_MOCK_URL", &s.mock)
        .env("TOLLGATE_DEMO_KEY", common::KEY)
        .env("TOLLGATE_DB", s.dir.0.join("tollgate.db"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap());
    if upgrade {
        cmd.arg("--upgrade");
    }
    Gateway(cmd.spawn().unwrap())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn up(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn admin(s: &Setup, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", s.admin_port);
    let mut req = client().request(method.parse().unwrap(), url).bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A customer with `usd` in its wallet and a key.
async fn customer(s: &Setup, usd: &str) -> (i64, String) {
    let (status, account) =
        admin(s, "POST", "/admin/v1/accounts", Some(json!({"name": common::tag(), "plan": "pro"}))).await;
    assert_eq!(status, 201, "{account}");
    let id = account["id"].as_i64().unwrap();
    let topup = json!({"amount_usd": usd, "multiplier": 1, "idempotency_key": common::tag()});
    assert_eq!(admin(s, "POST", &format!("/admin/v1/accounts/{id}/topups"), Some(topup)).await.0, 200);
    let (status, key) =
        admin(s, "POST", &format!("/admin/v1/accounts/{id}/keys"), Some(json!({"name": "k"}))).await;
    assert_eq!(status, 201, "{key}");
    (id, key["key"].as_str().unwrap().to_string())
}

/// A gpt-5.5 call holding its `max_tokens` at $10 a million.
async fn call(s: &Setup, key: &str, max_tokens: u64, chunks: u32, gap_ms: u32) -> reqwest::Response {
    client()
        .post(format!("http://127.0.0.1:{}/v1/chat/completions", s.port))
        .bearer_auth(key)
        .header("x-mock-chunks", chunks.to_string())
        .header("x-mock-chunk-delay-ms", gap_ms.to_string())
        .json(&json!({"model": "gpt-5.5", "stream": true, "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn whoami(s: &Setup, key: &str) -> Value {
    let url = format!("http://127.0.0.1:{}/v1/whoami", s.port);
    let r = client().get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn process_of(r: &reqwest::Response) -> String {
    let id = r.headers()["x-request-id"].to_str().unwrap();
    id[id.len() - 8..].to_string()
}

/// Every wallet equals its ledger and none is below zero; charges per
/// request id.
async fn audit(s: &Setup, account: i64) -> HashMap<String, usize> {
    let (_, ledger) = admin(s, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let (_, view) = admin(s, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    let entries = ledger["entries"].as_array().unwrap();
    let sum: i64 = entries.iter().map(|e| e["amount_nano_usd"].as_i64().unwrap()).sum();
    assert_eq!(view["balance_nano_usd"].as_i64().unwrap(), sum, "{view}");
    assert!(sum >= 0, "a wallet below zero: {view}");
    assert_eq!(view["held_nano_usd"], 0, "{view}");
    let mut charges = HashMap::new();
    for e in entries.iter().filter(|e| e["kind"] == "charge") {
        *charges.entry(e["request_id"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    charges
}

#[tokio::test]
async fn a_hold_on_the_old_process_is_not_spent_again_on_the_new_one() {
    let s = setup();
    let log = s.dir.0.join("gateway.log");
    let mut old = serve(&s, false, &log);
    wait_until("the old process", || up(s.port) && up(s.admin_port));
    // $0.30; a call of max_tokens 20,000 holds $0.20 and costs a few
    // hundred-thousandths of a dollar.
    let (account, key) = customer(&s, "0.30").await;

    // 40 deltas, 400 ms apart: past the upgrade and the old process's 5 s
    // of accepting alongside the new one.
    let mut stream = call(&s, &key, 20_000, 40, 400).await;
    assert_eq!(stream.status(), 200);
    let old_process = process_of(&stream);
    let first = stream.chunk().await.unwrap().unwrap();
    let streamed = tokio::spawn(async move {
        let mut body = first.to_vec();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).unwrap()
    });

    let mut new = serve(&s, true, &log);
    wait_until("the new process on the upgrade socket", || s.dir.0.join("upgrade.sock").exists());
    old.signal("QUIT");
    // Once the old process stops accepting, every call is the new one's.
    let mut on_new = None;
    let deadline = Instant::now() + Duration::from_secs(12);
    while on_new.is_none() {
        assert!(Instant::now() < deadline, "the new process never answered");
        let r = call(&s, &key, 20_000, 1, 0).await;
        if process_of(&r) != old_process {
            on_new = Some(r);
        } else {
            assert_eq!(r.status(), 402, "the old process itself refuses: its stream holds $0.20");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = on_new.unwrap();
    assert_eq!(r.status(), 402, "the new process sees the old one's hold");
    let refusal = r.text().await.unwrap();
    // $0.30 less the old stream's hold of $0.20 and its input.
    assert!(refusal.contains("the balance is $0.0999"), "{refusal}");
    assert!(!streamed.is_finished(), "the old stream still runs");

    // When the old stream ends, its hold is released to the new process.
    let body = streamed.await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let mut admitted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while admitted.is_empty() {
        assert!(Instant::now() < deadline, "the new process never saw the old hold released");
        let r = call(&s, &key, 20_000, 2, 0).await;
        if r.status() == 200 {
            assert_ne!(process_of(&r), old_process);
            admitted.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
            let _ = r.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.wait_exit(Duration::from_secs(10));
    // The new process's running totals count the old one's charge too.
    let who = whoami(&s, &key).await;
    assert_eq!(who["per_model"]["openai/gpt-5.5"]["requests"], 2, "{who}");

    // Both gone, then a restart: the wallet equals its ledger, and each
    // delivered answer is charged once.
    new.signal("TERM");
    new.wait_exit(Duration::from_secs(10));
    let mut restarted = serve(&s, false, &log);
    wait_until("the restarted process", || up(s.port) && up(s.admin_port));
    let charges = audit(&s, account).await;
    assert_eq!(charges.len(), 2, "the old stream and the new call: {charges:?}");
    assert!(charges.values().all(|n| *n == 1));
    assert!(charges.contains_key(&admitted[0]));
    // The totals loaded at start are what the overlap's process showed, and the ledger's.
    let (_, ledger) = admin(&s, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let charged: i64 = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "charge")
        .map(|e| -e["amount_nano_usd"].as_i64().unwrap())
        .sum();
    let again = whoami(&s, &key).await;
    assert_eq!(again["total_spent_nano_usd"], who["total_spent_nano_usd"], "{again}");
    assert_eq!(again["total_spent_nano_usd"], charged, "{again}");
    restarted.signal("TERM");
    restarted.wait_exit(Duration::from_secs(10));
}

#[tokio::test]
async fn two_processes_overlapping_under_load_never_overdraw() {
    let s = setup();
    let log = s.dir.0.join("gateway.log");
    let mut old = serve(&s, false, &log);
    wait_until("the old process", || up(s.port) && up(s.admin_port));
    // Each call is asked for its whole limit (500 tokens, $0.005): what it
    // holds is what it costs, so a wallet spent twice would end below zero.
    let (account, key) = customer(&s, "0.10").await;
    let mut new = serve(&s, true, &log);
    wait_until("the new process on the upgrade socket", || s.dir.0.join("upgrade.sock").exists());
    old.signal("QUIT");

    // For 8 s from the hand-over: both processes accept for the first 5.
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let batch: Vec<_> = (0..16)
            .map(|_| {
                let (port, key) = (s.port, key.clone());
                tokio::spawn(async move {
                    let r = client()
                        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .header("x-mock-chunks", "500")
                        .header("x-mock-chunk-delay-ms", "1")
                        .json(&json!({"model": "gpt-5.5", "stream": true, "max_tokens": 500,
                                      "messages": [{"role": "user", "content": "hi"}]}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
                    let body = r.text().await.unwrap_or_default();
                    (status, id, body.trim_end().ends_with("data: [DONE]"))
                })
            })
            .collect();
        for call in batch {
            results.push(call.await.unwrap());
        }
        // Top up a little now and then, through whichever process answers.
        let topup = json!({"amount_usd": "0.02", "multiplier": 1, "idempotency_key": common::tag()});
        let _ = admin(&s, "POST", &format!("/admin/v1/accounts/{account}/topups"), Some(topup)).await;
    }
    old.wait_exit(Duration::from_secs(20));
    new.signal("TERM");
    new.wait_exit(Duration::from_secs(20));

    let mut restarted = serve(&s, false, &log);
    wait_until("the restarted process", || up(s.port) && up(s.admin_port));
    let charges = audit(&s, account).await;
    let delivered: Vec<&String> =
        results.iter().filter(|(status, _, whole)| *status == 200 && *whole).map(|(_, id, _)| id).collect();
    let processes: std::collections::HashSet<String> = results
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, id, _)| id[id.len() - 8..].to_string())
        .collect();
    assert!(processes.len() >= 2, "both processes served calls: {processes:?}");
    assert!(delivered.len() >= 15, "calls ran: {}", delivered.len());
    assert!(results.iter().any(|(status, _, _)| *status == 402), "the wallet ran dry");
    for id in &delivered {
        assert_eq!(charges.get(*id), Some(&1), "{id} delivered and charged once");
    }
    assert!(charges.values().all(|n| *n == 1), "no charge twice");
    assert!(results.iter().all(|(status, _, _)| *status == 200 || *status == 402), "only 200s and 402s");
    restarted.signal("TERM");
    restarted.wait_exit(Duration::from_secs(10));
}
