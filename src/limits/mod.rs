//! Rate limits on one node, in memory: requests per minute per key (an
//! exact sliding window, per model class), requests per hour per account
//! per endpoint group, messages per day per account (in the plan's time
//! zone), input tokens per minute per key (a token bucket, corrected by the
//! provider's count) and requests in flight per key. A call takes from
//! every limit that applies or from none. Pure: the time comes in, no
//! Pingora; the fleet issue puts the same shape on Redis.

pub mod bucket;
pub mod daily;
pub mod headers;
pub mod window;

use bucket::TokenBucket;
use daily::DailyCap;
use std::collections::HashMap;
use std::sync::Mutex;
use window::SlidingWindow;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const SHARDS: usize = 16;

/// A plan's limits; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanLimits {
    /// Requests per minute per key, for a model without a class of its own below.
    pub rpm: Option<u32>,
    /// Requests per minute per key by model class (seed 003: 600 on Sonnet, 200 on Opus).
    pub rpm_by_class: HashMap<String, u32>,
    /// Requests per hour per account, by endpoint group (`messages`, `responses`, `images`).
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
            rpm: o.rpm.or(class_rpm).or(self.rpm),
            rph: o.rph.or_else(|| self.rph.get(group).copied()),
            daily_messages: o.daily_messages.or(self.daily_messages),
            input_tpm: o.input_tpm.or(self.input_tpm),
            concurrent: o.concurrent.or(self.concurrent),
            zone: self.zone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Rpm,
    Rph,
    Daily,
    InputTpm,
    Concurrent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rpm => "rpm",
            Kind::Rph => "rph",
            Kind::Daily => "daily_messages",
            Kind::InputTpm => "input_tpm",
            Kind::Concurrent => "concurrent",
        }
    }
}

/// A call refused by `kind`: retry after `retry_after_ms` (exact: a retry
/// then passes if nothing else arrived; `u64::MAX` for never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    pub limit: u64,
    pub retry_after_ms: u64,
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
    input_taken: u64,
    in_flight: bool,
    /// Every limit that applied, after the call was counted.
    pub standing: Vec<Standing>,
}

#[derive(Default)]
struct KeyState {
    windows: HashMap<Option<String>, SlidingWindow>,
    bucket: Option<TokenBucket>,
    in_flight: u32,
}

#[derive(Default)]
struct AccountState {
    hourly: HashMap<String, SlidingWindow>,
    daily: Option<DailyCap>,
}

/// One call, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub key: u64,
    pub account: u64,
    pub class: Option<&'a str>,
    pub group: &'a str,
    pub input_estimate: u64,
    pub now: u64,
}

pub struct Limiter {
    keys: Vec<Mutex<HashMap<u64, KeyState>>>,
    accounts: Vec<Mutex<HashMap<u64, AccountState>>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
            accounts: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limiter {
    /// Takes `ask` from every limit in `limits`, or from none: the first
    /// that refuses is returned and nothing is counted.
    pub fn admit(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Permit, Refused> {
        let now = ask.now;
        // Accounts before keys, always: no two calls wait on each other in turn.
        let mut accounts = lock(&self.accounts[ask.account as usize % SHARDS]);
        let mut keys = lock(&self.keys[ask.key as usize % SHARDS]);
        let account = accounts.entry(ask.account).or_default();
        let key = keys.entry(ask.key).or_default();
        let refuse = |kind, limit: u64, retry_after_ms| Err(Refused { kind, limit, retry_after_ms });

        if let Some(limit) = limits.concurrent {
            if key.in_flight >= limit {
                // A slot frees when a call ends; a second is a fair wait.
                return refuse(Kind::Concurrent, u64::from(limit), 1_000);
            }
        }
        let class = ask.class.map(str::to_string);
        if let Some(limit) = limits.rpm {
            let w = key.windows.entry(class.clone()).or_insert_with(|| SlidingWindow::new(limit, MINUTE_MS));
            if w.limit() != limit {
                *w = SlidingWindow::new(limit, MINUTE_MS);
            }
            if let Err(wait) = w.check(now) {
                return refuse(Kind::Rpm, u64::from(limit), wait);
            }
        }
        if let Some(limit) = limits.rph {
            let w = account
                .hourly
                .entry(ask.group.to_string())
                .or_insert_with(|| SlidingWindow::new(limit, HOUR_MS));
            if w.limit() != limit {
                *w = SlidingWindow::new(limit, HOUR_MS);
            }
            if let Err(wait) = w.check(now) {
                return refuse(Kind::Rph, u64::from(limit), wait);
            }
        }
        if let Some(limit) = limits.daily_messages {
            let d = account.daily.get_or_insert_with(|| DailyCap::new(limit, limits.zone));
            if d.limit() != limit {
                *d = DailyCap::new(limit, limits.zone);
            }
            if let Err(wait) = d.check(now) {
                return refuse(Kind::Daily, u64::from(limit), wait);
            }
        }
        if let Some(limit) = limits.input_tpm {
            let b = key.bucket.get_or_insert_with(|| TokenBucket::new(limit, now));
            if b.capacity() != limit {
                *b = TokenBucket::new(limit, now);
            }
            if let Err(wait) = b.check(ask.input_estimate, now) {
                return refuse(Kind::InputTpm, limit, wait);
            }
        }

        // Every limit said yes: take from all of them.
        if limits.concurrent.is_some() {
            key.in_flight += 1;
        }
        if let (Some(_), Some(w)) = (limits.rpm, key.windows.get_mut(&class)) {
            w.take(now);
        }
        if let (Some(_), Some(w)) = (limits.rph, account.hourly.get_mut(ask.group)) {
            w.take(now);
        }
        if let (Some(_), Some(d)) = (limits.daily_messages, account.daily.as_mut()) {
            d.take(now);
        }
        let mut input_taken = 0;
        if let (Some(_), Some(b)) = (limits.input_tpm, key.bucket.as_mut()) {
            b.take(ask.input_estimate, now);
            input_taken = ask.input_estimate;
        }
        let standing = standings(key, account, ask, limits);
        Ok(Permit { key: ask.key, input_taken, in_flight: limits.concurrent.is_some(), standing })
    }

    /// Where each limit of `limits` stands for `ask`'s key and account,
    /// taking nothing (for `whoami` and `usage`).
    pub fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Vec<Standing> {
        let mut accounts = lock(&self.accounts[ask.account as usize % SHARDS]);
        let mut keys = lock(&self.keys[ask.key as usize % SHARDS]);
        standings(keys.entry(ask.key).or_default(), accounts.entry(ask.account).or_default(), ask, limits)
    }

    /// The call ended: its slot is freed and the provider's input count
    /// (when it sent one) corrects the bucket.
    pub fn finish(&self, permit: &Permit, actual_input: Option<u64>, now: u64) {
        let mut keys = lock(&self.keys[permit.key as usize % SHARDS]);
        let Some(key) = keys.get_mut(&permit.key) else { return };
        if permit.in_flight {
            key.in_flight = key.in_flight.saturating_sub(1);
        }
        if let (Some(actual), Some(b)) = (actual_input, key.bucket.as_mut()) {
            if permit.input_taken > 0 {
                b.correct(permit.input_taken, actual, now);
            }
        }
    }
}

/// Where each limit of `limits` stands for a key and its account, in a
/// fixed order (concurrency first); a limit not counted yet stands whole.
fn standings(
    key: &mut KeyState,
    account: &mut AccountState,
    ask: &Ask<'_>,
    limits: &InForce,
) -> Vec<Standing> {
    let now = ask.now;
    let mut out = Vec::with_capacity(5);
    if let Some(limit) = limits.concurrent {
        out.push(Standing {
            kind: Kind::Concurrent,
            limit: limit.into(),
            remaining: limit.saturating_sub(key.in_flight).into(),
            reset_ms: 0,
        });
    }
    if let Some(limit) = limits.rpm {
        let (remaining, reset_ms) = key
            .windows
            .get_mut(&ask.class.map(str::to_string))
            .map_or((limit, 0), |w| (w.remaining(now), w.reset_ms(now)));
        out.push(Standing { kind: Kind::Rpm, limit: limit.into(), remaining: remaining.into(), reset_ms });
    }
    if let Some(limit) = limits.rph {
        let (remaining, reset_ms) =
            account.hourly.get_mut(ask.group).map_or((limit, 0), |w| (w.remaining(now), w.reset_ms(now)));
        out.push(Standing { kind: Kind::Rph, limit: limit.into(), remaining: remaining.into(), reset_ms });
    }
    if let Some(limit) = limits.daily_messages {
        let d = account.daily.get_or_insert_with(|| DailyCap::new(limit, limits.zone));
        let used = d.used(now);
        out.push(Standing {
            kind: Kind::Daily,
            limit: limit.into(),
            remaining: limit.saturating_sub(used).into(),
            reset_ms: d.reset_ms(now),
        });
    }
    if let Some(limit) = limits.input_tpm {
        let (remaining, reset_ms) =
            key.bucket.as_mut().map_or((limit, 0), |b| (b.remaining(now), b.reset_ms(now)));
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
