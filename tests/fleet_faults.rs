//! The fleet's outages through the real binary (three nodes on
//! `conf/fleet.yaml`, one PostgreSQL, one Redis): Redis restarted without
//! its data under load (`open`: no 5xx, no charge lost, the balances
//! rebuilt; `closed`: 503s and nothing billed twice), a node killed with
//! SIGKILL while its journal holds undelivered charges and started again
//! (nothing lost, nothing twice). PostgreSQL stopped for 30 s is
//! `fleet_store_outage.rs` (its own binary: it stops the server this
//! binary's other tests use).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "fleet/support.rs"]
mod fleet_support;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/redis.rs"]
mod redis_harness;

use fleet_support::{books_balance, fleet};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_without_its_data_under_load() {
    let db = pg::PgDatabase::new().await;
    let mut redis = redis_harness::RedisServer::start();
    let open = fleet(&db.url, &redis.url, "open", 50);
    let (account, key) = open.customer("100").await;
    let started = Instant::now();
    let restarted = std::sync::atomic::AtomicBool::new(false);
    let answers = {
        // A minute of load; Redis restarted empty 20 s in.
        let load = open.load(&key, 12, || started.elapsed() > Duration::from_secs(60));
        let fault = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            redis.restart();
            restarted.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        tokio::join!(load, fault).0
    };
    assert!(restarted.into_inner());
    let errors: Vec<&(u16, Value)> = answers.iter().filter(|a| a.0 != 200).collect();
    assert!(errors.is_empty(), "open: every call answered: {:?}", &errors[..errors.len().min(5)]);
    assert!(answers.len() > 50, "load ran: {}", answers.len());
    books_balance(&open, account, 100_000_000_000, &answers).await;
    drop(open);

    // closed: 503 while Redis is away, and nothing billed twice.
    let closed = fleet(&db.url, &redis.url, "closed", 50);
    let (account, key) = closed.customer("100").await;
    let started = Instant::now();
    let answers = {
        let load = closed.load(&key, 12, || started.elapsed() > Duration::from_secs(8));
        let fault = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.stop();
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.restart();
        };
        tokio::join!(load, fault).0
    };
    let unexpected: Vec<&(u16, Value)> = answers.iter().filter(|a| a.0 != 200 && a.0 != 503).collect();
    assert!(unexpected.is_empty(), "closed: 200 or 503: {:?}", &unexpected[..unexpected.len().min(5)]);
    assert!(answers.iter().any(|a| a.0 == 503), "closed refused while Redis was away");
    for (_, doc) in answers.iter().filter(|a| a.0 == 503) {
        assert_eq!(doc["error"]["code"], "limits_unavailable", "{doc}");
    }
    books_balance(&closed, account, 100_000_000_000, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_with_undelivered_charges_loses_nothing_and_books_nothing_twice() {
    let db = pg::PgDatabase::new().await;
    let redis = redis_harness::RedisServer::start();
    // The journal is delivered every 3 s: a SIGKILL finds charges in it.
    let mut fleet = fleet(&db.url, &redis.url, "closed", 3_000);
    let (account, key) = fleet.customer("100").await;
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(fleet.nodes[0].call(&key).await);
    }
    fleet.nodes[0].kill();
    fleet.nodes[0].start();
    for node in &fleet.nodes {
        answers.push(node.call(&key).await);
    }
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    books_balance(&fleet, account, 100_000_000_000, &answers).await;
}
