//! Rate limits on one node, in memory: requests per minute per key (an
//! exact sliding window across models, and one per model class where the
//! plan names the class), requests per hour per account per endpoint group,
//! messages per day per account (in the plan's time zone), input tokens
//! per minute per key (a token bucket, corrected by the provider's count)
//! and requests in flight per key. A call takes from every limit that
//! applies or from none. Counters belong to the key or the account, apart
//! from thresholds: each call is judged against the limits in force for
//! it, and a change of limit moves the threshold, never the count. Pure:
//! the time comes in (wall clock for the day, a monotonic one for
//! durations), no Pingora; the fleet issue puts the same shape on Redis.

pub mod bucket;
pub mod daily;
pub mod headers;
pub mod window;

use bucket::TokenBucket;
use daily::DailyCap;
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use window::SlidingWindow;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const SHARDS: usize = 16;
/// A shard frees its idle keys and accounts every this many calls.
const SWEEP_EVERY: u64 = 4096;

/// A plan's limits; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanLimits {
    /// Requests per minute per key, across every model.
    pub rpm: Option<u32>,
    /// Requests per minute per key on the models of a class, on top of
    /// `rpm` (seed 003: 600 a minute per key, 200 of them Opus).
    pub rpm_by_class: HashMap<String, u32>,
    /// Requests per hour per account, by endpoint group (`messages`, `responses`).
    pub rph: HashMap<String, u32>,
    pub daily_messages: Option<u32>,
    pub input_tpm: Option<u64>,
    pub concurrent: Option<u32>,
    /// The time zone of the day the daily cap counts.
    pub zone: daily::Zone,
}

/// A key's overrides: each replaces the plan's value (for every class or group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub rpm: Option<u32>,
    pub rph: Option<u32>,
    pub daily_messages: Option<u32>,
    pub input_tpm: Option<u64>,
    pub concurrent: Option<u32>,
}

/// The limits in force for one call: the plan's, with the key's overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InForce {
    pub rpm: Option<u32>,
    /// The call's model class's own per-minute limit, when the plan names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_class: Option<u32>,
    pub rph: Option<u32>,
    pub daily_messages: Option<u32>,
    pub input_tpm: Option<u64>,
    pub concurrent: Option<u32>,
    #[serde(skip)]
    pub zone: daily::Zone,
}

impl PlanLimits {
    pub fn in_force(&self, class: Option<&str>, group: &str, o: &Overrides) -> InForce {
        let class_rpm = class.and_then(|c| self.rpm_by_class.get(c).copied());
        InForce {
            rpm: o.rpm.or(self.rpm),
            rpm_class: class_rpm.map(|plan| o.rpm.unwrap_or(plan)),
            rph: o.rph.or_else(|| self.rph.get(group).copied()),
            daily_messages: o.daily_messages.or(self.daily_messages),
            input_tpm: o.input_tpm.or(self.input_tpm),
            concurrent: o.concurrent.or(self.concurrent),
            zone: self.zone,
        }
    }
}

impl InForce {
    /// Whether any limit applies at all (a call under none is not counted).
    pub fn any(&self) -> bool {
        self.rpm.is_some()
            || self.rpm_class.is_some()
            || self.rph.is_some()
            || self.daily_messages.is_some()
            || self.input_tpm.is_some()
            || self.concurrent.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Rpm,
    RpmClass,
    Rph,
    Daily,
    InputTpm,
    Concurrent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rpm => "rpm",
            Kind::RpmClass => "rpm_by_class",
            Kind::Rph => "rph",
            Kind::Daily => "daily_messages",
            Kind::InputTpm => "input_tpm",
            Kind::Concurrent => "concurrent",
        }
    }

    /// Whether it counts requests over time (the request-rate headers).
    pub fn counts_requests(self) -> bool {
        matches!(self, Kind::Rpm | Kind::RpmClass | Kind::Rph | Kind::Daily)
    }
}

/// A call refused by `kind`: retry after `retry_after_ms` (exact: a retry
/// then passes if nothing else arrived; `u64::MAX` for never: a limit of
/// 0, which blocks, or a request larger than the whole token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    pub limit: u64,
    pub retry_after_ms: u64,
}

impl Refused {
    /// A limit of 0: nothing is ever let through.
    pub fn blocked(&self) -> bool {
        self.limit == 0
    }
}

/// Where one limit stands after a call, for the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub kind: Kind,
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// What a call took, to give back or correct when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    key: u64,
    account: u64,
    /// The class window it took from: the map's own key, shared.
    class: Option<Arc<str>>,
    group: &'static str,
    /// Monotonic time it was taken at.
    at: u64,
    total: bool,
    by_class: bool,
    hourly: bool,
    /// The local day the daily cap counted it on.
    day: Option<i64>,
    input_taken: u64,
    in_flight: bool,
    /// Every limit that applied, after the call was counted.
    pub standing: Vec<Standing>,
}

#[derive(Default)]
struct KeyState {
    total: Option<SlidingWindow>,
    by_class: HashMap<Arc<str>, SlidingWindow>,
    bucket: Option<TokenBucket>,
    in_flight: u32,
}

impl KeyState {
    fn idle(&mut self, mono: u64) -> bool {
        self.in_flight == 0
            && self.total.as_mut().is_none_or(|w| w.count(mono) == 0)
            && self.by_class.values_mut().all(|w| w.count(mono) == 0)
            && self.bucket.as_mut().is_none_or(|b| b.full(mono))
    }
}

#[derive(Default)]
struct AccountState {
    hourly: HashMap<&'static str, SlidingWindow>,
    daily: DailyCap,
    /// The zone its day was last counted in.
    zone: daily::Zone,
}

impl AccountState {
    fn idle(&mut self, mono: u64, now: u64) -> bool {
        self.hourly.values_mut().all(|w| w.count(mono) == 0) && self.daily.idle(now, self.zone)
    }
}

/// One call, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub key: u64,
    pub account: u64,
    pub class: Option<&'a str>,
    /// The endpoint group (`Endpoint::limit_group`): one of a few names.
    pub group: &'static str,
    pub input_estimate: u64,
    /// Wall-clock milliseconds since the epoch: the day of the daily cap.
    pub now: u64,
    /// Monotonic milliseconds: windows, buckets.
    pub mono: u64,
}

pub struct Limiter {
    keys: Vec<Mutex<HashMap<u64, KeyState>>>,
    accounts: Vec<Mutex<HashMap<u64, AccountState>>>,
    calls: Vec<AtomicU64>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
            accounts: (0..SHARDS).map(|_| Mutex::default()).collect(),
            calls: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard(id: u64) -> usize {
    (id % SHARDS as u64) as usize
}

impl Limiter {
    /// Takes `ask` from every limit in `limits`, or from none: the first
    /// that refuses is returned and nothing is counted.
    pub fn admit(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Permit, Refused> {
        let (now, mono) = (ask.now, ask.mono);
        if self.calls[shard(ask.key)].fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(shard(ask.key), mono, now);
        }
        // Accounts before keys, always: no two calls wait on each other in turn.
        let mut accounts = lock(&self.accounts[shard(ask.account)]);
        let mut keys = lock(&self.keys[shard(ask.key)]);
        let account = accounts.entry(ask.account).or_default();
        let key = keys.entry(ask.key).or_default();
        let refuse =
            |kind, limit: u32, retry_after_ms| Err(Refused { kind, limit: u64::from(limit), retry_after_ms });

        if let Some(limit) = limits.concurrent {
            if key.in_flight >= limit {
                // A slot frees when a call ends; a second is a fair wait.
                return refuse(Kind::Concurrent, limit, if limit == 0 { u64::MAX } else { 1_000 });
            }
        }
        if let Some(limit) = limits.rpm {
            let w = key.total.get_or_insert_with(|| SlidingWindow::new(MINUTE_MS));
            if let Err(wait) = w.check(mono, limit) {
                return refuse(Kind::Rpm, limit, wait);
            }
        }
        let class = match (limits.rpm_class, ask.class) {
            (Some(limit), Some(c)) => {
                let (name, w) = class_window(&mut key.by_class, c);
                if let Err(wait) = w.check(mono, limit) {
                    return refuse(Kind::RpmClass, limit, wait);
                }
                Some(name)
            }
            _ => None,
        };
        if let Some(limit) = limits.rph {
            let w = account.hourly.entry(ask.group).or_insert_with(|| SlidingWindow::new(HOUR_MS));
            if let Err(wait) = w.check(mono, limit) {
                return refuse(Kind::Rph, limit, wait);
            }
        }
        if let Some(limit) = limits.daily_messages {
            account.zone = limits.zone;
            if let Err(wait) = account.daily.check(now, limit, limits.zone) {
                return refuse(Kind::Daily, limit, wait);
            }
        }
        if let Some(limit) = limits.input_tpm {
            let b = key.bucket.get_or_insert_with(|| TokenBucket::new(limit, mono));
            b.resize(limit, mono);
            let checked = if limit == 0 { Err(u64::MAX) } else { b.check(ask.input_estimate, mono) };
            if let Err(wait) = checked {
                return Err(Refused { kind: Kind::InputTpm, limit, retry_after_ms: wait });
            }
        }

        // Every limit said yes: take from all of them.
        let mut permit = Permit {
            key: ask.key,
            account: ask.account,
            class: None,
            group: ask.group,
            at: mono,
            total: false,
            by_class: false,
            hourly: false,
            day: None,
            input_taken: 0,
            in_flight: false,
            standing: Vec::new(),
        };
        // Every call in flight is counted, whether or not a concurrency
        // limit applies to it: one set while calls run (a key PATCHed to
        // `concurrent: 1`) counts them too.
        key.in_flight = key.in_flight.saturating_add(1);
        permit.in_flight = true;
        if let (Some(_), Some(w)) = (limits.rpm, key.total.as_mut()) {
            w.take(mono);
            permit.total = true;
        }
        if let Some(w) = class.as_deref().and_then(|c| key.by_class.get_mut(c)) {
            w.take(mono);
            permit.by_class = true;
        }
        permit.class = class;
        if let (Some(_), Some(w)) = (limits.rph, account.hourly.get_mut(ask.group)) {
            w.take(mono);
            permit.hourly = true;
        }
        if limits.daily_messages.is_some() {
            permit.day = Some(account.daily.take(now, limits.zone));
        }
        if let (Some(_), Some(b)) = (limits.input_tpm, key.bucket.as_mut()) {
            b.take(ask.input_estimate, mono);
            permit.input_taken = ask.input_estimate;
        }
        permit.standing = standings(key, account, ask, limits);
        Ok(permit)
    }

    /// Counts a call made before a restart (from the ledger) into the
    /// limits that would have counted it, without judging it: a restart
    /// grants no new allowance. `ask.mono` is when it happened on this
    /// process's monotonic clock (in the past).
    pub fn replay(&self, ask: &Ask<'_>, limits: &InForce) {
        let mut accounts = lock(&self.accounts[shard(ask.account)]);
        let mut keys = lock(&self.keys[shard(ask.key)]);
        let account = accounts.entry(ask.account).or_default();
        let key = keys.entry(ask.key).or_default();
        if limits.rpm.is_some() {
            key.total.get_or_insert_with(|| SlidingWindow::new(MINUTE_MS)).take(ask.mono);
        }
        if let (Some(_), Some(c)) = (limits.rpm_class, ask.class) {
            class_window(&mut key.by_class, c).1.take(ask.mono);
        }
        if limits.rph.is_some() {
            account.hourly.entry(ask.group).or_insert_with(|| SlidingWindow::new(HOUR_MS)).take(ask.mono);
        }
        if limits.daily_messages.is_some() {
            account.zone = limits.zone;
            account.daily.take(ask.now, limits.zone);
        }
    }

    /// Where each limit of `limits` stands for `ask`'s key and account,
    /// taking nothing (for `whoami` and `usage`).
    pub fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Vec<Standing> {
        let mut accounts = lock(&self.accounts[shard(ask.account)]);
        let mut keys = lock(&self.keys[shard(ask.key)]);
        standings(keys.entry(ask.key).or_default(), accounts.entry(ask.account).or_default(), ask, limits)
    }

    /// The messages `account` has been let through today (in `zone`): the
    /// count itself, which may pass a lower limit one of its keys has.
    pub fn daily_used(&self, account: u64, now: u64, zone: daily::Zone) -> u64 {
        lock(&self.accounts[shard(account)])
            .get_mut(&account)
            .map_or(0, |a| u64::from(a.daily.used(now, zone)))
    }

    /// Gives back everything `permit` took: its call was refused after the
    /// limits let it through (the wallet could not hold it).
    pub fn cancel(&self, permit: &Permit, mono: u64) {
        let mut accounts = lock(&self.accounts[shard(permit.account)]);
        let mut keys = lock(&self.keys[shard(permit.key)]);
        if let Some(account) = accounts.get_mut(&permit.account) {
            if permit.hourly {
                if let Some(w) = account.hourly.get_mut(permit.group) {
                    w.untake(permit.at);
                }
            }
            if let Some(day) = permit.day {
                account.daily.untake(day);
            }
        }
        if let Some(key) = keys.get_mut(&permit.key) {
            if permit.total {
                if let Some(w) = key.total.as_mut() {
                    w.untake(permit.at);
                }
            }
            if let (true, Some(c)) = (permit.by_class, permit.class.as_deref()) {
                if let Some(w) = key.by_class.get_mut(c) {
                    w.untake(permit.at);
                }
            }
            if permit.in_flight {
                key.in_flight = key.in_flight.saturating_sub(1);
            }
            if let (Some(b), true) = (key.bucket.as_mut(), permit.input_taken > 0) {
                b.correct(permit.input_taken, 0, mono);
            }
        }
    }

    /// The call ended: its slot is freed, the provider's input count (when
    /// it sent one) corrects the bucket, and a call that was not billed
    /// gives its daily message back.
    pub fn finish(&self, permit: &Permit, billed: bool, actual_input: Option<u64>, mono: u64) {
        if !billed {
            if let Some(day) = permit.day {
                if let Some(account) = lock(&self.accounts[shard(permit.account)]).get_mut(&permit.account) {
                    account.daily.untake(day);
                }
            }
        }
        let mut keys = lock(&self.keys[shard(permit.key)]);
        let Some(key) = keys.get_mut(&permit.key) else { return };
        if permit.in_flight {
            key.in_flight = key.in_flight.saturating_sub(1);
        }
        let actual = if billed { actual_input } else { Some(0) };
        if let (Some(actual), Some(b)) = (actual, key.bucket.as_mut()) {
            if permit.input_taken > 0 {
                b.correct(permit.input_taken, actual, mono);
            }
        }
    }

    /// Frees the keys and accounts of shard `i` that hold nothing: no call
    /// in flight, every window aged out, a full bucket, no message counted
    /// today. Memory is bounded by the active keys and accounts.
    fn sweep(&self, i: usize, mono: u64, now: u64) {
        let mut keys = lock(&self.keys[i]);
        keys.retain(|_, k| !k.idle(mono));
        if keys.len() < keys.capacity() / 4 {
            keys.shrink_to_fit();
        }
        drop(keys);
        let mut accounts = lock(&self.accounts[i]);
        accounts.retain(|_, a| !a.idle(mono, now));
        if accounts.len() < accounts.capacity() / 4 {
            accounts.shrink_to_fit();
        }
    }

    /// Frees every idle key and account now (see `sweep`).
    pub fn sweep_all(&self, mono: u64, now: u64) {
        for i in 0..SHARDS {
            self.sweep(i, mono, now);
        }
    }

    /// Keys and accounts with state kept.
    pub fn tracked(&self) -> (usize, usize) {
        let keys = self.keys.iter().map(|s| lock(s).len()).sum();
        let accounts = self.accounts.iter().map(|s| lock(s).len()).sum();
        (keys, accounts)
    }
}

/// The per-minute window of model class `c`, made on its first call, and
/// the map's own name for it: a permit keeps that name (a count, not a
/// copy: a `String` per call was two allocations).
fn class_window<'m>(
    by_class: &'m mut HashMap<Arc<str>, SlidingWindow>,
    c: &str,
) -> (Arc<str>, &'m mut SlidingWindow) {
    let name = by_class.get_key_value(c).map_or_else(|| Arc::from(c), |(name, _)| name.clone());
    let window = by_class.entry(name.clone()).or_insert_with(|| SlidingWindow::new(MINUTE_MS));
    (name, window)
}

/// Where each limit of `limits` stands for a key and its account, in a
/// fixed order (concurrency first); a limit not counted yet stands whole.
fn standings(
    key: &mut KeyState,
    account: &mut AccountState,
    ask: &Ask<'_>,
    limits: &InForce,
) -> Vec<Standing> {
    let mono = ask.mono;
    let mut out = Vec::with_capacity(6);
    let window = |w: Option<&mut SlidingWindow>, limit: u32| {
        w.map_or((u64::from(limit), 0), |w| (w.remaining(mono, limit), w.reset_ms(mono)))
    };
    if let Some(limit) = limits.concurrent {
        out.push(Standing {
            kind: Kind::Concurrent,
            limit: limit.into(),
            remaining: limit.saturating_sub(key.in_flight).into(),
            reset_ms: 0,
        });
    }
    if let Some(limit) = limits.rpm {
        let (remaining, reset_ms) = window(key.total.as_mut(), limit);
        out.push(Standing { kind: Kind::Rpm, limit: limit.into(), remaining, reset_ms });
    }
    if let (Some(limit), Some(c)) = (limits.rpm_class, ask.class) {
        let (remaining, reset_ms) = window(key.by_class.get_mut(c), limit);
        out.push(Standing { kind: Kind::RpmClass, limit: limit.into(), remaining, reset_ms });
    }
    if let Some(limit) = limits.rph {
        let (remaining, reset_ms) = window(account.hourly.get_mut(ask.group), limit);
        out.push(Standing { kind: Kind::Rph, limit: limit.into(), remaining, reset_ms });
    }
    if let Some(limit) = limits.daily_messages {
        let used = account.daily.used(ask.now, limits.zone);
        out.push(Standing {
            kind: Kind::Daily,
            limit: limit.into(),
            remaining: limit.saturating_sub(used).into(),
            reset_ms: account.daily.reset_ms(ask.now, limits.zone),
        });
    }
    if let Some(limit) = limits.input_tpm {
        let (remaining, reset_ms) =
            key.bucket.as_mut().map_or((limit, 0), |b| (b.remaining(mono), b.reset_ms(mono)));
        out.push(Standing { kind: Kind::InputTpm, limit, remaining, reset_ms });
    }
    out
}

/// The limit closest to refusing: the one the rate-limit headers describe.
pub fn tightest<'a>(standing: impl IntoIterator<Item = &'a Standing>) -> Option<&'a Standing> {
    standing.into_iter().min_by(|a, b| {
        // Compare remaining/limit as fractions, in integers.
        (u128::from(a.remaining) * u128::from(b.limit.max(1)))
            .cmp(&(u128::from(b.remaining) * u128::from(a.limit.max(1))))
    })
}

#[cfg(test)]
mod tests;
