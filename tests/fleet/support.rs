//! Three gateway nodes on `conf/fleet.yaml` as processes this test can
//! kill and start again, and the books they must keep: for the fleet's
//! fault tests.
#![allow(dead_code)]

use crate::common::money::{chat, gpt_cost, ADMIN};
use crate::common::{self, client, free_port, tag, Guard, TempDir};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One node: its ports and data directory stay, so it can be started again.
pub struct Node {
    pub url: String,
    pub admin: String,
    env: Vec<(String, String)>,
    proc: Option<Guard>,
    _data: TempDir,
}

impl Node {
    pub fn new(conf: &std::path::Path, shared: &[(&str, &str)]) -> Self {
        let data = TempDir::new();
        let (port, admin, metrics) = (free_port(), free_port(), free_port());
        let mut env: Vec<(String, String)> =
            shared.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.extend([
            ("TOLLGATE_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("TOLLGATE_ADMIN_LISTEN".into(), format!("127.0.0.1:{admin}")),
            ("TOLLGATE_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")),
            ("TOLLGATE_DATA_DIR".into(), data.0.display().to_string()),
            ("TOLLGATE_CONF".into(), conf.display().to_string()),
        ]);
        let mut node = Self {
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            env,
            proc: None,
            _data: data,
        };
        node.start();
        node
    }

    pub fn start(&mut self) {
        let conf = self.env.iter().find(|(k, _)| k == "TOLLGATE_CONF").map(|(_, v)| v.clone()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["serve", "--config", &conf]).env("RUST_LOG", "warn").stdout(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.proc = Some(Guard(cmd.spawn().unwrap()));
        common::wait_for(&self.url);
        common::wait_for(&self.admin);
    }

    /// SIGKILL: nothing of the process runs after this.
    pub fn kill(&mut self) {
        if let Some(mut guard) = self.proc.take() {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
        }
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            client().request(method.parse().unwrap(), format!("{}{path}", self.admin)).bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn call(&self, key: &str) -> (u16, Value) {
        let r = client()
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(key)
            .header("x-mock-tag", tag())
            .json(&chat("gpt-5.5", 5))
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"transport": e.to_string()})),
        }
    }
}

pub struct Fleet {
    pub nodes: Vec<Node>,
    _mock: Guard,
    _conf: TempDir,
}

/// Three nodes on one store and one Redis; the journal delivered every
/// `batch_ms`.
pub fn fleet(pg: &str, redis: &str, on_failure: &str, batch_ms: u64) -> Fleet {
    let yaml = std::fs::read_to_string(common::repo().join("conf/fleet.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen("  journal_dir:", &format!("  batch_ms: {batch_ms}\n  journal_dir:"), 1)
        .replacen("on_failure:", "reconcile_ms: 300\n  lease_ms: 3000\n  on_failure:", 1);
    let conf = TempDir::new();
    let path = conf.0.join("fleet.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (mock, mock_child) = common::start_mock();
    let shared = [
        ("TOLLGATE_DATABASE_URL", pg),
        ("TOLLGATE_REDIS_URL", redis),
        ("TOLLGATE_REDIS_FAILURE", on_failure),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN),
        ("TOLLGATE_MOCK_URL", mock.as_str()),
        ("TOLLGATE_DEMO_KEY", common::KEY),
    ];
    let nodes = (0..3).map(|_| Node::new(&path, &shared)).collect();
    Fleet { nodes, _mock: Guard(mock_child), _conf: conf }
}

impl Fleet {
    pub async fn customer(&self, usd: &str) -> (i64, String) {
        let node = &self.nodes[0];
        let (s, account) =
            node.admin("POST", "/admin/v1/accounts", Some(json!({"name": tag(), "plan": "pro"}))).await;
        assert_eq!(s, 201, "{account}");
        let id = account["id"].as_i64().unwrap();
        let topup = json!({"amount_usd": usd, "multiplier": 1, "idempotency_key": tag()});
        let (s, _) = node.admin("POST", &format!("/admin/v1/accounts/{id}/topups"), Some(topup)).await;
        assert_eq!(s, 200);
        let (s, key) =
            node.admin("POST", &format!("/admin/v1/accounts/{id}/keys"), Some(json!({"name": "k"}))).await;
        assert_eq!(s, 201);
        (id, key["key"].as_str().unwrap().to_string())
    }

    /// Calls with `key` from `workers` callers over the nodes until
    /// `until` says stop: every answer.
    pub async fn load(
        &self,
        key: &str,
        workers: usize,
        until: impl Fn() -> bool + Sync,
    ) -> Vec<(u16, Value)> {
        let calls = (0..workers).map(|w| {
            let node = &self.nodes[w % self.nodes.len()];
            let until = &until;
            async move {
                let mut out = Vec::new();
                while !until() {
                    out.push(node.call(key).await);
                }
                out
            }
        });
        futures_util::future::join_all(calls).await.into_iter().flatten().collect()
    }
}

/// The account's charges once the ledger holds `expect` of them (or 20 s).
pub async fn charges(node: &Node, account: i64, expect: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, ledger) = node.admin("GET", &format!("/admin/v1/ledger?account={account}"), None).await;
        let found: Vec<Value> = ledger["entries"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == "charge").cloned().collect())
            .unwrap_or_default();
        if (s == 200 && found.len() >= expect) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The balance on Redis once it equals `want` (the reconciler may need
/// two passes after an outage), or as it is after 10 s.
pub async fn balance_settles_at(node: &Node, account: i64, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = node.admin("GET", &format!("/admin/v1/accounts/{account}"), None).await;
        let (balance, held) =
            (view["balance_nano_usd"].as_i64().unwrap_or(i64::MIN), view["held_nano_usd"].as_i64());
        if (balance == want && held == Some(0)) || Instant::now() > deadline {
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn ok_answers(answers: &[(u16, Value)]) -> Vec<&Value> {
    answers.iter().filter(|a| a.0 == 200).map(|a| &a.1).collect()
}

/// Every answered call charged once, at list price; the balance on Redis
/// rebuilt to the top-up less the charges.
pub async fn books_balance(fleet: &Fleet, account: i64, topup: i64, answers: &[(u16, Value)]) {
    let paid = ok_answers(answers);
    let ledger = charges(&fleet.nodes[1], account, paid.len()).await;
    assert_eq!(ledger.len(), paid.len(), "one charge per answered call, none twice");
    let charged: i64 = ledger.iter().map(|e| -e["amount_nano_usd"].as_i64().unwrap()).sum();
    let expected: i64 = paid.iter().map(|a| gpt_cost(&a["usage"])).sum();
    assert_eq!(charged, expected, "the ledger is the provider's usage at list price");
    let balance = balance_settles_at(&fleet.nodes[2], account, topup - charged).await;
    assert_eq!(balance, topup - charged, "the wallet on Redis is the top-up less the charges");
}
