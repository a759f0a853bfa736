//! Idempotency keys in PostgreSQL. A claim is one `INSERT … ON CONFLICT DO
//! UPDATE … RETURNING`: PostgreSQL guarantees it either inserts or locks
//! and updates the existing row, even at READ COMMITTED with many nodes
//! claiming at once, and the row it returns is the row as it stands
//! afterwards. Each column takes the claim's value only when the kept row
//! has lapsed (`k.` is the row as it was), so a key that is still held is
//! returned untouched and two claims of one key never both win.

use crate::billing::replay::{Answer, WINDOW_MS};
use crate::store::idempotency::{Claim, Claimed, Held, Scope};
use crate::store::StoreError;
use sqlx::{PgPool, Row};

const CLAIM: &str = "INSERT INTO idempotency_keys AS k \
     (account_id, key_id, idem_key, fingerprint, state, owner, at, expires_at) \
     VALUES ($1, $2, $3, $4, 'running', $5, $6, $7) \
     ON CONFLICT (account_id, key_id, idem_key) DO UPDATE SET \
     fingerprint = CASE WHEN k.expires_at <= excluded.at THEN excluded.fingerprint ELSE k.fingerprint END, \
     state = CASE WHEN k.expires_at <= excluded.at THEN 'running' ELSE k.state END, \
     owner = CASE WHEN k.expires_at <= excluded.at THEN excluded.owner ELSE k.owner END, \
     status = CASE WHEN k.expires_at <= excluded.at THEN NULL ELSE k.status END, \
     content_type = CASE WHEN k.expires_at <= excluded.at THEN NULL ELSE k.content_type END, \
     body = CASE WHEN k.expires_at <= excluded.at THEN NULL ELSE k.body END, \
     at = CASE WHEN k.expires_at <= excluded.at THEN excluded.at ELSE k.at END, \
     expires_at = CASE WHEN k.expires_at <= excluded.at THEN excluded.expires_at ELSE k.expires_at END \
     RETURNING owner, fingerprint, state, status, content_type, body";

pub async fn claim(pool: &PgPool, claim: &Claim) -> Result<Claimed, StoreError> {
    let row = sqlx::query(CLAIM)
        .bind(claim.scope.account)
        .bind(claim.scope.key_id)
        .bind(&claim.scope.key)
        .bind(&claim.fingerprint[..])
        .bind(&claim.owner)
        .bind(claim.now)
        .bind(claim.expires_at)
        .fetch_one(pool)
        .await?;
    if row.try_get::<String, _>("owner")? == claim.owner {
        return Ok(Claimed::Ours);
    }
    let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
    let fingerprint =
        fingerprint.try_into().map_err(|_| StoreError("a request fingerprint is not 32 bytes".into()))?;
    let held = match row.try_get::<String, _>("state")?.as_str() {
        "running" => Held::Running,
        "unkept" => Held::Unkept,
        _ => Held::Done(Answer {
            status: u16::try_from(row.try_get::<Option<i64>, _>("status")?.unwrap_or(200)).unwrap_or(200),
            content_type: row.try_get::<Option<String>, _>("content_type")?.unwrap_or_default(),
            body: row.try_get::<Option<Vec<u8>>, _>("body")?.unwrap_or_default(),
        }),
    };
    Ok(Claimed::Theirs { fingerprint, held })
}

/// Turns `owner`'s running mark into `done` (with `answer`) or `unkept`
/// (without), and drops lapsed rows. False when the mark is no longer
/// `owner`'s (it lapsed and another call took the key).
pub async fn complete(
    pool: &PgPool,
    scope: &Scope,
    owner: &str,
    answer: Option<&Answer>,
    at: i64,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET state = $1, status = $2, content_type = $3, body = $4, at = $5, \
         expires_at = $6 \
         WHERE account_id = $7 AND key_id = $8 AND idem_key = $9 AND owner = $10 AND state = 'running'",
    )
    .bind(if answer.is_some() { "done" } else { "unkept" })
    .bind(answer.map(|a| i64::from(a.status)))
    .bind(answer.map(|a| a.content_type.as_str()))
    .bind(answer.map(|a| a.body.as_slice()))
    .bind(at)
    .bind(expires_at)
    .bind(scope.account)
    .bind(scope.key_id)
    .bind(&scope.key)
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected();
    // Lapsed answers are litter; a lapsed running mark may still be its
    // call's (one that runs past the lease, which its answer must find when
    // it ends): it goes a window later, and a claim takes it over before
    // that. When two nodes sweep at once and PostgreSQL aborts one, the next
    // completion sweeps them.
    let swept = sqlx::query(
        "DELETE FROM idempotency_keys WHERE expires_at <= $1 AND (state <> 'running' OR expires_at <= $2)",
    )
    .bind(at)
    .bind(at.saturating_sub(i64::try_from(WINDOW_MS).unwrap_or(i64::MAX)))
    .execute(pool)
    .await;
    match swept {
        Err(e) if !super::retryable(&e) => return Err(e.into()),
        _ => {}
    }
    Ok(done > 0)
}

/// Extends `owner`'s running mark to `expires_at`, while its call runs (a
/// mark that lapsed but was not taken over is still its own). False when
/// the key holds no running mark of `owner`'s.
pub async fn renew(pool: &PgPool, scope: &Scope, owner: &str, expires_at: i64) -> Result<bool, StoreError> {
    let renewed = sqlx::query(
        "UPDATE idempotency_keys SET expires_at = $1 \
         WHERE account_id = $2 AND key_id = $3 AND idem_key = $4 AND owner = $5 AND state = 'running'",
    )
    .bind(expires_at)
    .bind(scope.account)
    .bind(scope.key_id)
    .bind(&scope.key)
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(renewed > 0)
}

/// Drops `owner`'s running mark: the call did not complete, so a retry runs.
pub async fn release(pool: &PgPool, scope: &Scope, owner: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys \
         WHERE account_id = $1 AND key_id = $2 AND idem_key = $3 AND owner = $4 AND state = 'running'",
    )
    .bind(scope.account)
    .bind(scope.key_id)
    .bind(&scope.key)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}
