//! Hot state shared by a fleet (issue #18 item 2): the rate limits on
//! Redis (`redis`), with the same semantics as the in-memory limiter of
//! `crate::limits`, which stays pure (no Tokio, no Redis) and serves a
//! single node, and a fleet node whose Redis is down under
//! `on_failure: open`. `Taken` is what a call took from either, settled
//! when the call ends.

pub mod redis;

#[cfg(test)]
pub(crate) mod testing;

use crate::config::{HotStateSection, OnFailure};
use crate::limits::{Ask, InForce, Limiter, Permit, Refused, Standing};
use redis::{RedisLimits, RedisPermit, Unavailable};
use std::sync::Arc;

/// The limits on Redis and what to do when Redis is down.
pub struct Hot {
    redis: RedisLimits,
    /// Where settlements run (the store's runtime, kept for the process).
    runtime: &'static tokio::runtime::Runtime,
    pub on_failure: OnFailure,
}

/// What a call took from the rate limits, given back or corrected when
/// it ends.
pub enum Taken {
    Local(Arc<Limiter>, Permit),
    Redis(Arc<Hot>, RedisPermit),
}

impl Hot {
    /// Connects and loads the script (from outside any runtime, at start).
    pub fn connect(
        runtime: &'static tokio::runtime::Runtime,
        section: &HotStateSection,
    ) -> Result<Self, String> {
        let url = section.redis_url.expose().to_string();
        let redis =
            runtime.block_on(RedisLimits::connect(&url)).map_err(|e| format!("hot_state.redis_url: {e}"))?;
        log::info!(target: "tollgate", "rate limits on Redis, script {}", redis.version());
        Ok(Self { redis, runtime, on_failure: section.on_failure })
    }

    /// Takes `ask` from the limits on Redis, or from none.
    pub async fn admit(
        self: &Arc<Self>,
        ask: &Ask<'_>,
        limits: &InForce,
        id: &str,
    ) -> Result<Result<Taken, Refused>, Unavailable> {
        Ok(self.redis.admit(ask, limits, id).await?.map(|p| Taken::Redis(self.clone(), p)))
    }

    /// Where the limits stand, taking nothing.
    pub async fn standing(&self, ask: &Ask<'_>, limits: &InForce) -> Result<Vec<Standing>, Unavailable> {
        self.redis.standing(ask, limits).await
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

    /// Gives back everything (the wallet refused the call).
    pub async fn cancel(self, mono: u64) {
        match self {
            Taken::Local(limiter, p) => limiter.cancel(&p, mono),
            Taken::Redis(hot, p) => {
                if let Err(e) = hot.redis.cancel(&p).await {
                    log::warn!(target: "tollgate", "rate limits: a cancel was lost ({e}); the lease frees its slot");
                }
            }
        }
    }

    /// The call ended (see `Limiter::finish`); on Redis, settled on a
    /// task of its own: the caller is the synchronous logging hook.
    pub fn finish(self, billed: bool, actual_input: Option<u64>, mono: u64) {
        match self {
            Taken::Local(limiter, p) => limiter.finish(&p, billed, actual_input, mono),
            Taken::Redis(hot, p) => {
                let redis = hot.redis.clone();
                hot.runtime.spawn(async move {
                    if let Err(e) = redis.finish(&p, billed, actual_input).await {
                        log::warn!(target: "tollgate", "rate limits: a settlement was lost ({e}); the lease frees its slot");
                    }
                });
            }
        }
    }
}
