//! The dashboards' reads on every backend: ledger pages by posting id in
//! both orders, charges only, accounts by id with a search whose `%` and
//! `_` are plain characters, an account's keys, and usage from the daily
//! totals the ledger's trigger keeps (equal to adding up the ledger).

use super::{charge, fresh, on_every_backend, record, Backend};
use crate::billing::RecordKind;
use crate::store::{AccountsPage, LedgerPage, NewKey, UsageFilter};

on_every_backend!(
    ledger_pages_follow_the_posting_ids_both_ways,
    accounts_are_listed_by_id_and_searched_by_name,
    an_accounts_keys_are_listed,
    daily_totals_equal_the_ledger_added_up,
);

async fn ledger_pages_follow_the_posting_ids_both_ways(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let b = store.create_account("other", "pro", None, 1).await.unwrap();
    let mut batch = vec![record("t", RecordKind::Topup, a.id, 1_000)];
    for i in 0..5 {
        batch.push(charge(&format!("c{i}"), a.id, Some(1), 10 + i, &format!("r{i}")));
    }
    batch.push(charge("theirs", b.id, None, 5, "rb"));
    store.append(&batch).await.unwrap();
    let every = store.ledger(a.id).await.unwrap();
    assert_eq!(every.len(), 6);
    let ids: Vec<i64> = every.iter().map(|r| r.id).collect();
    let page = |p: LedgerPage| {
        let store = store.clone();
        async move { store.ledger_page(&p).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>() }
    };
    let base = LedgerPage { account: a.id, limit: 2, ..LedgerPage::default() };
    assert_eq!(page(base.clone()).await, ids[..2]);
    assert_eq!(page(LedgerPage { after: Some(ids[1]), ..base.clone() }).await, ids[2..4]);
    let newest = LedgerPage { newest_first: true, ..base.clone() };
    assert_eq!(page(newest.clone()).await, [ids[5], ids[4]]);
    assert_eq!(page(LedgerPage { before: Some(ids[4]), ..newest.clone() }).await, [ids[3], ids[2]]);
    let charges = LedgerPage { charges_only: true, limit: 10, ..newest };
    let rows = store.ledger_page(&charges).await.unwrap();
    assert_eq!(rows.len(), 5, "the top-up is not a request");
    assert_eq!(rows[0].request_id.as_deref(), Some("r4"));
    assert_eq!(rows[0].amount_nano_usd, -14);
}

async fn accounts_are_listed_by_id_and_searched_by_name(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let mut ids = Vec::new();
    for name in ["Acme Labs", "acme_two", "Zenith", "100% Acme"] {
        ids.push(store.create_account(name, "pro", None, 1).await.unwrap().id);
    }
    let list = |p: AccountsPage| {
        let store = store.clone();
        async move { store.accounts(&p).await.unwrap().into_iter().map(|a| a.name).collect::<Vec<_>>() }
    };
    let all = AccountsPage { limit: 10, ..AccountsPage::default() };
    assert_eq!(list(all.clone()).await, ["Acme Labs", "acme_two", "Zenith", "100% Acme"]);
    assert_eq!(list(AccountsPage { after: Some(ids[1]), limit: 1, ..all.clone() }).await, ["Zenith"]);
    let search = |s: &str| AccountsPage { search: Some(s.into()), ..all.clone() };
    assert_eq!(list(search("ACME")).await, ["Acme Labs", "acme_two", "100% Acme"]);
    assert_eq!(list(search("%")).await, ["100% Acme"], "% is a character");
    assert_eq!(list(search("_")).await, ["acme_two"], "_ is a character");
    assert_eq!(list(search("nobody")).await, Vec::<String>::new());
}

async fn an_accounts_keys_are_listed(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let b = store.create_account("other", "pro", None, 1).await.unwrap();
    for (account, name, hash) in [(a.id, "one", 1), (b.id, "theirs", 2), (a.id, "two", 3)] {
        let new = NewKey { name: name.into(), ..NewKey::default() };
        store.insert_key(account, "sk-x", &[hash; 32], &new, 1).await.unwrap();
    }
    let names: Vec<String> = store.keys_of(a.id).await.unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["one", "two"]);
    assert!(store.keys_of(b.id + 1).await.unwrap().is_empty());
}

async fn daily_totals_equal_the_ledger_added_up(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let b = store.create_account("other", "pro", None, 1).await.unwrap();
    let day = 86_400_000;
    let at = |mut r: crate::billing::LedgerRecord, at: u64| {
        r.at = at;
        r
    };
    let batch = vec![
        at(charge("c1", a.id, Some(1), 10, "r1"), day),
        at(charge("c2", a.id, None, 20, "r2"), day + 5),
        at(charge("c3", a.id, Some(1), 40, "r3"), 3 * day),
        at(charge("c4", b.id, Some(2), 80, "r4"), 3 * day + 1),
        record("t", RecordKind::Topup, a.id, 1_000),
    ];
    store.append(&batch).await.unwrap();
    // A record appended again (a replayed journal) counts once.
    store.append(&batch[..2]).await.unwrap();
    let totals = |f: UsageFilter| {
        let store = store.clone();
        async move { store.usage(&f).await.unwrap() }
    };
    let mine = UsageFilter { account: Some(a.id), ..UsageFilter::default() };
    let from_ledger = UsageFilter { since: Some(0), ..mine.clone() };
    assert_eq!(totals(mine.clone()).await, totals(from_ledger).await);
    let days: Vec<(String, i64, i64)> =
        totals(mine.clone()).await.into_iter().map(|r| (r.day, r.requests, r.cost_nano_usd)).collect();
    assert_eq!(days, [("1970-01-02".into(), 2, 30), ("1970-01-04".into(), 1, 40)]);
    let everyone = totals(UsageFilter::default()).await;
    assert_eq!(everyone.iter().map(|r| r.requests).sum::<i64>(), 4);
    assert_eq!(everyone.iter().map(|r| r.cost_nano_usd).sum::<i64>(), 150);
    let recent = totals(UsageFilter { from_day: Some("1970-01-03".into()), ..UsageFilter::default() }).await;
    assert_eq!(recent.iter().map(|r| r.cost_nano_usd).sum::<i64>(), 120);
    let key_one = totals(UsageFilter { key_id: Some(1), ..mine }).await;
    assert_eq!(key_one.iter().map(|r| r.cost_nano_usd).sum::<i64>(), 50);
}
