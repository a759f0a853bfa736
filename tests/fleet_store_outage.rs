//! PostgreSQL stopped for 30 s under a fleet's load (three nodes on
//! `conf/fleet.yaml`): no call fails (the wallets are on Redis, every
//! charge waits in its node's journal), and the ledger catches up when
//! the store is back. Its own binary: it stops the test server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "fleet/support.rs"]
mod fleet_support;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/redis.rs"]
mod redis_harness;

use fleet_support::{charges, fleet};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_for_thirty_seconds_fails_no_call_and_the_ledger_catches_up() {
    let db = pg::PgDatabase::new().await;
    let redis = redis_harness::RedisServer::start();
    let fleet = fleet(&db.url, &redis.url, "closed", 50);
    let (account, key) = fleet.customer("100").await;
    // The wallet is on Redis before the store goes away.
    assert_eq!(fleet.nodes[1].call(&key).await.0, 200);
    let server = pg::pg_server();
    server.stop().unwrap();
    let stopped = Instant::now();
    let during = fleet.load(&key, 6, || stopped.elapsed() > Duration::from_secs(30)).await;
    // Readiness keeps the node in: its calls go on.
    let health = common::client().get(format!("{}/health", fleet.nodes[2].url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(
        (&health["status"], &health["store"]["ok"]),
        (&Value::from("degraded_store"), &Value::from(false))
    );
    server.start_again().unwrap();
    let failed: Vec<&(u16, Value)> = during.iter().filter(|a| a.0 != 200).collect();
    assert!(failed.is_empty(), "no call fails with the store away: {:?}", &failed[..failed.len().min(5)]);
    assert!(during.len() > 30, "load ran: {}", during.len());
    let paid = 1 + during.len();
    let ledger = charges(&fleet.nodes[0], account, paid).await;
    assert_eq!(ledger.len(), paid, "the ledger caught up: every answered call, once");
}
