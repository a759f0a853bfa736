//! The wallets on Redis against a real Redis: a hold takes from the
//! wallet and the key's cap with the limits, all or nothing; a wallet not
//! seeded refuses to hold until it is; a seed stands once; an operator's
//! record applies once; a charge is taken once; an expired hold frees its
//! amount; concurrent holds never take more than the wallet has.

use crate::hot::redis::{Answer, HoldAsk, RedisState};
use crate::hot::testing::RedisServer;
use crate::hot::wallet::Seed;
use crate::limits::{Ask, InForce};

fn ask(key: u64, account: u64) -> Ask<'static> {
    Ask { key, account, class: None, group: "messages", input_estimate: 1, now: 1_700_000_000_000, mono: 0 }
}

fn hold(amount: u64, key_id: u64, cap: Option<u64>) -> HoldAsk {
    HoldAsk { amount, key_id, cap, lease_ms: 60_000 }
}

async fn state(server: &RedisServer) -> RedisState {
    RedisState::connect(&server.url).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn seeded(r: &RedisState, account: u64, credit: i64) {
    let seed = Seed { credit, ..Seed::default() };
    assert!(r.seed(account, &seed).await.unwrap_or_else(|e| panic!("{e}")));
}

async fn take(r: &RedisState, account: u64, id: &str, h: &HoldAsk, limits: &InForce) -> Answer {
    r.take(&ask(h.key_id, account), limits, id, Some(h)).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_hold_takes_from_the_wallet_and_its_charge_is_taken_once() {
    let server = RedisServer::start();
    let r = state(&server).await;
    let none = InForce::default();
    assert_eq!(take(&r, 1, "a", &hold(600, 7, None), &none).await, Answer::Unseeded);
    seeded(&r, 1, 1_000).await;
    let Answer::Taken(permit) = take(&r, 1, "a", &hold(600, 7, None), &none).await else { panic!("held") };
    assert_eq!(permit.available, Some(400));
    match take(&r, 1, "b", &hold(600, 7, None), &none).await {
        Answer::Wallet(w) => assert_eq!((w.spend_cap, w.left, w.budget), (false, 400, 400)),
        other => panic!("{other:?}"),
    }
    // The hold becomes a charge of 500; a retried settlement takes nothing.
    assert!(r.finish(&permit, true, None, 500).await.unwrap_or_else(|e| panic!("{e}")));
    let _ = r.finish(&permit, true, None, 500).await;
    let on = r.read(1, Some(7)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.held, on.key_spent), (1_000, 500, 0, 500));
    assert_eq!(on.pending, vec![("a:charge".to_string(), -500, Some(7))]);
    assert_eq!(on.keys, vec![(7, 500)]);
}

#[tokio::test]
async fn a_keys_cap_and_the_limits_are_taken_with_the_hold_or_nothing_is() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 2, 10_000).await;
    let rpm1 = InForce { rpm: Some(1), ..InForce::default() };
    let Answer::Taken(first) = take(&r, 2, "a", &hold(600, 8, Some(700)), &rpm1).await else {
        panic!("held")
    };
    // Over the cap: refused, and the rpm window is not taken.
    match take(&r, 2, "b", &hold(200, 8, Some(700)), &InForce::default()).await {
        Answer::Wallet(w) => assert_eq!((w.spend_cap, w.left, w.budget), (true, 100, 100)),
        other => panic!("{other:?}"),
    }
    assert!(r.cancel(&first).await.unwrap_or_else(|e| panic!("{e}")));
    let on = r.read(2, Some(8)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.held, on.debit), (0, 0), "a cancel gives the hold back");
    // Over the limit: refused, and nothing is held.
    let Answer::Taken(_) = take(&r, 2, "c", &hold(100, 8, None), &rpm1).await else { panic!("held") };
    assert!(matches!(take(&r, 2, "d", &hold(100, 8, None), &rpm1).await, Answer::Limit(_)));
    assert_eq!(r.read(2, None).await.map(|w| w.held).unwrap_or_default(), 100);
}

#[tokio::test]
async fn a_seed_stands_once_and_an_operators_record_applies_once() {
    let server = RedisServer::start();
    let r = state(&server).await;
    let seed = Seed {
        credit: 500,
        debit: 100,
        key_spent: vec![(3, 100)],
        pending: vec![("x:charge".into(), -100, Some(3))],
    };
    assert!(r.seed(4, &seed).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!r.seed(4, &Seed { credit: 9, ..Seed::default() }).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(r.apply(4, "topup:4:t1", 1_000).await.unwrap_or_else(|e| panic!("{e}")));
    let _ = r.apply(4, "topup:4:t1", 1_000).await;
    let on = r.read(4, Some(3)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.key_spent), (1_500, 100, 100));
    r.delivered(4, &["x:charge".into(), "topup:4:t1".into()]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(r.read(4, None).await.map(|w| w.pending.is_empty()).unwrap_or(false));
}

#[tokio::test]
async fn an_expired_hold_frees_its_amount() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 5, 1_000).await;
    let short = HoldAsk { lease_ms: 1, ..hold(1_000, 1, None) };
    assert!(matches!(take(&r, 5, "a", &short, &InForce::default()).await, Answer::Taken(_)));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(matches!(take(&r, 5, "b", &hold(1_000, 1, None), &InForce::default()).await, Answer::Taken(_)));
}

#[tokio::test]
async fn concurrent_holds_never_take_more_than_the_wallet_has() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 6, 10_000).await;
    let calls = (0..200).map(|i| {
        let r = r.clone();
        async move {
            let h = hold(100, 1, None);
            matches!(
                r.take(&ask(1, 6), &InForce::default(), &format!("c{i}"), Some(&h)).await,
                Ok(Answer::Taken(_))
            )
        }
    });
    let scripts_before = script_calls(&server).await;
    let taken = futures_util::future::join_all(calls).await.into_iter().filter(|t| *t).count();
    assert_eq!(taken, 100, "10,000 holds 100 holds of 100");
    assert_eq!(r.read(6, None).await.map(|w| w.held).unwrap_or_default(), 10_000);
    // The calls that came while one was on its way went in batches.
    let scripts = script_calls(&server).await - scripts_before;
    assert!(scripts < 20, "200 concurrent admits of one account took {scripts} script calls");
}

#[tokio::test]
async fn a_batch_of_admits_is_all_or_nothing_call_by_call_in_order() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 8, 1_000_000).await;
    let rpm5 = InForce { rpm: Some(5), ..InForce::default() };
    let calls = (0..40).map(|i| {
        let r = r.clone();
        async move {
            // Half of them ask more than the wallet has: refused, taking
            // nothing from the window.
            let amount = if i % 2 == 0 { 2_000_000 } else { 1_000 };
            r.take(&ask(1, 8), &rpm5, &format!("m{i}"), Some(&hold(amount, 1, None))).await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let taken = answers.iter().filter(|a| matches!(a, Ok(Answer::Taken(_)))).count();
    let wallet = answers.iter().filter(|a| matches!(a, Ok(Answer::Wallet(_)))).count();
    assert_eq!(taken, 5, "the window lets 5 through");
    assert_eq!(taken + wallet + answers.iter().filter(|a| matches!(a, Ok(Answer::Limit(_)))).count(), 40);
    assert_eq!(r.read(8, None).await.map(|w| w.held).unwrap_or_default(), 5_000);
}

/// Function and script calls Redis has run (its own `INFO commandstats`).
async fn script_calls(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url.as_str()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("{e}"));
    let info: String =
        redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    info.lines()
        .filter(|l| l.starts_with("cmdstat_fcall:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split_once("calls=").and_then(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn a_renewed_hold_outlives_its_lease_and_one_left_alone_lapses() {
    let server = RedisServer::start();
    let mut r = state(&server).await;
    r.lease_ms = 300;
    seeded(&r, 7, 1_000).await;
    let h = HoldAsk { lease_ms: 300, ..hold(1_000, 1, None) };
    let Answer::Taken(permit) = take(&r, 7, "a", &h, &InForce::default()).await else { panic!("held") };
    let calls = vec![(permit.request_id().to_string(), permit.leases())];
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        r.renew(&calls, now).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // 450 ms on: still held, renewed.
    assert!(matches!(take(&r, 7, "b", &h, &InForce::default()).await, Answer::Wallet(_)));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Its node stopped renewing it (it died): the hold lapsed.
    assert!(matches!(take(&r, 7, "c", &h, &InForce::default()).await, Answer::Taken(_)));
}

#[tokio::test]
async fn calls_of_one_account_settle_together_each_once() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 8, 10_000).await;
    let rpm = InForce { rpm: Some(10), concurrent: Some(5), ..InForce::default() };
    let Answer::Taken(a) = take(&r, 8, "a", &hold(1_000, 1, Some(5_000)), &rpm).await else { panic!("held") };
    let Answer::Taken(b) = take(&r, 8, "b", &hold(2_000, 2, None), &rpm).await else { panic!("held") };
    let calls = [(&*a, true, Some(1), 700), (&*b, true, None, 1_500)];
    r.finish_many(&calls).await.unwrap_or_else(|e| panic!("{e}"));
    // Sent again (a retry): nothing is taken twice.
    r.finish_many(&calls).await.unwrap_or_else(|e| panic!("{e}"));
    let on = r.read(8, Some(1)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.held, on.key_spent), (10_000, 2_200, 0, 700));
    assert_eq!(on.pending.len(), 2);
    // Both left the in-flight set: five more fit under the concurrency of 5.
    for i in 0..5 {
        assert!(matches!(take(&r, 8, &format!("c{i}"), &hold(1, 1, None), &rpm).await, Answer::Taken(_)));
    }
}

#[tokio::test]
async fn settlements_ride_with_the_accounts_admits_each_taken_once() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 9, 1_000_000).await;
    let before = script_calls(&server).await;
    let calls = (0..100).map(|i| {
        let r = r.clone();
        async move {
            let Answer::Taken(permit) =
                take(&r, 9, &format!("s{i}"), &hold(1_000, 1, None), &InForce::default()).await
            else {
                panic!("held")
            };
            // Nothing waits for a settlement: it goes with the account's
            // next batch, or on a task of its own.
            r.finish_soon(permit, true, None, 600);
        }
    });
    futures_util::future::join_all(calls).await;
    let mut on = r.read(9, Some(1)).await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        if on.held == 0 && on.pending.len() == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        on = r.read(9, Some(1)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!((on.credit, on.debit, on.held, on.key_spent), (1_000_000, 60_000, 0, 60_000));
    assert_eq!(on.pending.len(), 100);
    // 100 admits and 100 settlements, in far fewer calls (the reads above
    // are scripts too, counted once each).
    let calls = script_calls(&server).await - before;
    assert!(calls < 100, "100 admits and their settlements took {calls} calls");
}

#[tokio::test]
async fn records_the_ledger_kept_leave_the_pending_records_at_once() {
    let server = RedisServer::start();
    let r = state(&server).await;
    seeded(&r, 10, 10_000).await;
    for id in ["a", "b"] {
        let Answer::Taken(p) = take(&r, 10, id, &hold(1_000, 1, None), &InForce::default()).await else {
            panic!("held")
        };
        assert!(r.finish(&p, true, None, 500).await.unwrap_or_else(|e| panic!("{e}")));
    }
    let pending = |on: crate::hot::wallet::OnRedis| on.pending.into_iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(pending(r.read(10, None).await.unwrap_or_else(|e| panic!("{e}"))).len(), 2);
    let journal = crate::store::journal::Journal::open(None).unwrap_or_else(|e| panic!("{e}"));
    crate::hot::sidecar::unpend_on_delivery(r.clone(), tokio::runtime::Handle::current(), &journal)
        .unwrap_or_else(|e| panic!("{e}"));
    // The writer kept a's charge (and a record of no wallet amount).
    let kept = crate::billing::LedgerRecord::adjustment("a:charge".into(), 10, -500, 1);
    journal.delivered(&[kept, crate::billing::LedgerRecord::adjustment("x".into(), 10, 0, 1)]);
    // Pending a while longer (see UNPEND_AFTER), then gone.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(pending(r.read(10, None).await.unwrap_or_else(|e| panic!("{e}"))).len(), 2);
    let mut left = Vec::new();
    for _ in 0..300 {
        left = pending(r.read(10, None).await.unwrap_or_else(|e| panic!("{e}")));
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(left, vec!["b:charge".to_string()]);
    // The wallet is as it was: only what is pending changed.
    let on = r.read(10, None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((on.credit, on.debit, on.held), (10_000, 1_000, 0));
}
