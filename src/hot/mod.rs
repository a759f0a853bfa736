//! Hot state shared by a fleet (issue #18): the rate limits and the
//! wallets' holds on Redis (`redis`, `wallet`), with the same semantics
//! as the in-memory limiter of `crate::limits` and the wallets of
//! `crate::billing`, which stay pure (no Tokio, no Redis) and serve a
//! single node, and a fleet node whose Redis is down under
//! `on_failure: open`. `Taken` is what a call took from either, settled
//! when the call ends. `sidecar` seeds wallets from the ledger and
//! reconciles them with it; `changes` carries the admin API's changes to
//! every node.

pub mod batch;
pub mod changes;
pub mod keys;
pub mod redis;
pub mod sidecar;
pub mod unavailable;
pub mod wallet;

#[cfg(test)]
pub(crate) mod testing;

use crate::config::{HotStateSection, OnFailure};
use crate::limits::{Ask, InForce, Limiter, Permit, Refused, Standing};
use redis::{Answer, HoldAsk, RedisPermit, RedisState, Unavailable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// After Redis failed a call, how long calls go without asking it (so a
/// Redis that does not answer costs one timeout, not one per call).
const BACK_OFF_MS: u64 = 500;

/// How often a node says it is alive and counts the fleet.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The limits on Redis and what to do when Redis is down.
pub struct Hot {
    pub redis: RedisState,
    pub on_failure: OnFailure,
    /// The fleet size last seen (1 until seen).
    fleet: Arc<AtomicU64>,
    /// Until when (wall ms) Redis is taken as down.
    down_until: AtomicU64,
    /// This node's id in the fleet.
    pub node: String,
    /// Calls this node holds on Redis, whose leases it renews.
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, redis::Leases>>>,
}

/// What an admit with a hold came to.
pub enum Held {
    Taken(Taken),
    Limit(Refused),
    Wallet(redis::WalletRefusal),
    Unseeded,
}

/// What a call took from the rate limits (and, on Redis, the wallet),
/// given back or corrected when it ends.
pub enum Taken {
    Local(Arc<Limiter>, Permit),
    Redis(Arc<Hot>, Box<RedisPermit>),
}

impl Hot {
    /// Connects and loads the script (from outside any runtime, at start).
    pub fn connect(
        runtime: &'static tokio::runtime::Runtime,
        section: &HotStateSection,
    ) -> Result<Self, String> {
        let url = section.redis_url.expose().to_string();
        let mut redis =
            runtime.block_on(RedisState::connect(&url)).map_err(|e| format!("hot_state.redis_url: {e}"))?;
        redis.lease_ms = section.lease_ms;
        log::info!(target: "tollgate", "rate limits on Redis, script {}", redis.version());
        let node = uuid::Uuid::now_v7().to_string();
        let fleet = Arc::new(AtomicU64::new(1));
        if let Ok(n) = runtime.block_on(redis.heartbeat(&node, wall_ms())) {
            fleet.store(n.max(1), Ordering::Relaxed);
        }
        crate::metrics::fleet_size(fleet.load(Ordering::Relaxed));
        runtime.spawn(heartbeats(redis.clone(), node.clone(), fleet.clone(), section.on_failure));
        let open = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        runtime.spawn(renewals(redis.clone(), open.clone()));
        Ok(Self { redis, on_failure: section.on_failure, fleet, down_until: AtomicU64::new(0), node, open })
    }

    fn opened(self: &Arc<Self>, permit: Box<RedisPermit>) -> Taken {
        let leases = permit.leases();
        if !leases.is_empty() {
            lock(&self.open).insert(permit.request_id().to_string(), leases);
        }
        Taken::Redis(self.clone(), permit)
    }

    fn closed(&self, permit: &RedisPermit) {
        lock(&self.open).remove(permit.request_id());
    }

    /// The fleet size last seen.
    pub fn fleet(&self) -> u64 {
        self.fleet.load(Ordering::Relaxed).max(1)
    }

    /// Redis answers a PING on the limits' own connection (the health check).
    pub async fn ping(&self) -> Result<(), Unavailable> {
        self.redis.ping().await
    }

    /// `limits` shared among the fleet last seen, for this node alone
    /// while Redis is down: each divided by the node count (at least 1;
    /// a limit of 0 still blocks).
    pub fn divided(&self, limits: &InForce) -> InForce {
        let n = self.fleet();
        let part = |l: u64| if l == 0 { 0 } else { (l / n).max(1) };
        let part32 = |l: Option<u32>| l.map(|l| u32::try_from(part(u64::from(l))).unwrap_or(l));
        InForce {
            rpm: part32(limits.rpm),
            rpm_class: part32(limits.rpm_class),
            rph: part32(limits.rph),
            daily_messages: part32(limits.daily_messages),
            input_tpm: limits.input_tpm.map(part),
            concurrent: part32(limits.concurrent),
            zone: limits.zone,
        }
    }

    /// Takes `ask` from the limits and `hold` from the wallet and the
    /// key's cap, all in one round trip, or nothing.
    pub async fn take(
        self: &Arc<Self>,
        ask: &Ask<'_>,
        limits: &InForce,
        id: &str,
        hold: &HoldAsk,
    ) -> Result<Held, Unavailable> {
        let now = wall_ms();
        if now < self.down_until.load(Ordering::Relaxed) {
            return Err(Unavailable("down a moment ago; asked again shortly".into()));
        }
        match self.redis.take(ask, limits, id, Some(hold)).await {
            Ok(Answer::Taken(p)) => Ok(Held::Taken(self.opened(p))),
            Ok(Answer::Limit(refused)) => Ok(Held::Limit(refused)),
            Ok(Answer::Wallet(w)) => Ok(Held::Wallet(w)),
            Ok(Answer::Unseeded) => Ok(Held::Unseeded),
            Err(e) => {
                self.down_until.store(wall_ms() + BACK_OFF_MS, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Whether Redis is taken as down now (it failed a call a moment ago).
    pub fn down(&self) -> bool {
        wall_ms() < self.down_until.load(Ordering::Relaxed)
    }

    /// Where the limits stand, taking nothing.
    pub async fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Vec<Standing>, Unavailable> {
        self.redis.standing(ask, limits).await
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every third of a lease: the leases of the calls this node still runs
/// are pushed forward, so only a node that died lets its holds and
/// in-flight entries lapse.
async fn renewals(
    redis: RedisState,
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, redis::Leases>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis((redis.lease_ms / 3).max(100)));
    loop {
        tick.tick().await;
        let calls: Vec<(String, redis::Leases)> =
            lock(&open).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Err(e) = redis.renew(&calls, wall_ms()).await {
            log::warn!(target: "tollgate", "hot state: {} calls' leases not renewed: {e}", calls.len());
        }
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Every `HEARTBEAT`: this node alive, the fleet counted; while Redis is
/// down (and `open`), the seconds spent on this node's own limits counted.
async fn heartbeats(redis: RedisState, node: String, fleet: Arc<AtomicU64>, on_failure: OnFailure) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    loop {
        tick.tick().await;
        match redis.heartbeat(&node, wall_ms()).await {
            Ok(n) => {
                fleet.store(n.max(1), Ordering::Relaxed);
                crate::metrics::fleet_size(n);
            }
            Err(_) if on_failure == OnFailure::Open => crate::metrics::hot_failed_open(HEARTBEAT.as_secs()),
            Err(_) => {}
        }
    }
}

impl Taken {
    /// Every limit that applied, after the call was counted.
    pub fn standing(&self) -> &[Standing] {
        match self {
            Taken::Local(_, p) => &p.standing,
            Taken::Redis(_, p) => &p.standing,
        }
    }

    /// The wallet's balance after the hold, when Redis held it.
    pub fn available(&self) -> Option<i64> {
        match self {
            Taken::Local(..) => None,
            Taken::Redis(_, p) => p.available,
        }
    }

    /// Gives back everything (the wallet refused the call).
    pub async fn cancel(self, mono: u64) {
        match self {
            Taken::Local(limiter, p) => limiter.cancel(&p, mono),
            Taken::Redis(hot, p) => {
                hot.closed(&p);
                if let Err(e) = hot.redis.cancel(&p).await {
                    log::warn!(target: "tollgate", "rate limits: a cancel was lost ({e}); the lease frees its slot");
                }
            }
        }
    }

    /// The call ended (see `Limiter::finish`), `charged` from its hold
    /// when one was taken on Redis; on Redis, settled with the account's
    /// next batch or on a task of its own (`RedisState::finish_soon`): the
    /// caller is the synchronous logging hook.
    pub fn finish(self, billed: bool, actual_input: Option<u64>, mono: u64, charged: u64) {
        match self {
            Taken::Local(limiter, p) => limiter.finish(&p, billed, actual_input, mono),
            Taken::Redis(hot, p) => {
                hot.closed(&p);
                hot.redis.finish_soon(p, billed, actual_input, charged);
            }
        }
    }
}
