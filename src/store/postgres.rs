//! The store of a fleet: one PostgreSQL database that every node shares,
//! through a pool of connections. The same schema and behaviour as the
//! SQLite store, in PostgreSQL's own types and migrations
//! (`migrations/postgres/`), which run at connect under sqlx's advisory
//! lock, so nodes starting at once apply each one once. PostgreSQL runs
//! transactions at READ COMMITTED with many writers: each statement that
//! decides something (a record kept once, an idempotency key claimed) is
//! one atomic statement, and batches travel as arrays (`UNNEST`).

use super::idempotency::{Claim, Claimed, Scope};
use super::{
    Account, AccountPatch, AccountsPage, Agent, AgentPatch, DirectoryRows, Generation, KeyPatch, KeyRecord,
    LedgerPage, LedgerRow, NewKey, ProviderKeyRow, RecentCall, Snapshot, Store, StoreError,
    StoredResponseRow, UsageFilter, UsageRow, WalletSums,
};
use crate::billing::replay::Answer;
use crate::billing::{LedgerRecord, NanoUsd};
use async_trait::async_trait;
use sqlx::postgres::{PgPoolOptions, PgRow};
// Dynamic SQL here is built only from the column-list constants below.
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Row};

mod agents;
mod append;
pub mod attribute;
mod idempotency;
mod pages;
mod responses;
mod snapshot;

pub struct PgStore {
    pool: PgPool,
}

const KEY_COLUMNS: &str = "id, account_id, name, prefix, status, expires_at, spend_cap_nano, models, \
                           fallback_model, limits, created_at, last_used_at";
const LEDGER_COLUMNS: &str =
    "id, kind, amount_nano, paid_nano, unpaid_nano, key_id, model, input_tokens, output_tokens, \
                              cached_tokens, estimated, request_id, at";
const ACCOUNT_COLUMNS: &str = "id, name, plan, status, trial_ends_at";
/// A posting's UTC day, as SQLite's `strftime('%Y-%m-%d', at / 1000, 'unixepoch')`.
const DAY: &str = "to_char(to_timestamp(at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

impl PgStore {
    /// Connects to the database at `url` with at most `pool_size`
    /// connections and brings its schema up to date. Several nodes may do
    /// this at once: the migrator holds an advisory lock while it works.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }

    fn account_row(r: &PgRow) -> Result<Account, StoreError> {
        Ok(Account {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            plan: r.try_get("plan")?,
            status: r.try_get("status")?,
            trial_ends_at: r.try_get("trial_ends_at")?,
        })
    }

    fn key_row(row: &PgRow) -> Result<KeyRecord, StoreError> {
        let json = |e: serde_json::Error| StoreError(e.to_string());
        Ok(KeyRecord {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            status: row.try_get("status")?,
            expires_at: row.try_get("expires_at")?,
            spend_cap: row.try_get::<Option<i64>, _>("spend_cap_nano")?.map(NanoUsd),
            models: row
                .try_get::<Option<String>, _>("models")?
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(json)?,
            fallback_model: row.try_get("fallback_model")?,
            limits: row
                .try_get::<Option<String>, _>("limits")?
                .map(|l| serde_json::from_str(&l))
                .transpose()
                .map_err(json)?
                .unwrap_or_default(),
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }

    fn ledger_row(r: &PgRow) -> Result<LedgerRow, StoreError> {
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
            estimated: r.try_get("estimated")?,
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

/// Whether PostgreSQL aborted the transaction to break a deadlock (or a
/// serialization conflict): the same work may simply run again.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01" | "40001")))
}

fn models_json(models: Option<&Vec<String>>) -> Option<String> {
    models.map(|m| serde_json::Value::from(m.clone()).to_string())
}

#[async_trait]
impl Store for PgStore {
    async fn create_account(
        &self,
        name: &str,
        plan: &str,
        trial_ends_at: Option<i64>,
        now: i64,
    ) -> Result<Account, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, plan, trial_ends_at, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
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
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    async fn account_named(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1")))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    async fn update_account(&self, id: i64, patch: &AccountPatch) -> Result<Option<Account>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE accounts SET id = id");
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
        q.push(" RETURNING ").push(ACCOUNT_COLUMNS);
        let row = q.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    async fn insert_key(
        &self,
        account: i64,
        prefix: &str,
        hash: &[u8; 32],
        new: &NewKey,
        now: i64,
    ) -> Result<KeyRecord, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO api_keys (account_id, name, prefix, key_hash, expires_at, spend_cap_nano, models, \
             fallback_model, limits, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             RETURNING {KEY_COLUMNS}"
        )))
        .bind(account)
        .bind(&new.name)
        .bind(prefix)
        .bind(&hash[..])
        .bind(new.expires_at)
        .bind(new.spend_cap.map(|c| c.0))
        .bind(models_json(new.models.as_ref()))
        .bind(&new.fallback_model)
        .bind(limits_json(&new.limits))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Self::key_row(&row)
    }

    async fn key(&self, id: i64) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::key_row).transpose()
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1")))
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::key_row).transpose()
    }

    async fn update_key(&self, id: i64, patch: &KeyPatch) -> Result<Option<KeyRecord>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE api_keys SET id = id");
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
            q.push(", models = ").push_bind(models_json(models.as_ref()));
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
        q.push(" RETURNING ").push(KEY_COLUMNS);
        let row = q.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::key_row).transpose()
    }

    async fn touch_keys(&self, used: &[(i64, i64)]) -> Result<(), StoreError> {
        append::touch_keys(&self.pool, used).await
    }

    async fn append(&self, records: &[LedgerRecord]) -> Result<u64, StoreError> {
        append::append(&self.pool, records).await
    }

    async fn recent_calls(&self, since: i64) -> Result<Vec<RecentCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id, key_id, model, limit_group, at FROM ledger_postings \
             WHERE book = 'wallet' AND kind = 'charge' AND at >= $1 ORDER BY at, id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RecentCall {
                    account_id: r.try_get("account_id")?,
                    key_id: r.try_get("key_id")?,
                    model: r.try_get("model")?,
                    group: r.try_get("limit_group")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn snapshot(&self, records: &[String], now: i64) -> Result<Snapshot, StoreError> {
        snapshot::snapshot(&self.pool, records, now).await
    }

    async fn ledger(&self, account: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger_postings WHERE account_id = $1 AND book = 'wallet' ORDER BY id"
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
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(DAY).push(
            " AS day, model, COUNT(*) AS requests, \
             COALESCE(SUM(input_tokens), 0)::bigint AS input_tokens, \
             COALESCE(SUM(output_tokens), 0)::bigint AS output_tokens, \
             COALESCE(SUM(cached_tokens), 0)::bigint AS cached_tokens, (-SUM(amount_nano))::bigint AS cost \
             FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge'",
        );
        if let Some(account) = f.account {
            q.push(" AND account_id = ").push_bind(account);
        }
        if let Some(from) = &f.from_day {
            q.push(" AND ").push(DAY).push(" >= ").push_bind(from.clone());
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
            q.push(" AND ").push(DAY).push(" = ").push_bind(day.clone());
        }
        q.push(" GROUP BY day, model ORDER BY day, model");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(super::usage_row).collect()
    }

    async fn generation(&self, request_id: &str) -> Result<Option<Generation>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT account_id, {LEDGER_COLUMNS} FROM ledger_postings \
             WHERE request_id = $1 AND book = 'wallet' ORDER BY id LIMIT 1"
        )))
        .bind(request_id)
        .fetch_optional(&self.pool)
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
        Ok(sqlx::query_scalar("SELECT COALESCE(SUM(amount_nano), 0)::bigint FROM ledger_postings")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn wallet_sums(&self, account: i64, records: &[String]) -> Result<WalletSums, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        let mut sums = WalletSums::default();
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN amount_nano > 0 THEN amount_nano ELSE 0 END), 0)::bigint AS credit, \
             COALESCE(-SUM(CASE WHEN amount_nano < 0 THEN amount_nano ELSE 0 END), 0)::bigint AS debit \
             FROM ledger_postings WHERE book = 'wallet' AND account_id = $1",
        )
        .bind(account)
        .fetch_one(&mut *tx)
        .await?;
        sums.credit = row.try_get("credit")?;
        sums.debit = row.try_get("debit")?;
        for r in sqlx::query(
            "SELECT key_id, (-SUM(amount_nano))::bigint AS spent FROM ledger_postings \
             WHERE book = 'wallet' AND kind = 'charge' AND account_id = $1 AND key_id IS NOT NULL \
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
        for r in sqlx::query(AssertSqlSafe(format!("SELECT {} FROM accounts ORDER BY id", ACCOUNT_COLUMNS)))
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

/// Which of `records` the ledger keeps.
pub(super) async fn kept_among(
    conn: &mut sqlx::PgConnection,
    records: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if records.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT entry_key FROM ledger_postings WHERE book = 'wallet' AND entry_key = ANY($1::text[])",
    )
    .bind(records)
    .fetch_all(&mut *conn)
    .await?;
    Ok(kept.into_iter().collect())
}

#[cfg(test)]
mod tests;
