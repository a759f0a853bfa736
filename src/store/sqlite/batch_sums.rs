//! What a batch of ledger records adds beside its wallet postings, summed
//! in memory for the writer's common case, where every record became a
//! posting and nothing else is past the day totals' watermark: the
//! counter book's postings (one per account and kind, the opposite of
//! what the batch's wallet postings of that account and kind moved) and
//! the day totals (one per account, key, UTC day and model). `append`'s
//! SQL derives the same rows from the postings themselves when it cannot
//! know which records were new (a replay, an older release's postings);
//! its tests hold the two equal.
//!
//! Summing here rather than in SQL spares each record a read back and a
//! sort: about half of what the writer spent a record
//! (BENCHMARKS.md, #20's third pass).

use super::to_i64;
use crate::billing::{LedgerRecord, RecordKind};
use crate::store::{StoreError, UsageRow};
use std::collections::BTreeMap;

/// The last millisecond of year 9999: SQLite's `strftime` names no day
/// past it, so a batch with a later time is left to the SQL.
pub const LAST_DAY_MS: u64 = 253_402_300_799_999;

/// One counter posting of a batch.
#[derive(Debug, PartialEq, Eq)]
pub struct CounterPosting {
    pub entry_key: String,
    pub kind: RecordKind,
    pub account: i64,
    pub amount_nano: i64,
    /// The latest time among the postings it balances.
    pub at: i64,
}

/// One row of `usage_daily`'s increments: an account's and key's
/// [`UsageRow`].
#[derive(Debug, PartialEq, Eq)]
pub struct DayTotal {
    pub account: i64,
    pub key_id: i64,
    pub totals: UsageRow,
}

/// The counter posting of a batch's postings of one account and kind:
/// keyed by the batch (the largest posting id before it, which only
/// grows) so a key is never reused.
pub fn counter_entry_key(batch: i64, account: i64, kind: &str) -> String {
    format!("batch:{batch}:{account}:{kind}")
}

fn overflow(what: &str) -> StoreError {
    StoreError(format!("a batch's {what} overflows"))
}

fn add(total: &mut i64, n: i64, what: &str) -> Result<(), StoreError> {
    *total = total.checked_add(n).ok_or_else(|| overflow(what))?;
    Ok(())
}

/// The counter postings that balance `records`, the batch after posting
/// `batch`, in account and kind order.
pub fn counter_postings(records: &[&LedgerRecord], batch: i64) -> Result<Vec<CounterPosting>, StoreError> {
    let mut sums: BTreeMap<(i64, &'static str), (RecordKind, i64, i64)> = BTreeMap::new();
    for r in records {
        let at = to_i64(r.at);
        let (_, amount, latest) = sums.entry((to_i64(r.account), r.kind.as_str())).or_insert((r.kind, 0, at));
        add(amount, r.wallet_nano, "counter posting")?;
        *latest = (*latest).max(at);
    }
    sums.into_iter()
        .map(|((account, name), (kind, amount, at))| {
            Ok(CounterPosting {
                entry_key: counter_entry_key(batch, account, name),
                kind,
                account,
                amount_nano: amount.checked_neg().ok_or_else(|| overflow("counter posting"))?,
                at,
            })
        })
        .collect()
}

/// What `records`' charges add to the day totals.
pub fn day_totals(records: &[&LedgerRecord]) -> Result<Vec<DayTotal>, StoreError> {
    let mut sums: BTreeMap<(i64, i64, i64, &str), DayTotal> = BTreeMap::new();
    for r in records.iter().filter(|r| r.kind == RecordKind::Charge) {
        let at = to_i64(r.at);
        let m = r.metered.as_ref();
        let model = m.map_or("", |m| &*m.model);
        let key_id = r.key_id.map_or(0, to_i64);
        let DayTotal { totals: total, .. } =
            sums.entry((to_i64(r.account), key_id, at / 86_400_000, model)).or_insert_with(|| DayTotal {
                account: to_i64(r.account),
                key_id,
                totals: UsageRow {
                    day: crate::calendar::day(at),
                    model: model.to_string(),
                    ..UsageRow::default()
                },
            });
        add(&mut total.requests, 1, "requests")?;
        let tokens = |f: fn(&crate::billing::Metered) -> u64| m.map_or(0, |m| to_i64(f(m)));
        add(&mut total.input_tokens, tokens(|m| m.input_tokens), "input tokens")?;
        add(&mut total.output_tokens, tokens(|m| m.output_tokens), "output tokens")?;
        add(&mut total.cached_tokens, tokens(|m| m.cached_tokens), "cached tokens")?;
        add(&mut total.cost_nano_usd, r.wallet_nano.checked_neg().ok_or_else(|| overflow("cost"))?, "cost")?;
    }
    Ok(sums.into_values().collect())
}

/// Whether a record opens a credit lot: a top-up, or anything else that
/// adds to the wallet (a grant, a refund).
pub fn opens_lot(r: &LedgerRecord) -> bool {
    r.kind == RecordKind::Topup || r.wallet_nano > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, account: i64, model: &str, at: u64, cost: i64) -> LedgerRecord {
        let mut r = crate::store::tests::charge(key, account, Some(7), cost, key);
        r.at = at;
        if let Some(m) = r.metered.as_mut() {
            m.model = model.into();
        }
        r
    }

    #[test]
    fn counters_are_one_per_account_and_kind_and_balance_the_batch() {
        let mut refund = charge("r", 1, "m", 9, 0);
        refund.kind = RecordKind::Refund;
        refund.wallet_nano = 4;
        let records =
            [charge("a", 1, "m", 5, 10), charge("b", 2, "m", 6, 3), charge("c", 1, "n", 7, 2), refund];
        let refs: Vec<&LedgerRecord> = records.iter().collect();
        let counters = counter_postings(&refs, 41).unwrap();
        let got: Vec<(&str, i64, i64)> =
            counters.iter().map(|c| (c.entry_key.as_str(), c.amount_nano, c.at)).collect();
        assert_eq!(
            got,
            [("batch:41:1:charge", 12, 7), ("batch:41:1:refund", -4, 9), ("batch:41:2:charge", 3, 6)]
        );
        let wallet: i64 = records.iter().map(|r| r.wallet_nano).sum();
        assert_eq!(wallet + counters.iter().map(|c| c.amount_nano).sum::<i64>(), 0);
    }

    #[test]
    fn day_totals_group_by_account_key_day_and_model() {
        let day = 86_400_000;
        let records = [
            charge("a", 1, "m", day - 1, 10),
            charge("b", 1, "m", day, 3),
            charge("c", 1, "m", day + 5, 2),
            charge("d", 1, "n", day + 6, 1),
        ];
        let refs: Vec<&LedgerRecord> = records.iter().collect();
        let totals = day_totals(&refs).unwrap();
        let got: Vec<(&str, &str, i64, i64)> = totals
            .iter()
            .map(|t| &t.totals)
            .map(|t| (t.day.as_str(), t.model.as_str(), t.requests, t.cost_nano_usd))
            .collect();
        assert_eq!(got, [("1970-01-01", "m", 1, 10), ("1970-01-02", "m", 2, 5), ("1970-01-02", "n", 1, 1)]);
    }

    #[test]
    fn a_sum_past_i64_is_an_error_not_a_wrap() {
        let records = [charge("a", 1, "m", 1, i64::MAX), charge("b", 1, "m", 2, 1)];
        let refs: Vec<&LedgerRecord> = records.iter().collect();
        assert!(day_totals(&refs).is_err());
        assert!(counter_postings(&refs, 0).is_err());
    }
}
