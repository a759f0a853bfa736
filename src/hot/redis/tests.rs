//! The limiter's semantics against a real Redis: exact windows, counters
//! apart from thresholds, per class and per group, the daily cap and its
//! give-back, the token bucket, concurrency, 0 blocks, all or nothing,
//! exact retry-after, the function library loaded again after Redis lost it.

use super::*;
use crate::hot::testing::RedisServer;
use crate::limits::{Ask, InForce, Kind};
use std::time::Duration;

fn ask(key: u64, account: u64, class: Option<&'static str>, estimate: u64) -> Ask<'static> {
    Ask { key, account, class, group: "messages", input_estimate: estimate, now: 1_700_000_000_000, mono: 0 }
}

async fn limits(server: &RedisServer) -> RedisState {
    RedisState::connect(&server.url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Admits `n` calls; how many passed.
async fn passes(r: &RedisState, a: &Ask<'_>, l: &InForce, n: usize, tag: &str) -> usize {
    let mut ok = 0;
    for i in 0..n {
        if r.admit(a, l, &format!("{tag}-{i}")).await.unwrap_or_else(|e| panic!("{e}")).is_ok() {
            ok += 1;
        }
    }
    ok
}

async fn refused(r: &RedisState, a: &Ask<'_>, l: &InForce, id: &str) -> Refused {
    match r.admit(a, l, id).await.unwrap_or_else(|e| panic!("{e}")) {
        Err(refused) => refused,
        Ok(p) => panic!("admitted: {p:?}"),
    }
}

#[tokio::test]
async fn rpm_is_exact_and_the_retry_after_is_when_the_oldest_leaves() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let l = InForce { rpm: Some(3), ..Default::default() };
    let a = ask(1, 1, None, 0);
    assert_eq!(passes(&r, &a, &l, 5, "a").await, 3);
    let no = refused(&r, &a, &l, "x").await;
    assert_eq!(no.kind, Kind::Rpm);
    assert_eq!(no.limit, 3);
    assert!(no.retry_after_ms > 59_000 && no.retry_after_ms <= 60_000, "{no:?}");
    // A new threshold moves the limit, never the count.
    let l5 = InForce { rpm: Some(5), ..Default::default() };
    assert_eq!(passes(&r, &a, &l5, 5, "b").await, 2);
    // Another key has its own window.
    assert_eq!(passes(&r, &ask(2, 1, None, 0), &l, 5, "c").await, 3);
}

#[tokio::test]
async fn a_window_has_no_boundary_burst() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let l = InForce { rph: Some(2), ..Default::default() };
    let a = ask(1, 7, None, 0);
    assert_eq!(passes(&r, &a, &l, 2, "a").await, 2);
    // Whatever the clock, nothing more for the whole hour.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let no = refused(&r, &a, &l, "x").await;
    assert_eq!(no.kind, Kind::Rph);
    assert!(no.retry_after_ms > 3_590_000 && no.retry_after_ms < 3_600_000, "{no:?}");
    // The hourly window is the account's: another key of it is refused too.
    assert_eq!(refused(&r, &ask(2, 7, None, 0), &l, "y").await.kind, Kind::Rph);
}

#[tokio::test]
async fn a_class_counts_on_top_of_the_key_and_zero_blocks() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let l = InForce { rpm: Some(4), rpm_class: Some(2), ..Default::default() };
    let opus = ask(1, 1, Some("opus"), 0);
    assert_eq!(passes(&r, &opus, &l, 3, "o").await, 2);
    assert_eq!(refused(&r, &opus, &l, "x").await.kind, Kind::RpmClass);
    // Other models are under rpm only: 2 more fit, then the total refuses.
    let other = ask(1, 1, None, 0);
    assert_eq!(passes(&r, &other, &l, 3, "p").await, 2);
    assert_eq!(refused(&r, &other, &l, "y").await.kind, Kind::Rpm);
    let zero = InForce { daily_messages: Some(0), ..Default::default() };
    let no = refused(&r, &ask(9, 9, None, 0), &zero, "z").await;
    assert!(no.blocked());
    assert_eq!(no.retry_after_ms, u64::MAX);
}

#[tokio::test]
async fn all_or_nothing_and_cancel_gives_everything_back() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let a = ask(1, 1, None, 0);
    // rpm 5 passes, daily 1 refuses the second: it took nothing from rpm.
    let l = InForce { rpm: Some(5), daily_messages: Some(1), ..Default::default() };
    assert_eq!(passes(&r, &a, &l, 4, "a").await, 1);
    let rpm = InForce { rpm: Some(5), ..Default::default() };
    let standing = r.standing(&a, &rpm).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(standing[0].remaining, 4, "{standing:?}");
    // A permit cancelled gives back its minute, its message and its slot.
    let l2 = InForce { rpm: Some(5), daily_messages: Some(3), concurrent: Some(5), ..Default::default() };
    let b = ask(2, 2, None, 0);
    let p = r.admit(&b, &l2, "b").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(r.cancel(&p).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!r.cancel(&p).await.unwrap_or_else(|e| panic!("{e}")), "settled once only");
    let after = r.standing(&b, &l2).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(after.iter().all(|s| s.remaining == s.limit), "{after:?}");
}

#[tokio::test]
async fn concurrency_counts_every_call_in_flight_and_an_unbilled_call_gives_its_message_back() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let a = ask(1, 1, None, 0);
    // No concurrency limit: the calls are counted in flight anyway.
    let free = InForce { daily_messages: Some(10), ..Default::default() };
    let p1 =
        r.admit(&a, &free, "1").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    let _p2 =
        r.admit(&a, &free, "2").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    let one = InForce { concurrent: Some(2), daily_messages: Some(10), ..Default::default() };
    let no = refused(&r, &a, &one, "3").await;
    assert_eq!((no.kind, no.retry_after_ms), (Kind::Concurrent, 1_000));
    // p1 ends unbilled: its slot frees and its message comes back.
    assert!(r.finish(&p1, false, None, 0).await.unwrap_or_else(|e| panic!("{e}")));
    let p3 =
        r.admit(&a, &one, "3").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    let daily = p3.standing.iter().find(|s| s.kind == Kind::Daily).map(|s| s.remaining);
    assert_eq!(daily, Some(8), "{:?}", p3.standing);
    let no = refused(&r, &a, &InForce { concurrent: Some(0), ..Default::default() }, "4").await;
    assert!(no.blocked());
}

#[tokio::test]
async fn the_bucket_takes_the_estimate_and_the_providers_count_corrects_it() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let l = InForce { input_tpm: Some(6_000), ..Default::default() };
    let big = ask(1, 1, None, 5_000);
    let p =
        r.admit(&big, &l, "a").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    let no = refused(&r, &big, &l, "b").await;
    assert_eq!(no.kind, Kind::InputTpm);
    // 4,000 short at 100 tokens a second: 40 s, less what refilled meanwhile.
    assert!(no.retry_after_ms > 39_000 && no.retry_after_ms <= 40_000, "{no:?}");
    // The provider counted 1,000: 4,000 come back.
    assert!(r.finish(&p, true, Some(1_000), 0).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(r.admit(&big, &l, "c").await.unwrap_or_else(|e| panic!("{e}")).is_ok());
    // More than the whole bucket: never.
    let no = refused(&r, &ask(2, 1, None, 7_000), &l, "d").await;
    assert_eq!(no.retry_after_ms, u64::MAX);
}

#[tokio::test]
async fn the_library_is_loaded_again_after_redis_lost_it() {
    let mut server = RedisServer::start();
    let r = limits(&server).await;
    let l = InForce { rpm: Some(2), ..Default::default() };
    let a = ask(1, 1, None, 0);
    assert_eq!(passes(&r, &a, &l, 3, "a").await, 2);
    server.restart();
    // Empty: no script, no counts. The calls go on.
    let mut ok = 0;
    for i in 0..3 {
        // The manager reconnects in the background; a call may fail meanwhile.
        for _ in 0..50 {
            match r.admit(&a, &l, &format!("b-{i}")).await {
                Ok(v) => {
                    ok += usize::from(v.is_ok());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(r.version(), "tollgate_admit_6");
}

#[tokio::test]
async fn each_node_says_it_is_alive_and_the_fleet_is_counted() {
    let server = RedisServer::start();
    let (a, b) = (limits(&server).await, limits(&server).await);
    let now = 1_700_000_000_000;
    assert_eq!(a.heartbeat("a", now).await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert_eq!(b.heartbeat("b", now + 1_000).await.unwrap_or_else(|e| panic!("{e}")), 2);
    assert_eq!(a.heartbeat("a", now + 2_000).await.unwrap_or_else(|e| panic!("{e}")), 2, "counted once");
    // b silent for longer than NODE_TTL_MS: gone.
    let later = now + 1_000 + NODE_TTL_MS + 1;
    assert_eq!(a.heartbeat("a", later).await.unwrap_or_else(|e| panic!("{e}")), 1);
}

#[tokio::test]
async fn every_key_of_a_call_is_in_its_accounts_slot_on_a_cluster() {
    let server = RedisServer::start_cluster();
    let r = limits(&server).await;
    let every = InForce {
        rpm: Some(5),
        rpm_class: Some(5),
        rph: Some(5),
        daily_messages: Some(5),
        input_tpm: Some(1_000),
        concurrent: Some(5),
        ..Default::default()
    };
    let a = Ask { group: "responses", ..ask(11, 42, Some("opus"), 10) };
    // CROSSSLOT (or an undeclared key, refused under `#!lua`) would be an error here.
    let p =
        r.admit(&a, &every, "x").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.standing.len(), 6);
    assert!(r.finish(&p, true, Some(5), 0).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(r.standing(&a, &every).await.is_ok());
}

/// The permit of call `id` that took a hold (`hold`: as the function keeps
/// it) for `key` and no limit.
fn hold_only_permit(account: u64, id: &str, key: u64, hold: &str) -> RedisPermit {
    RedisPermit {
        keys: Vec::new(),
        account,
        request_id: id.into(),
        day_taken: false,
        input_taken: 0,
        held_for: Some(key),
        hold: hold.into(),
        in_flight_taken: false,
        windows_taken: [false; 3],
        standing: Vec::new(),
        available: None,
    }
}

/// One `many` call of admits and a settlement of one account: each call
/// sees the writes of those before it (the wallet's writes are made once,
/// at the end of the call), the cap's refusal takes nothing.
#[tokio::test]
async fn one_call_of_admits_and_a_settlement_each_sees_the_ones_before() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let seed = crate::hot::wallet::Seed { credit: 10_000, ..Default::default() };
    assert!(r.seed(3, &seed).await.unwrap_or_else(|e| panic!("{e}")));
    let admit = |id: &str, amount| {
        let hold = HoldAsk { amount, key_id: 5, cap: Some(1_000), lease_ms: 60_000 };
        hold_args(id, &hold)
    };
    let first = hold_only_permit(3, "a", 5, "600 5 1");
    let settle = settle_args("finish", &first, true, None, 500);
    // A hold and no limit: the calls have no keys of their own.
    let keys = Vec::from(wallet_keys(3));
    let mut args = vec!["many".to_string(), "4".to_string()];
    for v in [admit("a", 600), admit("b", 600), settle, admit("c", 500)] {
        args.extend(v);
    }
    let Value::Array(parts) = r.invoke(&keys, &args).await.unwrap_or_else(|e| panic!("{e}")) else {
        panic!("an answer per call")
    };
    let items = |i: usize| match &parts[i] {
        Value::Array(items) => items.iter().map(|v| int(v).unwrap_or(-99)).collect::<Vec<_>>(),
        other => vec![int(other).unwrap_or(-99)],
    };
    // a: held, 9,400 left. b: refused by the cap (400 left of 1,000).
    assert_eq!((items(0)[0], items(0).last().copied()), (1, Some(9_400)));
    assert_eq!(
        parts[1].clone(),
        Value::Array(vec![
            Value::Int(0),
            Value::BulkString(b"spend_cap".to_vec()),
            Value::Int(400),
            Value::Int(400)
        ])
    );
    // a's hold became a charge of 500, so c's 500 fit under the cap.
    assert_eq!(items(2), vec![1]);
    assert_eq!((items(3)[0], items(3).last().copied()), (1, Some(9_000)));
    let on = r.read(3, Some(5)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.held, on.key_spent), (10_000, 500, 500, 500));
    let mut conn = r.conn.clone();
    let key_held: i64 = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("h:5")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holds: Vec<String> =
        redis::cmd("HKEYS").arg(&keys[1]).query_async(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    let leases: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys[2])
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((key_held, holds, leases), (500, vec!["c".to_string()], vec!["c".to_string()]));
}

/// `FUNCTION LOAD REPLACE` from a node of another release must never swap
/// a different text in under a name both use: a change to `admit.lua`
/// takes a new version in its names (and this digest).
#[test]
fn the_library_is_named_for_its_text() {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(LIBRARY.as_bytes()));
    assert!(LIBRARY.starts_with(&format!("#!lua name={FUNCTION}\n")));
    assert!(LIBRARY.contains(&format!("redis.register_function('{FUNCTION}', call)")));
    assert_eq!(
        &digest[..16],
        "2455a4a04a3d4690",
        "admit.lua changed: a new version in its names, then this digest"
    );
}

/// A hold taken and settled in one call (a settlement is only built once
/// its admit was answered, so a node never sends this; the function
/// must still see its own hold).
#[tokio::test]
async fn a_hold_taken_and_charged_in_one_call_is_released() {
    let server = RedisServer::start();
    let r = limits(&server).await;
    let seed = crate::hot::wallet::Seed { credit: 10_000, ..Default::default() };
    assert!(r.seed(4, &seed).await.unwrap_or_else(|e| panic!("{e}")));
    let hold = HoldAsk { amount: 600, key_id: 2, cap: None, lease_ms: 60_000 };
    let permit = hold_only_permit(4, "a", 2, "600 2 0");
    let keys = Vec::from(wallet_keys(4));
    let mut args = vec!["many".to_string(), "2".to_string()];
    args.extend(hold_args("a", &hold));
    args.extend(settle_args("finish", &permit, true, None, 500));
    let Value::Array(parts) = r.invoke(&keys, &args).await.unwrap_or_else(|e| panic!("{e}")) else {
        panic!("an answer per call")
    };
    assert_eq!(parts[1], Value::Int(1), "the hold was live");
    let on = r.read(4, Some(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.held, on.key_spent), (10_000, 500, 0, 500));
    let mut conn = r.conn.clone();
    let holds: i64 =
        redis::cmd("HLEN").arg(&keys[1]).query_async(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    let leases: i64 =
        redis::cmd("ZCARD").arg(&keys[2]).query_async(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((holds, leases), (0, 0));
}
