//! Ledger records and last-used times into PostgreSQL, a batch in a few
//! statements: each column travels as one array and `UNNEST` turns them
//! back into rows (no bind limit, one prepared statement per shape). A
//! record is kept once by `(entry_key, book)`: `ON CONFLICT DO NOTHING
//! RETURNING` names the wallet postings that are new, and only those get
//! their counter posting and, for top-ups and grants, their credit lot,
//! in the same transaction. Rows several nodes may write at once are
//! taken in one order (keys sorted), so they wait rather than deadlock;
//! should PostgreSQL still abort a transaction to break one, it is tried
//! again.

use super::retryable;
use crate::billing::{LedgerRecord, RecordKind};
use crate::store::StoreError;
use sqlx::PgPool;
use std::collections::HashSet;

/// Records per transaction: bounds the arrays sent, not the work.
const CHUNK: usize = 5_000;
/// Attempts at a batch PostgreSQL aborted to break a deadlock.
const ATTEMPTS: usize = 3;

/// The wallet postings, with ids drawn beforehand in the records' order
/// (the ledger lists by id) but inserted in key order: two nodes keeping
/// overlapping batches then meet their common keys in one order, and one
/// waits for the other instead of both deadlocking.
const WALLET: &str = "INSERT INTO ledger_postings (id, entry_key, kind, account_id, book, amount_nano, \
     paid_nano, unpaid_nano, key_id, model, input_tokens, output_tokens, cached_tokens, \
     cache_write_tokens, estimated, request_id, limit_group, at) \
     SELECT id, k, kind, account, 'wallet', amount, paid, unpaid, key_id, model, input, output, cached, \
     cache_write, estimated, request_id, grp, at \
     FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], \
     $8::int8[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::bool[], \
     $15::text[], $16::text[], $17::int8[]) \
     AS r(id, k, kind, account, amount, paid, unpaid, key_id, model, input, output, cached, cache_write, \
     estimated, request_id, grp, at) \
     ORDER BY k \
     ON CONFLICT (entry_key, book) DO NOTHING RETURNING entry_key";

const IDS: &str =
    "SELECT nextval(pg_get_serial_sequence('ledger_postings', 'id')) FROM generate_series(1, $1)";

const COUNTER: &str = "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) \
     SELECT k, kind, account, book, amount, at \
     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::int8[]) WITH ORDINALITY \
     AS r(k, kind, account, book, amount, at, n) ORDER BY n";

/// Lots in the records' order: their ids are the order they are used in.
const LOTS: &str = "INSERT INTO credit_lots (account_id, paid_nano, multiplier, list_nano, granted_nano, \
     entry_key, created_at) \
     SELECT account, paid, multiplier, list, granted, k, at \
     FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[]) \
     WITH ORDINALITY AS r(account, paid, multiplier, list, granted, k, at, n) ORDER BY n";

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub async fn append(pool: &PgPool, records: &[LedgerRecord]) -> Result<u64, StoreError> {
    // A retried batch may hold a record twice: keep the first.
    let mut seen = HashSet::new();
    let records: Vec<&LedgerRecord> = records.iter().filter(|r| seen.insert(r.key.as_str())).collect();
    let mut new = 0;
    for chunk in records.chunks(CHUNK) {
        let mut attempt = 1;
        new += loop {
            match append_chunk(pool, chunk).await {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => attempt += 1,
                done => break done?,
            }
        };
    }
    Ok(new)
}

async fn append_chunk(pool: &PgPool, chunk: &[&LedgerRecord]) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let metered = |f: &dyn Fn(&crate::billing::Metered) -> u64| -> Vec<Option<i64>> {
        chunk.iter().map(|r| r.metered.as_ref().map(|m| to_i64(f(m)))).collect()
    };
    let mut ids: Vec<i64> = sqlx::query_scalar(IDS).bind(chunk.len() as i64).fetch_all(&mut *tx).await?;
    ids.sort_unstable();
    let kept: HashSet<String> = sqlx::query_scalar(WALLET)
        .bind(ids)
        .bind(chunk.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| to_i64(r.account)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.wallet_nano).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.paid_nano).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.unpaid_nano).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.key_id.map(to_i64)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.metered.as_ref().map(|m| &*m.model)).collect::<Vec<_>>())
        .bind(metered(&|m| m.input_tokens))
        .bind(metered(&|m| m.output_tokens))
        .bind(metered(&|m| m.cached_tokens))
        .bind(metered(&|m| m.cache_write_tokens))
        .bind(chunk.iter().map(|r| r.metered.as_ref().is_some_and(|m| m.estimated)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.metered.as_ref().map(|m| &*m.request_id)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.metered.as_ref().and_then(|m| m.group.as_deref())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| to_i64(r.at)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let fresh: Vec<&LedgerRecord> = chunk.iter().copied().filter(|r| kept.contains(&r.key)).collect();
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    sqlx::query(COUNTER)
        .bind(fresh.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|r| to_i64(r.account)).collect::<Vec<_>>())
        .bind(fresh.iter().map(|r| r.kind.counter_book()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|r| -r.wallet_nano).collect::<Vec<_>>())
        .bind(fresh.iter().map(|r| to_i64(r.at)).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    // A top-up is a lot at its price and multiplier; any other credit
    // (opening balance, adjustment up, refund) a grant with no paid value.
    let lots: Vec<(&LedgerRecord, i64, i64, i64)> = fresh
        .iter()
        .filter_map(|r| match r.kind {
            RecordKind::Topup => Some((*r, r.paid_nano, i64::from(r.multiplier.unwrap_or(1)), 0)),
            _ if r.wallet_nano > 0 => Some((*r, 0, 1, r.wallet_nano)),
            _ => None,
        })
        .collect();
    if !lots.is_empty() {
        sqlx::query(LOTS)
            .bind(lots.iter().map(|l| to_i64(l.0.account)).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| l.1).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| l.2).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| l.0.wallet_nano).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| l.3).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| l.0.key.clone()).collect::<Vec<_>>())
            .bind(lots.iter().map(|l| to_i64(l.0.at)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
    }
    super::attribute::attribute(&mut tx, &fresh).await?;
    tx.commit().await?;
    Ok(fresh.len() as u64)
}

/// Last-used times: each key's latest, never moved back. The rows are
/// locked in id order first, so two nodes touching the same keys wait for
/// one another instead of deadlocking.
pub async fn touch_keys(pool: &PgPool, used: &[(i64, i64)]) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = used.iter().map(|u| u.0).collect();
    let ats: Vec<i64> = used.iter().map(|u| u.1).collect();
    let mut attempt = 1;
    loop {
        match touch(pool, &ids, &ats).await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => attempt += 1,
            done => return done.map_err(StoreError::from),
        }
    }
}

async fn touch(pool: &PgPool, ids: &[i64], ats: &[i64]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM api_keys WHERE id = ANY($1::int8[]) ORDER BY id FOR UPDATE")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, 0), u.at) \
         FROM (SELECT id, MAX(at) AS at FROM UNNEST($1::int8[], $2::int8[]) AS t(id, at) GROUP BY id) u \
         WHERE api_keys.id = u.id",
    )
    .bind(ids)
    .bind(ats)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
