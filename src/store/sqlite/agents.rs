//! Saved agents and customers' own provider keys on Sqlite: the [`Store`](crate::store::Store) agent
//! methods' queries.

use crate::store::{Agent, AgentPatch, ProviderKeyRow, StoreError};
use sqlx::Row;

const COLUMNS: &str = "id, account_id, name, system_prompt, model, created_at, updated_at";

fn row(r: &sqlx::sqlite::SqliteRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        system_prompt: r.try_get("system_prompt")?,
        model: r.try_get("model")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn insert(pool: &sqlx::SqlitePool, a: &Agent) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO agents ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)")))
        .bind(&a.id)
        .bind(a.account_id)
        .bind(&a.name)
        .bind(&a.system_prompt)
        .bind(&a.model)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn one(pool: &sqlx::SqlitePool, id: &str) -> Result<Option<Agent>, StoreError> {
    let found = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM agents WHERE id = ?")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    found.as_ref().map(row).transpose()
}

pub async fn of_account(pool: &sqlx::SqlitePool, account: i64) -> Result<Vec<Agent>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents WHERE account_id = ? ORDER BY created_at, id"
    )))
    .bind(account)
    .fetch_all(pool)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn update(
    pool: &sqlx::SqlitePool,
    id: &str,
    p: &AgentPatch,
    now: i64,
) -> Result<Option<Agent>, StoreError> {
    let Some(mut agent) = one(pool, id).await? else { return Ok(None) };
    if let Some(name) = &p.name {
        agent.name.clone_from(name);
    }
    if let Some(prompt) = &p.system_prompt {
        agent.system_prompt.clone_from(prompt);
    }
    if let Some(model) = &p.model {
        agent.model.clone_from(model);
    }
    agent.updated_at = now;
    sqlx::query("UPDATE agents SET name = ?, system_prompt = ?, model = ?, updated_at = ? WHERE id = ?")
        .bind(&agent.name)
        .bind(&agent.system_prompt)
        .bind(&agent.model)
        .bind(agent.updated_at)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(Some(agent))
}

pub async fn delete(pool: &sqlx::SqlitePool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM agents WHERE id = ?").bind(id).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

fn key_row(r: &sqlx::sqlite::SqliteRow) -> Result<ProviderKeyRow, StoreError> {
    Ok(ProviderKeyRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        provider: r.try_get("provider")?,
        sealed: r.try_get("sealed")?,
        last4: r.try_get("last4")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn insert_provider_key(
    pool: &sqlx::SqlitePool,
    k: &ProviderKeyRow,
) -> Result<ProviderKeyRow, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO provider_keys (account_id, provider, sealed, last4, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(k.account_id)
    .bind(&k.provider)
    .bind(&k.sealed)
    .bind(&k.last4)
    .bind(k.created_at)
    .fetch_one(pool)
    .await?;
    Ok(ProviderKeyRow { id, ..k.clone() })
}

pub async fn provider_keys(pool: &sqlx::SqlitePool, account: i64) -> Result<Vec<ProviderKeyRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, account_id, provider, sealed, last4, created_at FROM provider_keys WHERE account_id = ? ORDER BY id",
    )
    .bind(account)
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_row).collect()
}

pub async fn delete_provider_key(pool: &sqlx::SqlitePool, id: i64) -> Result<Option<i64>, StoreError> {
    let account: Option<i64> =
        sqlx::query_scalar("DELETE FROM provider_keys WHERE id = ? RETURNING account_id")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(account)
}
