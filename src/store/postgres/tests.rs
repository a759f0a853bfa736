//! What only PostgreSQL has: nodes starting at once on one database, and
//! a server that is not there. The behaviour shared with SQLite is tested
//! on both in `store::tests`.

use super::PgStore;
use crate::store::testing::PgDatabase;
use crate::store::Store;

#[tokio::test]
async fn four_nodes_starting_at_once_apply_each_migration_once() {
    let db = PgDatabase::new().await;
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::connect(&url, 2).await })
        })
        .collect();
    let mut stores = Vec::new();
    for node in nodes {
        stores.push(node.await.unwrap().unwrap_or_else(|e| panic!("a node did not start: {e}")));
    }
    let files =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&stores[0].pool)
            .await
            .unwrap();
    assert_eq!(applied.len(), files, "{applied:?}");
    assert!(applied.iter().all(|(_, ok)| *ok));
    // Each node works on the one schema.
    for (n, store) in stores.iter().enumerate() {
        store.create_account(&format!("node{n}"), "pro", None, 1).await.unwrap();
    }
    assert_eq!(stores[3].snapshot(&[], 0).await.unwrap().accounts.len(), 4);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://tollgate:hunter2@127.0.0.1:{port}/tollgate");
    let e = PgStore::connect(&url, 1).await.err().unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// Two nodes keeping overlapping records at once: if each took its rows
/// in its own order, each could wait for a row the other holds, and
/// PostgreSQL would abort one after a second. Rows are taken in key
/// order, so the one that reaches a common record second waits holding
/// nothing the first still needs.
#[tokio::test]
async fn writers_take_common_records_in_one_order_and_wait_instead_of_deadlocking() {
    let db = PgDatabase::new().await;
    let store = std::sync::Arc::new(PgStore::connect(&db.url, 4).await.unwrap());
    let account = store.create_account("acme", "pro", None, 1).await.unwrap();
    let keep = "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) \
                VALUES ($1, 'adjustment', $2, 'wallet', 1, 1)";
    // Another node's batch: it has kept "a" and not committed yet.
    let mut other = store.pool.begin().await.unwrap();
    sqlx::query(keep).bind("a").bind(account.id).execute(&mut *other).await.unwrap();
    // This node's batch holds "m" then "a".
    let node = store.clone();
    let adjustment =
        |key: &str| crate::billing::LedgerRecord::adjustment(key.into(), account.id as u64, 1, 1);
    let batch = vec![adjustment("m"), adjustment("a")];
    let appending = tokio::spawn(async move { node.append(&batch).await });
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&store.pool).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the node never waited for the other");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The other node goes on to "m": nothing holds it.
    let m = sqlx::query(keep).bind("m").bind(account.id).execute(&mut *other);
    let m = tokio::time::timeout(std::time::Duration::from_millis(500), m).await;
    assert!(matches!(m, Ok(Ok(_))), "the other node was blocked: {m:?}");
    other.commit().await.unwrap();
    assert_eq!(appending.await.unwrap().unwrap(), 0, "both records were the other node's");
}

#[tokio::test]
async fn a_fleets_charges_get_their_paid_value_in_the_ledgers_order_whoever_sends_them() {
    use crate::billing::{RecordKind, PAID_AT_DELIVERY};
    use crate::store::tests::{charge, record};
    let db = PgDatabase::new().await;
    let (one, two) =
        (PgStore::connect(&db.url, 2).await.unwrap(), PgStore::connect(&db.url, 2).await.unwrap());
    let a = one.create_account("fleet", "pro", None, 1).await.unwrap();
    // $10 at 1x, then $10 at 4x: 50 of list value, 20 paid.
    let mut first = record("t1", RecordKind::Topup, a.id, 10);
    first.paid_nano = 10;
    first.multiplier = Some(1);
    let mut second = record("t2", RecordKind::Topup, a.id, 40);
    second.paid_nano = 10;
    second.multiplier = Some(4);
    one.append(&[first, second]).await.unwrap();
    let flagged = |key: &str, amount: i64| {
        let mut c = charge(key, a.id, None, amount, key);
        c.paid_nano = PAID_AT_DELIVERY;
        c
    };
    // Two nodes deliver; a retried record is attributed once.
    one.append(&[flagged("c1", 30)]).await.unwrap();
    two.append(&[flagged("c2", 12), flagged("c1", 30)]).await.unwrap();
    one.append(&[flagged("c3", 8)]).await.unwrap();
    let paid: Vec<(Option<String>, i64)> = one
        .ledger(a.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "charge")
        .map(|r| (r.request_id, r.paid_nano_usd))
        .collect();
    let of = |id: &str| paid.iter().find(|p| p.0.as_deref() == Some(id)).map(|p| p.1);
    // 10 of the 1x lot (paid 10) and 20 of the 4x lot (paid 5); then 12
    // (paid 3); then the last 8, which get the rest of its paid value.
    assert_eq!((of("c1"), of("c2"), of("c3")), (Some(15), Some(3), Some(2)));
}
