//! The embedded store: one SQLite file (the library is compiled into the
//! binary), in WAL mode so the background writer and readers do not block
//! one another.

use super::{Account, KeyRecord, NewKey, Posting, Store, StoreError};
use crate::billing::{Book, Entry, NanoUsd};
use crate::secret::Secret;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;

pub struct SqliteStore {
    pool: SqlitePool,
}

fn book_name(book: Book) -> &'static str {
    match book {
        Book::Funding => "funding",
        Book::Wallet(_) => "wallet",
        Book::Held(_) => "held",
        Book::Revenue => "revenue",
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and brings its schema up
    /// to date.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }

    fn key_record(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, StoreError> {
        let models: Option<String> = row.try_get("models")?;
        Ok(KeyRecord {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            status: row.try_get("status")?,
            expires_at: row.try_get("expires_at")?,
            spend_cap: row.try_get::<Option<i64>, _>("spend_cap_nano")?.map(NanoUsd),
            models: models
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| StoreError(e.to_string()))?,
            fallback_model: row.try_get("fallback_model")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(
        &self,
        name: &str,
        plan: &str,
        trial_ends_at: Option<i64>,
        now: i64,
    ) -> Result<Account, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, plan, trial_ends_at, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(plan)
        .bind(trial_ends_at)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(Account { id, name: name.into(), plan: plan.into(), status: "active".into(), trial_ends_at })
    }

    async fn account(&self, id: i64) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT id, name, plan, status, trial_ends_at FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Account {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                plan: r.try_get("plan")?,
                status: r.try_get("status")?,
                trial_ends_at: r.try_get("trial_ends_at")?,
            })
        })
        .transpose()
    }

    async fn create_key(
        &self,
        account: i64,
        prefix: &str,
        new: &NewKey,
        now: i64,
    ) -> Result<(KeyRecord, Secret), StoreError> {
        let key = super::new_key(prefix)?;
        let hash = crate::auth::digest(key.expose());
        let models = new.models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_keys (account_id, name, prefix, key_hash, expires_at, spend_cap_nano, models, fallback_model, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(account)
        .bind(&new.name)
        .bind(prefix)
        .bind(&hash[..])
        .bind(new.expires_at)
        .bind(new.spend_cap.map(|c| c.0))
        .bind(models)
        .bind(&new.fallback_model)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let record = KeyRecord {
            id,
            account_id: account,
            name: new.name.clone(),
            prefix: prefix.into(),
            status: "active".into(),
            expires_at: new.expires_at,
            spend_cap: new.spend_cap,
            models: new.models.clone(),
            fallback_model: new.fallback_model.clone(),
            created_at: now,
        };
        Ok((record, key))
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::key_record).transpose()
    }

    async fn revoke_key(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET status = 'revoked' WHERE id = ? AND status = 'active'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn append(&self, entries: &[Entry], at: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut written = 0;
        for entry in entries {
            for (book, amount) in &entry.postings {
                let done = sqlx::query(
                    "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entry_key, book) DO NOTHING",
                )
                .bind(&entry.key)
                .bind(entry.kind.as_str())
                .bind(i64::try_from(entry.account).unwrap_or(i64::MAX))
                .bind(book_name(*book))
                .bind(amount)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                written += done.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn postings(&self, account: i64) -> Result<Vec<Posting>, StoreError> {
        let rows = sqlx::query(
            "SELECT entry_key, kind, account_id, book, amount_nano, at FROM ledger_postings WHERE account_id = ? ORDER BY id",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Posting {
                    entry_key: r.try_get("entry_key")?,
                    kind: r.try_get("kind")?,
                    account_id: r.try_get("account_id")?,
                    book: r.try_get("book")?,
                    amount: NanoUsd(r.try_get("amount_nano")?),
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Ledger;

    fn temp_db() -> String {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        path.display().to_string()
    }

    #[tokio::test]
    async fn accounts_keys_and_the_ledger_are_kept() {
        let path = temp_db();
        let store = SqliteStore::open(&path).await.unwrap_or_else(|e| unreachable!("{e}"));
        let account =
            store.create_account("acme", "pro", None, 1).await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(store.account(account.id).await.ok().flatten(), Some(account.clone()));
        let new = NewKey {
            name: "ci".into(),
            models: Some(vec!["openai/*".into()]),
            spend_cap: Some(NanoUsd(5)),
            ..NewKey::default()
        };
        let (record, key) =
            store.create_key(account.id, "sk-zenith-", &new, 2).await.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(key.expose().starts_with("sk-zenith-") && key.expose().len() == "sk-zenith-".len() + 64);
        let found = store.key_by_hash(&crate::auth::digest(key.expose())).await.ok().flatten();
        assert_eq!(found, Some(record.clone()), "found by its hash");
        assert!(store.revoke_key(record.id).await.unwrap_or(false));
        assert!(!store.revoke_key(record.id).await.unwrap_or(true), "revoked once");

        let mut ledger = Ledger::default();
        let id = u64::try_from(account.id).unwrap_or(0);
        ledger.topup(id, NanoUsd(1_000), "topup-1").unwrap_or_default();
        ledger.hold(id, NanoUsd(400), "req-1").unwrap_or_default();
        let _ = ledger.settle(id, NanoUsd(400), NanoUsd(150), "req-1");
        let entries = ledger.entries().to_vec();
        let first = store.append(&entries, 3).await.unwrap_or(0);
        assert_eq!(first, 8, "4 entries of 2 postings");
        assert_eq!(store.append(&entries, 4).await.unwrap_or(99), 0, "a retried batch is written once");
        let kept = store.postings(account.id).await.unwrap_or_default();
        assert_eq!(kept.iter().map(|p| p.amount.0).sum::<i64>(), 0, "what is kept balances too");
        drop(store);
        // Reopening runs no migration twice and keeps everything.
        let again = SqliteStore::open(&path).await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(again.postings(account.id).await.unwrap_or_default().len(), 8);
        let _ = std::fs::remove_file(&path);
    }
}
