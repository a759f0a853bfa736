//! The rate limits on Redis (`hot_state`) through the real binary: two
//! gateways on one Redis share `rpm: 50` exactly; Redis restarted empty
//! mid-run (the script loaded again) and calls go on; Redis down with
//! `on_failure: closed` answers 503 and sends nothing upstream, with
//! `open` calls go on under the node's share of the limits (divided by
//! the fleet size it last saw).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use common::money::{chat, customer, post};
use common::{tag, Stack};
use redis_harness::RedisServer;
use serde_json::{json, Value};

/// The demo with a plan `limited` (`limits`, a YAML flow map) and its
/// rate limits on the Redis at `url`.
fn stack_on(url: &str, on_failure: &str, limits: &str) -> Stack {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen(
            "plans:\n",
            &format!("plans:\n  - name: limited\n    models: [\"*\"]\n    limits: {limits}\n"),
            1,
        )
        .replacen(
            "store:\n",
            &format!("hot_state:\n  redis_url: \"{url}\"\n  on_failure: {on_failure}\nstore:\n"),
            1,
        );
    Stack::custom(&yaml)
}

async fn statuses(stack: &Stack, key: &str, n: usize, t: &str) -> Vec<(u16, Value)> {
    let calls = (0..n).map(|_| async {
        let r = post(stack, key, &chat("gpt-5.5", 5), t).await;
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn two_gateways_on_one_redis_let_exactly_rpm_through() {
    let redis = RedisServer::start();
    let (a, b) =
        (stack_on(&redis.url, "closed", "{ rpm: 50 }"), stack_on(&redis.url, "closed", "{ rpm: 50 }"));
    // Each node has its own store: the same account and key ids in both.
    let (acc_a, key_id_a, key_a) = customer(&a, "limited", "100", 1, json!({"name": "k"})).await;
    let (acc_b, key_id_b, key_b) = customer(&b, "limited", "100", 1, json!({"name": "k"})).await;
    assert_eq!((acc_a, key_id_a), (acc_b, key_id_b), "the nodes' ids differ: the test would count twice");
    let t = tag();
    let (ra, rb) = tokio::join!(statuses(&a, &key_a, 250, &t), statuses(&b, &key_b, 250, &t));
    let ok = ra.iter().chain(&rb).filter(|r| r.0 == 200).count();
    assert_eq!(ok, 50, "rpm 50 across two nodes");
    assert!(ra.iter().chain(&rb).all(|r| r.0 == 200 || r.0 == 429));
    let upstream = a.received(&t).await.len() + b.received(&t).await.len();
    assert_eq!(upstream, 50, "nothing refused reached the upstream");
}

#[tokio::test]
async fn redis_restarted_empty_mid_run_and_the_calls_go_on() {
    let mut redis = RedisServer::start();
    let stack = stack_on(&redis.url, "closed", "{ rpm: 3 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let before: Vec<u16> = statuses(&stack, &key, 5, &t).await.into_iter().map(|r| r.0).collect();
    assert_eq!(before.iter().filter(|&&s| s == 200).count(), 3, "{before:?}");
    redis.restart();
    // The connection comes back by itself; the script is loaded again.
    let mut ok = 0;
    let mut unavailable = 0;
    for _ in 0..40 {
        match post(&stack, &key, &chat("gpt-5.5", 5), &t).await.status().as_u16() {
            200 => ok += 1,
            503 => unavailable += 1,
            429 => break,
            other => panic!("status {other}"),
        }
        if unavailable > 0 && ok == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(ok, 3, "an empty Redis counts from nothing ({unavailable} refused while it came back)");
}

#[tokio::test]
async fn redis_down_closed_is_503_and_nothing_upstream_open_goes_on_under_its_share_of_the_limits() {
    let mut redis = RedisServer::start();
    let closed = stack_on(&redis.url, "closed", "{ rpm: 6 }");
    // Two nodes seen by the second at its start: its share is rpm 3.
    let open = stack_on(&redis.url, "open", "{ rpm: 6 }");
    let (_, _, key_c) = customer(&closed, "limited", "100", 1, json!({"name": "k"})).await;
    let (_, _, key_o) = customer(&open, "limited", "100", 1, json!({"name": "k"})).await;
    redis.stop();
    let t = tag();
    let answers = statuses(&closed, &key_c, 3, &t).await;
    for (status, doc) in &answers {
        assert_eq!(*status, 503, "{doc}");
        assert_eq!(doc["error"]["code"], "limits_unavailable", "{doc}");
    }
    assert!(closed.received(&t).await.is_empty(), "nothing went upstream");
    let t2 = tag();
    let answers = statuses(&open, &key_o, 5, &t2).await;
    let ok = answers.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 3, "the node's share of rpm 6 over 2 nodes: {answers:?}");
    assert_eq!(open.received(&t2).await.len(), 3);
}
