//! Holds with a lease, on the ledger: a request holds its worst-case cost
//! before it goes upstream, and settles to its actual cost when it ends;
//! a hold whose request never settles (a crashed task, a lost stream) is
//! released when its lease runs out, so no money stays locked. Time comes
//! from a [`Clock`], which tests move by hand.

use super::ledger::{AccountId, Ledger, LedgerError, Settled};
use super::money::NanoUsd;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

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

#[derive(Debug, Clone, Copy)]
struct Hold {
    account: AccountId,
    amount: NanoUsd,
    expires_at: u64,
}

/// The wallets of one node: the ledger and the holds open on it.
pub struct Wallets<C: Clock> {
    state: Mutex<(Ledger, HashMap<String, Hold>)>,
    lease_ms: u64,
    clock: C,
}

impl<C: Clock> Wallets<C> {
    pub fn new(clock: C, lease_ms: u64) -> Self {
        Self { state: Mutex::new((Ledger::default(), HashMap::new())), lease_ms, clock }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ledger, &mut HashMap<String, Hold>) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ledger, holds) = &mut *guard;
        f(ledger, holds)
    }

    pub fn topup(&self, account: AccountId, amount: NanoUsd, key: &str) -> Result<bool, LedgerError> {
        self.with(|l, _| l.topup(account, amount, key))
    }

    pub fn available(&self, account: AccountId) -> NanoUsd {
        self.with(|l, _| l.balance(super::Book::Wallet(account)))
    }

    /// Holds `amount` for request `key` in one step with the check: two
    /// requests can never both take the last of a wallet.
    pub fn hold(&self, account: AccountId, amount: NanoUsd, key: &str) -> Result<(), LedgerError> {
        let expires_at = self.clock.now_ms().saturating_add(self.lease_ms);
        self.with(|l, holds| {
            if l.hold(account, amount, key)? {
                holds.insert(key.to_string(), Hold { account, amount, expires_at });
            }
            Ok(())
        })
    }

    /// Ends request `key`'s hold at `cost`. A hold already released by its
    /// lease is not charged again: the settlement it had stands.
    pub fn settle(&self, key: &str, cost: NanoUsd) -> Result<Option<Settled>, LedgerError> {
        self.with(|l, holds| {
            let Some(hold) = holds.remove(key) else { return Ok(None) };
            let settled = l.settle(hold.account, hold.amount, cost, key).map(Some);
            // Until the journal takes them, a node keeps no per-request
            // entries: its memory must not grow with its traffic.
            if holds.is_empty() || l.entries().len() >= 1024 {
                drop(l.take_entries());
            }
            settled
        })
    }

    /// Releases every hold whose lease has ended; their keys.
    pub fn expire(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        self.with(|l, holds| {
            let ended: Vec<String> =
                holds.iter().filter(|(_, h)| h.expires_at <= now).map(|(k, _)| k.clone()).collect();
            for key in &ended {
                if let Some(hold) = holds.remove(key) {
                    let _ = l.settle(hold.account, hold.amount, NanoUsd::ZERO, key);
                }
            }
            ended
        })
    }

    pub fn open_holds(&self) -> usize {
        self.with(|_, holds| holds.len())
    }

    /// The sum over every book of the ledger: zero.
    pub fn ledger_total(&self) -> i64 {
        self.with(|l, _| l.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_hold_is_released_when_its_lease_ends_and_not_charged_after() {
        let wallets = Wallets::new(ManualClock::at(1_000), 60_000);
        wallets.topup(1, NanoUsd(100), "t").unwrap();
        wallets.hold(1, NanoUsd(80), "req").unwrap();
        assert_eq!(wallets.available(1), NanoUsd(20));
        wallets.clock.advance(59_999);
        assert!(wallets.expire().is_empty(), "the lease still runs");
        wallets.clock.advance(1);
        assert_eq!(wallets.expire(), vec!["req".to_string()]);
        assert_eq!(wallets.available(1), NanoUsd(100));
        assert_eq!(
            wallets.settle("req", NanoUsd(50)).unwrap(),
            None,
            "a request settling after its lease is not billed twice"
        );
        assert_eq!(wallets.open_holds(), 0);
        assert_eq!(wallets.ledger_total(), 0);
    }

    #[test]
    fn concurrent_holds_never_overdraw_a_wallet() {
        let wallets = Arc::new(Wallets::new(ManualClock::at(0), 60_000));
        wallets.topup(9, NanoUsd(300 * 7), "t").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let w = wallets.clone();
                std::thread::spawn(move || {
                    (0..125).filter(|i| w.hold(9, NanoUsd(7), &format!("r{t}-{i}")).is_ok()).count()
                })
            })
            .collect();
        let held: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(held, 300, "exactly what the wallet pays for, out of 1,000");
        assert_eq!(wallets.available(9), NanoUsd(0));
        assert_eq!(wallets.ledger_total(), 0);
    }
}
