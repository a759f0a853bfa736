//! The fleet through the real binary: three gateway processes on
//! `conf/fleet.yaml`, one PostgreSQL and one Redis (started here), the
//! load spread over them. An rpm limit holds across the fleet, a wallet
//! never overdraws under 1,000 concurrent calls, a key's spend cap holds,
//! the ledger equals the provider's usage at list price to the nano-USD,
//! and a key revoked on one node is refused on another within a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/redis.rs"]
mod redis_harness;

use common::money::{admin, chat, gpt_cost, ADMIN};
use common::{client, tag, Stack, TempDir};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `conf/fleet.yaml` with a plan of limits for the tests.
fn fleet_yaml() -> (TempDir, std::path::PathBuf) {
    let yaml = std::fs::read_to_string(common::repo().join("conf/fleet.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen("plans:\n", "plans:\n  - name: limited\n    models: [\"*\"]\n    limits: { rpm: 60 }\n", 1)
        .replacen("on_failure:", "reconcile_ms: 300\n  on_failure:", 1);
    let dir = TempDir::new();
    let path = dir.0.join("fleet.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

struct Fleet {
    nodes: Vec<Stack>,
    mock: String,
    _mock: common::Guard,
    _conf: TempDir,
}

/// Three nodes started at once on one store and one Redis.
fn fleet(pg: &str, redis: &str, on_failure: &str) -> Fleet {
    let (conf, path) = fleet_yaml();
    let (mock, mock_child) = common::start_mock();
    let nodes = std::thread::scope(|s| {
        let started: Vec<_> = (0..3)
            .map(|_| {
                let (path, mock) = (&path, &mock);
                s.spawn(move || {
                    let data = TempDir::new();
                    let data_dir = data.0.display().to_string();
                    Stack::with_config(
                        path,
                        Some(data),
                        &[
                            ("TOLLGATE_DATABASE_URL", pg),
                            ("TOLLGATE_REDIS_URL", redis),
                            ("TOLLGATE_REDIS_FAILURE", on_failure),
                            ("TOLLGATE_DATA_DIR", &data_dir),
                            ("TOLLGATE_ADMIN_TOKEN", ADMIN),
                            ("TOLLGATE_MOCK_URL", mock),
                        ],
                    )
                })
            })
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Fleet { nodes, mock, _mock: common::Guard(mock_child), _conf: conf }
}

impl Fleet {
    /// A new account on `plan` with `usd` paid, and a key (`key` its body).
    async fn customer(&self, plan: &str, usd: &str, key: Value) -> (i64, i64, String) {
        common::money::customer(&self.nodes[0], plan, usd, 1, key).await
    }

    /// `n` chat calls with `key`, spread over the nodes, all at once.
    async fn calls(&self, key: &str, n: usize, t: &str) -> Vec<(u16, Value)> {
        let calls = (0..n).map(|i| {
            let node = &self.nodes[i % self.nodes.len()];
            async move {
                let r = client()
                    .post(node.url("/v1/chat/completions"))
                    .bearer_auth(key)
                    .header("x-mock-tag", t)
                    .json(&chat("gpt-5.5", 5))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        });
        join_all(calls).await
    }

    async fn received(&self, t: &str) -> usize {
        let url = format!("{}/_mock/requests?tag={t}", self.mock);
        reqwest::get(url).await.unwrap().json::<Vec<Value>>().await.unwrap().len()
    }
}

/// Every charge of `account` in the ledger, once every node delivered
/// its journal (`expect` charges, or what there is after 10 s).
async fn charges(node: &Stack, account: i64, expect: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ledger) = admin(node, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
        let found: Vec<Value> = ledger["entries"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == "charge").cloned().collect())
            .unwrap_or_default();
        if found.len() >= expect || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn balance(node: &Stack, account: i64) -> i64 {
    let (s, view) = admin(node, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    assert_eq!(s, 200, "{view}");
    view["balance_nano_usd"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_limits_wallets_caps_and_revocations() {
    let db = pg::PgDatabase::new().await;
    let redis = redis_harness::RedisServer::start();
    let fleet = fleet(&db.url, &redis.url, "closed");

    // The YAML's demo account and key were bootstrapped once, whichever
    // node came first: the demo key works on every node.
    for node in &fleet.nodes {
        let r = client()
            .post(node.url("/v1/chat/completions"))
            .bearer_auth(common::KEY)
            .json(&chat("gpt-5.5", 5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, demo) = admin(&fleet.nodes[2], "GET", "/admin/v1/accounts/1", None).await;
    assert_eq!((s, demo["name"].as_str()), (200, Some("demo")), "{demo}");
    let (s, _) = admin(&fleet.nodes[2], "GET", "/admin/v1/accounts/2", None).await;
    assert_eq!(s, 404, "one demo account");

    // rpm 60 across three nodes: 60 pass, whichever node they reach.
    let (_, _, limited) = fleet.customer("limited", "100", json!({"name": "rpm"})).await;
    let t = tag();
    let answers = fleet.calls(&limited, 240, &t).await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 429),
        "{:?}",
        answers.iter().find(|a| a.0 != 200 && a.0 != 429)
    );
    assert!((60..=60).contains(&ok), "rpm 60 over the fleet let {ok} through");
    assert_eq!(fleet.received(&t).await, ok, "nothing refused went upstream");

    // A wallet of $0.02 under 1,000 concurrent calls over three nodes: it
    // never overdraws, and the ledger is the provider's usage at list price.
    let (account, _, key) = fleet.customer("pro", "0.02", json!({"name": "wallet"})).await;
    let t = tag();
    let answers = fleet.calls(&key, 1000, &t).await;
    let paid: Vec<&Value> = answers.iter().filter(|a| a.0 == 200).map(|a| &a.1).collect();
    let refused = answers.iter().filter(|a| a.0 == 402).count();
    let other: Vec<&(u16, Value)> = answers.iter().filter(|a| a.0 != 200 && a.0 != 402).collect();
    assert!(other.is_empty(), "only 200s and 402s: {other:?}");
    assert!(!paid.is_empty() && refused > 0, "the wallet ran out part way: {} paid", paid.len());
    let expected: i64 = paid.iter().map(|a| gpt_cost(&a["usage"])).sum();
    let ledger = charges(&fleet.nodes[1], account, paid.len()).await;
    assert_eq!(ledger.len(), paid.len(), "one charge per answered call");
    let charged: i64 = ledger.iter().map(|e| -e["amount_nano_usd"].as_i64().unwrap()).sum();
    assert_eq!(charged, expected, "the ledger is the mock's usage at list price");
    // The paid value behind each charge is attributed by the ledger (the
    // lot was bought at 1x: paid equals list, to the nano-dollar).
    let paid_value: i64 = ledger.iter().map(|e| e["paid_nano_usd"].as_i64().unwrap()).sum();
    assert!(ledger.iter().all(|e| e["paid_nano_usd"].as_i64().unwrap() >= 0), "{ledger:?}");
    assert_eq!(paid_value, charged);
    let left = balance(&fleet.nodes[2], account).await;
    assert!(left >= 0, "overdrawn: {left}");
    assert_eq!(left, 20_000_000 - charged, "the balance is the top-up less the charges");

    // A key's spend cap holds across the fleet.
    let (cap_account, key_id, capped) =
        fleet.customer("pro", "100", json!({"name": "cap", "spend_cap_usd": "0.005"})).await;
    let t = tag();
    let answers = fleet.calls(&capped, 300, &t).await;
    assert!(answers.iter().any(|a| a.0 == 402), "the cap was reached");
    let paid = answers.iter().filter(|a| a.0 == 200).count();
    let spent: i64 = charges(&fleet.nodes[1], cap_account, paid)
        .await
        .iter()
        .filter(|e| e["key_id"] == key_id)
        .map(|e| -e["amount_nano_usd"].as_i64().unwrap())
        .sum();
    assert!(spent <= 5_000_000, "the key spent {spent} against a cap of 5,000,000");

    // A key revoked through node 1 is refused on node 3 within a second.
    let (_, revoked_id, revoked) = fleet.customer("pro", "1", json!({"name": "revoked"})).await;
    let t = tag();
    let ok = fleet.nodes[2].url("/v1/chat/completions");
    let first = client()
        .post(&ok)
        .bearer_auth(&revoked)
        .header("x-mock-tag", &t)
        .json(&chat("gpt-5.5", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let (s, _) = admin(&fleet.nodes[0], "DELETE", &format!("/admin/v1/keys/{revoked_id}"), None).await;
    assert_eq!(s, 200);
    let revoked_at = Instant::now();
    loop {
        let r = client()
            .post(&ok)
            .bearer_auth(&revoked)
            .header("x-mock-tag", &t)
            .json(&chat("gpt-5.5", 5))
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "node 3 still takes a key revoked on node 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every node reports the fleet's metrics, the fleet size it sees among them.
    for node in &fleet.nodes {
        let text = node.metrics_text().await;
        for name in [
            "tollgate_redis_round_trip_seconds_count",
            "tollgate_redis_script_errors_total",
            "tollgate_journal_depth",
            "tollgate_reconcile_lag_seconds",
            "tollgate_reconcile_drift_corrected_nano_usd_total",
            "tollgate_hot_state_failed_open_seconds_total",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
    // Each node counts the fleet at its heartbeat (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    for node in &fleet.nodes {
        while !node.metrics_text().await.contains("tollgate_fleet_size 3") {
            assert!(Instant::now() < deadline, "a node never saw the fleet of three");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
