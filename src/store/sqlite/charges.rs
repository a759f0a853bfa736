//! The start-up passes over the ledger's charges: what each key spent and
//! where each account's running totals start (per model, and this UTC
//! month's and today's share), in one read; and the last day's charges,
//! which the rate limits rebuild their windows from.

use crate::billing::NanoUsd;
use crate::store::{RecentCall, StoreError};
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

/// How long after its `at` (the time it was settled) a charge may reach
/// the ledger and still be found by [`recent`]. Postings are written in
/// the order they were settled (one writer, in journal order); only the
/// interleaved journals of peers in an upgrade, a batch's wait, a store
/// that was down (whose backlog then goes in, in order, after everything
/// older) and a clock stepped back put one behind an older one, and all
/// but the last by moments.
const LATE_MS: i64 = 3_600_000;

/// How many charges in a row older than the stop end the read: one
/// stamped by a clock that was wrong for a moment does not hide the
/// charges written before it.
const OLD_IN_A_ROW: usize = 256;

/// The charges since `since`, oldest first (by `at`, then by id). Read
/// from the newest posting back by id, stopping after [`OLD_IN_A_ROW`]
/// charges older than `since` by [`LATE_MS`]: no index on `at` is kept for
/// this one read at start, which every charge would pay an entry into.
pub async fn recent(pool: &sqlx::SqlitePool, since: i64) -> Result<Vec<RecentCall>, StoreError> {
    use futures_util::TryStreamExt;
    let stop = since.saturating_sub(LATE_MS);
    let mut conn = pool.acquire().await?;
    let mut rows = sqlx::query(RECENT).fetch(&mut *conn);
    let mut calls = Vec::new();
    let mut old = 0;
    while let Some(r) = rows.try_next().await? {
        let at: i64 = r.try_get("at")?;
        if at < stop {
            old += 1;
            if old == OLD_IN_A_ROW {
                break;
            }
            continue;
        }
        old = 0;
        if at >= since {
            calls.push(RecentCall {
                account_id: r.try_get("account_id")?,
                key_id: r.try_get("key_id")?,
                model: r.try_get("model")?,
                group: r.try_get("limit_group")?,
                at,
            });
        }
    }
    calls.reverse();
    // Stable: calls of the same millisecond stay in id order.
    calls.sort_by_key(|c| c.at);
    Ok(calls)
}

/// The charges, newest first: by the rowid, never an index (the wallet's
/// `(account_id, id)` one would be read whole and sorted).
const RECENT: &str = "SELECT account_id, key_id, model, limit_group, at FROM ledger_postings NOT INDEXED \
     WHERE book = 'wallet' AND kind = 'charge' ORDER BY id DESC";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_recent_charges_are_read_back_by_id_without_an_index_or_a_sort() {
        let store = crate::store::sqlite::SqliteStore::open(None).await.unwrap();
        let indexes: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(!indexes.iter().any(|name| name == "ledger_postings_recent"), "{indexes:?}");
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {RECENT}"));
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(explain).fetch_all(&store.pool).await.unwrap();
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert_eq!(details, ["SCAN ledger_postings"], "the rowid, backwards");
    }

    #[tokio::test]
    async fn the_recent_charges_stop_an_hour_past_the_day() {
        use crate::billing::{LedgerRecord, Metered, RecordKind};
        use crate::store::Store;
        let store = crate::store::sqlite::SqliteStore::open(None).await.unwrap();
        let a = store.create_account("acme", "pro", None, 1).await.unwrap();
        let charge = |key: &str, at: u64| LedgerRecord {
            key: key.into(),
            kind: RecordKind::Charge,
            account: a.id as u64,
            key_id: Some(1),
            wallet_nano: -1,
            paid_nano: 1,
            unpaid_nano: 0,
            multiplier: None,
            metered: Some(Metered { model: "m".into(), request_id: key.into(), ..Metered::default() }),
            at,
        };
        let hour = 3_600_000;
        let since = 30 * hour;
        // Written in this order: settled late by up to an hour, a posting
        // still counts; a run of older ones ends the read, one alone (a
        // clock wrong for a moment) does not.
        let mut batch = vec![charge("hidden", since + 5)];
        batch.extend((0..OLD_IN_A_ROW).map(|i| charge(&format!("too-old-{i}"), since - hour - 1)));
        batch.extend([
            charge("early", since + 1),
            charge("mis-stamped", since - 5 * hour),
            charge("old-late", since - 1),
            charge("late", since + 2),
            charge("b", since + 10),
            charge("a", since + 10),
        ]);
        store.append(&batch).await.unwrap();
        let found: Vec<i64> =
            store.recent_calls(since as i64).await.unwrap().iter().map(|c| c.at - since as i64).collect();
        assert_eq!(found, [1, 2, 10, 10], "oldest first; the hidden one is past the stop");
    }
}
