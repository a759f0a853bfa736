//! Credit lots: each top-up buys credits at a multiplier (paying $10 at
//! 4x buys $40 of list price) and becomes a lot; spending consumes lots
//! oldest first, so every charge knows the paid dollars it used up and
//! revenue per model is exact even with mixed multipliers. The paid value
//! of a lot is handed out in whole nano-dollars and, by the time the lot is
//! used up, to the last one.

use super::money::NanoUsd;
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lot {
    /// List value still to spend.
    left: i64,
    /// Paid value not yet attributed to a charge.
    paid_left: i64,
}

#[derive(Debug, Default)]
pub struct Lots {
    lots: VecDeque<Lot>,
}

/// What a charge consumed: list value, and the paid value behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spent {
    pub list: NanoUsd,
    pub paid: NanoUsd,
}

impl Lots {
    /// A top-up of `paid` at `multiplier`: `paid x multiplier` to spend.
    pub fn add(&mut self, paid: NanoUsd, multiplier: u32) -> Option<NanoUsd> {
        let list = paid.0.checked_mul(i64::from(multiplier))?;
        if list > 0 {
            self.lots.push_back(Lot { left: list, paid_left: paid.0 });
        }
        Some(NanoUsd(list))
    }

    /// Credit given, not bought: list value with no paid value behind it.
    pub fn grant(&mut self, list: NanoUsd) {
        if list.0 > 0 {
            self.lots.push_back(Lot { left: list.0, paid_left: 0 });
        }
    }

    /// The list value left in every lot.
    pub fn available(&self) -> NanoUsd {
        NanoUsd(self.lots.iter().map(|l| l.left).sum())
    }

    /// Consumes up to `amount` of list value, oldest lots first.
    pub fn spend(&mut self, amount: NanoUsd) -> Spent {
        let mut want = amount.0.max(0);
        let mut spent = Spent::default();
        while want > 0 {
            let Some(lot) = self.lots.front_mut() else { break };
            let take = want.min(lot.left);
            // The paid share of `take`, rounded down; the last take of a
            // lot gets whatever is left, so each lot's paid value adds up.
            let paid = if take == lot.left {
                lot.paid_left
            } else {
                (i128::from(lot.paid_left) * i128::from(take) / i128::from(lot.left)) as i64
            };
            lot.left -= take;
            lot.paid_left -= paid;
            want -= take;
            spent.list.0 += take;
            spent.paid.0 += paid;
            if lot.left == 0 {
                self.lots.pop_front();
            }
        }
        spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lots_are_spent_oldest_first_with_their_own_multiplier() {
        let mut lots = Lots::default();
        lots.add(NanoUsd(10), 1);
        lots.add(NanoUsd(10), 4);
        // 10 from the 1x lot (paid 10), then 20 of the 4x lot (paid 5).
        assert_eq!(lots.spend(NanoUsd(30)), Spent { list: NanoUsd(30), paid: NanoUsd(15) });
        assert_eq!(lots.available(), NanoUsd(20));
        assert_eq!(lots.spend(NanoUsd(100)), Spent { list: NanoUsd(20), paid: NanoUsd(5) });
        assert_eq!(lots.spend(NanoUsd(1)), Spent::default());
    }

    proptest! {
        #[test]
        fn every_paid_nano_dollar_is_attributed_once(
            topups in proptest::collection::vec((1i64..1_000_000, 1u32..7), 1..10),
            spends in proptest::collection::vec(1i64..2_000_000, 1..40),
        ) {
            let mut lots = Lots::default();
            let (mut paid, mut list) = (0, 0);
            for (p, m) in &topups {
                list += lots.add(NanoUsd(*p), *m).unwrap().0;
                paid += p;
            }
            let (mut spent_list, mut spent_paid) = (0, 0);
            for s in spends {
                let before = lots.available();
                let got = lots.spend(NanoUsd(s));
                prop_assert_eq!(got.list.0, s.min(before.0));
                prop_assert!(got.paid.0 <= got.list.0);
                spent_list += got.list.0;
                spent_paid += got.paid.0;
            }
            prop_assert_eq!(spent_list + lots.available().0, list);
            if lots.available().0 == 0 {
                prop_assert_eq!(spent_paid, paid, "a used-up wallet attributed every paid nano-dollar");
            } else {
                prop_assert!(spent_paid <= paid);
            }
        }
    }
}
