//! What a node loads at start, read in one REPEATABLE READ transaction:
//! every statement sees the same committed state, so the record keys
//! found kept agree with the totals even while other nodes append.

use super::PgStore;
use crate::billing::NanoUsd;
use crate::store::{LotRow, Snapshot, StoreError};
use sqlx::{AssertSqlSafe, PgPool, Row};

pub async fn snapshot(pool: &PgPool, records: &[String], now: i64) -> Result<Snapshot, StoreError> {
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    let mut snap = Snapshot::default();
    for r in
        sqlx::query(AssertSqlSafe(format!("SELECT {} FROM accounts ORDER BY id", super::ACCOUNT_COLUMNS)))
            .fetch_all(&mut *tx)
            .await?
    {
        snap.accounts.push(PgStore::account_row(&r)?);
    }
    for r in sqlx::query(AssertSqlSafe(format!(
        "SELECT {}, key_hash FROM api_keys ORDER BY id",
        super::KEY_COLUMNS
    )))
    .fetch_all(&mut *tx)
    .await?
    {
        let hash: Vec<u8> = r.try_get("key_hash")?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError("a key hash is not 32 bytes".into()))?;
        snap.keys.push((PgStore::key_row(&r)?, hash));
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
        "SELECT account_id, (-SUM(amount_nano))::bigint AS debited FROM ledger_postings \
         WHERE book = 'wallet' AND amount_nano < 0 GROUP BY account_id ORDER BY account_id",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        snap.debited.push((r.try_get("account_id")?, NanoUsd(r.try_get("debited")?)));
    }
    for r in sqlx::query(
        "SELECT key_id, (-SUM(amount_nano))::bigint AS spent FROM ledger_postings \
         WHERE book = 'wallet' AND kind = 'charge' AND key_id IS NOT NULL GROUP BY key_id ORDER BY key_id",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        snap.key_spent.push((r.try_get("key_id")?, NanoUsd(r.try_get("spent")?)));
    }
    snap.charges = charge_sums(&mut tx, now).await?;
    snap.operator_keys = sqlx::query_scalar(
        "SELECT entry_key FROM ledger_postings WHERE book = 'wallet' AND kind != 'charge' ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    snap.present = super::kept_among(&mut tx, records).await?;
    tx.commit().await?;
    Ok(snap)
}

/// Where each account's running totals start: its charges per model and
/// period (today, the rest of this UTC month, earlier), in one GROUP BY.
async fn charge_sums(
    tx: &mut sqlx::PgConnection,
    now: i64,
) -> Result<Vec<crate::usage_totals::LoadedSum>, StoreError> {
    use crate::calendar::{start_of_day, start_of_month};
    use crate::usage_totals::{Counts, LoadedSum, Period};
    let (day, month) = (start_of_day(now), start_of_month(now));
    let next_month = start_of_month(month + 32 * 86_400_000);
    let rows = sqlx::query(
        "SELECT account_id, COALESCE(model, '') AS model_name, \
         CASE WHEN at >= $1 AND at < $2 THEN 2 WHEN at >= $3 AND at < $4 THEN 1 ELSE 0 END AS period, \
         COUNT(*)::bigint AS requests, COALESCE(SUM(input_tokens), 0)::bigint AS input_tokens, \
         COALESCE(SUM(output_tokens), 0)::bigint AS output_tokens, \
         COALESCE(SUM(cached_tokens), 0)::bigint AS cached_tokens, (-SUM(amount_nano))::bigint AS spent \
         FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge' GROUP BY 1, 2, 3",
    )
    .bind(day)
    .bind(day + 86_400_000)
    .bind(month)
    .bind(next_month)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LoadedSum {
                account: u64::try_from(r.try_get::<i64, _>("account_id")?).unwrap_or(0),
                model: r.try_get("model_name")?,
                period: match r.try_get::<i32, _>("period")? {
                    2 => Period::Today,
                    1 => Period::ThisMonth,
                    _ => Period::Earlier,
                },
                counts: Counts {
                    requests: r.try_get("requests")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    spent_nano: r.try_get("spent")?,
                },
            })
        })
        .collect()
}
