use super::*;
use crate::billing::Metered;

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("tollgate-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir.join("t.db").display().to_string()
}

fn record(key: &str, kind: RecordKind, account: i64, wallet: i64) -> LedgerRecord {
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

#[tokio::test]
async fn accounts_keys_and_the_ledger_are_kept() {
    let path = temp_db("kept");
    let store = SqliteStore::open(Some(&path)).await.unwrap_or_else(|e| unreachable!("{e}"));
    let account = store.create_account("acme", "pro", None, 1).await.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(store.account(account.id).await.ok().flatten(), Some(account.clone()));
    let new = NewKey {
        name: "ci".into(),
        models: Some(vec!["openai/*".into()]),
        spend_cap: Some(NanoUsd(5)),
        ..NewKey::default()
    };
    let hash = [7u8; 32];
    let key = store
        .insert_key(account.id, "sk-z-abcd", &hash, &new, 2)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(store.key_by_hash(&hash).await.ok().flatten(), Some(key.clone()), "found by its hash");
    let revoked = KeyPatch { status: Some("revoked".into()), ..KeyPatch::default() };
    let after = store.update_key(key.id, &revoked).await.ok().flatten();
    assert_eq!(after.map(|k| k.status).as_deref(), Some("revoked"));

    let mut topup = record("topup-1", RecordKind::Topup, account.id, 4_000);
    topup.paid_nano = 1_000;
    topup.multiplier = Some(4);
    let mut charge = record("req-1:charge", RecordKind::Charge, account.id, -150);
    charge.key_id = Some(key.id as u64);
    charge.metered = Some(Metered {
        model: "m".into(),
        input_tokens: 10,
        output_tokens: 5,
        request_id: "req-1".into(),
        ..Metered::default()
    });
    let batch = vec![topup, charge];
    assert_eq!(store.append(&batch).await.unwrap_or(0), 2);
    assert_eq!(store.append(&batch).await.unwrap_or(99), 0, "a retried batch is kept once");
    assert_eq!(store.total().await.unwrap_or(1), 0, "what is kept balances");
    let ledger = store.ledger(account.id).await.unwrap_or_default();
    assert_eq!(ledger.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["topup", "charge"]);
    let usage =
        store.usage(&UsageFilter { account: account.id, ..UsageFilter::default() }).await.unwrap_or_default();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].day.as_str(), usage[0].cost_nano_usd, usage[0].input_tokens),
        ("1970-01-02", 150, 10)
    );
    let generation = store.generation("req-1").await.ok().flatten();
    assert_eq!(generation.map(|g| (g.account_id, g.row.output_tokens)), Some((account.id, Some(5))));
    let snap = store.snapshot().await.unwrap_or_default();
    assert_eq!(snap.lots.len(), 1);
    assert_eq!(snap.debited, vec![(account.id, NanoUsd(150))]);
    assert_eq!(snap.key_spent, vec![(key.id, NanoUsd(150))]);
    assert_eq!(snap.operator_keys, vec!["topup-1".to_string()]);
    drop(store);
    // Reopening runs no migration twice and keeps everything.
    let again = SqliteStore::open(Some(&path)).await.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(again.ledger(account.id).await.unwrap_or_default().len(), 2);
}

#[tokio::test]
async fn a_store_in_memory_works_alike() {
    let store = SqliteStore::open(None).await.unwrap_or_else(|e| unreachable!("{e}"));
    let a = store.create_account("x", "pro", Some(5), 1).await.unwrap_or_else(|e| unreachable!("{e}"));
    let patch =
        AccountPatch { plan: Some("web".into()), trial_ends_at: Some(None), ..AccountPatch::default() };
    let changed = store.update_account(a.id, &patch).await.ok().flatten();
    assert_eq!(changed.map(|a| (a.plan, a.trial_ends_at)), Some(("web".into(), None)));
}

#[tokio::test]
async fn idempotent_answers_are_kept_and_replaced() {
    use crate::billing::replay::Answer;
    let store = SqliteStore::open(None).await.unwrap_or_else(|e| unreachable!("{e}"));
    let answer =
        Answer { status: 200, content_type: "text/event-stream".into(), body: b"data: x\n\n".to_vec() };
    assert!(store.save_answer(1, "k", &answer, 10).await.is_ok());
    assert_eq!(store.answer(1, "k").await.ok().flatten(), Some((10, answer.clone())));
    assert_eq!(store.answer(2, "k").await.ok().flatten(), None, "per account");
    let later = Answer { body: b"{}".to_vec(), ..answer };
    assert!(store.save_answer(1, "k", &later, 20).await.is_ok());
    assert_eq!(
        store.answer(1, "k").await.ok().flatten().map(|(at, a)| (at, a.body)),
        Some((20, b"{}".to_vec()))
    );
}
