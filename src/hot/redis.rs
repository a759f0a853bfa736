//! The rate limits and wallets on Redis, shared by every node of a fleet:
//! one FCALL of `admit.lua` (a Redis Function library) per admit takes a
//! request from every limit that applies and holds its cost against the
//! wallet and the key's cap, or takes from none, and returns the refusal
//! or the standings; one more settles it when the call ends (the hold
//! becomes the charge, the limits are given back or corrected); under
//! load, calls of one account go together (`super::batch`). Keys are
//! hash-tagged per account (`tg:{a:<account>}:…`) so it runs on Redis
//! Cluster. The function's name carries its version: the library is
//! loaded at start and again when Redis answers that the function is not
//! found (after a restart without persistence, or a failover). Functions
//! need Redis 7.0 or later (or Valkey). The connection is a
//! `ConnectionManager`: multiplexed, pipelined, reconnecting by itself.

use super::batch::{Call, Lanes};
use crate::limits::daily::{local_day, until_midnight};
use crate::limits::{Ask, InForce, Kind, Refused, Standing};
pub(super) use calls::invoke;
use calls::{fcall, load_library, manager_config, Here};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::sync::Arc;

pub use super::batch::ADMIT_ARGS;
pub use super::keys::{account_tag, wallet_keys};
use super::keys::{join, with_wallet};

/// The admit library (a Redis Function library), and its function, whose
/// name is its version.
pub const LIBRARY: &str = include_str!("admit.lua");
pub const FUNCTION: &str = "tollgate_admit_6";
/// The wallets' script off the request path (see `super::wallet`).
pub const WALLET_SCRIPT: &str = include_str!("wallet.lua");
/// How long a call's hold and in-flight entry last unless its node
/// renews them (it does, every third of this, while the call lives): a
/// node that dies frees what its calls held within this.
pub const LEASE_MS: u64 = 30_000;

/// The fleet's live nodes: node id -> when it last said so (ms).
pub const NODES: &str = "tg:nodes";
/// A node not heard from for this long is gone.
pub const NODE_TTL_MS: u64 = 15_000;

pub use super::unavailable::Unavailable;

/// What a call took on Redis, to give back or correct when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPermit {
    /// Its limit keys (none when it took a hold and no limit).
    keys: Vec<String>,
    account: u64,
    request_id: String,
    day_taken: bool,
    input_taken: u64,
    /// The key a hold was taken for, if one was.
    held_for: Option<u64>,
    /// The hold as the script keeps it ("amount key capped"), so the
    /// settlement need not read it back.
    hold: String,
    /// Taken: the in-flight entry, and the rpm, class and hourly windows.
    in_flight_taken: bool,
    windows_taken: [bool; 3],
    /// Every limit that applied, after the call was counted.
    pub standing: Vec<Standing>,
    /// The wallet's balance after the hold (when one was taken).
    pub available: Option<i64>,
}

/// The sorted sets that keep a call's leases, named when they are
/// renewed (every third of a lease), not at every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leases {
    account: u64,
    held: bool,
    in_flight: Option<String>,
}

impl Leases {
    pub fn is_empty(&self) -> bool {
        !self.held && self.in_flight.is_none()
    }

    fn sets(&self) -> impl Iterator<Item = String> + '_ {
        let leases = self.held.then(|| {
            let [_, _, leases, _] = wallet_keys(self.account);
            leases
        });
        leases.into_iter().chain(self.in_flight.iter().cloned())
    }
}

/// A hold to take with the limits, in the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldAsk {
    pub amount: u64,
    pub key_id: u64,
    pub cap: Option<u64>,
    pub lease_ms: u64,
}

/// Why the wallet or the key's cap refused a hold: what is left, and the
/// most a smaller hold may be (the lesser of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletRefusal {
    pub spend_cap: bool,
    pub left: i64,
    pub budget: i64,
}

impl RedisPermit {
    /// What keeps this call's leases (its hold's, its in-flight entry's),
    /// for its node to renew while it lives.
    pub fn leases(&self) -> Leases {
        Leases {
            account: self.account,
            held: self.held_for.is_some(),
            in_flight: if self.in_flight_taken { self.keys.first().cloned() } else { None },
        }
    }

    /// Whether it took a hold and no limit (its settlement is a `charge`).
    fn hold_only(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// What an admit with a hold came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Taken(Box<RedisPermit>),
    Limit(Refused),
    Wallet(WalletRefusal),
    /// The wallet is not on Redis yet (or Redis lost it): seed it from
    /// the ledger, then ask again.
    Unseeded,
}

#[derive(Clone)]
pub struct RedisState {
    /// For the connections of their own (the change feed's subscription).
    pub(super) client: redis::Client,
    /// Leases of holds and in-flight entries (see [`LEASE_MS`]).
    pub lease_ms: u64,
    /// The admits' way to Redis, and their batches (see `super::batch`).
    here: Arc<Here>,
    lanes: Arc<Lanes>,
    pub(super) conn: ConnectionManager,
    pub(super) wallet_script: Script,
}

pub(super) fn unavailable(e: redis::RedisError) -> Unavailable {
    Unavailable(e.to_string())
}

fn opt<T: Into<u64>>(v: Option<T>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v.into()).unwrap_or(i64::MAX))
}

pub(super) fn int(v: &Value) -> Result<i64, Unavailable> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(Unavailable(format!("unexpected answer {other:?}"))),
    }
}

impl RedisState {
    /// Connects to `url` and loads the script.
    pub async fn connect(url: &str) -> Result<Self, Unavailable> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .map_err(unavailable)?;
        let state = Self {
            client: client.clone(),
            lease_ms: LEASE_MS,
            conn,
            here: Arc::new(Here { client: client.clone(), conn: tokio::sync::OnceCell::new() }),
            lanes: Arc::new(Lanes::default()),
            wallet_script: Script::new(WALLET_SCRIPT),
        };
        state.load().await?;
        Ok(state)
    }

    /// FUNCTION LOAD and SCRIPT LOAD (at start; `fcall` and `invoke` load
    /// them again when Redis lost them).
    pub async fn load(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        load_library(&mut conn).await?;
        self.wallet_script.prepare_invoke().load_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    /// Says `node` is alive at `now_ms` (its wall clock) and counts the
    /// nodes alive: the fleet size the limits are divided by while Redis
    /// is down (`on_failure: open`).
    pub async fn heartbeat(&self, node: &str, now_ms: u64) -> Result<u64, Unavailable> {
        let mut conn = self.conn.clone();
        let gone = now_ms.saturating_sub(NODE_TTL_MS);
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(NODES)
            .arg(now_ms)
            .arg(node)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES)
            .arg("-inf")
            .arg(gone)
            .ignore()
            .cmd("PEXPIRE")
            .arg(NODES)
            .arg(NODE_TTL_MS)
            .ignore()
            .cmd("ZCARD")
            .arg(NODES)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(count)
    }

    /// PING on this connection.
    pub async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// Pushes the leases of calls still running to `lease_ms` from now
    /// (never shortening one): `calls` are (request id, its lease sets).
    pub async fn renew(&self, calls: &[(String, Leases)], now_ms: u64) -> Result<(), Unavailable> {
        if calls.is_empty() {
            return Ok(());
        }
        let until = now_ms.saturating_add(self.lease_ms);
        let mut pipe = redis::pipe();
        for (id, leases) in calls {
            for set in leases.sets() {
                pipe.cmd("ZADD").arg(set).arg("XX").arg("GT").arg(until).arg(id).ignore();
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// The admit function's name: its version.
    pub fn version(&self) -> &str {
        FUNCTION
    }

    /// Calls the admit function once (see `fcall`).
    async fn invoke(&self, keys: &[String], args: &[String]) -> Result<Value, Unavailable> {
        fcall(&self.conn, keys, args).await
    }

    fn limit_args(
        &self,
        op: &str,
        id: &str,
        ask: &Ask<'_>,
        limits: &InForce,
        hold: Option<&HoldAsk>,
    ) -> Vec<String> {
        let class = if ask.class.is_some() { opt(limits.rpm_class) } else { -1 };
        let (amount, key, cap, lease) = match hold {
            Some(h) => (opt(Some(h.amount)), decimal(h.key_id), opt(h.cap), h.lease_ms),
            None => (-1, "-".into(), -1, 0),
        };
        vec![
            op.into(),
            id.into(),
            decimal(opt(limits.concurrent)),
            decimal(opt(limits.rpm)),
            decimal(class),
            decimal(opt(limits.rph)),
            decimal(opt(limits.daily_messages)),
            decimal(opt(limits.input_tpm)),
            decimal(ask.input_estimate),
            decimal(until_midnight(ask.now, limits.zone)),
            decimal(self.lease_ms),
            decimal(amount),
            key,
            decimal(cap),
            decimal(lease),
        ]
    }

    /// Takes `ask` (request `id`) from every limit in `limits`, or from
    /// none: `Ok(Err(refused))` names the first that refused. `ask.now`
    /// (the node's wall clock) picks the local day; every duration is
    /// measured on Redis's clock.
    pub async fn admit(
        &self,
        ask: &Ask<'_>,
        limits: &InForce,
        id: &str,
    ) -> Result<Result<RedisPermit, Refused>, Unavailable> {
        match self.take(ask, limits, id, None).await? {
            Answer::Taken(permit) => Ok(Ok(*permit)),
            Answer::Limit(refused) => Ok(Err(refused)),
            other => Err(Unavailable(format!("a wallet answer with no hold asked: {other:?}"))),
        }
    }

    /// The same, and `hold` against the wallet and the key's cap in the
    /// same step (one round trip): all of it is taken, or none.
    pub async fn take(
        &self,
        ask: &Ask<'_>,
        limits: &InForce,
        id: &str,
        hold: Option<&HoldAsk>,
    ) -> Result<Answer, Unavailable> {
        let call = match hold {
            Some(h) if !limits.any() => Call { keys: Vec::new(), args: hold_args(id, h) },
            _ => {
                Call { keys: limit_keys(ask, limits), args: self.limit_args("admit", id, ask, limits, hold) }
            }
        };
        let (answer, keys) = self.lanes.admit(&self.here, ask.account, call).await?;
        let Value::Array(items) = answer else { return Err(Unavailable(format!("unexpected {answer:?}"))) };
        match items.first().map(int).transpose()? {
            Some(2) => return Ok(Answer::Unseeded),
            Some(0) => {
                return match items.get(1) {
                    Some(Value::BulkString(b)) if b == b"wallet" || b == b"spend_cap" => {
                        Ok(Answer::Wallet(WalletRefusal {
                            spend_cap: b == b"spend_cap",
                            left: items.get(2).map_or(Ok(0), int)?,
                            budget: items.get(3).map_or(Ok(0), int)?,
                        }))
                    }
                    _ => Ok(Answer::Limit(refusal(&items)?)),
                };
            }
            _ => {}
        }
        Ok(Answer::Taken(Box::new(RedisPermit {
            keys,
            account: ask.account,
            request_id: id.into(),
            day_taken: limits.daily_messages.is_some(),
            input_taken: if limits.input_tpm.is_some() { ask.input_estimate } else { 0 },
            held_for: hold.map(|h| h.key_id),
            hold: hold.map_or_else(String::new, |h| {
                let mut num = itoa::Buffer::new();
                let amount = num.format(h.amount).to_owned();
                join(&[&amount, " ", num.format(h.key_id), if h.cap.is_some() { " 1" } else { " 0" }])
            }),
            in_flight_taken: limits.concurrent.is_some() || hold.is_none(),
            windows_taken: [
                limits.rpm.is_some(),
                limits.rpm_class.is_some() && ask.class.is_some(),
                limits.rph.is_some(),
            ],
            standing: standings(&items, ask, limits)?,
            available: if hold.is_some() { items.get(12).map(int).transpose()? } else { None },
        })))
    }

    /// Where each limit stands for `ask`'s key and account, taking nothing.
    pub async fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Vec<Standing>, Unavailable> {
        let keys = with_wallet(ask.account, limit_keys(ask, limits));
        let answer = self.invoke(&keys, &self.limit_args("standing", "-", ask, limits, None)).await?;
        let Value::Array(items) = answer else { return Err(Unavailable(format!("unexpected {answer:?}"))) };
        standings(&items, ask, limits)
    }

    /// The call ended: its slot is freed, the provider's input count
    /// corrects the bucket, an unbilled call gives its message back, and
    /// its hold becomes the charge `charged` (journaled as
    /// `<request id>:charge`). Once per permit: `false` when its slot was
    /// settled already.
    pub async fn finish(
        &self,
        permit: &RedisPermit,
        billed: bool,
        actual_input: Option<u64>,
        charged: u64,
    ) -> Result<bool, Unavailable> {
        self.settle("finish", permit, billed, actual_input, charged).await
    }

    /// Gives back everything `permit` took.
    pub async fn cancel(&self, permit: &RedisPermit) -> Result<bool, Unavailable> {
        self.settle("cancel", permit, false, Some(0), 0).await
    }

    async fn settle(
        &self,
        op: &str,
        permit: &RedisPermit,
        billed: bool,
        actual: Option<u64>,
        charged: u64,
    ) -> Result<bool, Unavailable> {
        let args = settle_args(op, permit, billed, actual, charged);
        let keys = with_wallet(permit.account, permit.keys.iter().cloned());
        Ok(int(&self.invoke(&keys, &args).await?)? == 1)
    }

    /// Settles calls of one account (their keys share its hash slot) in
    /// one call: (permit, billed, the provider's input count, charged)
    /// each. (A node's settlements go by `finish_soon`; this sends a
    /// given batch, twice if a test wants.)
    #[cfg(test)]
    pub async fn finish_many(
        &self,
        calls: &[(&RedisPermit, bool, Option<u64>, u64)],
    ) -> Result<(), Unavailable> {
        let account = calls.first().map_or(0, |c| c.0.account);
        let keys = with_wallet(account, calls.iter().flat_map(|c| c.0.keys.iter().cloned()));
        let mut args = Vec::with_capacity(2 + calls.len() * ADMIT_ARGS);
        args.push("many".to_string());
        args.push(calls.len().to_string());
        for (permit, billed, actual, charged) in calls {
            args.extend(settle_args("finish", permit, *billed, *actual, *charged));
        }
        self.invoke(&keys, &args).await.map(drop)
    }

    /// The call ended (see `finish`): settled with the account's next
    /// batch of calls, or at once on a task of its own; nothing waits
    /// for it. Its permit's keys go with it.
    pub fn finish_soon(
        &self,
        permit: Box<RedisPermit>,
        billed: bool,
        actual_input: Option<u64>,
        charged: u64,
    ) {
        let args = settle_args("finish", &permit, billed, actual_input, charged);
        let RedisPermit { keys, account, .. } = *permit;
        self.lanes.settle(&self.here, account, Call { keys, args });
    }
}

/// The limit keys of a call for `ask`, all under the account's hash tag;
/// the day is the local day of the plan's zone. (Joined by hand:
/// `format!` cost more than the rest of the admit's work on the node.)
fn limit_keys(ask: &Ask<'_>, limits: &InForce) -> Vec<String> {
    let a = account_tag(ask.account);
    let k = join(&[&a, ":k:", itoa::Buffer::new().format(ask.key)]);
    vec![
        join(&[&k, ":inflight"]),
        join(&[&k, ":rpm"]),
        join(&[&k, ":c:", ask.class.unwrap_or("")]),
        join(&[&a, ":h:", ask.group]),
        join(&[&a, ":d:", itoa::Buffer::new().format(local_day(ask.now, limits.zone))]),
        join(&[&k, ":tpm"]),
    ]
}

/// A hold with no limit: the `hold` op's arguments.
fn hold_args(id: &str, h: &HoldAsk) -> Vec<String> {
    vec![
        "hold".into(),
        id.into(),
        decimal(h.amount),
        decimal(h.key_id),
        decimal(opt(h.cap)),
        decimal(h.lease_ms),
    ]
}

fn decimal<T: itoa::Integer>(v: T) -> String {
    itoa::Buffer::new().format(v).to_owned()
}

/// A settlement's arguments, in the finish/cancel layout, or the
/// `charge` op's when the call took a hold and no limit (a cancel charges
/// nothing).
fn settle_args(
    op: &str,
    permit: &RedisPermit,
    billed: bool,
    actual: Option<u64>,
    charged: u64,
) -> Vec<String> {
    if let (true, Some(key)) = (permit.hold_only(), permit.held_for) {
        let charged = if op == "finish" { charged } else { 0 };
        return vec![
            "charge".into(),
            permit.request_id.clone(),
            decimal(charged),
            decimal(key),
            permit.hold.clone(),
        ];
    }
    vec![
        op.to_string(),
        permit.request_id.clone(),
        flag(billed),
        flag(permit.day_taken),
        decimal(permit.input_taken),
        decimal(opt(actual)),
        flag(permit.held_for.is_some()),
        decimal(charged),
        permit.held_for.map_or_else(|| "-".to_string(), decimal),
        join(&[&permit.request_id, ":charge"]),
        flag(permit.in_flight_taken),
        flag(permit.windows_taken[0]),
        flag(permit.windows_taken[1]),
        flag(permit.windows_taken[2]),
        permit.hold.clone(),
    ]
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

fn refusal(items: &[Value]) -> Result<Refused, Unavailable> {
    let kind = match items.get(1) {
        Some(Value::BulkString(b)) => match b.as_slice() {
            b"concurrent" => Kind::Concurrent,
            b"rpm" => Kind::Rpm,
            b"rpm_by_class" => Kind::RpmClass,
            b"rph" => Kind::Rph,
            b"daily_messages" => Kind::Daily,
            b"input_tpm" => Kind::InputTpm,
            other => return Err(Unavailable(format!("unknown kind {}", String::from_utf8_lossy(other)))),
        },
        other => return Err(Unavailable(format!("unexpected kind {other:?}"))),
    };
    let num = |i: usize| items.get(i).map_or(Err(Unavailable("short answer".into())), int);
    let limit = u64::try_from(num(2)?).unwrap_or(0);
    let retry = num(3)?;
    let retry_after_ms = if retry < 0 { u64::MAX } else { u64::try_from(retry).unwrap_or(u64::MAX) };
    Ok(Refused { kind, limit, retry_after_ms })
}

/// The standings in the in-memory limiter's order (concurrency first).
fn standings(items: &[Value], ask: &Ask<'_>, limits: &InForce) -> Result<Vec<Standing>, Unavailable> {
    let n = |i: usize| -> Result<u64, Unavailable> {
        Ok(u64::try_from(items.get(i).map_or(Err(Unavailable("short answer".into())), int)?).unwrap_or(0))
    };
    let mut out = Vec::with_capacity(6);
    let mut push = |kind, limit: u64, used: u64, reset_ms| {
        out.push(Standing { kind, limit, remaining: limit.saturating_sub(used), reset_ms });
    };
    if let Some(limit) = limits.concurrent {
        push(Kind::Concurrent, limit.into(), n(2)?, 0);
    }
    if let Some(limit) = limits.rpm {
        push(Kind::Rpm, limit.into(), n(3)?, n(4)?);
    }
    if let (Some(limit), Some(_)) = (limits.rpm_class, ask.class) {
        push(Kind::RpmClass, limit.into(), n(5)?, n(6)?);
    }
    if let Some(limit) = limits.rph {
        push(Kind::Rph, limit.into(), n(7)?, n(8)?);
    }
    if let Some(limit) = limits.daily_messages {
        push(Kind::Daily, limit.into(), n(9)?, until_midnight(ask.now, limits.zone));
    }
    if let Some(limit) = limits.input_tpm {
        out.push(Standing { kind: Kind::InputTpm, limit, remaining: n(10)?, reset_ms: n(11)? });
    }
    Ok(out)
}

mod calls;
#[cfg(test)]
mod tests;
