use super::*;
use crate::billing::Metered;
use crate::store::idempotency::{Claim, Claimed, Scope};

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
    let snap = store.snapshot(&[], 0).await.unwrap_or_default();
    assert_eq!(snap.lots.len(), 1);
    assert_eq!(snap.debited, vec![(account.id, NanoUsd(150))]);
    assert_eq!(snap.key_spent, vec![(key.id, NanoUsd(150))]);
    assert_eq!(snap.operator_keys, vec!["topup-1".to_string()]);
    // The charge (1970-01-02) falls in the month of `now` (1970-01-01), not its day.
    let sums: Vec<_> =
        snap.charges.iter().map(|c| (c.period, c.counts.requests, c.counts.spent_nano)).collect();
    assert_eq!(sums, vec![(crate::usage_totals::Period::ThisMonth, 1, 150)]);
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

fn claim(key_id: i64, fingerprint: u8, owner: &str, now: i64) -> Claim {
    Claim {
        scope: Scope { account: 1, key_id, key: "k".into() },
        fingerprint: [fingerprint; 32],
        owner: owner.into(),
        now,
        expires_at: now + 100,
    }
}

#[tokio::test]
async fn a_key_is_claimed_once_and_then_holds_its_answer() {
    use crate::billing::replay::Answer;
    use crate::store::idempotency::Held;
    let store = SqliteStore::open(None).await.unwrap_or_else(|e| unreachable!("{e}"));
    let first = claim(7, 1, "req-a", 1_000);
    assert_eq!(store.claim_key(&first).await.ok(), Some(Claimed::Ours));
    let running = Claimed::Theirs { fingerprint: [1; 32], held: Held::Running };
    assert_eq!(store.claim_key(&claim(7, 1, "req-b", 1_010)).await.ok(), Some(running.clone()));
    assert_eq!(
        store.claim_key(&claim(7, 2, "req-c", 1_010)).await.ok(),
        Some(running),
        "another request under the key finds the first's fingerprint"
    );
    assert_eq!(store.claim_key(&claim(8, 1, "req-d", 1_010)).await.ok(), Some(Claimed::Ours), "per API key");
    let answer =
        Answer { status: 200, content_type: "text/event-stream".into(), body: b"data: x\n\n".to_vec() };
    assert_eq!(
        store.complete_key(&first.scope, "req-b", Some(&answer), 1_020, 9_000).await.ok(),
        Some(false)
    );
    assert_eq!(store.complete_key(&first.scope, "req-a", Some(&answer), 1_020, 9_000).await.ok(), Some(true));
    let done = Claimed::Theirs { fingerprint: [1; 32], held: Held::Done(answer) };
    assert_eq!(store.claim_key(&claim(7, 1, "req-e", 5_000)).await.ok(), Some(done), "the answer, kept");
    assert_eq!(
        store.claim_key(&claim(7, 1, "req-f", 9_000)).await.ok(),
        Some(Claimed::Ours),
        "after its window"
    );
    let unkept = claim(9, 3, "req-g", 1_000);
    assert_eq!(store.claim_key(&unkept).await.ok(), Some(Claimed::Ours));
    assert_eq!(store.complete_key(&unkept.scope, "req-g", None, 1_010, 9_000).await.ok(), Some(true));
    let held = Claimed::Theirs { fingerprint: [3; 32], held: Held::Unkept };
    assert_eq!(store.claim_key(&claim(9, 3, "req-h", 1_020)).await.ok(), Some(held));
}

#[tokio::test]
async fn a_running_mark_lapses_and_a_released_key_runs_anew() {
    let store = SqliteStore::open(None).await.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(store.claim_key(&claim(7, 1, "req-a", 1_000)).await.ok(), Some(Claimed::Ours));
    // The owner died: its mark holds until its lease (100 ms here) is over.
    assert!(matches!(store.claim_key(&claim(7, 1, "req-b", 1_099)).await, Ok(Claimed::Theirs { .. })));
    assert_eq!(store.claim_key(&claim(7, 2, "req-c", 1_100)).await.ok(), Some(Claimed::Ours));
    // The lapsed owner can no longer complete or release the new claim.
    let scope = Scope { account: 1, key_id: 7, key: "k".into() };
    assert_eq!(store.complete_key(&scope, "req-a", None, 1_101, 9_000).await.ok(), Some(false));
    assert!(store.release_key(&scope, "req-a").await.is_ok());
    assert!(matches!(store.claim_key(&claim(7, 1, "req-d", 1_102)).await, Ok(Claimed::Theirs { .. })));
    assert!(store.release_key(&scope, "req-c").await.is_ok());
    assert_eq!(store.claim_key(&claim(7, 1, "req-e", 1_103)).await.ok(), Some(Claimed::Ours));
}

#[tokio::test]
async fn two_stores_on_one_file_never_both_claim_a_key() {
    let path = temp_db("claims");
    let a = std::sync::Arc::new(SqliteStore::open(Some(&path)).await.unwrap_or_else(|e| unreachable!("{e}")));
    let b = std::sync::Arc::new(SqliteStore::open(Some(&path)).await.unwrap_or_else(|e| unreachable!("{e}")));
    let mut tasks = Vec::new();
    for n in 0..200 {
        for (who, store) in [("a", a.clone()), ("b", b.clone())] {
            tasks.push(tokio::spawn(async move {
                let mut c = claim(n, 1, &format!("{who}{n}"), 1_000);
                c.scope.key = format!("k{}", n % 50);
                store.claim_key(&c).await.map(|r| (c.scope, r == Claimed::Ours))
            }));
        }
    }
    let mut won = std::collections::HashMap::new();
    for t in tasks {
        let (scope, ours) =
            t.await.unwrap_or_else(|e| unreachable!("{e}")).unwrap_or_else(|e| unreachable!("{e}"));
        *won.entry(scope).or_insert(0) += u32::from(ours);
    }
    assert_eq!(won.len(), 200);
    assert!(won.values().all(|n| *n == 1), "{won:?}");
}
