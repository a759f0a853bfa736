//! Running totals of every account's charges, kept in memory so that
//! `whoami` and `usage` answer in constant time whatever the history and
//! never touch the store: per account and model since the start (requests,
//! tokens in, out and cached, what was charged), per account for the
//! current UTC month, and the requests of the current UTC day. (Per key
//! spend is the wallets' own figure.)
//!
//! They move in the same step as each charge is journaled ([`Tallied`],
//! the sink billing writes to), take a peer's charges as its journal lines
//! are applied, and are loaded at start from one aggregate pass over the
//! ledger ([`UsageTotals::load`]). A fleet will read them from shared
//! state instead: everything goes through [`UsageTotals`]' three calls.

use crate::billing::{LedgerRecord, PeerLine, RecordKind, Sink};
use crate::calendar::{start_of_day, start_of_month};
use foldhash::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// What charges add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Nano-USD charged (what the wallet paid; an unpaid part is not in it).
    pub spent_nano: i64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.spent_nano += other.spent_nano;
    }

    /// One charge record's figures (`None` for any other record).
    pub fn of(record: &LedgerRecord) -> Option<Counts> {
        if record.kind != RecordKind::Charge {
            return None;
        }
        let m = record.metered.as_ref();
        let n =
            |f: fn(&crate::billing::Metered) -> u64| m.map_or(0, |m| i64::try_from(f(m)).unwrap_or(i64::MAX));
        Some(Counts {
            requests: 1,
            input_tokens: n(|m| m.input_tokens),
            output_tokens: n(|m| m.output_tokens),
            cached_tokens: n(|m| m.cached_tokens),
            spent_nano: record.wallet_nano.saturating_neg(),
        })
    }
}

/// Which period of the clock at load time a loaded sum falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Before this UTC month (or after it).
    Earlier,
    /// This UTC month, not today.
    ThisMonth,
    /// Today (UTC).
    Today,
}

/// One sum the start-up pass reads: an account's charges of one model in
/// one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSum {
    pub account: u64,
    pub model: String,
    pub period: Period,
    pub counts: Counts,
}

/// What `whoami` and `usage` show of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountView {
    pub total: Counts,
    /// By model, in the models' order.
    pub per_model: Vec<(String, Counts)>,
    /// This UTC month.
    pub month: Counts,
    /// Requests charged today (UTC).
    pub today_requests: i64,
}

/// Months and days kept per account: the current one and the one before
/// (a record from just before midnight may arrive just after it).
const PERIODS_KEPT: usize = 2;

#[derive(Debug, Default)]
struct Tally {
    per_model: HashMap<String, Counts>,
    /// `(start of the UTC month, counts)`, oldest first.
    months: Vec<(i64, Counts)>,
    /// `(start of the UTC day, requests)`, oldest first.
    days: Vec<(i64, i64)>,
}

/// Adds `n` to the period starting at `start`, keeping the latest few.
fn bump<T: Default>(periods: &mut Vec<(i64, T)>, start: i64, add: impl FnOnce(&mut T)) {
    let at = match periods.iter().position(|(s, _)| *s == start) {
        Some(i) => i,
        None => {
            if periods.len() >= PERIODS_KEPT && periods.first().is_some_and(|(s, _)| *s > start) {
                return; // older than every period kept: nobody asks for it
            }
            periods.push((start, T::default()));
            periods.sort_by_key(|(s, _)| *s);
            if periods.len() > PERIODS_KEPT {
                periods.remove(0);
            }
            match periods.iter().position(|(s, _)| *s == start) {
                Some(i) => i,
                None => return,
            }
        }
    };
    if let Some((_, t)) = periods.get_mut(at) {
        add(t);
    }
}

impl Tally {
    fn add_model(&mut self, model: &str, counts: &Counts) {
        match self.per_model.get_mut(model) {
            Some(c) => c.add(counts),
            None => {
                self.per_model.insert(model.to_string(), *counts);
            }
        }
    }

    fn add(&mut self, model: &str, at: i64, counts: &Counts) {
        self.add_model(model, counts);
        bump(&mut self.months, start_of_month(at), |c| c.add(counts));
        bump(&mut self.days, start_of_day(at), |r| *r += counts.requests);
    }
}

/// Every account's running totals; see the module's doc.
#[derive(Debug, Default)]
pub struct UsageTotals {
    /// One lock per account, so one account's readers never wait on another's.
    accounts: RwLock<HashMap<u64, Arc<Mutex<Tally>>>>,
}

impl UsageTotals {
    fn tally(&self, account: u64) -> Arc<Mutex<Tally>> {
        if let Some(t) = self.accounts.read().unwrap_or_else(PoisonError::into_inner).get(&account) {
            return t.clone();
        }
        self.accounts.write().unwrap_or_else(PoisonError::into_inner).entry(account).or_default().clone()
    }

    /// Counts a ledger record (only charges count).
    pub fn add(&self, record: &LedgerRecord) {
        let Some(counts) = Counts::of(record) else { return };
        let model = record.metered.as_ref().map_or("", |m| &*m.model);
        let at = i64::try_from(record.at).unwrap_or(i64::MAX);
        self.tally(record.account).lock().unwrap_or_else(PoisonError::into_inner).add(model, at, &counts);
    }

    /// Adds the sums of the start-up pass, read at `now` (Unix ms).
    pub fn load(&self, sums: &[LoadedSum], now: i64) {
        for s in sums {
            let tally = self.tally(s.account);
            let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
            match s.period {
                Period::Today => t.add(&s.model, now, &s.counts),
                Period::ThisMonth => {
                    t.add_model(&s.model, &s.counts);
                    bump(&mut t.months, start_of_month(now), |c| c.add(&s.counts));
                }
                Period::Earlier => t.add_model(&s.model, &s.counts),
            }
        }
    }

    /// What `account` has been charged, as of `now` (Unix ms).
    pub fn view(&self, account: u64, now: i64) -> AccountView {
        let found = self.accounts.read().unwrap_or_else(PoisonError::into_inner).get(&account).cloned();
        let Some(tally) = found else { return AccountView::default() };
        let t = tally.lock().unwrap_or_else(PoisonError::into_inner);
        let mut per_model: Vec<(String, Counts)> = t.per_model.iter().map(|(m, c)| (m.clone(), *c)).collect();
        per_model.sort_by(|a, b| a.0.cmp(&b.0));
        let mut total = Counts::default();
        for (_, c) in &per_model {
            total.add(c);
        }
        let (month, day) = (start_of_month(now), start_of_day(now));
        AccountView {
            total,
            per_model,
            month: t.months.iter().find(|(s, _)| *s == month).map_or_else(Counts::default, |(_, c)| *c),
            today_requests: t.days.iter().find(|(s, _)| *s == day).map_or(0, |(_, r)| *r),
        }
    }
}

/// The sink billing writes to: each record counted, then journaled, in
/// the same step (under the wallets' lock).
pub struct Tallied {
    pub inner: Arc<dyn Sink>,
    pub totals: Arc<UsageTotals>,
}

impl Sink for Tallied {
    fn record(&self, record: LedgerRecord) {
        self.totals.add(&record);
        self.inner.record(record);
    }

    fn peer(&self, line: PeerLine) {
        self.inner.peer(line);
    }
}

#[cfg(test)]
mod tests;
