//! Holds with a lease, on the ledger: a request holds its worst-case cost
//! before it goes upstream, and settles to its actual cost when it ends.
//! The lease is renewed for as long as the request lives (it holds the
//! hold's [`HoldToken`]), so a slow reader or a slow provider never makes
//! a call free; a hold whose request is gone without settling (a bug, a
//! lost task) is released when its lease runs out, so no money stays
//! locked. A settlement that finds its hold released anyway is charged
//! against the wallet. Leases run on the clock's monotonic time, so a
//! wall-clock step cannot release every hold at once. Time comes from a
//! [`Clock`], which tests move by hand.

use super::ledger::{AccountId, Ledger, LedgerError, Settled};
use super::lots::Lots;
use super::money::NanoUsd;
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Milliseconds since the Unix epoch, and on a clock that never steps.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;

    /// Milliseconds on a clock that only moves forward at the pace of
    /// real time (NTP steps and VM resumes do not move it): what leases
    /// and windows measure. A test clock has one time for both.
    fn monotonic_ms(&self) -> u64 {
        self.now_ms()
    }
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ms(&self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(std::time::Instant::now);
        // Starts two days in, so what happened up to two days before the
        // process started (the rate limits rebuilt from the ledger) has a
        // time on it too.
        MONOTONIC_BASE_MS.saturating_add(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// Where [`SystemClock`]'s monotonic time starts.
pub const MONOTONIC_BASE_MS: u64 = 2 * 86_400_000;

/// Kept by the request a hold is for: while it lives, the hold's lease
/// is renewed instead of ending.
pub type HoldToken = Arc<()>;

/// A clock a test sets.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Who a hold is for beyond the account: the key, and its spend cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCap {
    pub key_id: u64,
    pub cap: Option<NanoUsd>,
}

#[derive(Debug, Clone)]
struct Hold {
    account: AccountId,
    key: Option<KeyCap>,
    amount: NanoUsd,
    /// On the monotonic clock; never, for a hold another process made
    /// (it is that process's to settle, or to release when it dies).
    expires_at: u64,
    alive: Weak<()>,
}

/// What a key has spent and holds: its cap is checked against both.
#[derive(Debug, Default, Clone, Copy)]
struct KeySpend {
    spent: i64,
    held: i64,
}

/// Why a hold was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRefused {
    Wallet { available: NanoUsd, wanted: NanoUsd },
    SpendCap { left: NanoUsd, wanted: NanoUsd },
    Invalid(LedgerError),
}

/// A settled hold: what was charged, released, and the paid value behind
/// the charge (from the account's credit lots, oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub account: AccountId,
    pub key_id: Option<u64>,
    pub settled: Settled,
    pub paid: NanoUsd,
}

#[derive(Default)]
struct State {
    ledger: Ledger,
    holds: HashMap<String, Hold>,
    lots: HashMap<AccountId, Lots>,
    keys: HashMap<u64, KeySpend>,
}

/// The wallets of one node: the ledger, the holds open on it, the credit
/// lots behind each wallet and what each key has spent.
pub struct Wallets<C: Clock> {
    state: Mutex<State>,
    lease_ms: u64,
    clock: C,
}

impl<C: Clock> Wallets<C> {
    pub fn new(clock: C, lease_ms: u64) -> Self {
        Self { state: Mutex::new(State::default()), lease_ms, clock }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn now_monotonic(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// A payment of `paid` at `multiplier`: `Ok(None)` when `key` was
    /// seen already. `journal` runs with its list value in the same step
    /// as the lot enters the wallet, so records leave in the lots' order.
    pub fn topup(
        &self,
        account: AccountId,
        paid: NanoUsd,
        multiplier: u32,
        key: &str,
        journal: impl FnOnce(NanoUsd),
    ) -> Result<Option<NanoUsd>, LedgerError> {
        let list = NanoUsd(paid.0.checked_mul(i64::from(multiplier)).ok_or(LedgerError::Overflow)?);
        self.with(|s| {
            if !s.ledger.topup(account, list, key)? {
                return Ok(None);
            }
            s.lots.entry(account).or_default().add(paid, multiplier);
            journal(list);
            Ok(Some(list))
        })
    }

    /// Credit given, not bought (opening balances, adjustments up), or
    /// taken back; `journal` runs in the same step, as for a top-up.
    pub fn grant(
        &self,
        account: AccountId,
        amount: NanoUsd,
        key: &str,
        journal: impl FnOnce(),
    ) -> Result<bool, LedgerError> {
        self.with(|s| {
            if !s.ledger.adjust(account, amount, key)? {
                return Ok(false);
            }
            if amount.0 > 0 {
                s.lots.entry(account).or_default().grant(amount);
            } else {
                s.lots.entry(account).or_default().spend(NanoUsd(-amount.0));
            }
            journal();
            Ok(true)
        })
    }

    /// Rebuilds an account from what the store kept: its lots in order,
    /// then what it has spent in all (lots are spent oldest first, so the
    /// total alone says which are left), and each key's spend.
    pub fn restore(
        &self,
        account: AccountId,
        lots: &[(NanoUsd, u32, NanoUsd)],
        spent: NanoUsd,
        keys: &[(u64, NanoUsd)],
    ) -> Result<(), LedgerError> {
        self.with(|s| {
            let mut funded = NanoUsd::ZERO;
            let wallet = s.lots.entry(account).or_default();
            for &(paid, multiplier, granted) in lots {
                if granted.0 > 0 {
                    wallet.grant(granted);
                    funded.0 += granted.0;
                } else if let Some(list) = wallet.add(paid, multiplier) {
                    funded.0 += list.0;
                }
            }
            wallet.spend(spent);
            for &(key_id, key_spent) in keys {
                s.keys.entry(key_id).or_default().spent += key_spent.0;
            }
            s.ledger.restore(account, funded, spent)
        })
    }

    pub fn remember(&self, operator_keys: &[String]) {
        self.with(|s| operator_keys.iter().for_each(|k| s.ledger.remember(k)));
    }

    pub fn available(&self, account: AccountId) -> NanoUsd {
        self.with(|s| s.ledger.balance(super::Book::Wallet(account)))
    }

    /// What `key_id` has spent (settled charges).
    pub fn key_spent(&self, key_id: u64) -> NanoUsd {
        self.with(|s| NanoUsd(s.keys.get(&key_id).map_or(0, |k| k.spent)))
    }

    /// Holds `amount` for request `key` against the wallet and the key's
    /// cap in one step with both checks: two requests can never both take
    /// the last of a wallet or of a cap. The request keeps the token.
    pub fn hold(
        &self,
        account: AccountId,
        cap: Option<KeyCap>,
        amount: NanoUsd,
        key: &str,
    ) -> Result<HoldToken, HoldRefused> {
        let expires_at = self.clock.monotonic_ms().saturating_add(self.lease_ms);
        let token = HoldToken::default();
        self.with(|s| {
            if let Some(KeyCap { key_id, cap: Some(cap) }) = cap {
                let used = s.keys.get(&key_id).copied().unwrap_or_default();
                let left = NanoUsd((cap.0 - used.spent - used.held).max(0));
                if left < amount {
                    return Err(HoldRefused::SpendCap { left, wanted: amount });
                }
            }
            match s.ledger.hold(account, amount, key) {
                Ok(true) => {}
                Ok(false) => return Ok(token.clone()),
                Err(LedgerError::Insufficient { available, wanted }) => {
                    return Err(HoldRefused::Wallet { available, wanted })
                }
                Err(e) => return Err(HoldRefused::Invalid(e)),
            }
            if let Some(k) = cap {
                s.keys.entry(k.key_id).or_default().held += amount.0;
            }
            let alive = Arc::downgrade(&token);
            s.holds.insert(key.to_string(), Hold { account, key: cap, amount, expires_at, alive });
            Ok(token.clone())
        })
    }

    /// Ends request `key`'s hold at `cost`: charged from the hold, past it
    /// from the wallet, never past the key's cap; what neither covers is
    /// `unpaid`. A hold released already (its request outlived it) is
    /// charged against the wallet all the same, once: `None` when `key`
    /// was settled before.
    pub fn settle(
        &self,
        key: &str,
        cost: NanoUsd,
        account: AccountId,
        cap: Option<KeyCap>,
    ) -> Result<Option<Settlement>, LedgerError> {
        self.settle_as(key, cost, account, cap, true)
    }

    /// Mirrors a hold another process made (see [`super::peers`]).
    pub fn mirror_hold(
        &self,
        account: AccountId,
        cap: Option<KeyCap>,
        amount: NanoUsd,
        key: &str,
    ) -> Result<(), LedgerError> {
        self.with(|s| {
            if s.holds.contains_key(key) || !s.ledger.hold_mirrored(account, amount, key)? {
                return Ok(());
            }
            if let Some(k) = cap {
                s.keys.entry(k.key_id).or_default().held += amount.0;
            }
            let hold = Hold { account, key: cap, amount, expires_at: u64::MAX, alive: Weak::new() };
            s.holds.insert(key.to_string(), hold);
            Ok(())
        })
    }

    /// Mirrors what another process charged request `key` (`charged`, as
    /// it decided: no cap applies again), from its mirrored hold or, when
    /// none was mirrored, from the wallet.
    pub fn mirror_charge(
        &self,
        key: &str,
        charged: NanoUsd,
        account: AccountId,
        key_id: Option<u64>,
    ) -> Result<Option<Settlement>, LedgerError> {
        let cap = key_id.map(|key_id| KeyCap { key_id, cap: None });
        self.settle_as(key, charged, account, cap, false)
    }

    /// The holds open now: what a peer must mirror when it arrives.
    pub fn open(&self) -> Vec<(String, AccountId, Option<KeyCap>, NanoUsd)> {
        self.with(|s| s.holds.iter().map(|(k, h)| (k.clone(), h.account, h.key, h.amount)).collect())
    }

    fn settle_as(
        &self,
        key: &str,
        cost: NanoUsd,
        account: AccountId,
        cap: Option<KeyCap>,
        within_cap: bool,
    ) -> Result<Option<Settlement>, LedgerError> {
        self.with(|s| {
            let hold = match s.holds.remove(key) {
                Some(hold) => hold,
                None if s.ledger.settled(key) => return Ok(None),
                None => Hold { account, key: cap, amount: NanoUsd::ZERO, expires_at: 0, alive: Weak::new() },
            };
            let room = hold.key.filter(|_| within_cap).and_then(|k| {
                let cap = k.cap?;
                let used = s.keys.get(&k.key_id).copied().unwrap_or_default();
                // This hold's own amount is part of what the key holds.
                Some(NanoUsd(
                    cap.0.saturating_sub(used.spent).saturating_sub(used.held - hold.amount.0).max(0),
                ))
            });
            let settled = s.ledger.settle_within(hold.account, hold.amount, cost, room, key);
            if let Some(k) = hold.key {
                let spend = s.keys.entry(k.key_id).or_default();
                spend.held -= hold.amount.0;
                if let Ok(settled) = &settled {
                    spend.spent += settled.charged.0;
                }
            }
            // The sink took what matters; a node keeps no per-request
            // entries, so its memory does not grow with its traffic.
            if s.holds.is_empty() || s.ledger.entries().len() >= 1024 {
                s.ledger.forget_entries();
            }
            let settled = settled?;
            let paid = s.lots.entry(hold.account).or_default().spend(settled.charged).paid;
            Ok(Some(Settlement { account: hold.account, key_id: hold.key.map(|k| k.key_id), settled, paid }))
        })
    }

    /// Releases every hold whose lease has ended and whose request is
    /// gone; renews the lease of those whose request still runs. The
    /// released holds' keys.
    pub fn expire(&self) -> Vec<String> {
        let now = self.clock.monotonic_ms();
        let lease = self.lease_ms;
        self.with(|s| {
            let mut ended = Vec::new();
            for (key, hold) in s.holds.iter_mut().filter(|(_, h)| h.expires_at <= now) {
                if hold.alive.strong_count() > 0 {
                    hold.expires_at = now.saturating_add(lease);
                } else {
                    ended.push(key.clone());
                }
            }
            for key in &ended {
                if let Some(hold) = s.holds.remove(key) {
                    let _ = s.ledger.release(hold.account, hold.amount, key);
                    if let Some(k) = hold.key {
                        s.keys.entry(k.key_id).or_default().held -= hold.amount.0;
                    }
                }
            }
            ended
        })
    }

    pub fn open_holds(&self) -> usize {
        self.with(|s| s.holds.len())
    }

    /// The sum over every book of the ledger: zero.
    pub fn ledger_total(&self) -> i64 {
        self.with(|s| s.ledger.total())
    }

    /// The list value left in an account's lots: its wallet plus its holds.
    pub fn lots_available(&self, account: AccountId) -> NanoUsd {
        self.with(|s| s.lots.get(&account).map_or(NanoUsd::ZERO, Lots::available))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn topup(w: &Wallets<ManualClock>, account: AccountId, amount: i64) {
        w.topup(account, NanoUsd(amount), 1, &format!("t{account}{amount}"), |_| {}).unwrap();
    }

    #[test]
    fn a_lease_ends_only_for_holds_whose_request_is_gone() {
        let wallets = Wallets::new(ManualClock::at(1_000), 60_000);
        topup(&wallets, 1, 100);
        let alive = wallets.hold(1, None, NanoUsd(80), "req").unwrap();
        assert_eq!(wallets.available(1), NanoUsd(20));
        wallets.clock.advance(59_999);
        assert!(wallets.expire().is_empty(), "the lease still runs");
        wallets.clock.advance(10 * 60_000);
        assert!(wallets.expire().is_empty(), "renewed while its request lives");
        assert_eq!(wallets.available(1), NanoUsd(20));
        drop(alive);
        assert!(wallets.expire().is_empty(), "the renewed lease runs to its end");
        wallets.clock.advance(60_000);
        assert_eq!(wallets.expire(), vec!["req".to_string()]);
        assert_eq!(wallets.available(1), NanoUsd(100));
        assert_eq!(wallets.open_holds(), 0);
        assert_eq!(wallets.ledger_total(), 0);
    }

    #[test]
    fn a_settlement_after_the_lease_is_charged_against_the_wallet() {
        let wallets = Wallets::new(ManualClock::at(0), 1_000);
        topup(&wallets, 1, 100);
        drop(wallets.hold(1, None, NanoUsd(80), "req").unwrap());
        wallets.clock.advance(1_000);
        assert_eq!(wallets.expire().len(), 1);
        let late = wallets.settle("req", NanoUsd(50), 1, None).unwrap().unwrap();
        assert_eq!((late.settled.charged, late.settled.unpaid), (NanoUsd(50), NanoUsd(0)));
        assert_eq!(wallets.available(1), NanoUsd(50));
        assert_eq!(wallets.ledger_total(), 0);
    }

    #[test]
    fn excess_past_the_hold_stops_at_the_wallet_and_the_keys_cap() {
        let wallets = Wallets::new(ManualClock::at(0), 60_000);
        topup(&wallets, 1, 1_000);
        let cap = Some(KeyCap { key_id: 7, cap: Some(NanoUsd(100)) });
        let _a = wallets.hold(1, cap, NanoUsd(60), "a").unwrap();
        let _b = wallets.hold(1, cap, NanoUsd(30), "b").unwrap();
        // 60 held, 30 held by another call: the cap leaves 70 for this one.
        let s = wallets.settle("a", NanoUsd(250), 1, cap).unwrap().unwrap();
        assert_eq!((s.settled.charged, s.settled.unpaid), (NanoUsd(70), NanoUsd(180)));
        assert_eq!(wallets.key_spent(7), NanoUsd(70));
        let s = wallets.settle("b", NanoUsd(40), 1, cap).unwrap().unwrap();
        assert_eq!((s.settled.charged, s.settled.unpaid), (NanoUsd(30), NanoUsd(10)));
        assert_eq!(wallets.key_spent(7), NanoUsd(100), "the cap, never more");
        // Without a cap, the wallet is the limit.
        let _c = wallets.hold(1, None, NanoUsd(100), "c").unwrap();
        let s = wallets.settle("c", NanoUsd(5_000), 1, None).unwrap().unwrap();
        assert_eq!((s.settled.charged, s.settled.unpaid), (NanoUsd(900), NanoUsd(4_100)));
        assert_eq!(wallets.available(1), NanoUsd(0), "never below zero");
        assert_eq!(wallets.ledger_total(), 0);
    }

    /// A clock whose wall time jumps while its monotonic time does not.
    struct SteppedClock(AtomicU64, AtomicU64);

    impl Clock for SteppedClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn monotonic_ms(&self) -> u64 {
            self.1.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_wall_clock_step_releases_no_hold() {
        let wallets = Wallets::new(SteppedClock(AtomicU64::new(0), AtomicU64::new(0)), 60_000);
        wallets.topup(1, NanoUsd(100), 1, "t", |_| {}).unwrap();
        drop(wallets.hold(1, None, NanoUsd(80), "req").unwrap());
        wallets.clock.0.store(10 * 3_600_000, Ordering::SeqCst);
        assert!(wallets.expire().is_empty(), "ten hours of NTP step are not a minute of lease");
        wallets.clock.1.store(60_000, Ordering::SeqCst);
        assert_eq!(wallets.expire().len(), 1);
    }

    #[test]
    fn concurrent_holds_never_overdraw_a_wallet() {
        let wallets = Arc::new(Wallets::new(ManualClock::at(0), 60_000));
        wallets.topup(9, NanoUsd(300 * 7), 1, "t", |_| {}).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let w = wallets.clone();
                std::thread::spawn(move || {
                    (0..125).filter(|i| w.hold(9, None, NanoUsd(7), &format!("r{t}-{i}")).is_ok()).count()
                })
            })
            .collect();
        let held: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(held, 300, "exactly what the wallet pays for, out of 1,000");
        assert_eq!(wallets.available(9), NanoUsd(0));
        assert_eq!(wallets.ledger_total(), 0);
    }
}
