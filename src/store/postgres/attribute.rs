//! The paid value behind a fleet's charges, attributed as the ledger
//! receives them. Each account's credit lots are spent oldest first; its
//! cursor (`wallet_spend`) is the list value debited so far, in the order
//! the debits arrived, whichever node sent them. A debit of `c` at cursor
//! `d` used the paid value `P(d + c) - P(d)`, where `P(x)` is the paid
//! value of the first `x` of list value: whole lots, then the used share
//! of the next, rounded down. The differences add up, so a lot used up
//! has given out its paid value to the last nano-dollar. Every debit moves
//! the cursor (adjustments down, charges a node attributed itself); only
//! charges marked `PAID_AT_DELIVERY` get their paid value here. Cursors
//! are locked in account order, so two nodes' batches wait rather than
//! deadlock.

use crate::billing::{LedgerRecord, PAID_AT_DELIVERY};
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// One lot's list value and the paid value behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    pub list: i64,
    pub paid: i64,
}

/// The paid value of the first `x` of list value spent from `lots`.
pub fn paid_until(lots: &[Lot], x: i64) -> i64 {
    let (mut left, mut paid) = (x.max(0), 0i64);
    for lot in lots {
        if left <= 0 {
            break;
        }
        if left >= lot.list {
            paid += lot.paid;
            left -= lot.list;
        } else {
            paid += (i128::from(lot.paid) * i128::from(left) / i128::from(lot.list.max(1))) as i64;
            left = 0;
        }
    }
    paid
}

/// Moves the cursors of `fresh` debits (records kept by this
/// transaction, in the ledger's order) and attributes the paid value of
/// those marked for it.
pub async fn attribute(tx: &mut PgConnection, fresh: &[&LedgerRecord]) -> Result<(), sqlx::Error> {
    let debits: Vec<&LedgerRecord> = fresh.iter().copied().filter(|r| r.wallet_nano < 0).collect();
    if debits.is_empty() {
        return Ok(());
    }
    let mut accounts: Vec<i64> = debits.iter().map(|r| r.account as i64).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let keys: Vec<String> = fresh.iter().map(|r| r.key.clone()).collect();
    // A cursor starts at what the ledger debited before this batch.
    sqlx::query(
        "INSERT INTO wallet_spend (account_id, debited_nano) \
         SELECT a, COALESCE((SELECT -SUM(amount_nano) FROM ledger_postings \
           WHERE book = 'wallet' AND account_id = a AND amount_nano < 0 AND entry_key <> ALL($2::text[])), 0) \
         FROM UNNEST($1::int8[]) AS t(a) ORDER BY a ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(&accounts)
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    let mut cursor: HashMap<i64, i64> = HashMap::new();
    for r in sqlx::query(
        "SELECT account_id, debited_nano FROM wallet_spend WHERE account_id = ANY($1::int8[]) \
         ORDER BY account_id FOR UPDATE",
    )
    .bind(&accounts)
    .fetch_all(&mut *tx)
    .await?
    {
        cursor.insert(r.try_get("account_id")?, r.try_get("debited_nano")?);
    }
    let mut lots: HashMap<i64, Vec<Lot>> = HashMap::new();
    for r in sqlx::query(
        "SELECT account_id, list_nano, paid_nano FROM credit_lots WHERE account_id = ANY($1::int8[]) ORDER BY id",
    )
    .bind(&accounts)
    .fetch_all(&mut *tx)
    .await?
    {
        let lot = Lot { list: r.try_get("list_nano")?, paid: r.try_get("paid_nano")? };
        lots.entry(r.try_get("account_id")?).or_default().push(lot);
    }
    let (mut paid_keys, mut paid_values) = (Vec::new(), Vec::new());
    for r in &debits {
        let account = r.account as i64;
        let at = cursor.entry(account).or_default();
        let spent = -r.wallet_nano;
        if r.paid_nano == PAID_AT_DELIVERY {
            let account_lots = lots.get(&account).map_or(&[][..], Vec::as_slice);
            paid_keys.push(r.key.clone());
            paid_values.push(paid_until(account_lots, *at + spent) - paid_until(account_lots, *at));
        }
        *at += spent;
    }
    if !paid_keys.is_empty() {
        sqlx::query(
            "UPDATE ledger_postings SET paid_nano = u.paid FROM UNNEST($1::text[], $2::int8[]) AS u(k, paid) \
             WHERE ledger_postings.entry_key = u.k AND ledger_postings.book = 'wallet'",
        )
        .bind(&paid_keys)
        .bind(&paid_values)
        .execute(&mut *tx)
        .await?;
    }
    let (ids, values): (Vec<i64>, Vec<i64>) = cursor.into_iter().unzip();
    sqlx::query(
        "UPDATE wallet_spend SET debited_nano = u.d FROM UNNEST($1::int8[], $2::int8[]) AS u(a, d) \
         WHERE wallet_spend.account_id = u.a",
    )
    .bind(&ids)
    .bind(&values)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lot_gives_out_its_paid_value_oldest_first_to_the_last_nano_dollar() {
        // $10 at 1x, then $10 at 4x.
        let lots = [Lot { list: 10, paid: 10 }, Lot { list: 40, paid: 10 }];
        assert_eq!(paid_until(&lots, 30) - paid_until(&lots, 0), 15);
        assert_eq!(paid_until(&lots, 50) - paid_until(&lots, 30), 5);
        assert_eq!(paid_until(&lots, 80), 20, "past the lots: what they had");
        let odd = [Lot { list: 3, paid: 1 }];
        let parts: i64 = (0..3).map(|i| paid_until(&odd, i + 1) - paid_until(&odd, i)).sum();
        assert_eq!(parts, 1);
    }
}
