//! Saved agents and customers' own provider keys on Postgres: the [`Store`](crate::store::Store) agent
//! methods' queries.

use crate::store::{Agent, AgentPatch, ProviderKeyRow, StoreError};
use sqlx::Row;

const COLUMNS: &str = "id, account_id, name, system_prompt, model, created_at, updated_at";

fn row(r: &sqlx::postgres::PgRow) -> Result<Agent, StoreError> {
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

pub async fn insert(pool: &sqlx::PgPool, a: &Agent) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
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

pub async fn one(pool: &sqlx::PgPool, id: &str) -> Result<Option<Agent>, StoreError> {
    let found = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM agents WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    found.as_ref().map(row).transpose()
}

pub async fn of_account(pool: &sqlx::PgPool, account: i64) -> Result<Vec<Agent>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents WHERE account_id = $1 ORDER BY created_at, id"
    )))
    .bind(account)
    .fetch_all(pool)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn update(
    pool: &sqlx::PgPool,
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
    sqlx::query("UPDATE agents SET name = $1, system_prompt = $2, model = $3, updated_at = $4 WHERE id = $5")
        .bind(&agent.name)
        .bind(&agent.system_prompt)
        .bind(&agent.model)
        .bind(agent.updated_at)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(Some(agent))
}

pub async fn delete(pool: &sqlx::PgPool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM agents WHERE id = $1").bind(id).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

fn key_row(r: &sqlx::postgres::PgRow) -> Result<ProviderKeyRow, StoreError> {
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
    pool: &sqlx::PgPool,
    k: &ProviderKeyRow,
) -> Result<ProviderKeyRow, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO provider_keys (account_id, provider, sealed, last4, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
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

pub async fn provider_keys(pool: &sqlx::PgPool, account: i64) -> Result<Vec<ProviderKeyRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, account_id, provider, sealed, last4, created_at FROM provider_keys WHERE account_id = $1 ORDER BY id",
    )
    .bind(account)
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_row).collect()
}

pub async fn delete_provider_key(pool: &sqlx::PgPool, id: i64) -> Result<Option<i64>, StoreError> {
    let account: Option<i64> =
        sqlx::query_scalar("DELETE FROM provider_keys WHERE id = $1 RETURNING account_id")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(account)
}
