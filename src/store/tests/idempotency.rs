//! Idempotency keys on every backend: one claim wins, what the others
//! find, lapsed and released keys, and two stores (processes, nodes) on
//! one database claiming at once.

use super::{fresh, on_every_backend, Backend, TestDb};
use crate::billing::replay::Answer;
use crate::store::idempotency::{Claim, Claimed, Held, Scope};

fn claim(key_id: i64, fingerprint: u8, owner: &str, now: i64) -> Claim {
    Claim {
        scope: Scope { account: 1, key_id, key: "k".into() },
        fingerprint: [fingerprint; 32],
        owner: owner.into(),
        now,
        expires_at: now + 100,
    }
}

on_every_backend!(
    a_key_is_claimed_once_and_then_holds_its_answer,
    a_running_mark_lapses_and_a_released_key_runs_anew,
    a_running_mark_renewed_by_its_owner_does_not_lapse,
    another_keys_completion_does_not_sweep_the_mark_of_a_call_still_running,
    two_stores_on_one_database_never_both_claim_a_key,
);

async fn a_running_mark_renewed_by_its_owner_does_not_lapse(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let first = claim(7, 1, "req-a", 1_000);
    assert_eq!(store.claim_key(&first).await.unwrap(), Claimed::Ours);
    assert!(store.renew_key(&first.scope, "req-a", 1_300).await.unwrap());
    assert!(!store.renew_key(&first.scope, "req-b", 9_000).await.unwrap(), "not its mark");
    assert!(
        matches!(store.claim_key(&claim(7, 1, "req-b", 1_200)).await, Ok(Claimed::Theirs { .. })),
        "renewed past its first lease"
    );
    assert!(store.complete_key(&first.scope, "req-a", None, 1_250, 9_000).await.unwrap());
    assert!(!store.renew_key(&first.scope, "req-a", 1_400).await.unwrap(), "completed");
}

async fn another_keys_completion_does_not_sweep_the_mark_of_a_call_still_running(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    // A call that runs past its mark's lease (100 ms here), nobody retrying.
    let long = claim(7, 1, "req-a", 1_000);
    assert_eq!(store.claim_key(&long).await.unwrap(), Claimed::Ours);
    let answer = Answer { status: 200, content_type: "application/json".into(), body: b"{}".to_vec() };
    let other = claim(8, 2, "req-x", 1_150);
    assert_eq!(store.claim_key(&other).await.unwrap(), Claimed::Ours);
    assert!(store.complete_key(&other.scope, "req-x", Some(&answer), 1_200, 9_000).await.unwrap());
    // The long call completes: its answer is kept, so a retry replays it.
    assert!(store.complete_key(&long.scope, "req-a", Some(&answer), 1_300, 9_000).await.unwrap());
    let done = Claimed::Theirs { fingerprint: [1; 32], held: Held::Done(answer) };
    assert_eq!(store.claim_key(&claim(7, 1, "req-b", 1_400)).await.unwrap(), done, "replayed, not run again");
}

async fn a_key_is_claimed_once_and_then_holds_its_answer(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let first = claim(7, 1, "req-a", 1_000);
    assert_eq!(store.claim_key(&first).await.unwrap(), Claimed::Ours);
    let running = Claimed::Theirs { fingerprint: [1; 32], held: Held::Running };
    assert_eq!(store.claim_key(&claim(7, 1, "req-b", 1_010)).await.unwrap(), running.clone());
    assert_eq!(
        store.claim_key(&claim(7, 2, "req-c", 1_010)).await.unwrap(),
        running,
        "another request under the key finds the first's fingerprint"
    );
    assert_eq!(store.claim_key(&claim(8, 1, "req-d", 1_010)).await.unwrap(), Claimed::Ours, "per API key");
    let answer =
        Answer { status: 200, content_type: "text/event-stream".into(), body: b"data: x\n\n".to_vec() };
    assert!(!store.complete_key(&first.scope, "req-b", Some(&answer), 1_020, 9_000).await.unwrap());
    assert!(store.complete_key(&first.scope, "req-a", Some(&answer), 1_020, 9_000).await.unwrap());
    let done = Claimed::Theirs { fingerprint: [1; 32], held: Held::Done(answer) };
    assert_eq!(store.claim_key(&claim(7, 1, "req-e", 5_000)).await.unwrap(), done, "the answer, kept");
    assert_eq!(
        store.claim_key(&claim(7, 1, "req-f", 9_000)).await.unwrap(),
        Claimed::Ours,
        "after its window"
    );
    let unkept = claim(9, 3, "req-g", 1_000);
    assert_eq!(store.claim_key(&unkept).await.unwrap(), Claimed::Ours);
    assert!(store.complete_key(&unkept.scope, "req-g", None, 1_010, 9_000).await.unwrap());
    let held = Claimed::Theirs { fingerprint: [3; 32], held: Held::Unkept };
    assert_eq!(store.claim_key(&claim(9, 3, "req-h", 1_020)).await.unwrap(), held);
}

async fn a_running_mark_lapses_and_a_released_key_runs_anew(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    assert_eq!(store.claim_key(&claim(7, 1, "req-a", 1_000)).await.unwrap(), Claimed::Ours);
    // The owner died: its mark holds until its lease (100 ms here) is over.
    assert!(matches!(store.claim_key(&claim(7, 1, "req-b", 1_099)).await, Ok(Claimed::Theirs { .. })));
    assert_eq!(store.claim_key(&claim(7, 2, "req-c", 1_100)).await.unwrap(), Claimed::Ours);
    // The lapsed owner can no longer complete or release the new claim.
    let scope = Scope { account: 1, key_id: 7, key: "k".into() };
    assert!(!store.complete_key(&scope, "req-a", None, 1_101, 9_000).await.unwrap());
    assert!(store.release_key(&scope, "req-a").await.is_ok());
    assert!(matches!(store.claim_key(&claim(7, 1, "req-d", 1_102)).await, Ok(Claimed::Theirs { .. })));
    assert!(store.release_key(&scope, "req-c").await.is_ok());
    assert_eq!(store.claim_key(&claim(7, 1, "req-e", 1_103)).await.unwrap(), Claimed::Ours);
    // A completed key's answer is not released by its owner's late release.
    assert!(store.complete_key(&scope, "req-e", None, 1_104, 9_000).await.unwrap());
    assert!(store.release_key(&scope, "req-e").await.is_ok());
    let unkept = Claimed::Theirs { fingerprint: [1; 32], held: Held::Unkept };
    assert_eq!(store.claim_key(&claim(7, 1, "req-f", 1_105)).await.unwrap(), unkept);
}

async fn two_stores_on_one_database_never_both_claim_a_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = (db.open().await, db.open().await);
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
        let (scope, ours) = t.await.unwrap().unwrap();
        *won.entry(scope).or_insert(0) += u32::from(ours);
    }
    assert_eq!(won.len(), 200);
    assert!(won.values().all(|n| *n == 1), "{won:?}");
}
