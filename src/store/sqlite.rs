//! The embedded store: one SQLite file (the library is compiled into the
//! binary), in WAL mode so the background writer and readers do not block
//! one another; or, with no file configured, a database in memory. One
//! connection for the ledger writer's batches, four for the idempotency
//! keys, the admin API and the rest, and one more, read-only, for the
//! customers' `generation` look-ups.

use super::idempotency::{Claim, Claimed, Scope};
use super::{
    Account, AccountPatch, AccountsPage, Agent, AgentPatch, DirectoryRows, Generation, KeyPatch, KeyRecord,
    LedgerPage, LedgerRow, LotRow, NewKey, ProviderKeyRow, RecentCall, Snapshot, Store, StoreError,
    StoredResponseRow, UsageFilter, UsageRow, WalletSums,
};
use crate::billing::replay::Answer;
use crate::billing::{LedgerRecord, NanoUsd};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
// Dynamic SQL here is built only from the column-list constants above.
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};
use std::str::FromStr;

pub struct SqliteStore {
    pool: SqlitePool,
    /// `generation`'s reads, on a connection of their own (read-only): a
    /// flood of them waits for it, never for the writer's or the
    /// idempotency keys' connections. (In memory: the one pool.)
    reads: SqlitePool,
    /// The ledger writer's batches, on one connection of their own: its
    /// statements stay prepared there (each pool connection prepared
    /// them anew, the 64-row insert alone ~150k instructions, and a batch
    /// waited on other writers' connections for nothing: SQLite has one
    /// writer at a time). (In memory: the one pool.)
    ledger: SqlitePool,
}

const KEY_COLUMNS: &str = "id, account_id, name, prefix, status, expires_at, spend_cap_nano, models, \
                           fallback_model, limits, created_at, last_used_at";
const LEDGER_COLUMNS: &str =
    "id, kind, amount_nano, paid_nano, unpaid_nano, key_id, model, input_tokens, output_tokens, \
                              cached_tokens, estimated, request_id, at";

impl SqliteStore {
    /// Opens (or creates) the database at `path` (`None`: in memory) and
    /// brings its schema up to date.
    pub async fn open(path: Option<&str>) -> Result<Self, StoreError> {
        let (url, connections) = match path {
            Some(path) => (format!("sqlite://{path}"), 4),
            // One connection: each in-memory connection is its own database.
            None => ("sqlite::memory:".to_string(), 1),
        };
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The journal file, not SQLite, makes a charge durable first.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        append::fold_day_totals(&pool).await?;
        let reads = Self::own_connection(path, &pool, options.clone().read_only(true)).await?;
        let ledger = Self::own_connection(path, &pool, options).await?;
        Ok(Self { pool, reads, ledger })
    }

    /// A pool of one connection of its own for a file (in memory: `pool`,
    /// each in-memory connection being its own database).
    async fn own_connection(
        path: Option<&str>,
        pool: &SqlitePool,
        options: SqliteConnectOptions,
    ) -> Result<SqlitePool, StoreError> {
        if path.is_none() {
            return Ok(pool.clone());
        }
        Ok(SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?)
    }

    fn account_row(r: &SqliteRow) -> Result<Account, StoreError> {
        Ok(Account {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            plan: r.try_get("plan")?,
            status: r.try_get("status")?,
            trial_ends_at: r.try_get("trial_ends_at")?,
        })
    }

    fn key_row(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
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
            limits: row
                .try_get::<Option<String>, _>("limits")?
                .map(|l| serde_json::from_str(&l))
                .transpose()
                .map_err(|e| StoreError(e.to_string()))?
                .unwrap_or_default(),
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }

    fn ledger_row(r: &SqliteRow) -> Result<LedgerRow, StoreError> {
        Ok(LedgerRow {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            amount_nano_usd: r.try_get("amount_nano")?,
            paid_nano_usd: r.try_get("paid_nano")?,
            unpaid_nano_usd: r.try_get("unpaid_nano")?,
            key_id: r.try_get("key_id")?,
            model: r.try_get("model")?,
            input_tokens: r.try_get("input_tokens")?,
            output_tokens: r.try_get("output_tokens")?,
            cached_tokens: r.try_get("cached_tokens")?,
            estimated: r.try_get::<i64, _>("estimated")? != 0,
            request_id: r.try_get("request_id")?,
            at: r.try_get("at")?,
        })
    }
}

/// A key's overrides as kept: `NULL` for none.
fn limits_json(limits: &crate::limits::Overrides) -> Option<String> {
    (*limits != crate::limits::Overrides::default())
        .then(|| serde_json::to_string(limits).unwrap_or_default())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        row.as_ref().map(Self::account_row).transpose()
    }

    async fn account_named(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT id, name, plan, status, trial_ends_at FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    async fn update_account(&self, id: i64, patch: &AccountPatch) -> Result<Option<Account>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE accounts SET id = id");
        if let Some(plan) = &patch.plan {
            q.push(", plan = ").push_bind(plan.clone());
        }
        if let Some(status) = &patch.status {
            q.push(", status = ").push_bind(status.clone());
        }
        if let Some(trial) = patch.trial_ends_at {
            q.push(", trial_ends_at = ").push_bind(trial);
        }
        q.push(" WHERE id = ").push_bind(id);
        q.build().execute(&self.pool).await?;
        self.account(id).await
    }

    async fn insert_key(
        &self,
        account: i64,
        prefix: &str,
        hash: &[u8; 32],
        new: &NewKey,
        now: i64,
    ) -> Result<KeyRecord, StoreError> {
        let models = new.models.as_ref().map(|m| serde_json::Value::from(m.clone()).to_string());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_keys (account_id, name, prefix, key_hash, expires_at, spend_cap_nano, models, fallback_model, limits, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(account)
        .bind(&new.name)
        .bind(prefix)
        .bind(&hash[..])
        .bind(new.expires_at)
        .bind(new.spend_cap.map(|c| c.0))
        .bind(models)
        .bind(&new.fallback_model)
        .bind(limits_json(&new.limits))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        self.key(id).await?.ok_or_else(|| StoreError("a key just written is missing".into()))
    }

    async fn key(&self, id: i64) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::key_row).transpose()
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?")))
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::key_row).transpose()
    }

    async fn update_key(&self, id: i64, patch: &KeyPatch) -> Result<Option<KeyRecord>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE api_keys SET id = id");
        if let Some(name) = &patch.name {
            q.push(", name = ").push_bind(name.clone());
        }
        if let Some(status) = &patch.status {
            q.push(", status = ").push_bind(status.clone());
        }
        if let Some(cap) = patch.spend_cap {
            q.push(", spend_cap_nano = ").push_bind(cap.map(|c| c.0));
        }
        if let Some(models) = &patch.models {
            let json = models.as_ref().map(|m| serde_json::Value::from(m.clone()).to_string());
            q.push(", models = ").push_bind(json);
        }
        if let Some(fallback) = &patch.fallback_model {
            q.push(", fallback_model = ").push_bind(fallback.clone());
        }
        if let Some(expires) = patch.expires_at {
            q.push(", expires_at = ").push_bind(expires);
        }
        if let Some(limits) = &patch.limits {
            q.push(", limits = ").push_bind(limits_json(limits));
        }
        q.push(" WHERE id = ").push_bind(id);
        q.build().execute(&self.pool).await?;
        self.key(id).await
    }

    async fn touch_keys(&self, used: &[(i64, i64)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (id, at) in used {
            sqlx::query("UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append(&self, records: &[LedgerRecord]) -> Result<u64, StoreError> {
        append::append(&self.ledger, records).await
    }

    async fn snapshot(&self, records: &[String], now: i64) -> Result<Snapshot, StoreError> {
        // One read: which of `records` are kept must agree with the totals.
        let mut tx = self.pool.begin().await?;
        let mut snap = Snapshot::default();
        for r in sqlx::query("SELECT id, name, plan, status, trial_ends_at FROM accounts ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
        {
            snap.accounts.push(Self::account_row(&r)?);
        }
        for r in
            sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS}, key_hash FROM api_keys ORDER BY id")))
                .fetch_all(&mut *tx)
                .await?
        {
            let hash: Vec<u8> = r.try_get("key_hash")?;
            let hash: [u8; 32] =
                hash.try_into().map_err(|_| StoreError("a key hash is not 32 bytes".into()))?;
            snap.keys.push((Self::key_row(&r)?, hash));
        }
        for r in
            sqlx::query("SELECT account_id, paid_nano, multiplier, granted_nano FROM credit_lots ORDER BY id")
                .fetch_all(&mut *tx)
                .await?
        {
            snap.lots.push(LotRow {
                account_id: r.try_get("account_id")?,
                paid: NanoUsd(r.try_get("paid_nano")?),
                multiplier: u32::try_from(r.try_get::<i64, _>("multiplier")?).unwrap_or(1),
                granted: NanoUsd(r.try_get("granted_nano")?),
            });
        }
        for r in sqlx::query(
            "SELECT account_id, -SUM(amount_nano) AS debited FROM ledger_postings \
             WHERE book = 'wallet' AND amount_nano < 0 GROUP BY account_id",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            snap.debited.push((r.try_get("account_id")?, NanoUsd(r.try_get("debited")?)));
        }
        // One pass for both: what each key spent, and the running totals' start.
        let (key_spent, charges) = charges::sums(&mut tx, now).await?;
        snap.key_spent = key_spent;
        snap.charges = charges;
        snap.operator_keys = sqlx::query_scalar(
            "SELECT entry_key FROM ledger_postings WHERE book = 'wallet' AND kind != 'charge'",
        )
        .fetch_all(&mut *tx)
        .await?;
        snap.present = kept_among(&mut tx, records).await?;
        tx.commit().await?;
        Ok(snap)
    }

    async fn recent_calls(&self, since: i64) -> Result<Vec<RecentCall>, StoreError> {
        charges::recent(&self.pool, since).await
    }

    async fn ledger(&self, account: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger_postings WHERE account_id = ? AND book = 'wallet' ORDER BY id"
        )))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::ledger_row).collect()
    }

    async fn ledger_page(&self, page: &LedgerPage) -> Result<Vec<LedgerRow>, StoreError> {
        pages::ledger_page(&self.pool, page).await
    }

    async fn accounts(&self, page: &AccountsPage) -> Result<Vec<Account>, StoreError> {
        pages::accounts(&self.pool, page).await
    }

    async fn keys_of(&self, account: i64) -> Result<Vec<KeyRecord>, StoreError> {
        pages::keys_of(&self.pool, account).await
    }

    async fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        if f.since.is_none() {
            return pages::daily_usage(&self.pool, f).await;
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT strftime('%Y-%m-%d', at / 1000, 'unixepoch') AS day, model, COUNT(*) AS requests, \
             COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens, \
             COALESCE(SUM(cached_tokens), 0) AS cached_tokens, -SUM(amount_nano) AS cost \
             FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge'",
        );
        if let Some(account) = f.account {
            q.push(" AND account_id = ").push_bind(account);
        }
        if let Some(from) = &f.from_day {
            q.push(" AND strftime('%Y-%m-%d', at / 1000, 'unixepoch') >= ").push_bind(from.clone());
        }
        if let Some(key) = f.key_id {
            q.push(" AND key_id = ").push_bind(key);
        }
        if let Some(model) = &f.model {
            q.push(" AND model = ").push_bind(model.clone());
        }
        if let Some(since) = f.since {
            q.push(" AND at >= ").push_bind(since);
        }
        if let Some(day) = &f.day {
            q.push(" AND strftime('%Y-%m-%d', at / 1000, 'unixepoch') = ").push_bind(day.clone());
        }
        q.push(" GROUP BY day, model ORDER BY day, model");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(super::usage_row).collect()
    }

    async fn generation(&self, request_id: &str) -> Result<Option<Generation>, StoreError> {
        // By its entry key (see `Billing::charge_record`), which the
        // `(entry_key, book)` key serves (migration 0016).
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT account_id, {LEDGER_COLUMNS} FROM ledger_postings WHERE entry_key = ? AND book = 'wallet'"
        )))
        .bind(crate::billing::charge_key(request_id))
        .fetch_optional(&self.reads)
        .await?;
        row.map(|r| Ok(Generation { account_id: r.try_get("account_id")?, row: Self::ledger_row(&r)? }))
            .transpose()
    }

    async fn claim_key(&self, claim: &Claim) -> Result<Claimed, StoreError> {
        idempotency::claim(&self.pool, claim).await
    }

    async fn complete_key(
        &self,
        scope: &Scope,
        owner: &str,
        answer: Option<&Answer>,
        at: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        idempotency::complete(&self.pool, scope, owner, answer, at, expires_at).await
    }

    async fn release_key(&self, scope: &Scope, owner: &str) -> Result<(), StoreError> {
        idempotency::release(&self.pool, scope, owner).await
    }

    async fn renew_key(&self, scope: &Scope, owner: &str, expires_at: i64) -> Result<bool, StoreError> {
        idempotency::renew(&self.pool, scope, owner, expires_at).await
    }

    async fn total(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(SUM(amount_nano), 0) FROM ledger_postings")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn wallet_sums(&self, account: i64, records: &[String]) -> Result<WalletSums, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut sums = WalletSums::default();
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN amount_nano > 0 THEN amount_nano ELSE 0 END), 0) AS credit, \
             COALESCE(-SUM(CASE WHEN amount_nano < 0 THEN amount_nano ELSE 0 END), 0) AS debit \
             FROM ledger_postings WHERE book = 'wallet' AND account_id = ?",
        )
        .bind(account)
        .fetch_one(&mut *tx)
        .await?;
        sums.credit = row.try_get("credit")?;
        sums.debit = row.try_get("debit")?;
        for r in sqlx::query(
            "SELECT key_id, (-SUM(amount_nano)) AS spent FROM ledger_postings \
             WHERE book = 'wallet' AND kind = 'charge' AND account_id = ? AND key_id IS NOT NULL \
             GROUP BY key_id ORDER BY key_id",
        )
        .bind(account)
        .fetch_all(&mut *tx)
        .await?
        {
            sums.key_spent.push((r.try_get("key_id")?, r.try_get("spent")?));
        }
        sums.present = kept_among(&mut tx, records).await?;
        tx.commit().await?;
        Ok(sums)
    }

    async fn directory(&self) -> Result<DirectoryRows, StoreError> {
        let mut rows = DirectoryRows::default();
        for r in sqlx::query("SELECT id, name, plan, status, trial_ends_at FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            rows.accounts.push(Self::account_row(&r)?);
        }
        for r in
            sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS}, key_hash FROM api_keys ORDER BY id")))
                .fetch_all(&self.pool)
                .await?
        {
            let hash: Vec<u8> = r.try_get("key_hash")?;
            let hash: [u8; 32] =
                hash.try_into().map_err(|_| StoreError("a key hash is not 32 bytes".into()))?;
            rows.keys.push((Self::key_row(&r)?, hash));
        }
        Ok(rows)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        agents::insert(&self.pool, agent).await
    }

    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        agents::one(&self.pool, id).await
    }

    async fn agents(&self, account: i64) -> Result<Vec<Agent>, StoreError> {
        agents::of_account(&self.pool, account).await
    }

    async fn update_agent(
        &self,
        id: &str,
        patch: &AgentPatch,
        now: i64,
    ) -> Result<Option<Agent>, StoreError> {
        agents::update(&self.pool, id, patch, now).await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        agents::delete(&self.pool, id).await
    }

    async fn insert_provider_key(&self, key: &ProviderKeyRow) -> Result<ProviderKeyRow, StoreError> {
        agents::insert_provider_key(&self.pool, key).await
    }

    async fn provider_keys(&self, account: i64) -> Result<Vec<ProviderKeyRow>, StoreError> {
        agents::provider_keys(&self.pool, account).await
    }

    async fn delete_provider_key(&self, id: i64) -> Result<Option<i64>, StoreError> {
        agents::delete_provider_key(&self.pool, id).await
    }

    async fn put_response(
        &self,
        row: &StoredResponseRow,
        items: &[(String, String)],
    ) -> Result<(), StoreError> {
        responses::put(&self.pool, row, items).await
    }

    async fn stored_response(&self, id: &str, now: i64) -> Result<Option<StoredResponseRow>, StoreError> {
        responses::one(&self.pool, id, now).await
    }

    async fn delete_stored_response(&self, id: &str) -> Result<Option<i64>, StoreError> {
        responses::delete(&self.pool, id).await
    }

    async fn response_items(
        &self,
        account: i64,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        responses::items(&self.pool, account, ids).await
    }
}

mod agents;
mod append;
mod batch_sums;
mod charges;
mod idempotency;
mod pages;
mod responses;
mod rows;

/// Which of `records` the ledger keeps (in chunks: SQLite binds at most
/// so many values in one statement).
async fn kept_among(
    conn: &mut sqlx::SqliteConnection,
    records: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut kept = std::collections::HashSet::new();
    for chunk in records.chunks(500) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT entry_key FROM ledger_postings WHERE book = 'wallet' AND entry_key IN (",
        );
        let mut keys = query.separated(", ");
        for key in chunk {
            keys.push_bind(key.clone());
        }
        keys.push_unseparated(")");
        kept.extend(query.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    Ok(kept)
}
