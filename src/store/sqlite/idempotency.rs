//! Idempotency keys in SQLite. A claim is a single upsert that returns the
//! row as it stands afterwards: a fresh or lapsed key becomes the
//! claimant's running mark, anything else is returned untouched. SQLite
//! runs one writer at a time, also across processes, so two claims of one
//! key can never both win.

use crate::billing::replay::{Answer, WINDOW_MS};
use crate::store::idempotency::{Claim, Claimed, Held, Scope};
use crate::store::StoreError;
use sqlx::{Row, SqlitePool};

/// Each column takes the claim's value only when the kept row has lapsed;
/// SQLite evaluates every `SET` against the row as it was.
const CLAIM: &str = "INSERT INTO idempotency_keys \
     (account_id, key_id, idem_key, fingerprint, state, owner, at, expires_at) \
     VALUES (?, ?, ?, ?, 'running', ?, ?, ?) \
     ON CONFLICT (account_id, key_id, idem_key) DO UPDATE SET \
     fingerprint = CASE WHEN expires_at <= excluded.at THEN excluded.fingerprint ELSE fingerprint END, \
     state = CASE WHEN expires_at <= excluded.at THEN 'running' ELSE state END, \
     owner = CASE WHEN expires_at <= excluded.at THEN excluded.owner ELSE owner END, \
     status = CASE WHEN expires_at <= excluded.at THEN NULL ELSE status END, \
     content_type = CASE WHEN expires_at <= excluded.at THEN NULL ELSE content_type END, \
     body = CASE WHEN expires_at <= excluded.at THEN NULL ELSE body END, \
     at = CASE WHEN expires_at <= excluded.at THEN excluded.at ELSE at END, \
     expires_at = CASE WHEN expires_at <= excluded.at THEN excluded.expires_at ELSE expires_at END \
     RETURNING owner, fingerprint, state, status, content_type, body";

pub async fn claim(pool: &SqlitePool, claim: &Claim) -> Result<Claimed, StoreError> {
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
/// (without), and drops lapsed answers (and running marks lapsed a window
/// ago). False when the mark is no longer `owner`'s (it lapsed and another
/// call took the key).
pub async fn complete(
    pool: &SqlitePool,
    scope: &Scope,
    owner: &str,
    answer: Option<&Answer>,
    at: i64,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET state = ?, status = ?, content_type = ?, body = ?, at = ?, expires_at = ? \
         WHERE account_id = ? AND key_id = ? AND idem_key = ? AND owner = ? AND state = 'running'",
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
    // Lapsed answers go; a lapsed running mark may still be its call's (one
    // that runs past the lease, which its answer must find when it ends):
    // it goes a window later, and a claim takes it over before that.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE expires_at <= ? AND (state <> 'running' OR expires_at <= ?)",
    )
    .bind(at)
    .bind(at.saturating_sub(i64::try_from(WINDOW_MS).unwrap_or(i64::MAX)))
    .execute(pool)
    .await?;
    Ok(done > 0)
}

/// Drops `owner`'s running mark: the call did not complete, so a retry runs.
pub async fn release(pool: &SqlitePool, scope: &Scope, owner: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys \
         WHERE account_id = ? AND key_id = ? AND idem_key = ? AND owner = ? AND state = 'running'",
    )
    .bind(scope.account)
    .bind(scope.key_id)
    .bind(&scope.key)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Extends `owner`'s running mark to `expires_at`, while its call runs (a
/// mark that lapsed but was not taken over is still its own). False when
/// the key holds no running mark of `owner`'s.
pub async fn renew(
    pool: &SqlitePool,
    scope: &Scope,
    owner: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let renewed = sqlx::query(
        "UPDATE idempotency_keys SET expires_at = ? \
         WHERE account_id = ? AND key_id = ? AND idem_key = ? AND owner = ? AND state = 'running'",
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
