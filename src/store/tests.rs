//! The store's behaviour, the same on every backend: each test here runs
//! once on SQLite and once on PostgreSQL (`<test>::sqlite`,
//! `<test>::postgres`).

use super::testing::{fresh, on_every_backend, Backend, TestDb};
use super::*;
use crate::billing::{Metered, RecordKind};

mod idempotency;
mod ledger;
mod pages;

pub(super) fn record(key: &str, kind: RecordKind, account: i64, wallet: i64) -> LedgerRecord {
    LedgerRecord {
        key: key.into(),
        kind,
        account: account as u64,
        key_id: None,
        wallet_nano: wallet,
        unpaid_nano: 0,
        paid_nano: 0,
        multiplier: None,
        metered: None,
        at: 86_400_000,
    }
}

pub(super) fn charge(key: &str, account: i64, key_id: Option<i64>, cost: i64, request: &str) -> LedgerRecord {
    let mut charge = record(key, RecordKind::Charge, account, -cost);
    charge.key_id = key_id.map(|k| k as u64);
    charge.metered = Some(Metered {
        model: "m".into(),
        input_tokens: 10,
        output_tokens: 5,
        request_id: request.into(),
        ..Metered::default()
    });
    charge
}

on_every_backend!(
    accounts_keys_and_the_ledger_are_kept,
    accounts_are_found_and_changed,
    keys_are_found_and_changed,
    last_used_times_only_move_forward,
    agents_are_kept_changed_and_deleted,
    provider_keys_are_kept_and_removed,
    stored_responses_expire_and_their_items_go_with_them,
);

async fn stored_responses_expire_and_their_items_go_with_them(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let acme = store.create_account("acme", "pro", None, 1).await.unwrap();
    let row = |id: &str, at: i64| StoredResponseRow {
        id: id.into(),
        account_id: acme.id,
        created_at: at,
        expires_at: at + 1_000,
        input: "[]".into(),
        response: format!("{{\"id\":\"{id}\"}}"),
    };
    let items = |id: &str| vec![(format!("{id}_item"), "{\"type\":\"message\"}".to_string())];
    store.put_response(&row("resp_a", 10_000), &items("resp_a")).await.unwrap();
    assert_eq!(store.stored_response("resp_a", 10_500).await.unwrap(), Some(row("resp_a", 10_000)));
    assert_eq!(store.stored_response("resp_a", 11_001).await.unwrap(), None, "past its time");
    assert_eq!(store.response_items(acme.id, &["resp_a_item".into()]).await.unwrap().len(), 1);
    assert!(
        store.response_items(acme.id + 1, &["resp_a_item".into()]).await.unwrap().is_empty(),
        "another account's"
    );
    // A later write takes the expired ones away, items included.
    store.put_response(&row("resp_b", 20_000), &items("resp_b")).await.unwrap();
    assert!(store.response_items(acme.id, &["resp_a_item".into()]).await.unwrap().is_empty());
    assert_eq!(store.delete_stored_response("resp_b").await.unwrap(), Some(acme.id));
    assert_eq!(store.delete_stored_response("resp_b").await.unwrap(), None);
    assert!(store.response_items(acme.id, &["resp_b_item".into()]).await.unwrap().is_empty());
}

async fn provider_keys_are_kept_and_removed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let acme = store.create_account("acme", "pro", None, 1).await.unwrap();
    let row = |provider: &str| ProviderKeyRow {
        id: 0,
        account_id: acme.id,
        provider: provider.into(),
        sealed: vec![0, 1, 2, 255],
        last4: "wxyz".into(),
        created_at: 5,
    };
    let a = store.insert_provider_key(&row("openai")).await.unwrap();
    let b = store.insert_provider_key(&row("gemini")).await.unwrap();
    assert!(a.id > 0 && b.id > a.id);
    let kept = store.provider_keys(acme.id).await.unwrap();
    assert_eq!(kept, vec![a.clone(), b.clone()], "sealed bytes kept as they were");
    assert_eq!(store.delete_provider_key(a.id).await.unwrap(), Some(acme.id));
    assert_eq!(store.delete_provider_key(a.id).await.unwrap(), None);
    assert_eq!(store.provider_keys(acme.id).await.unwrap(), vec![b]);
}

async fn agents_are_kept_changed_and_deleted(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let acme = store.create_account("acme", "pro", None, 1).await.unwrap();
    let other = store.create_account("other", "pro", None, 1).await.unwrap();
    let agent = |id: &str, account: i64, at: i64| Agent {
        id: id.into(),
        account_id: account,
        name: format!("agent {id}"),
        system_prompt: "You are terse.".into(),
        model: "openai/gpt-5.5".into(),
        created_at: at,
        updated_at: at,
    };
    store.insert_agent(&agent("agt_b", acme.id, 5)).await.unwrap();
    store.insert_agent(&agent("agt_a", acme.id, 7)).await.unwrap();
    store.insert_agent(&agent("agt_c", other.id, 6)).await.unwrap();
    assert!(store.insert_agent(&agent("agt_a", acme.id, 8)).await.is_err(), "ids are unique");
    assert_eq!(store.agent("agt_b").await.unwrap(), Some(agent("agt_b", acme.id, 5)));
    let ids: Vec<String> = store.agents(acme.id).await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["agt_b", "agt_a"], "an account's own, oldest first");
    let patch = AgentPatch { system_prompt: Some("You are verbose.".into()), ..AgentPatch::default() };
    let changed = store.update_agent("agt_b", &patch, 9).await.unwrap().unwrap();
    assert_eq!(
        (changed.system_prompt.as_str(), changed.name.as_str(), changed.updated_at),
        ("You are verbose.", "agent agt_b", 9)
    );
    assert_eq!(store.agent("agt_b").await.unwrap(), Some(changed));
    assert_eq!(store.update_agent("agt_nope", &patch, 9).await.unwrap(), None);
    assert!(store.delete_agent("agt_b").await.unwrap());
    assert!(!store.delete_agent("agt_b").await.unwrap());
    assert_eq!(store.agent("agt_b").await.unwrap(), None);
}

async fn accounts_keys_and_the_ledger_are_kept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let account = store.create_account("acme", "pro", None, 1).await.unwrap();
    assert_eq!(store.account(account.id).await.unwrap(), Some(account.clone()));
    let new = NewKey {
        name: "ci".into(),
        models: Some(vec!["openai/*".into()]),
        spend_cap: Some(NanoUsd(5)),
        ..NewKey::default()
    };
    let hash = [7u8; 32];
    let key = store.insert_key(account.id, "sk-z-abcd", &hash, &new, 2).await.unwrap();
    assert_eq!(store.key_by_hash(&hash).await.unwrap(), Some(key.clone()), "found by its hash");
    let revoked = KeyPatch { status: Some("revoked".into()), ..KeyPatch::default() };
    let after = store.update_key(key.id, &revoked).await.unwrap();
    assert_eq!(after.map(|k| k.status).as_deref(), Some("revoked"));

    let mut topup = record("topup-1", RecordKind::Topup, account.id, 4_000);
    topup.paid_nano = 1_000;
    topup.multiplier = Some(4);
    let charge = charge("req-1:charge", account.id, Some(key.id), 150, "req-1");
    let batch = vec![topup, charge];
    assert_eq!(store.append(&batch).await.unwrap(), 2);
    assert_eq!(store.append(&batch).await.unwrap(), 0, "a retried batch is kept once");
    assert_eq!(store.total().await.unwrap(), 0, "what is kept balances");
    let ledger = store.ledger(account.id).await.unwrap();
    assert_eq!(ledger.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["topup", "charge"]);
    let usage =
        store.usage(&UsageFilter { account: Some(account.id), ..UsageFilter::default() }).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].day.as_str(), usage[0].cost_nano_usd, usage[0].input_tokens),
        ("1970-01-02", 150, 10)
    );
    let generation = store.generation("req-1").await.unwrap();
    assert_eq!(generation.map(|g| (g.account_id, g.row.output_tokens)), Some((account.id, Some(5))));
    let snap = store.snapshot(&[], 0).await.unwrap();
    assert_eq!(
        snap.lots,
        vec![LotRow { account_id: account.id, paid: NanoUsd(1_000), multiplier: 4, granted: NanoUsd(0) }]
    );
    assert_eq!(snap.debited, vec![(account.id, NanoUsd(150))]);
    assert_eq!(snap.key_spent, vec![(key.id, NanoUsd(150))]);
    assert_eq!(snap.operator_keys, vec!["topup-1".to_string()]);
    // The charge (1970-01-02) falls in the month of `now` (1970-01-01), not its day.
    let sums: Vec<_> =
        snap.charges.iter().map(|c| (c.period, c.counts.requests, c.counts.spent_nano)).collect();
    assert_eq!(sums, vec![(crate::usage_totals::Period::ThisMonth, 1, 150)]);
    drop(store);
    // Reopening runs no migration twice and keeps everything.
    let again = db.open().await;
    assert_eq!(again.ledger(account.id).await.unwrap().len(), 2);
    assert_eq!(again.key_by_hash(&hash).await.unwrap().map(|k| k.status).as_deref(), Some("revoked"));
}

async fn accounts_are_found_and_changed(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("x", "pro", Some(5), 1).await.unwrap();
    assert_eq!(a.status, "active");
    assert_eq!(store.account_named("x").await.unwrap(), Some(a.clone()));
    assert_eq!(store.account_named("y").await.unwrap(), None);
    assert_eq!(store.account(a.id + 1).await.unwrap(), None);
    assert!(store.create_account("x", "web", None, 2).await.is_err(), "names are unique");
    let patch =
        AccountPatch { plan: Some("web".into()), trial_ends_at: Some(None), ..AccountPatch::default() };
    let changed = store.update_account(a.id, &patch).await.unwrap();
    assert_eq!(changed.map(|a| (a.plan, a.trial_ends_at)), Some(("web".into(), None)));
    let suspend = AccountPatch { status: Some("suspended".into()), ..AccountPatch::default() };
    let changed = store.update_account(a.id, &suspend).await.unwrap().unwrap();
    assert_eq!((changed.plan.as_str(), changed.status.as_str()), ("web", "suspended"), "the rest is kept");
    assert_eq!(store.update_account(a.id + 1, &suspend).await.unwrap(), None);
    let b = store.create_account("z", "pro", None, 3).await.unwrap();
    assert!(b.id > a.id);
    let snap = store.snapshot(&[], 0).await.unwrap();
    assert_eq!(snap.accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["x", "z"]);
}

async fn keys_are_found_and_changed(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let limits = crate::limits::Overrides { rpm: Some(5), concurrent: Some(2), ..Default::default() };
    let new = NewKey {
        name: "ci".into(),
        spend_cap: Some(NanoUsd(9)),
        models: Some(vec!["openai/*".into(), "m".into()]),
        fallback_model: Some("m".into()),
        expires_at: Some(99),
        limits,
    };
    let key = store.insert_key(a.id, "sk-abcd", &[1; 32], &new, 7).await.unwrap();
    assert_eq!(
        (key.account_id, key.name.as_str(), key.prefix.as_str(), key.status.as_str()),
        (a.id, "ci", "sk-abcd", "active")
    );
    assert_eq!(
        (key.spend_cap, key.expires_at, key.created_at, key.last_used_at),
        (Some(NanoUsd(9)), Some(99), 7, None)
    );
    assert_eq!(key.models, new.models);
    assert_eq!((key.fallback_model.as_deref(), key.limits), (Some("m"), limits));
    assert_eq!(store.key(key.id).await.unwrap(), Some(key.clone()));
    assert_eq!(store.key_by_hash(&[2; 32]).await.unwrap(), None);
    assert!(
        store.insert_key(a.id, "sk-x", &[1; 32], &NewKey::default(), 8).await.is_err(),
        "hashes are unique"
    );

    let clear = KeyPatch {
        name: Some("ci-2".into()),
        spend_cap: Some(None),
        models: Some(None),
        fallback_model: Some(None),
        expires_at: Some(None),
        limits: Some(Default::default()),
        ..KeyPatch::default()
    };
    let cleared = store.update_key(key.id, &clear).await.unwrap().unwrap();
    assert_eq!(cleared.name, "ci-2");
    assert_eq!((cleared.spend_cap, cleared.models, cleared.fallback_model), (None, None, None));
    assert_eq!((cleared.expires_at, cleared.limits), (None, Default::default()));
    let set = KeyPatch {
        models: Some(Some(vec!["x".into()])),
        spend_cap: Some(Some(NanoUsd(3))),
        ..KeyPatch::default()
    };
    let set = store.update_key(key.id, &set).await.unwrap().unwrap();
    assert_eq!(
        (set.models, set.spend_cap, set.name.as_str()),
        (Some(vec!["x".to_string()]), Some(NanoUsd(3)), "ci-2")
    );
    assert_eq!(store.update_key(key.id + 1, &clear).await.unwrap(), None);
    let snap = store.snapshot(&[], 0).await.unwrap();
    assert_eq!(snap.keys.len(), 1);
    assert_eq!((snap.keys[0].0.id, snap.keys[0].1), (key.id, [1; 32]));
}

async fn last_used_times_only_move_forward(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.create_account("acme", "pro", None, 1).await.unwrap();
    let k1 = store.insert_key(a.id, "p", &[1; 32], &NewKey::default(), 1).await.unwrap();
    let k2 = store.insert_key(a.id, "p", &[2; 32], &NewKey::default(), 1).await.unwrap();
    store.touch_keys(&[(k1.id, 50), (k2.id, 20), (k1.id, 70), (k1.id, 60)]).await.unwrap();
    store.touch_keys(&[]).await.unwrap();
    let used = |k: Option<KeyRecord>| k.and_then(|k| k.last_used_at);
    assert_eq!(used(store.key(k1.id).await.unwrap()), Some(70), "the latest of a batch");
    store.touch_keys(&[(k1.id, 10), (k2.id, 30)]).await.unwrap();
    assert_eq!(used(store.key(k1.id).await.unwrap()), Some(70), "never moved back");
    assert_eq!(used(store.key(k2.id).await.unwrap()), Some(30));
}

/// SQLite with no file: a database in memory, for a node alone.
#[tokio::test]
async fn a_sqlite_store_in_memory_works_alike() {
    let store = SqliteStore::open(None).await.unwrap();
    let a = store.create_account("x", "pro", Some(5), 1).await.unwrap();
    let key = store.insert_key(a.id, "p", &[1; 32], &NewKey::default(), 1).await.unwrap();
    store.append(&[charge("c", a.id, Some(key.id), 5, "r")]).await.unwrap();
    assert_eq!(store.snapshot(&["c".into()], 0).await.unwrap().present.len(), 1);
}
