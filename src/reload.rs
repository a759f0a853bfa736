//! The gateway in force, and reading its configuration file again
//! (`SIGHUP`, `POST /admin/v1/reload`) without dropping a connection or a
//! stream.
//!
//! Every request takes the [`Gateway`] in force when it starts and keeps
//! it to its end, so a stream opened before a reload finishes on the
//! models, providers and prices it started with; requests after it see the
//! new file. What a reload builds anew is whatever `Gateway::from_config`
//! builds: router, models and prices, providers, the YAML key ring (of a
//! gateway that bills no accounts), and the plans with their limits. The
//! money and the counters are kept as they are (`Gateway::keep_state_of`):
//! wallets and holds, the store and its journal, Redis, the rate limiters,
//! idempotency. A file that does not load, does not validate, or changes a
//! key read only at start (`config::fixed`) is refused whole, with the
//! reason, and the configuration in force stays.

use crate::config::{fixed, Config};
use crate::gateway::Gateway;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub struct Live {
    gateway: ArcSwap<Gateway>,
    /// The configuration in force: what a reloaded file is compared with.
    /// Its lock also keeps two reloads from interleaving.
    in_force: Mutex<Config>,
    /// The file read again; `None` for a gateway built from no file.
    path: Option<PathBuf>,
}

/// What a reload put in force.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    pub models: usize,
    pub providers: usize,
    /// Plans of a billing gateway (0 without billing).
    pub plans: usize,
}

impl Live {
    pub fn new(gateway: Arc<Gateway>, config: Config, path: Option<PathBuf>) -> Self {
        Self { gateway: ArcSwap::new(gateway), in_force: Mutex::new(config), path }
    }

    /// The gateway in force; a request keeps it to its end.
    pub fn current(&self) -> Arc<Gateway> {
        self.gateway.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the file again and puts it in force, or refuses it (the
    /// reason is logged at error level and returned) and keeps the one in
    /// force.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let result = self.try_reload();
        match &result {
            Ok(r) => {
                crate::metrics::config_reload("ok");
                log::info!(
                    target: "tollgate",
                    "configuration reloaded: {} models, {} providers, {} plans",
                    r.models,
                    r.providers,
                    r.plans
                );
            }
            Err(e) => {
                crate::metrics::config_reload("refused");
                log::error!(target: "tollgate", "configuration reload refused, the one in force is kept: {e}");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, String> {
        let path = self.path.as_deref().ok_or("this gateway was not started from a file")?;
        let mut in_force = self.in_force.lock().unwrap_or_else(PoisonError::into_inner);
        let next = crate::config::load_file(path).map_err(|e| e.to_string())?;
        let mut gateway = Gateway::from_config(&next).map_err(|e| format!("{}: {e}", path.display()))?;
        let fixed = fixed::changed_at_start_only(&in_force, &next);
        if !fixed.is_empty() {
            return Err(format!("{}: {}", path.display(), fixed::refusal(&fixed)));
        }
        // Nothing can fail from here: the new gateway takes the state over.
        let old = self.current();
        let plans = gateway.keep_state_of(&old);
        for provider in &gateway.providers {
            // A provider at the same address keeps its resolved addresses
            // (the lookup task refreshes them); a new one is looked up by
            // its first request.
            if let Some(before) = old.providers.iter().find(|p| p.origin == provider.origin) {
                provider.set_addresses(&before.addresses());
            }
        }
        let reloaded = Reloaded {
            models: gateway.catalog.entries().len(),
            providers: gateway.providers.len(),
            plans: plans.as_ref().map_or(0, Vec::len),
        };
        if let (Some(billing), Some(plans)) = (&gateway.billing, plans) {
            billing.replace_plans(plans);
        }
        self.gateway.store(Arc::new(gateway));
        *in_force = next;
        Ok(reloaded)
    }
}
