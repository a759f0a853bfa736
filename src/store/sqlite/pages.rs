//! Pages and aggregates for the dashboards on SQLite: an account's ledger
//! by posting id, the accounts by id with a name search, an account's
//! keys, and usage from the daily totals the ledger's writer keeps
//! (`usage_daily`, see `append`), so none of them reads more than a page
//! of rows however long the ledger grows.

use super::{SqliteStore, KEY_COLUMNS, LEDGER_COLUMNS};
use crate::store::like_pattern;
use crate::store::{
    Account, AccountsPage, KeyRecord, LedgerPage, LedgerRow, StoreError, UsageFilter, UsageRow,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqlitePool};

pub async fn ledger_page(pool: &SqlitePool, p: &LedgerPage) -> Result<Vec<LedgerRow>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
    q.push(LEDGER_COLUMNS).push(" FROM ledger_postings WHERE account_id = ");
    q.push_bind(p.account).push(" AND book = 'wallet'");
    if p.charges_only {
        q.push(" AND kind = 'charge'");
    }
    if let Some(before) = p.before {
        q.push(" AND id < ").push_bind(before);
    }
    if let Some(after) = p.after {
        q.push(" AND id > ").push_bind(after);
    }
    q.push(if p.newest_first { " ORDER BY id DESC LIMIT " } else { " ORDER BY id LIMIT " })
        .push_bind(p.limit);
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(SqliteStore::ledger_row).collect()
}

pub async fn accounts(pool: &SqlitePool, p: &AccountsPage) -> Result<Vec<Account>, StoreError> {
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT id, name, plan, status, trial_ends_at FROM accounts WHERE id > ");
    q.push_bind(p.after.unwrap_or(0));
    if let Some(search) = p.search.as_deref().filter(|s| !s.is_empty()) {
        q.push(" AND name LIKE ").push_bind(like_pattern(search)).push(" ESCAPE '\\'");
    }
    q.push(" ORDER BY id LIMIT ").push_bind(p.limit);
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(SqliteStore::account_row).collect()
}

pub async fn keys_of(pool: &SqlitePool, account: i64) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY id"
    )))
    .bind(account)
    .fetch_all(pool)
    .await?;
    rows.iter().map(SqliteStore::key_row).collect()
}

/// Usage by day and model from the daily totals (a filter with `since`, a
/// time inside a day, adds up the ledger instead: see `SqliteStore::usage`).
pub async fn daily_usage(pool: &SqlitePool, f: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT day, model, SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, \
         SUM(output_tokens) AS output_tokens, SUM(cached_tokens) AS cached_tokens, SUM(cost_nano) AS cost \
         FROM usage_daily WHERE 1 = 1",
    );
    if let Some(account) = f.account {
        q.push(" AND account_id = ").push_bind(account);
    }
    if let Some(key) = f.key_id {
        q.push(" AND key_id = ").push_bind(key);
    }
    if let Some(model) = &f.model {
        q.push(" AND model = ").push_bind(model.clone());
    }
    if let Some(day) = &f.day {
        q.push(" AND day = ").push_bind(day.clone());
    }
    if let Some(from) = &f.from_day {
        q.push(" AND day >= ").push_bind(from.clone());
    }
    q.push(" GROUP BY day, model ORDER BY day, model");
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(crate::store::usage_row).collect()
}
