//! The ledger on every backend: records kept once with their lots, what
//! the reads add up, and one consistent snapshot while others append.

use super::{charge, fresh, on_every_backend, record, Backend, TestDb};
use crate::billing::{LedgerRecord, Metered, NanoUsd, RecordKind};
use crate::store::{LotRow, RecentCall, UsageFilter, UsageRow};

on_every_backend!(
    grants_refunds_and_unpaid_costs_are_kept,
    a_large_batch_is_kept_once_in_order,
    usage_adds_up_charges_by_day_and_model,
    recent_calls_are_the_charges_since,
    a_snapshot_names_the_records_kept,
    a_snapshot_is_one_read_while_another_store_appends,
    two_stores_appending_the_same_records_keep_each_once,
);

async fn grants_refunds_and_unpaid_costs_are_kept(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let mut topup = record("topup", RecordKind::Topup, a.id, 500);
    topup.paid_nano = 500;
    let opening = LedgerRecord::adjustment("opening".into(), a.id as u64, 300, 1);
    let down = LedgerRecord::adjustment("down".into(), a.id as u64, -40, 2);
    let refund = record("refund", RecordKind::Refund, a.id, 25);
    let mut unpaid = charge("c1", a.id, None, 60, "r1");
    unpaid.unpaid_nano = 7;
    unpaid.paid_nano = 30;
    if let Some(m) = unpaid.metered.as_mut() {
        m.estimated = true;
        m.cached_tokens = 3;
        m.cache_write_tokens = 4;
    }
    let batch = [topup, opening, down, refund, unpaid];
    assert_eq!(store.append(&batch).await.unwrap(), 5);
    assert_eq!(store.total().await.unwrap(), 0);
    let snap = store.snapshot(&[], 0).await.unwrap();
    let lot = |paid, multiplier, granted| LotRow {
        account_id: a.id,
        paid: NanoUsd(paid),
        multiplier,
        granted: NanoUsd(granted),
    };
    assert_eq!(snap.lots, vec![lot(500, 1, 0), lot(0, 1, 300), lot(0, 1, 25)], "a lot per credit, in order");
    assert_eq!(snap.debited, vec![(a.id, NanoUsd(100))]);
    assert_eq!(snap.operator_keys, ["topup", "opening", "down", "refund"]);
    let ledger = store.ledger(a.id).await.unwrap();
    let amounts: Vec<i64> = ledger.iter().map(|r| r.amount_nano_usd).collect();
    assert_eq!(amounts, [500, 300, -40, 25, -60]);
    let c = &ledger[4];
    assert_eq!((c.paid_nano_usd, c.unpaid_nano_usd, c.estimated, c.cached_tokens), (30, 7, true, Some(3)));
    assert_eq!((c.request_id.as_deref(), c.model.as_deref(), c.key_id), (Some("r1"), Some("m"), None));
    assert_eq!(
        (ledger[0].estimated, ledger[0].model.as_deref(), ledger[0].input_tokens),
        (false, None, None)
    );
    assert_eq!(store.generation("nope").await.unwrap(), None);
    assert_eq!(store.ledger(a.id + 1).await.unwrap(), vec![]);
    assert_eq!(store.append(&[]).await.unwrap(), 0);
}

async fn a_large_batch_is_kept_once_in_order(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let mut batch: Vec<LedgerRecord> =
        (0..150).map(|i| LedgerRecord::adjustment(format!("g{i}"), a.id as u64, i + 1, i as u64)).collect();
    // A record sent twice in one batch, and a batch half kept before.
    batch.push(batch[3].clone());
    assert_eq!(store.append(&batch[..70]).await.unwrap(), 70);
    assert_eq!(store.append(&batch).await.unwrap(), 80);
    let ledger = store.ledger(a.id).await.unwrap();
    assert_eq!(ledger.iter().map(|r| r.amount_nano_usd).collect::<Vec<_>>(), (1..=150).collect::<Vec<_>>());
    let snap = store.snapshot(&[], 0).await.unwrap();
    assert_eq!(snap.lots.iter().map(|l| l.granted.0).collect::<Vec<_>>(), (1..=150).collect::<Vec<_>>());
    assert_eq!(store.total().await.unwrap(), 0);
}

async fn usage_adds_up_charges_by_day_and_model(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let other = store.create_account("other", "pro", None, 1).await.unwrap();
    let day = 86_400_000;
    let call = |key: &str, account: i64, key_id: i64, model: &str, at: u64, cost: i64| {
        let mut c = charge(key, account, Some(key_id), cost, key);
        c.at = at;
        c.metered = Some(Metered {
            model: model.into(),
            input_tokens: 100,
            output_tokens: 10,
            cached_tokens: 1,
            request_id: key.into(),
            ..Metered::default()
        });
        c
    };
    let batch = [
        call("c1", a.id, 1, "m1", day + 5, 10),
        call("c2", a.id, 2, "m1", day + 6, 20),
        call("c3", a.id, 1, "m2", 2 * day + 1, 40),
        call("c4", other.id, 3, "m1", day + 7, 80),
        record("t", RecordKind::Topup, a.id, 1_000),
    ];
    store.append(&batch).await.unwrap();
    let row = |day: &str, model: &str, n: i64, cost: i64| UsageRow {
        day: day.into(),
        model: model.into(),
        requests: n,
        input_tokens: 100 * n,
        output_tokens: 10 * n,
        cached_tokens: n,
        cost_nano_usd: cost,
    };
    let usage = |f: UsageFilter| {
        let store = store.clone();
        async move { store.usage(&f).await.unwrap() }
    };
    let all = UsageFilter { account: Some(a.id), ..UsageFilter::default() };
    assert_eq!(usage(all.clone()).await, [row("1970-01-02", "m1", 2, 30), row("1970-01-03", "m2", 1, 40)]);
    let by_key = UsageFilter { key_id: Some(1), ..all.clone() };
    assert_eq!(usage(by_key).await, [row("1970-01-02", "m1", 1, 10), row("1970-01-03", "m2", 1, 40)]);
    let by_model = UsageFilter { model: Some("m2".into()), ..all.clone() };
    assert_eq!(usage(by_model).await, [row("1970-01-03", "m2", 1, 40)]);
    let by_day = UsageFilter { day: Some("1970-01-02".into()), ..all.clone() };
    assert_eq!(usage(by_day).await, [row("1970-01-02", "m1", 2, 30)]);
    let since = UsageFilter { since: Some(day as i64 + 6), ..all.clone() };
    assert_eq!(usage(since).await, [row("1970-01-02", "m1", 1, 20), row("1970-01-03", "m2", 1, 40)]);
    assert_eq!(usage(UsageFilter { account: Some(other.id + 1), ..all }).await, []);
}

async fn recent_calls_are_the_charges_since(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let at = |mut r: LedgerRecord, at: u64, group: Option<&str>| {
        r.at = at;
        if let Some(m) = r.metered.as_mut() {
            m.group = group.map(|g| g.to_string().into());
        }
        r
    };
    let batch = [
        at(charge("late", a.id, Some(4), 1, "late"), 300, Some("responses")),
        at(charge("old", a.id, Some(4), 1, "old"), 100, Some("messages")),
        at(charge("early", a.id, None, 1, "early"), 200, None),
        at(record("topup", RecordKind::Topup, a.id, 10), 250, None),
    ];
    store.append(&batch).await.unwrap();
    let call = |key_id, group: Option<&str>, at| RecentCall {
        account_id: a.id,
        key_id,
        model: Some("m".into()),
        group: group.map(str::to_string),
        at,
    };
    assert_eq!(
        store.recent_calls(150).await.unwrap(),
        [call(None, None, 200), call(Some(4), Some("responses"), 300)],
        "charges only, oldest first"
    );
}

async fn a_snapshot_names_the_records_kept(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let kept: Vec<LedgerRecord> = (0..700).map(|i| charge(&format!("c{i}"), a.id, None, 1, "r")).collect();
    store.append(&kept).await.unwrap();
    let mut asked: Vec<String> = (0..1_000).map(|i| format!("c{i}")).collect();
    asked.push("c1".into());
    let snap = store.snapshot(&asked, 0).await.unwrap();
    assert_eq!(snap.present.len(), 700);
    assert!(snap.present.contains("c699") && !snap.present.contains("c700"));
    assert_eq!(snap.debited, vec![(a.id, NanoUsd(700))]);
    assert!(snap.operator_keys.is_empty());
}

async fn a_snapshot_is_one_read_while_another_store_appends(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (reader, writer) = (db.open().await, db.open().await);
    let a = reader.create_account("acme", "pro", None, 1).await.unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
    let appending = {
        let keys = keys.clone();
        tokio::spawn(async move {
            for key in &keys {
                writer.append(&[charge(key, a.id, None, 1, key)]).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut reads = 0;
    while !appending.is_finished() || reads == 0 {
        let snap = reader.snapshot(&keys, 0).await.unwrap();
        let debited = snap.debited.first().map_or(0, |d| d.1 .0);
        assert_eq!(debited, snap.present.len() as i64, "the totals and the records kept, from one read");
        reads += 1;
    }
    appending.await.unwrap();
    assert_eq!(reader.snapshot(&keys, 0).await.unwrap().present.len(), 200);
}

async fn two_stores_appending_the_same_records_keep_each_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = (db.open().await, db.open().await);
    let account = a.create_account("acme", "pro", None, 1).await.unwrap();
    let records: Vec<LedgerRecord> = (0..400)
        .map(|i| match i % 4 {
            0 => LedgerRecord::adjustment(format!("g{i}"), account.id as u64, 10, i),
            _ => charge(&format!("c{i}"), account.id, None, 1, "r"),
        })
        .collect();
    // Four writers, two of them going backwards.
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        let mut mine = records.clone();
        if n % 2 == 1 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut new = 0;
            for batch in mine.chunks(37 + n) {
                new += store.append(batch).await.unwrap();
            }
            new
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += t.await.unwrap();
    }
    assert_eq!(new, 400, "each record counted new once");
    assert_eq!(a.ledger(account.id).await.unwrap().len(), 400);
    assert_eq!(b.snapshot(&[], 0).await.unwrap().lots.len(), 100, "a lot per grant, once");
    assert_eq!(b.total().await.unwrap(), 0);
}
