//! Who may call: accounts (plan, status, trial) and their customer keys
//! (status, expiry, spend cap, model allowlist, fallback model), in
//! memory, found by the key's SHA-256. Entries are replaced whole when an
//! operator changes them, so a request holds a consistent snapshot.

use super::plan::Plan;
use super::NanoUsd;
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub type KeyDigest = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Suspended, Self::Revoked].into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone)]
pub struct AccountState {
    pub id: u64,
    pub name: Arc<str>,
    pub plan: Arc<Plan>,
    pub status: Status,
    /// Unix milliseconds; past it, calls get 402 `trial_expired`.
    pub trial_ends_at: Option<u64>,
}

#[derive(Debug)]
pub struct KeyState {
    pub id: u64,
    pub account: u64,
    pub name: Arc<str>,
    pub prefix: String,
    pub status: Status,
    pub expires_at: Option<u64>,
    pub spend_cap: Option<NanoUsd>,
    /// Model ids or globs; `None`: whatever the plan allows.
    pub models: Option<Vec<String>>,
    pub fallback_model: Option<String>,
    /// Overrides of the plan's rate limits.
    pub limits: crate::limits::Overrides,
    pub created_at: u64,
    pub last_used_at: AtomicU64,
}

impl KeyState {
    /// Takes every setting an operator may change from `fresh` (the
    /// store's record of this key); its id, account and use stay.
    pub fn take_settings_of(&mut self, fresh: &KeyState) {
        self.name = fresh.name.clone();
        self.status = fresh.status;
        self.expires_at = fresh.expires_at;
        self.spend_cap = fresh.spend_cap;
        self.models = fresh.models.clone();
        self.fallback_model = fresh.fallback_model.clone();
        self.limits = fresh.limits;
    }

    pub fn allows(&self, model_id: &str, class: Option<&str>) -> bool {
        self.models.as_ref().is_none_or(|m| super::plan::matches_any(m, model_id, class))
    }

    pub fn touch(&self, now: u64) {
        self.last_used_at.store(now, Ordering::Relaxed);
    }

    pub fn last_used(&self) -> Option<u64> {
        Some(self.last_used_at.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The same key with `change` applied; use times carry over.
    pub fn changed(&self, change: impl FnOnce(&mut KeyState)) -> KeyState {
        let mut next = KeyState {
            id: self.id,
            account: self.account,
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            status: self.status,
            expires_at: self.expires_at,
            spend_cap: self.spend_cap,
            models: self.models.clone(),
            fallback_model: self.fallback_model.clone(),
            limits: self.limits,
            created_at: self.created_at,
            last_used_at: AtomicU64::new(self.last_used_at.load(Ordering::Relaxed)),
        };
        change(&mut next);
        next
    }
}

#[derive(Default)]
struct Maps {
    accounts: HashMap<u64, Arc<AccountState>>,
    keys: HashMap<KeyDigest, Arc<KeyState>>,
    key_digests: HashMap<u64, KeyDigest>,
}

#[derive(Default)]
pub struct Directory {
    maps: RwLock<Maps>,
}

impl Directory {
    fn read<T>(&self, f: impl FnOnce(&Maps) -> T) -> T {
        f(&self.maps.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Maps) -> T) -> T {
        f(&mut self.maps.write().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn put_account(&self, account: AccountState) -> Arc<AccountState> {
        let account = Arc::new(account);
        self.write(|m| m.accounts.insert(account.id, account.clone()));
        account
    }

    /// Points every account at `plan_named(its plan's name)` (a reload's plans).
    pub fn replan(&self, plan_named: impl Fn(&str) -> Arc<Plan>) {
        self.write(|m| {
            for account in m.accounts.values_mut() {
                let plan = plan_named(&account.plan.name);
                *account = Arc::new(AccountState { plan, ..AccountState::clone(account) });
            }
        });
    }

    pub fn account(&self, id: u64) -> Option<Arc<AccountState>> {
        self.read(|m| m.accounts.get(&id).cloned())
    }

    pub fn put_key(&self, digest: KeyDigest, key: KeyState) -> Arc<KeyState> {
        let key = Arc::new(key);
        self.write(|m| {
            m.key_digests.insert(key.id, digest);
            m.keys.insert(digest, key.clone());
        });
        key
    }

    pub fn key(&self, digest: &KeyDigest) -> Option<Arc<KeyState>> {
        self.read(|m| m.keys.get(digest).cloned())
    }

    pub fn key_by_id(&self, id: u64) -> Option<Arc<KeyState>> {
        self.read(|m| m.key_digests.get(&id).and_then(|d| m.keys.get(d)).cloned())
    }

    /// Replaces key `id` with `change` applied; the new state.
    pub fn change_key(&self, id: u64, change: impl FnOnce(&mut KeyState)) -> Option<Arc<KeyState>> {
        self.write(|m| {
            let digest = *m.key_digests.get(&id)?;
            let next = Arc::new(m.keys.get(&digest)?.changed(change));
            m.keys.insert(digest, next.clone());
            Some(next)
        })
    }

    pub fn account_ids(&self) -> Vec<u64> {
        self.read(|m| m.accounts.keys().copied().collect())
    }

    pub fn keys(&self) -> Vec<Arc<KeyState>> {
        self.read(|m| m.keys.values().cloned().collect())
    }
}
