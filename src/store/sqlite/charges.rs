//! The start-up pass over the ledger's charges: what each key spent and
//! where each account's running totals start (per model, and this UTC
//! month's and today's share), in one read.

use crate::billing::NanoUsd;
use crate::store::StoreError;
use sqlx::Row;

/// One pass over the wallet's charges, summed per account, key, model and
/// period (today, the rest of this month, earlier): what each key spent,
/// and the running totals' start.
pub async fn sums(tx: &mut sqlx::SqliteConnection, now: i64) -> Result<ChargeSums, StoreError> {
    use crate::calendar::{start_of_day, start_of_month};
    use crate::usage_totals::{Counts, LoadedSum, Period};
    let (day, month) = (start_of_day(now), start_of_month(now));
    let next_month = start_of_month(month + 32 * 86_400_000);
    // Summed into a small table by upserts rather than by GROUP BY: SQLite
    // groups by sorting every row (2.1 s at a million charges), where an
    // upsert into a table of a few rows is a hash-like 1.0 s.
    sqlx::query("DROP TABLE IF EXISTS temp.charge_sums").execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TEMP TABLE charge_sums (account_id INTEGER NOT NULL, key_id INTEGER NOT NULL, \
         model TEXT NOT NULL, period INTEGER NOT NULL, requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, \
         output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, spent INTEGER NOT NULL, \
         PRIMARY KEY (account_id, key_id, model, period)) WITHOUT ROWID",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO temp.charge_sums SELECT account_id, COALESCE(key_id, -1), COALESCE(model, ''), \
         CASE WHEN at >= ?1 AND at < ?2 THEN 2 WHEN at >= ?3 AND at < ?4 THEN 1 ELSE 0 END, 1, \
         COALESCE(input_tokens, 0), COALESCE(output_tokens, 0), COALESCE(cached_tokens, 0), -amount_nano \
         FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge' AND true \
         ON CONFLICT DO UPDATE SET requests = requests + 1, input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, \
         cached_tokens = cached_tokens + excluded.cached_tokens, spent = spent + excluded.spent",
    )
    .bind(day)
    .bind(day + 86_400_000)
    .bind(month)
    .bind(next_month)
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query(
        "SELECT account_id, NULLIF(key_id, -1) AS key_id, model AS model_name, period, requests, input_tokens, \
         output_tokens, cached_tokens, spent FROM temp.charge_sums",
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DROP TABLE temp.charge_sums").execute(&mut *tx).await?;
    let mut key_spent = std::collections::BTreeMap::<i64, i64>::new();
    let mut sums = Vec::with_capacity(rows.len());
    for r in &rows {
        let counts = Counts {
            requests: r.try_get("requests")?,
            input_tokens: r.try_get("input_tokens")?,
            output_tokens: r.try_get("output_tokens")?,
            cached_tokens: r.try_get("cached_tokens")?,
            spent_nano: r.try_get("spent")?,
        };
        if let Some(key) = r.try_get::<Option<i64>, _>("key_id")? {
            *key_spent.entry(key).or_default() += counts.spent_nano;
        }
        sums.push(LoadedSum {
            account: u64::try_from(r.try_get::<i64, _>("account_id")?).unwrap_or(0),
            model: r.try_get("model_name")?,
            period: match r.try_get::<i64, _>("period")? {
                2 => Period::Today,
                1 => Period::ThisMonth,
                _ => Period::Earlier,
            },
            counts,
        });
    }
    Ok((key_spent.into_iter().map(|(k, n)| (k, NanoUsd(n))).collect(), sums))
}

/// Per key what it spent, and the running totals' sums.
type ChargeSums = (Vec<(i64, NanoUsd)>, Vec<crate::usage_totals::LoadedSum>);
