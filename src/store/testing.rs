//! Store tests run on every backend: a test is an `async fn(Backend)`
//! that opens its stores from a [`TestDb`], and [`on_every_backend!`]
//! makes it a `sqlite` and a `postgres` test. SQLite gets a file in a
//! temporary directory; PostgreSQL a fresh database on the test server
//! ([`pg_server`]).

mod pg_server;

pub use pg_server::PgDatabase;

use super::{PgStore, SqliteStore, Store};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database, to be opened as often as the test likes (a
/// restart, or two processes on one database).
pub struct TestDb {
    backend: Backend,
    /// The SQLite file or the PostgreSQL URL.
    place: String,
    _pg: Option<PgDatabase>,
    _dir: Option<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        match backend {
            Backend::Sqlite => {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let dir = std::env::temp_dir().join(format!("tollgate-store-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let place = dir.join("t.db").display().to_string();
                Self { backend, place, _pg: None, _dir: Some(TempDir(dir)) }
            }
            Backend::Postgres => {
                let db = PgDatabase::new().await;
                Self { backend, place: db.url.clone(), _pg: Some(db), _dir: None }
            }
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        match self.backend {
            Backend::Sqlite => Arc::new(SqliteStore::open(Some(&self.place)).await.unwrap()),
            Backend::Postgres => Arc::new(PgStore::connect(&self.place, 8).await.unwrap()),
        }
    }
}

/// A fresh store on `backend`, for tests that open it once.
pub async fn fresh(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    (db, store)
}

/// `on_every_backend!(a, b)`: for each `async fn a(Backend)` in scope, a
/// module `a` with the tests `sqlite` and `postgres`.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use $crate::store::testing::Backend;

            #[tokio::test]
            async fn sqlite() {
                super::$test(Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$test(Backend::Postgres).await
            }
        }
    )*};
}

pub(crate) use on_every_backend;

#[test]
fn without_postgresql_the_tests_fail_saying_how_to_install_it() {
    let nowhere = std::path::Path::new("/nonexistent/postgresql");
    assert_eq!(pg_server::bin_dir(nowhere, None), None);
    assert_eq!(pg_server::bin_dir(nowhere, Some("/nonexistent/bin".into())), None);
    let message = pg_server::missing();
    assert!(message.contains("scripts/setup.sh") && message.contains("TOLLGATE_TEST_PG_URL"), "{message}");
}
