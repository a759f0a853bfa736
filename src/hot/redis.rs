//! The rate limits on Redis, shared by every node of a fleet: one EVALSHA
//! of `limits.lua` per admit takes a request from every limit that applies
//! or from none, and returns the refusal or the standings; one more gives
//! back or corrects what it took when the call ends. Keys are hash-tagged
//! per account (`tg:{a:<account>}:…`) so the script runs on Redis Cluster.
//! The script's SHA1 is its version: it is loaded at start, and the
//! `redis` crate's `Script` loads it again when Redis answers NOSCRIPT
//! (after a restart or a failover). The connection is a
//! `ConnectionManager`: multiplexed, pipelined, reconnecting by itself.

use crate::limits::daily::{local_day, until_midnight};
use crate::limits::{Ask, InForce, Kind, Refused, Standing};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::time::Duration;

/// The script, its SHA1 its version.
pub const SCRIPT: &str = include_str!("limits.lua");
/// How long a call counts in flight when its node never settles it.
pub const LEASE_MS: u64 = 15 * 60_000;

/// The fleet's live nodes: node id -> when it last said so (ms).
pub const NODES: &str = "tg:nodes";
/// A node not heard from for this long is gone.
pub const NODE_TTL_MS: u64 = 15_000;

/// Redis could not be reached or answered something unexpected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis: {}", self.0)
    }
}

/// What a call took on Redis, to give back or correct when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPermit {
    keys: [String; 6],
    request_id: String,
    day_taken: bool,
    input_taken: u64,
    /// Every limit that applied, after the call was counted.
    pub standing: Vec<Standing>,
}

#[derive(Clone)]
pub struct RedisLimits {
    conn: ConnectionManager,
    script: Script,
}

fn unavailable(e: redis::RedisError) -> Unavailable {
    Unavailable(e.to_string())
}

fn opt<T: Into<u64>>(v: Option<T>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v.into()).unwrap_or(i64::MAX))
}

fn int(v: &Value) -> Result<i64, Unavailable> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(Unavailable(format!("unexpected answer {other:?}"))),
    }
}

impl RedisLimits {
    /// Connects to `url` and loads the script.
    pub async fn connect(url: &str) -> Result<Self, Unavailable> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        let limits = Self { conn, script: Script::new(SCRIPT) };
        limits.load().await?;
        Ok(limits)
    }

    /// SCRIPT LOAD (at start; `invoke` loads it again on NOSCRIPT).
    pub async fn load(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        self.script.prepare_invoke().load_async(&mut conn).await.map_err(unavailable)?;
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

    /// The script's version.
    pub fn version(&self) -> &str {
        self.script.get_hash()
    }

    /// Runs the script once; a dropped connection (the first command after
    /// Redis restarted) is tried once more on the reconnected one.
    async fn invoke(&self, keys: &[String; 6], args: &[String]) -> Result<Value, Unavailable> {
        let mut last = None;
        for _ in 0..2 {
            let mut inv = self.script.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            for a in args {
                inv.arg(a);
            }
            let mut conn = self.conn.clone();
            match inv.invoke_async::<Value>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_connection_dropped() || e.is_io_error() => last = Some(e),
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(last.map_or_else(|| Unavailable("no answer".into()), unavailable))
    }

    fn limit_args(op: &str, id: &str, ask: &Ask<'_>, limits: &InForce) -> Vec<String> {
        let class = if ask.class.is_some() { opt(limits.rpm_class) } else { -1 };
        vec![
            op.into(),
            id.into(),
            opt(limits.concurrent).to_string(),
            opt(limits.rpm).to_string(),
            class.to_string(),
            opt(limits.rph).to_string(),
            opt(limits.daily_messages).to_string(),
            opt(limits.input_tpm).to_string(),
            ask.input_estimate.to_string(),
            until_midnight(ask.now, limits.zone).to_string(),
            LEASE_MS.to_string(),
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
        let keys = keys_in(ask, limits);
        let answer = self.invoke(&keys, &Self::limit_args("admit", id, ask, limits)).await?;
        let Value::Array(items) = answer else { return Err(Unavailable(format!("unexpected {answer:?}"))) };
        if items.first().map(int).transpose()? == Some(0) {
            return Ok(Err(refusal(&items)?));
        }
        Ok(Ok(RedisPermit {
            keys,
            request_id: id.into(),
            day_taken: limits.daily_messages.is_some(),
            input_taken: if limits.input_tpm.is_some() { ask.input_estimate } else { 0 },
            standing: standings(&items, ask, limits)?,
        }))
    }

    /// Where each limit stands for `ask`'s key and account, taking nothing.
    pub async fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Vec<Standing>, Unavailable> {
        let keys = keys_in(ask, limits);
        let answer = self.invoke(&keys, &Self::limit_args("standing", "-", ask, limits)).await?;
        let Value::Array(items) = answer else { return Err(Unavailable(format!("unexpected {answer:?}"))) };
        standings(&items, ask, limits)
    }

    /// The call ended: its slot is freed, the provider's input count
    /// corrects the bucket, an unbilled call gives its message back. Once
    /// per permit: `false` when it was settled already.
    pub async fn finish(
        &self,
        permit: &RedisPermit,
        billed: bool,
        actual_input: Option<u64>,
    ) -> Result<bool, Unavailable> {
        self.settle("finish", permit, billed, actual_input).await
    }

    /// Gives back everything `permit` took (the wallet refused the call).
    pub async fn cancel(&self, permit: &RedisPermit) -> Result<bool, Unavailable> {
        self.settle("cancel", permit, false, Some(0)).await
    }

    async fn settle(
        &self,
        op: &str,
        permit: &RedisPermit,
        billed: bool,
        actual: Option<u64>,
    ) -> Result<bool, Unavailable> {
        let args = vec![
            op.to_string(),
            permit.request_id.clone(),
            u8::from(billed).to_string(),
            u8::from(permit.day_taken).to_string(),
            permit.input_taken.to_string(),
            opt(actual).to_string(),
        ];
        Ok(int(&self.invoke(&permit.keys, &args).await?)? == 1)
    }
}

/// The script's keys for `ask`, all under the account's hash tag; the
/// day is the local day of the plan's zone.
fn keys_in(ask: &Ask<'_>, limits: &InForce) -> [String; 6] {
    let a = format!("tg:{{a:{}}}", ask.account);
    let k = format!("{a}:k:{}", ask.key);
    [
        format!("{k}:inflight"),
        format!("{k}:rpm"),
        format!("{k}:c:{}", ask.class.unwrap_or("")),
        format!("{a}:h:{}", ask.group),
        format!("{a}:d:{}", local_day(ask.now, limits.zone)),
        format!("{k}:tpm"),
    ]
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

#[cfg(test)]
mod tests;
