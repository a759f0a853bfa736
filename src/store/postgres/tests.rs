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
    assert_eq!(stores[3].snapshot(&[]).await.unwrap().accounts.len(), 4);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://tollgate:hunter2@127.0.0.1:{port}/tollgate");
    let e = PgStore::connect(&url, 1).await.err().unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
