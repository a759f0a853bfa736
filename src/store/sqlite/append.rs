//! Ledger records into SQLite, a batch in one write transaction: the
//! wallet postings, then the day's usage totals and the counter postings
//! (one per account and kind a batch), each in multi-row statements of a
//! few fixed sizes ([`rows`](super::rows)), and the credit lots. A record
//! is kept once by `(entry_key, book)`: a conflict skips its wallet
//! posting, and what is derived comes only from postings this
//! transaction added, so a replayed journal counts once.
//!
//! The transaction starts `IMMEDIATE` (the write lock first): the rows it
//! adds are then exactly those past the largest id it read, since SQLite
//! gives a new row the largest id plus one and no one else writes until
//! it commits. When every record became a posting and the day totals'
//! watermark (`usage_daily_folded`) stood at that id, the totals and the
//! counter postings are summed from the records in memory
//! ([`batch_sums`](super::batch_sums)); otherwise SQL derives them from
//! the rows past the id, and the totals from every charge past the
//! watermark, so that a posting an older release wrote into the same
//! file is counted too (see `migrations/0014_usage_daily_watermark.sql`).

use super::batch_sums::{self, CounterPosting, DayTotal};
use super::rows::{self, RowsStatement};
use super::to_i64;
use crate::billing::{LedgerRecord, RecordKind};
use crate::store::StoreError;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, SqliteConnection, SqlitePool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The wallet postings. A row's values: those [`bind_wallet`] binds, and
/// `totals_kept` 0 (this writer adds its charge to `usage_daily` in the
/// same batch, summed in memory or by [`DAILY`], which folds whatever is
/// past the watermark; 1 marks one that a writer of migration 0013 added
/// as it wrote it).
static WALLET: RowsStatement = RowsStatement::new(
    "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, paid_nano, unpaid_nano, \
     key_id, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens, estimated, request_id, \
     limit_group, at, totals_kept) VALUES ",
    "(?, ?, ?, 'wallet', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
    " ON CONFLICT (entry_key, book) DO NOTHING",
);

/// The largest posting id, and the day totals' watermark.
const LAST_ID: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_postings), \
     (SELECT upto FROM usage_daily_folded)";

/// A batch's key is new unless someone deleted the newest postings (a
/// restored backup cut short): adding to the posting already there keeps
/// the ledger's zero sum, where failing would stop the writer for good (it
/// retries a failed batch as it is).
macro_rules! counter_conflict {
    () => {
        " ON CONFLICT (entry_key, book) DO UPDATE SET \
         amount_nano = amount_nano + excluded.amount_nano, at = MAX(at, excluded.at)"
    };
}

/// The counter postings of the wallet postings added after `?1`, one per
/// account and kind, which balance them (see `RecordKind::counter_book`,
/// which a test holds this to, and [`batch_sums::counter_postings`], the
/// same in memory). The statements that read the rows a batch added say
/// `NOT INDEXED`: by the rowid range, never by an index that reads the
/// whole ledger (the planner took the wallet's `(account_id, id)` index
/// for the day totals' `GROUP BY account_id`, a scan of every wallet
/// posting on every batch).
const COUNTERS: &str = concat!(
    "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) \
     SELECT 'batch:' || ?1 || ':' || account_id || ':' || kind, kind, account_id, \
            CASE WHEN kind IN ('topup', 'adjustment') THEN 'funding' ELSE 'revenue' END, -SUM(amount_nano), MAX(at) \
     FROM ledger_postings NOT INDEXED WHERE id > ?1 AND book = 'wallet' \
     GROUP BY account_id, kind ORDER BY account_id, kind",
    counter_conflict!()
);

/// The counter postings [`batch_sums`] summed, one per account and kind.
static COUNTER_POSTINGS: RowsStatement = RowsStatement::new(
    "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) VALUES ",
    "(?, ?, ?, ?, ?, ?)",
    counter_conflict!(),
);

/// A row of day totals added to the one already kept.
macro_rules! add_to_day_total {
    () => {
        " ON CONFLICT (account_id, day, model, key_id) DO UPDATE SET \
         requests = requests + excluded.requests, \
         input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, \
         cached_tokens = cached_tokens + excluded.cached_tokens, \
         cost_nano = cost_nano + excluded.cost_nano"
    };
}

/// The day totals [`batch_sums`] summed, added to what is kept.
static DAY_TOTALS: RowsStatement =
    RowsStatement::new("INSERT INTO usage_daily VALUES ", "(?, ?, ?, ?, ?, ?, ?, ?, ?)", add_to_day_total!());

/// The charges past the watermark that no writer counted as it wrote
/// them, summed per account, key, UTC day and model into `usage_daily`:
/// one upsert per group, not per charge, and the day formatted once per
/// group. [`FOLDED`] moves the watermark past them, in the same
/// transaction, so each is counted once.
const DAILY: &str = concat!(
    "INSERT INTO usage_daily \
     SELECT account_id, COALESCE(key_id, 0), strftime('%Y-%m-%d', MIN(at) / 1000, 'unixepoch'), \
            COALESCE(model, ''), COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), \
            COALESCE(SUM(cached_tokens), 0), -SUM(amount_nano) \
     FROM ledger_postings NOT INDEXED \
     WHERE id > (SELECT upto FROM usage_daily_folded) AND book = 'wallet' AND kind = 'charge' AND totals_kept = 0 \
     GROUP BY account_id, COALESCE(key_id, 0), at / 86400000, COALESCE(model, '')",
    add_to_day_total!()
);

/// The day totals' watermark, past every posting there is (the counter
/// postings too: the next batch then finds it at the largest id when no
/// one else wrote).
const FOLDED: &str =
    "UPDATE usage_daily_folded SET upto = (SELECT COALESCE(MAX(id), 0) FROM ledger_postings)";

/// The postings added after `?1` that open a credit lot (see
/// [`batch_sums::opens_lot`]).
const LOT_KEYS: &str = "SELECT entry_key FROM ledger_postings NOT INDEXED \
     WHERE id > ?1 AND book = 'wallet' AND (kind = 'topup' OR amount_nano > 0) ORDER BY id";

const LOT: &str = "INSERT INTO credit_lots (account_id, paid_nano, multiplier, list_nano, granted_nano, \
     entry_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Runs `statement` over `rows`, a chunk a statement, each row's values
/// bound by `bind`; how many rows it added or changed.
async fn insert_rows<T: Sync>(
    tx: &mut SqliteConnection,
    statement: &RowsStatement,
    rows: &[T],
    bind: fn(&mut SqliteArguments, &T) -> Result<(), sqlx::error::BoxDynError>,
) -> Result<u64, StoreError> {
    let mut affected = 0;
    for chunk in rows::chunks(rows) {
        let mut args = SqliteArguments::default();
        args.reserve(chunk.len() * statement.binds(), 0);
        for row in chunk {
            bind(&mut args, row).map_err(|e| StoreError(format!("a ledger row's value: {e}")))?;
        }
        let sql = AssertSqlSafe(statement.text(chunk.len()));
        affected += sqlx::query_with(sql, args).execute(&mut *tx).await?.rows_affected();
    }
    Ok(affected)
}

fn bind_wallet(args: &mut SqliteArguments, r: &&LedgerRecord) -> Result<(), sqlx::error::BoxDynError> {
    let m = r.metered.as_ref();
    // Text goes in as an `Arc<str>`, which sqlx keeps as it is: a `String`
    // clone is a copy sqlx then boxes in an `Arc` of its own (two
    // allocations a value where this takes one, and the record's own
    // `Arc`s none).
    let text = |s: &str| -> Arc<str> { Arc::from(s) };
    args.add(text(&r.key))?;
    args.add(r.kind.as_str())?;
    args.add(to_i64(r.account))?;
    args.add(r.wallet_nano)?;
    args.add(r.paid_nano)?;
    args.add(r.unpaid_nano)?;
    args.add(r.key_id.map(to_i64))?;
    args.add(m.map(|m| m.model.clone()))?;
    args.add(m.map(|m| to_i64(m.input_tokens)))?;
    args.add(m.map(|m| to_i64(m.output_tokens)))?;
    args.add(m.map(|m| to_i64(m.cached_tokens)))?;
    args.add(m.map(|m| to_i64(m.cache_write_tokens)))?;
    args.add(i64::from(m.is_some_and(|m| m.estimated)))?;
    args.add(m.map(|m| m.request_id.clone()))?;
    args.add(m.and_then(|m| m.group.as_deref().map(text)))?;
    args.add(to_i64(r.at))?;
    Ok(())
}

/// Folds into the day totals whatever is past the watermark, at start:
/// an older release's postings would otherwise wait for this writer's
/// first batch.
pub async fn fold_day_totals(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(DAILY).execute(&mut *tx).await?;
    sqlx::query(FOLDED).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps `records`; how many were new.
pub async fn append(pool: &SqlitePool, records: &[LedgerRecord]) -> Result<u64, StoreError> {
    append_summing(pool, records, true).await
}

/// [`append`]; with `in_memory` false, what a batch derives always comes
/// from SQL (the tests hold both ways equal).
async fn append_summing(
    pool: &SqlitePool,
    records: &[LedgerRecord],
    in_memory: bool,
) -> Result<u64, StoreError> {
    // A retried batch may hold a record twice: keep the first. (Sized
    // once, and hashed by foldhash: SipHash and the table's growth were
    // ~1k instructions a record.)
    let mut seen: foldhash::HashSet<&str> =
        HashSet::with_capacity_and_hasher(records.len(), foldhash::fast::RandomState::default());
    let records: Vec<&LedgerRecord> = records.iter().filter(|r| seen.insert(r.key.as_str())).collect();
    if records.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let (last, watermark): (i64, i64) = sqlx::query_as(LAST_ID).fetch_one(&mut *tx).await?;
    let new = insert_rows(&mut tx, &WALLET, &records, bind_wallet).await?;
    // Every record a posting, and nothing else past the watermark: the
    // rows past `last` are exactly `records`.
    let known = in_memory
        && new == records.len() as u64
        && watermark == last
        && records.iter().all(|r| r.at <= batch_sums::LAST_DAY_MS);
    if known {
        insert_rows(&mut tx, &DAY_TOTALS, &batch_sums::day_totals(&records)?, bind_day_total).await?;
    } else {
        // Even when this batch added nothing: an older release's postings
        // may be past the watermark.
        sqlx::query(DAILY).execute(&mut *tx).await?;
    }
    if new > 0 {
        if known {
            insert_rows(
                &mut tx,
                &COUNTER_POSTINGS,
                &batch_sums::counter_postings(&records, last)?,
                bind_counter,
            )
            .await?;
        } else {
            sqlx::query(COUNTERS).bind(last).execute(&mut *tx).await?;
        }
        if records.iter().any(|r| batch_sums::opens_lot(r)) {
            open_lots(&mut tx, &records, last).await?;
        }
    }
    sqlx::query(FOLDED).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(new)
}

fn bind_day_total(
    args: &mut SqliteArguments,
    DayTotal { account, key_id, totals: t }: &DayTotal,
) -> Result<(), sqlx::error::BoxDynError> {
    args.add(*account)?;
    args.add(*key_id)?;
    args.add(t.day.as_str())?;
    args.add(t.model.as_str())?;
    args.add(t.requests)?;
    args.add(t.input_tokens)?;
    args.add(t.output_tokens)?;
    args.add(t.cached_tokens)?;
    args.add(t.cost_nano_usd)?;
    Ok(())
}

fn bind_counter(args: &mut SqliteArguments, c: &CounterPosting) -> Result<(), sqlx::error::BoxDynError> {
    args.add(c.entry_key.as_str())?;
    args.add(c.kind.as_str())?;
    args.add(c.account)?;
    args.add(c.kind.counter_book())?;
    args.add(c.amount_nano)?;
    args.add(c.at)?;
    Ok(())
}

/// The credit lots of the postings added after `last` that open one.
async fn open_lots(
    tx: &mut SqliteConnection,
    records: &[&LedgerRecord],
    last: i64,
) -> Result<(), StoreError> {
    let lot_keys: Vec<String> = sqlx::query_scalar(LOT_KEYS).bind(last).fetch_all(&mut *tx).await?;
    let by_key: HashMap<&str, &LedgerRecord> = records.iter().map(|r| (r.key.as_str(), *r)).collect();
    for key in lot_keys {
        // The write lock makes every added row one of this batch's.
        let r = by_key
            .get(key.as_str())
            .ok_or_else(|| StoreError(format!("a posting of this batch without its record: {key}")))?;
        let (paid, multiplier, granted) = match r.kind {
            RecordKind::Topup => (r.paid_nano, i64::from(r.multiplier.unwrap_or(1)), 0),
            _ => (0, 1, r.wallet_nano),
        };
        sqlx::query(LOT)
            .bind(to_i64(r.account))
            .bind(paid)
            .bind(multiplier)
            .bind(r.wallet_nano)
            .bind(granted)
            .bind(&r.key)
            .bind(to_i64(r.at))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::billing::{LedgerRecord, RecordKind};
    use crate::store::Store;

    /// The store tests' charge (10 tokens in, 5 out), of `model` at `at`.
    fn charge(key: &str, model: &str, at: u64, cost: i64) -> LedgerRecord {
        let mut charge = crate::store::tests::charge(key, 1, Some(7), cost, key);
        charge.at = at;
        if let Some(m) = charge.metered.as_mut() {
            m.model = model.into();
        }
        charge
    }

    #[tokio::test]
    async fn the_rows_a_batch_added_are_read_by_their_ids_alone() {
        let store = SqliteStore::open(None).await.unwrap();
        for sql in [super::COUNTERS, super::DAILY, super::LOT_KEYS] {
            let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
            let query = sqlx::query_as(explain);
            let query = if sql.contains("?1") { query.bind(0_i64) } else { query };
            let plan: Vec<(i64, i64, i64, String)> = query.fetch_all(&store.pool).await.unwrap();
            let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(
                details.iter().any(|d| d.starts_with("SEARCH ledger_postings") && d.contains("rowid>?")),
                "{sql}: {details:?}"
            );
            assert!(!details.iter().any(|d| d.starts_with("SCAN ledger_postings")), "{sql}: {details:?}");
        }
    }

    /// Every read of the ledger by account takes an index, since the
    /// `(account_id, at)` one is gone (migration 0015).
    #[tokio::test]
    async fn reads_by_account_still_take_an_index() {
        let store = SqliteStore::open(None).await.unwrap();
        for sql in [
            "SELECT id FROM ledger_postings WHERE account_id = 1 AND book = 'wallet' ORDER BY id DESC LIMIT 20",
            "SELECT SUM(amount_nano) FROM ledger_postings WHERE book = 'wallet' AND account_id = 1",
            "SELECT COUNT(*) FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge' AND account_id = 1 \
             AND at >= 5",
        ] {
            let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain).fetch_all(&store.pool).await.unwrap();
            let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(
                details.iter().any(|d| d.contains("USING INDEX ledger_postings_account_id")
                    || d.contains("USING COVERING INDEX ledger_postings_account_id")),
                "{sql}: {details:?}"
            );
        }
    }

    /// A call's charge is found by its entry key, in the key's index, since
    /// the request-id index is gone (migration 0016).
    #[tokio::test]
    async fn a_charge_is_found_by_its_key_alone() {
        let store = SqliteStore::open(None).await.unwrap();
        let indexes: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(!indexes.iter().any(|name| name == "ledger_postings_request"), "{indexes:?}");
        let explain = "EXPLAIN QUERY PLAN SELECT account_id FROM ledger_postings WHERE entry_key = ? AND book = 'wallet'";
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(explain).bind("req_1:charge").fetch_all(&store.pool).await.unwrap();
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("SEARCH ledger_postings USING INDEX") && d.contains("entry_key=?")),
            "{details:?}"
        );
        assert_eq!(crate::billing::charge_key("req_1"), "req_1:charge");
    }

    #[test]
    fn each_row_has_a_placeholder_for_each_value_bound() {
        let binds = |bind: &dyn Fn(&mut sqlx::sqlite::SqliteArguments)| {
            let mut args = sqlx::sqlite::SqliteArguments::default();
            bind(&mut args);
            sqlx::Arguments::len(&args)
        };
        let record = charge("k", "m", 1, 1);
        let wallet = binds(&|args| super::bind_wallet(args, &&record).unwrap());
        assert_eq!(wallet, super::WALLET.binds());
        let [total] = &super::batch_sums::day_totals(&[&record]).unwrap()[..] else { panic!("one total") };
        assert_eq!(binds(&|args| super::bind_day_total(args, total).unwrap()), super::DAY_TOTALS.binds());
        let [counter] = &super::batch_sums::counter_postings(&[&record], 0).unwrap()[..] else {
            panic!("one")
        };
        assert_eq!(
            binds(&|args| super::bind_counter(args, counter).unwrap()),
            super::COUNTER_POSTINGS.binds()
        );
    }

    /// Each value of a record lands in its own column: a charge with
    /// every field set (a quote, an odd text, the largest amounts), and a
    /// top-up with none of a charge's.
    #[tokio::test]
    async fn every_value_of_a_record_is_kept_in_its_column() {
        let store = SqliteStore::open(None).await.unwrap();
        store.create_account("acme", "pro", None, 1).await.unwrap();
        store.create_account("beta", "pro", None, 1).await.unwrap();
        let mut full = charge("c\"1\u{e9}", "m\"x", 1_700_000_000_000, i64::MAX);
        full.unpaid_nano = 42;
        full.paid_nano = -7;
        if let Some(m) = full.metered.as_mut() {
            m.cached_tokens = 3;
            m.cache_write_tokens = 4;
            m.estimated = true;
            m.request_id = "req \u{1f600}".into();
            m.group = Some("responses".into());
            m.input_tokens = u64::MAX;
        }
        let mut topup = crate::store::tests::charge("t1", 2, None, 5, "unused");
        topup.kind = RecordKind::Topup;
        topup.metered = None;
        topup.wallet_nano = 5;
        assert_eq!(super::append(&store.ledger, &[full, topup]).await.unwrap(), 2);
        type Row = (String, String, i64, i64, i64, i64, Option<i64>, Option<String>, Option<i64>);
        type Metered = (Option<i64>, Option<i64>, Option<i64>, i64, Option<String>, Option<String>, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT entry_key, kind, account_id, amount_nano, paid_nano, unpaid_nano, key_id, model, input_tokens \
             FROM ledger_postings WHERE book = 'wallet' ORDER BY id",
        )
        .fetch_all(&store.ledger)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "c\"1\u{e9}".into(),
                    "charge".into(),
                    1,
                    -i64::MAX,
                    -7,
                    42,
                    Some(7),
                    Some("m\"x".into()),
                    Some(i64::MAX)
                ),
                ("t1".into(), "topup".into(), 2, 5, 0, 0, None, None, None),
            ]
        );
        let metered: Vec<Metered> = sqlx::query_as(
            "SELECT output_tokens, cached_tokens, cache_write_tokens, estimated, request_id, limit_group, at, \
             totals_kept FROM ledger_postings WHERE book = 'wallet' ORDER BY id",
        )
        .fetch_all(&store.ledger)
        .await
        .unwrap();
        assert_eq!(
            metered,
            [
                (
                    Some(5),
                    Some(3),
                    Some(4),
                    1,
                    Some("req \u{1f600}".into()),
                    Some("responses".into()),
                    1_700_000_000_000,
                    0
                ),
                (None, None, None, 0, None, None, 86_400_000, 0),
            ]
        );
        let types: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT typeof(amount_nano) || typeof(at) FROM ledger_postings")
                .fetch_all(&store.ledger)
                .await
                .unwrap();
        assert_eq!(types, ["integerinteger"], "numbers are kept as integers, never as text or reals");
    }

    #[test]
    fn counter_books_in_sql_are_the_records_own() {
        let funding_in_sql = "CASE WHEN kind IN ('topup', 'adjustment') THEN 'funding' ELSE 'revenue' END";
        assert!(super::COUNTERS.contains(funding_in_sql));
        for kind in [RecordKind::Topup, RecordKind::Charge, RecordKind::Refund, RecordKind::Adjustment] {
            let named = funding_in_sql.contains(&format!("'{}'", kind.as_str()));
            assert_eq!(kind.counter_book(), if named { "funding" } else { "revenue" }, "{kind:?}");
        }
    }

    /// Everything a batch derives, without row ids: every posting, the
    /// day totals, the credit lots.
    async fn derived(store: &SqliteStore) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for sql in [
            "SELECT entry_key || '|' || kind || '|' || account_id || '|' || book || '|' || amount_nano || '|' || at \
             FROM ledger_postings",
            "SELECT account_id || '|' || key_id || '|' || day || '|' || model || '|' || requests || '|' || \
             input_tokens || '|' || output_tokens || '|' || cached_tokens || '|' || cost_nano FROM usage_daily",
            "SELECT account_id || '|' || paid_nano || '|' || multiplier || '|' || list_nano || '|' || \
             granted_nano || '|' || entry_key || '|' || created_at FROM credit_lots",
        ] {
            let mut got: Vec<String> = sqlx::query_scalar(sql).fetch_all(&store.pool).await.unwrap();
            got.sort();
            rows.append(&mut got);
        }
        rows
    }

    /// A batch of many accounts (its day totals and counter postings in
    /// multi-row statements of every size: 186 = 64+64+16+16+16+4+4+1+1
    /// and 94 = 64+16+4+4+4+1+1) keeps the sums made in memory, row for
    /// row, and what SQL derives from it.
    #[tokio::test]
    async fn many_accounts_in_a_batch_keep_what_sql_derives() {
        let (summed, derived_in_sql) =
            (SqliteStore::open(None).await.unwrap(), SqliteStore::open(None).await.unwrap());
        let mut records = Vec::new();
        for account in 1..=93_u64 {
            for store in [&summed, &derived_in_sql] {
                store.create_account(&format!("a{account}"), "pro", None, 1).await.unwrap();
            }
            for model in ["m1", "m2"] {
                let mut r =
                    charge(&format!("{account}{model}"), model, 86_400_000 + account, 10 + account as i64);
                r.account = account;
                records.push(r);
            }
        }
        let mut topup = crate::store::tests::charge("t", 3, None, 0, "t");
        (topup.kind, topup.metered, topup.wallet_nano) = (RecordKind::Topup, None, 100);
        records.push(topup);
        assert_eq!(super::append_summing(&summed.pool, &records, true).await.unwrap(), 187);
        assert_eq!(super::append_summing(&derived_in_sql.pool, &records, false).await.unwrap(), 187);
        let kept = derived(&summed).await;
        assert_eq!(kept, derived(&derived_in_sql).await);
        let refs: Vec<&LedgerRecord> = records.iter().collect();
        let mut summed_in_memory: Vec<String> = super::batch_sums::day_totals(&refs)
            .unwrap()
            .into_iter()
            .map(|super::DayTotal { account, key_id, totals: t }| {
                let (day, model, n) = (t.day, t.model, t.requests);
                let (i, o, c, cost) = (t.input_tokens, t.output_tokens, t.cached_tokens, t.cost_nano_usd);
                format!("{account}|{key_id}|{day}|{model}|{n}|{i}|{o}|{c}|{cost}")
            })
            .collect();
        summed_in_memory.sort();
        let mut totals: Vec<String> = kept.iter().filter(|r| r.matches('|').count() == 8).cloned().collect();
        totals.sort();
        assert_eq!(totals.len(), 186, "a day total per account and model");
        assert_eq!(totals, summed_in_memory);
        let counters = kept.iter().filter(|r| r.starts_with("batch:")).count();
        assert_eq!(counters, 94, "a counter posting per account and kind");
        assert_eq!(summed.total().await.unwrap(), 0);
    }

    /// A record of the property test: kind (0-4: a charge, a top-up, a
    /// refund, an adjustment, a charge without metering), account (1-2),
    /// key (0-2), model (0-1), time, amount, and whether it replays an
    /// earlier one.
    type Drawn = (u8, i64, u8, u8, u64, i64, Option<prop::sample::Index>);

    /// A batch: its records, whether it may replay earlier ones, one of its
    /// own to repeat in it, and whether an older release (per-record
    /// counter postings, no totals of its own) writes a charge after it.
    type DrawnBatch = (Vec<Drawn>, bool, Option<prop::sample::Index>, bool);

    fn drawn_record(d: &Drawn, i: usize, earlier: &[LedgerRecord]) -> LedgerRecord {
        let (kind, account, key, model, at, amount, replay) = d;
        if let (Some(which), false) = (replay, earlier.is_empty()) {
            return earlier[which.index(earlier.len())].clone();
        }
        let mut r = charge(&format!("r{i}"), ["m1", "m2"][usize::from(*model % 2)], *at, *amount);
        r.account = *account as u64;
        r.key_id = (*key > 0).then_some(u64::from(*key));
        r.kind = [
            RecordKind::Charge,
            RecordKind::Topup,
            RecordKind::Refund,
            RecordKind::Adjustment,
            RecordKind::Charge,
        ][usize::from(*kind % 5)];
        if r.kind != RecordKind::Charge || *kind == 4 {
            r.metered = None;
        }
        if r.kind != RecordKind::Charge {
            r.wallet_nano = amount.abs();
            r.multiplier = (r.kind == RecordKind::Topup).then_some(2);
        }
        r
    }

    /// A charge as a release before migration 0013 wrote it, straight into
    /// the file: its wallet posting and its own counter posting.
    async fn older_release_charge(store: &SqliteStore, i: usize) {
        let sql = format!(
            "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, key_id, model, \
             input_tokens, output_tokens, cached_tokens, request_id, at) VALUES \
             ('old{i}', 'charge', 1, 'wallet', -7, 1, 'm1', 3, 2, 0, 'old{i}', 5), \
             ('old{i}', 'charge', 1, 'revenue', 7, NULL, NULL, NULL, NULL, NULL, NULL, 5)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&store.pool).await.unwrap();
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Whatever the batches (replays from earlier batches or within one,
        /// accounts, keys, models, days, charges without metering, top-ups,
        /// refunds, an older release's charges between batches), summing
        /// in memory keeps the same rows as deriving them in SQL, the
        /// ledger sums to zero, and the day totals count each charge once.
        #[test]
        fn summing_in_memory_keeps_what_sql_derives(
            batches in prop::collection::vec(
                (prop::collection::vec(
                    (0..5_u8, 1..3_i64, 0..3_u8, 0..2_u8, 0..3 * 86_400_000_u64, 1..1_000_000_i64,
                     prop::option::weighted(0.2, any::<prop::sample::Index>())),
                    1..40),
                 any::<bool>(),
                 prop::option::weighted(0.2, any::<prop::sample::Index>()),
                 prop::bool::weighted(0.2)),
                1..6),
        ) {
            let batches: Vec<DrawnBatch> = batches;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (summed, derived_in_sql) = (SqliteStore::open(None).await.unwrap(), SqliteStore::open(None).await.unwrap());
                for store in [&summed, &derived_in_sql] {
                    store.create_account("one", "pro", None, 1).await.unwrap();
                    store.create_account("two", "pro", None, 1).await.unwrap();
                }
                let mut earlier: Vec<LedgerRecord> = Vec::new();
                let mut i = 0;
                for (drawn, replays, repeat, older) in &batches {
                    let from = if *replays { &earlier[..] } else { &[] };
                    let mut records: Vec<LedgerRecord> =
                        drawn.iter().map(|d| { i += 1; drawn_record(d, i, from) }).collect();
                    if let Some(which) = repeat {
                        records.push(records[which.index(records.len())].clone());
                    }
                    let a = super::append_summing(&summed.pool, &records, true).await.unwrap();
                    let b = super::append_summing(&derived_in_sql.pool, &records, false).await.unwrap();
                    assert_eq!(a, b);
                    earlier.extend(records);
                    if *older {
                        older_release_charge(&summed, i).await;
                        older_release_charge(&derived_in_sql, i).await;
                    }
                }
                // What an older release wrote last is folded at the next
                // batch or start: here, the next start.
                for store in [&summed, &derived_in_sql] {
                    super::fold_day_totals(&store.pool).await.unwrap();
                }
                assert_eq!(derived(&summed).await, derived(&derived_in_sql).await);
                assert_eq!(summed.total().await.unwrap(), 0);
                let counted = "SELECT (SELECT SUM(requests) || '|' || SUM(cost_nano) FROM usage_daily) = \
                     (SELECT COUNT(*) || '|' || -SUM(amount_nano) FROM ledger_postings \
                      WHERE book = 'wallet' AND kind = 'charge')";
                let same: Option<bool> = sqlx::query_scalar(counted).fetch_one(&summed.pool).await.unwrap();
                assert_ne!(same, Some(false), "the day totals count every charge once");
            });
        }
    }

    /// A batch whose counter key is taken already (the newest postings of
    /// a file deleted, and ids given out again) adds to the posting there:
    /// the writer is never stuck on it, and the ledger still sums to zero.
    #[tokio::test]
    async fn a_counter_key_taken_adds_to_the_posting_there() {
        let store = SqliteStore::open(None).await.unwrap();
        store.create_account("acme", "pro", None, 1).await.unwrap();
        store.append(&[charge("first", "m1", 1, 1)]).await.unwrap();
        for (n, in_memory) in [(1_i64, true), (2, false)] {
            let (last, _): (i64, i64) = sqlx::query_as(super::LAST_ID).fetch_one(&store.pool).await.unwrap();
            let taken = super::batch_sums::counter_entry_key(last, 1, "charge");
            // Below every id, so the batch still reads `last` as the largest.
            sqlx::query(
                "INSERT INTO ledger_postings (id, entry_key, kind, account_id, book, amount_nano, at) \
                 VALUES (?, ?, 'charge', 1, 'wallet', -5, 1), (?, ?, 'charge', 1, 'revenue', 5, 1)",
            )
            .bind(-2 * n)
            .bind(format!("gone{n}"))
            .bind(-2 * n - 1)
            .bind(&taken)
            .execute(&store.pool)
            .await
            .unwrap();
            let key = format!("c{n}");
            assert_eq!(
                super::append_summing(&store.pool, &[charge(&key, "m1", 2, 10)], in_memory).await.unwrap(),
                1
            );
            let revenue: i64 =
                sqlx::query_scalar("SELECT amount_nano FROM ledger_postings WHERE entry_key = ?")
                    .bind(&taken)
                    .fetch_one(&store.pool)
                    .await
                    .unwrap();
            assert_eq!(revenue, 15, "its own 5, then the batch's 10 (in memory: {in_memory})");
            assert_eq!(store.total().await.unwrap(), 0);
        }
    }

    type Totals = Vec<(String, String, i64, i64, i64, i64, i64)>;

    async fn totals(store: &SqliteStore) -> Totals {
        sqlx::query_as(
            "SELECT day, model, requests, input_tokens, output_tokens, cached_tokens, cost_nano \
             FROM usage_daily ORDER BY day, model",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
    }

    /// What a per-row count makes of the same charges: `usage_daily`
    /// summed from the ledger's charges.
    async fn from_the_ledger(store: &SqliteStore) -> Totals {
        sqlx::query_as(
            "SELECT strftime('%Y-%m-%d', at / 1000, 'unixepoch') AS day, model, COUNT(*), SUM(input_tokens), \
             SUM(output_tokens), SUM(cached_tokens), -SUM(amount_nano) FROM ledger_postings \
             WHERE book = 'wallet' AND kind = 'charge' GROUP BY day, model ORDER BY day, model",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_batch_adds_its_charges_to_the_days_totals_once() {
        let store = SqliteStore::open(None).await.unwrap();
        store.create_account("acme", "pro", None, 1).await.unwrap();
        let day = 86_400_000;
        let first: Vec<LedgerRecord> = (0..70)
            .map(|i| charge(&format!("a{i}"), if i % 3 == 0 { "m2" } else { "m1" }, day + i, 10))
            .collect();
        assert_eq!(store.append(&first).await.unwrap(), 70);
        // The next batch replays half of the first and crosses midnight.
        let mut second: Vec<LedgerRecord> = first[35..].to_vec();
        second.extend((0..20).map(|i| charge(&format!("b{i}"), "m1", 2 * day - 10 + i, 3)));
        assert_eq!(store.append(&second).await.unwrap(), 20);
        let kept = totals(&store).await;
        assert_eq!(kept, from_the_ledger(&store).await);
        assert_eq!(kept.iter().map(|t| t.2).sum::<i64>(), 90, "each charge counted once");
        assert_eq!(kept.len(), 3, "two models on the first day, one on the second");
        let sum: i64 = sqlx::query_scalar("SELECT SUM(amount_nano) FROM ledger_postings")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(sum, 0, "every wallet posting has its counter posting");
    }

    #[tokio::test]
    async fn a_charge_an_older_release_writes_is_counted_once_at_start_or_the_next_batch() {
        let store = SqliteStore::open(None).await.unwrap();
        store.create_account("acme", "pro", None, 1).await.unwrap();
        store.append(&[charge("new", "m1", 5, 10)]).await.unwrap();
        let older = |key: &str, kept: i64| {
            format!(
                "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, key_id, model, \
                 input_tokens, output_tokens, cached_tokens, request_id, at, totals_kept) \
                 VALUES ('{key}', 'charge', 1, 'wallet', -4, 7, 'm1', 10, 5, 0, '{key}', 6, {kept})"
            )
        };
        // A release before migration 0013: no totals of its own.
        sqlx::query(sqlx::AssertSqlSafe(older("oldest", 0))).execute(&store.pool).await.unwrap();
        // Migration 0013's writer: it added its charge to usage_daily itself.
        sqlx::query(sqlx::AssertSqlSafe(older("older", 1))).execute(&store.pool).await.unwrap();
        sqlx::query(
            "INSERT INTO usage_daily VALUES (1, 7, '1970-01-01', 'm1', 1, 10, 5, 0, 4) \
             ON CONFLICT (account_id, day, model, key_id) DO UPDATE SET requests = requests + 1, \
             input_tokens = input_tokens + 10, output_tokens = output_tokens + 5, cost_nano = cost_nano + 4",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        // At start (and at each batch) what is past the watermark is folded.
        super::fold_day_totals(&store.pool).await.unwrap();
        let day = |requests, cost| {
            [("1970-01-01".to_string(), "m1".to_string(), requests, requests * 10, requests * 5, 0, cost)]
        };
        assert_eq!(totals(&store).await, day(3, 18));
        assert_eq!(totals(&store).await, from_the_ledger(&store).await);
        store.append(&[charge("next", "m1", 7, 10)]).await.unwrap();
        let kept = totals(&store).await;
        assert_eq!(kept, day(4, 28));
        assert_eq!(kept, from_the_ledger(&store).await);
        // A batch of replays only (nothing new) folds nothing twice.
        store.append(&[charge("next", "m1", 7, 10)]).await.unwrap();
        assert_eq!(totals(&store).await, kept);
    }
}
