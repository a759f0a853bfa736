//! The double-entry ledger. Money moves between books, never appears or
//! vanishes: a top-up moves it from the funding book (the outside world)
//! into a wallet, a hold from the wallet into the account's held book, a
//! charge from held to revenue, a release back to the wallet. Every entry
//! balances (its postings sum to zero), so the sum over all books is zero
//! at all times; every entry has an idempotency key, so a retried one is
//! a no-op; a wallet can never go below zero, by construction: a hold or
//! a debit that it cannot pay for is refused before anything is posted.

use super::money::NanoUsd;
use foldhash::HashMap;
use std::sync::Arc;

pub type AccountId = u64;

/// Where money sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Book {
    /// The outside world: money paid in comes from here.
    Funding,
    /// What an account may spend.
    Wallet(AccountId),
    /// Held for requests in flight.
    Held(AccountId),
    /// Earned.
    Revenue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Topup,
    Hold,
    Charge,
    Release,
    Refund,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Topup => "topup",
            EntryKind::Hold => "hold",
            EntryKind::Charge => "charge",
            EntryKind::Release => "release",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
        }
    }
}

/// An entry's postings: two or three, kept inline (a request posts three
/// entries, and each allocation was a tenth of the posting's cost).
pub type Postings = smallvec::SmallVec<[(Book, i64); 3]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Shared with the ledger's index of keys: one copy of the text (a
    /// request posts three entries, and a copy each was ~100 instructions).
    pub key: Arc<str>,
    pub kind: EntryKind,
    pub account: AccountId,
    /// Postings that sum to zero.
    pub postings: Postings,
}

impl Entry {
    /// What the entry moved, as seen from the account's side (positive).
    pub fn amount(&self) -> NanoUsd {
        NanoUsd(self.postings.iter().map(|(_, n)| n.max(&0)).sum())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerError {
    /// The wallet cannot pay for it.
    Insufficient {
        available: NanoUsd,
        wanted: NanoUsd,
    },
    /// An amount that must be positive was not.
    NotPositive,
    /// A settlement for more than is held.
    NotHeld {
        held: NanoUsd,
        wanted: NanoUsd,
    },
    Overflow,
}

#[derive(Debug, Default)]
pub struct Ledger {
    balances: HashMap<Book, i64>,
    /// Keys of the entries not yet taken, by index into `entries`.
    seen: HashMap<Arc<str>, usize>,
    entries: Vec<Entry>,
    /// Keys of operator entries already taken: a retried top-up stays a no-op.
    operator_keys: foldhash::HashSet<String>,
}

/// The key of the entry that gives back what request `hold_key` held
/// and did not spend (its charge's is [`super::charge_key`]).
fn release_entry_key(hold_key: &str) -> String {
    [hold_key, ":release"].concat()
}

/// What a settlement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub charged: NanoUsd,
    pub released: NanoUsd,
    /// Cost the wallet could not cover past the hold (an estimate that
    /// fell short); logged, never posted as debt.
    pub unpaid: NanoUsd,
}

impl Ledger {
    pub fn balance(&self, book: Book) -> NanoUsd {
        NanoUsd(self.balances.get(&book).copied().unwrap_or(0))
    }

    /// The sum over every book: zero, always.
    pub fn total(&self) -> i64 {
        self.balances.values().sum()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Hands over the entries posted since the last call (for the journal
    /// and the store) and forgets the keys of per-request entries (holds,
    /// charges, releases): a node keeps only balances and the keys of
    /// operator entries (top-ups, refunds, adjustments), so its memory does
    /// not grow with the requests it has served.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        self.remember_operator_keys();
        self.seen.clear();
        std::mem::take(&mut self.entries)
    }

    /// [`Self::take_entries`] for a caller that has no use for them: the
    /// list keeps its room, so the next request's entries need none.
    pub fn forget_entries(&mut self) {
        self.remember_operator_keys();
        self.seen.clear();
        self.entries.clear();
    }

    fn remember_operator_keys(&mut self) {
        for e in &self.entries {
            if matches!(e.kind, EntryKind::Topup | EntryKind::Refund | EntryKind::Adjustment) {
                self.operator_keys.insert(e.key.to_string());
            }
        }
    }

    /// Marks operator entries kept before a restart as seen, so a retried
    /// top-up stays a no-op across restarts.
    pub fn remember(&mut self, key: &str) {
        self.operator_keys.insert(key.to_string());
    }

    fn known(&self, key: &str) -> bool {
        self.seen.contains_key(key) || self.operator_keys.contains(key)
    }

    /// The checks every single-amount entry starts with: `Ok(false)` when
    /// `key` was posted already (a retry), an error when `amount` is not
    /// positive.
    fn fresh(&self, key: &str, amount: NanoUsd) -> Result<bool, LedgerError> {
        if self.known(key) {
            return Ok(false);
        }
        if amount.0 <= 0 {
            return Err(LedgerError::NotPositive);
        }
        Ok(true)
    }

    /// The entry already posted under `key`, if any.
    pub fn find(&self, key: &str) -> Option<&Entry> {
        self.seen.get(key).and_then(|&i| self.entries.get(i))
    }

    fn post(
        &mut self,
        key: &str,
        kind: EntryKind,
        account: AccountId,
        postings: Postings,
    ) -> Result<(), LedgerError> {
        let mut sum: i64 = 0;
        for (_, n) in &postings {
            sum = sum.checked_add(*n).ok_or(LedgerError::Overflow)?;
        }
        debug_assert_eq!(sum, 0, "an entry must balance");
        for (book, n) in &postings {
            let b = self.balances.get(book).copied().unwrap_or(0);
            b.checked_add(*n).ok_or(LedgerError::Overflow)?;
        }
        for (book, n) in &postings {
            *self.balances.entry(*book).or_insert(0) += n;
        }
        let key: Arc<str> = Arc::from(key);
        self.seen.insert(key.clone(), self.entries.len());
        self.entries.push(Entry { key, kind, account, postings });
        Ok(())
    }

    /// Pays `amount` into the wallet. `Ok(false)`: `key` was seen, nothing changed.
    pub fn topup(&mut self, account: AccountId, amount: NanoUsd, key: &str) -> Result<bool, LedgerError> {
        if !self.fresh(key, amount)? {
            return Ok(false);
        }
        self.post(
            key,
            EntryKind::Topup,
            account,
            smallvec::smallvec![(Book::Funding, -amount.0), (Book::Wallet(account), amount.0)],
        )?;
        Ok(true)
    }

    /// Holds `amount` of the wallet for a request, or refuses it whole.
    pub fn hold(&mut self, account: AccountId, amount: NanoUsd, key: &str) -> Result<bool, LedgerError> {
        self.post_hold(account, amount, key, true)
    }

    /// A hold another process made and this one mirrors: that process
    /// checked the wallet (under the lock both share), so this one posts
    /// it as it was, even where its own view would differ.
    pub fn hold_mirrored(
        &mut self,
        account: AccountId,
        amount: NanoUsd,
        key: &str,
    ) -> Result<bool, LedgerError> {
        self.post_hold(account, amount, key, false)
    }

    fn post_hold(
        &mut self,
        account: AccountId,
        amount: NanoUsd,
        key: &str,
        check: bool,
    ) -> Result<bool, LedgerError> {
        if !self.fresh(key, amount)? {
            return Ok(false);
        }
        let available = self.balance(Book::Wallet(account));
        if check && available < amount {
            return Err(LedgerError::Insufficient { available, wanted: amount });
        }
        self.post(
            key,
            EntryKind::Hold,
            account,
            smallvec::smallvec![(Book::Wallet(account), -amount.0), (Book::Held(account), amount.0)],
        )?;
        Ok(true)
    }

    /// Ends a hold of `held`: `cost` is charged (past the hold, from the
    /// wallet as far as it goes), the rest released. Keys `{key}:charge`
    /// and `{key}:release`; a repeated settlement changes nothing.
    pub fn settle(
        &mut self,
        account: AccountId,
        held: NanoUsd,
        cost: NanoUsd,
        key: &str,
    ) -> Result<Settled, LedgerError> {
        self.settle_within(account, held, cost, None, key)
    }

    /// Whether request `key` was settled (and its entries not yet taken).
    pub fn settled(&self, key: &str) -> bool {
        self.known(&super::charge_key(key)) || self.known(&release_entry_key(key))
    }

    /// [`Self::settle`], charging at most `room` in all (what a key's
    /// spend cap has left): what neither the hold, the wallet nor the room
    /// covers is `unpaid`, reported and never posted as debt.
    pub fn settle_within(
        &mut self,
        account: AccountId,
        held: NanoUsd,
        cost: NanoUsd,
        room: Option<NanoUsd>,
        key: &str,
    ) -> Result<Settled, LedgerError> {
        // `concat` sizes each key once; `format!` cost more than the posting.
        let (charge_key, release_key) = (super::charge_key(key), release_entry_key(key));
        if self.known(&charge_key) || self.known(&release_key) {
            let amount = |k: &str| self.find(k).map_or(NanoUsd::ZERO, Entry::amount);
            return Ok(Settled {
                charged: amount(&charge_key),
                released: amount(&release_key),
                unpaid: NanoUsd::ZERO,
            });
        }
        let in_hold = self.balance(Book::Held(account));
        if held.0 < 0 || in_hold < held {
            return Err(LedgerError::NotHeld { held: in_hold, wanted: held });
        }
        let cost = NanoUsd(cost.0.max(0));
        let payable = room.map_or(cost, |room| cost.min(NanoUsd(room.0.max(0))));
        let from_hold = payable.min(held);
        let beyond = NanoUsd(payable.0 - from_hold.0);
        let from_wallet = beyond.min(NanoUsd(self.balance(Book::Wallet(account)).0.max(0)));
        let released = NanoUsd(held.0 - from_hold.0);
        let charged = NanoUsd(from_hold.0 + from_wallet.0);
        if charged.0 > 0 {
            let mut postings =
                smallvec::smallvec![(Book::Held(account), -from_hold.0), (Book::Revenue, charged.0)];
            if from_wallet.0 > 0 {
                postings.push((Book::Wallet(account), -from_wallet.0));
            }
            self.post(&charge_key, EntryKind::Charge, account, postings)?;
        }
        if released.0 > 0 {
            self.post(
                &release_key,
                EntryKind::Release,
                account,
                smallvec::smallvec![(Book::Held(account), -released.0), (Book::Wallet(account), released.0)],
            )?;
        }
        Ok(Settled { charged, released, unpaid: NanoUsd(cost.0 - charged.0) })
    }

    /// Gives a hold of `held` back whole, when its lease ended with no
    /// request left to settle it (key `{key}:expired`, so a late
    /// settlement of the same request is still charged).
    pub fn release(&mut self, account: AccountId, held: NanoUsd, key: &str) -> Result<(), LedgerError> {
        if held.0 <= 0 {
            return Ok(());
        }
        self.post(
            &format!("{key}:expired"),
            EntryKind::Release,
            account,
            smallvec::smallvec![(Book::Held(account), -held.0), (Book::Wallet(account), held.0)],
        )
    }

    /// Gives `amount` of revenue back to the wallet.
    pub fn refund(&mut self, account: AccountId, amount: NanoUsd, key: &str) -> Result<bool, LedgerError> {
        if !self.fresh(key, amount)? {
            return Ok(false);
        }
        self.post(
            key,
            EntryKind::Refund,
            account,
            smallvec::smallvec![(Book::Revenue, -amount.0), (Book::Wallet(account), amount.0)],
        )?;
        Ok(true)
    }

    /// Rebuilds an account at start from what the store kept: `funded`
    /// paid in or granted from the outside, `earned` of it charged. One
    /// balanced entry: the store's records balance, and so does this.
    pub fn restore(
        &mut self,
        account: AccountId,
        funded: NanoUsd,
        earned: NanoUsd,
    ) -> Result<(), LedgerError> {
        if funded.0 == 0 && earned.0 == 0 {
            return Ok(());
        }
        let key = format!("restore:{account}");
        self.post(
            &key,
            EntryKind::Adjustment,
            account,
            smallvec::smallvec![
                (Book::Funding, -funded.0),
                (Book::Wallet(account), funded.0 - earned.0),
                (Book::Revenue, earned.0),
            ],
        )?;
        self.forget_entries();
        Ok(())
    }

    /// An operator's correction, up or down; never below zero.
    pub fn adjust(&mut self, account: AccountId, amount: NanoUsd, key: &str) -> Result<bool, LedgerError> {
        if self.known(key) {
            return Ok(false);
        }
        let available = self.balance(Book::Wallet(account));
        if amount.0 < 0 && available.0 < -amount.0 {
            return Err(LedgerError::Insufficient { available, wanted: NanoUsd(-amount.0) });
        }
        self.post(
            key,
            EntryKind::Adjustment,
            account,
            smallvec::smallvec![(Book::Funding, -amount.0), (Book::Wallet(account), amount.0)],
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_holds_then_settles_to_its_cost() {
        let mut l = Ledger::default();
        assert_eq!(l.topup(1, NanoUsd(1_000), "t1"), Ok(true));
        assert_eq!(l.topup(1, NanoUsd(1_000), "t1"), Ok(false), "a retried top-up is a no-op");
        assert_eq!(l.hold(1, NanoUsd(800), "r1"), Ok(true));
        assert_eq!(
            l.hold(1, NanoUsd(300), "r2"),
            Err(LedgerError::Insufficient { available: NanoUsd(200), wanted: NanoUsd(300) })
        );
        let s = l.settle(1, NanoUsd(800), NanoUsd(250), "r1").unwrap();
        assert_eq!((s.charged, s.released, s.unpaid), (NanoUsd(250), NanoUsd(550), NanoUsd(0)));
        assert_eq!(
            l.settle(1, NanoUsd(800), NanoUsd(250), "r1").unwrap().charged,
            NanoUsd(250),
            "settled once"
        );
        assert_eq!(l.balance(Book::Wallet(1)), NanoUsd(750));
        assert_eq!(l.balance(Book::Revenue), NanoUsd(250));
        assert_eq!(l.total(), 0);
    }

    #[test]
    fn taken_entries_leave_balances_and_operator_keys_only() {
        let mut l = Ledger::default();
        l.topup(1, NanoUsd(100), "t").unwrap();
        l.hold(1, NanoUsd(40), "r").unwrap();
        l.settle(1, NanoUsd(40), NanoUsd(10), "r").unwrap();
        assert_eq!(l.take_entries().len(), 4);
        assert!(l.entries().is_empty() && l.seen.is_empty());
        assert_eq!(l.topup(1, NanoUsd(100), "t"), Ok(false), "a retried top-up is still a no-op");
        assert_eq!(l.balance(Book::Wallet(1)), NanoUsd(90));
        assert_eq!(l.total(), 0);
    }

    #[test]
    fn a_cost_past_the_hold_takes_what_the_wallet_has_and_no_more() {
        let mut l = Ledger::default();
        l.topup(7, NanoUsd(100), "t").unwrap();
        l.hold(7, NanoUsd(60), "h").unwrap();
        let s = l.settle(7, NanoUsd(60), NanoUsd(130), "h").unwrap();
        assert_eq!((s.charged, s.released, s.unpaid), (NanoUsd(100), NanoUsd(0), NanoUsd(30)));
        assert_eq!(l.balance(Book::Wallet(7)), NanoUsd(0), "never below zero");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Topup(u8, i64),
        Hold(u8, i64),
        Settle(i64),
        Refund(u8, i64),
        Adjust(u8, i64),
        Retry(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 1i64..10_000).prop_map(|(a, n)| Op::Topup(a, n)),
            (0u8..3, 1i64..5_000).prop_map(|(a, n)| Op::Hold(a, n)),
            (0i64..8_000).prop_map(Op::Settle),
            (0u8..3, 1i64..500).prop_map(|(a, n)| Op::Refund(a, n)),
            (0u8..3, -2_000i64..2_000).prop_map(|(a, n)| Op::Adjust(a, n)),
            (0usize..64).prop_map(Op::Retry),
        ]
    }

    proptest! {
        /// Zero sum; no wallet below zero; per account, wallet + held =
        /// top-ups - charges + refunds + adjustments; a retried entry
        /// changes nothing.
        #[test]
        fn the_ledger_always_balances(ops in proptest::collection::vec(op(), 1..80)) {
            let mut l = Ledger::default();
            let mut holds: Vec<(u64, NanoUsd, String)> = Vec::new();
            let mut done: Vec<Op> = Vec::new();
            for (i, o) in ops.into_iter().enumerate() {
                let o = match o { Op::Retry(k) if !done.is_empty() => done[k % done.len()].clone(), Op::Retry(_) => continue, o => o };
                match &o {
                    Op::Topup(a, n) => { let _ = l.topup(u64::from(*a), NanoUsd(*n), &format!("t{i}")); }
                    Op::Hold(a, n) => {
                        let key = format!("h{i}");
                        if l.hold(u64::from(*a), NanoUsd(*n), &key) == Ok(true) { holds.push((u64::from(*a), NanoUsd(*n), key)); }
                    }
                    Op::Settle(cost) => {
                        if let Some((a, held, key)) = holds.pop() { l.settle(a, held, NanoUsd(*cost), &key).unwrap(); }
                    }
                    Op::Refund(a, n) => { if l.balance(Book::Revenue).0 >= *n { l.refund(u64::from(*a), NanoUsd(*n), &format!("f{i}")).unwrap(); } }
                    Op::Adjust(a, n) => { let _ = l.adjust(u64::from(*a), NanoUsd(*n), &format!("a{i}")); }
                    Op::Retry(_) => {}
                }
                done.push(o);
                // A replay of an already-posted entry is a no-op.
                if let Some(e) = l.entries().last().cloned() {
                    let before = l.total();
                    let count = l.entries().len();
                    match e.kind {
                        EntryKind::Topup => { let _ = l.topup(e.account, e.amount(), &e.key); }
                        EntryKind::Refund => { let _ = l.refund(e.account, e.amount(), &e.key); }
                        _ => {}
                    }
                    prop_assert_eq!(l.entries().len(), count);
                    prop_assert_eq!(l.total(), before);
                }
                prop_assert_eq!(l.total(), 0);
                for a in 0..3u64 {
                    prop_assert!(l.balance(Book::Wallet(a)).0 >= 0);
                    let by = |kind: EntryKind| -> i64 {
                        l.entries().iter().filter(|e| e.account == a && e.kind == kind)
                            .map(|e| e.postings.iter().filter(|(b, _)| *b == Book::Wallet(a) || *b == Book::Held(a)).map(|(_, n)| n).sum::<i64>()).sum()
                    };
                    let charges = -by(EntryKind::Charge);
                    prop_assert_eq!(
                        l.balance(Book::Wallet(a)).0 + l.balance(Book::Held(a)).0,
                        by(EntryKind::Topup) - charges + by(EntryKind::Refund) + by(EntryKind::Adjustment)
                    );
                }
            }
        }
    }
}
