//! `hot_state:`: Redis, where a fleet's nodes share their rate limits and
//! their wallets' holds (`redis_url`), what a node does when Redis cannot
//! be reached (`on_failure`: `open` falls back to the node's own limits
//! and last balances, `closed` answers 503), and how often the wallets on
//! Redis are reconciled with the ledger (`reconcile_ms`). Unset, both
//! live in the node's memory.

use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotStateSection {
    /// `redis://host:6379/` (or `rediss://`).
    pub redis_url: Secret,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// How often the fleet's reconciler compares the wallets on Redis with
    /// the ledger (a drift is corrected when two passes agree).
    #[serde(default = "default_reconcile_ms")]
    pub reconcile_ms: u64,
    /// How long a call's hold and in-flight entry on Redis last unless its
    /// node renews them (every third of it, while the call runs): a node
    /// that dies frees what its calls held within this.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_lease_ms() -> u64 {
    crate::hot::redis::LEASE_MS
}

fn default_reconcile_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Calls go on under this node's own, in-memory limits.
    #[default]
    Open,
    /// 503 in the caller's format; nothing upstream, nothing billed.
    Closed,
}

impl HotStateSection {
    pub fn validate(&self) -> Result<(), String> {
        let url = self.redis_url.expose();
        if url.is_empty() {
            return Err("hot_state.redis_url: empty; is its variable set?".into());
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err("hot_state.redis_url: must start with redis:// or rediss://".into());
        }
        if self.lease_ms < 1_000 {
            return Err("hot_state.lease_ms: at least 1000".into());
        }
        if self.reconcile_ms < 100 {
            return Err("hot_state.reconcile_ms: at least 100".into());
        }
        Ok(())
    }
}
