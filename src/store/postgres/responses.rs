//! Stored responses on Postgres (see `crate::formats::responses::stored`).

use crate::store::{StoreError, StoredResponseRow};
use sqlx::Row;

pub async fn put(
    pool: &sqlx::PgPool,
    r: &StoredResponseRow,
    items: &[(String, String)],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // The expired go first (their items with them): a bounded table.
    sqlx::query("DELETE FROM response_items WHERE response_id IN (SELECT id FROM stored_responses WHERE expires_at < $1)")
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM stored_responses WHERE expires_at < $1")
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO stored_responses (id, account_id, created_at, expires_at, input, response, size) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&r.id)
    .bind(r.account_id)
    .bind(r.created_at)
    .bind(r.expires_at)
    .bind(&r.input)
    .bind(&r.response)
    .bind(i64::try_from(r.input.len() + r.response.len()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    for (id, item) in items {
        // An item id seen before (a caller's own ids, sent again) keeps its first.
        sqlx::query(
            "INSERT INTO response_items (id, account_id, response_id, item) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(r.account_id)
        .bind(&r.id)
        .bind(item)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn row(r: &sqlx::postgres::PgRow) -> Result<StoredResponseRow, StoreError> {
    Ok(StoredResponseRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        input: r.try_get("input")?,
        response: r.try_get("response")?,
    })
}

pub async fn one(pool: &sqlx::PgPool, id: &str, now: i64) -> Result<Option<StoredResponseRow>, StoreError> {
    let found = sqlx::query(
        "SELECT id, account_id, created_at, expires_at, input, response FROM stored_responses \
         WHERE id = $1 AND expires_at >= $2",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    found.as_ref().map(row).transpose()
}

pub async fn delete(pool: &sqlx::PgPool, id: &str) -> Result<Option<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM response_items WHERE response_id = $1").bind(id).execute(&mut *tx).await?;
    let account: Option<i64> =
        sqlx::query_scalar("DELETE FROM stored_responses WHERE id = $1 RETURNING account_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(account)
}

pub async fn items(
    pool: &sqlx::PgPool,
    account: i64,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT id, item FROM response_items WHERE id = $1 AND account_id = $2")
                .bind(id)
                .bind(account)
                .fetch_optional(pool)
                .await?;
        out.extend(found);
    }
    Ok(out)
}
