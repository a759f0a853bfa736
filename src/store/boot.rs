//! Start-up of the money side: open the store (SQLite, or PostgreSQL with
//! `store.url`; migrations run), keep what journals of dead processes
//! hold, bootstrap the YAML's accounts and keys into the store (once: the
//! store is authoritative afterwards), and load accounts, keys, wallets
//! and spend into memory for the request path. Then the journal takes
//! this process's records and the writer runs.

use super::journal::Journal;
use super::peers::{FilePeers, Line};
use super::Snapshot;
use super::{NewKey, PgStore, SqliteStore, Store, StoreError, StoreHandle};
use crate::billing::PeerApply;
use crate::billing::{
    AccountState, Billing, BillingOptions, KeyState, LedgerRecord, NanoUsd, Plan, Status, SystemClock,
};
use crate::config::Config;
use crate::usage_totals::{Tallied, UsageTotals};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What the gateway holds of the money side once started.
pub struct Money {
    pub billing: Arc<Billing>,
    pub store: StoreHandle,
    pub journal: Arc<Journal>,
    pub replays: Arc<crate::billing::replay::Replays>,
    /// Each account's charges so far, for `whoami` and `usage`.
    pub totals: Arc<UsageTotals>,
}

/// A YAML account, ready for the store.
pub struct BootAccount {
    pub name: String,
    pub plan: String,
    pub opening: NanoUsd,
}

/// A YAML key: its digest, name, account and what of it may be shown.
pub struct BootKey {
    pub digest: [u8; 32],
    pub name: String,
    pub account: String,
    pub prefix: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn start(
    config: &Config,
    plans: Vec<Arc<Plan>>,
    accounts: Vec<BootAccount>,
    keys: Vec<BootKey>,
) -> Result<Money, String> {
    config.store.validate()?;
    let runtime = StoreHandle::runtime()?;
    let path = config.store.path.clone();
    let store: Arc<dyn Store> = match &config.store.url {
        Some(url) => Arc::new(
            runtime
                .block_on(PgStore::connect(url.expose(), config.store.pool_size()))
                .map_err(|e| format!("store.url: {e}"))?,
        ),
        None => Arc::new(
            runtime.block_on(SqliteStore::open(path.as_deref())).map_err(|e| format!("store.path: {e}"))?,
        ),
    };
    let handle = StoreHandle::new(runtime, store.clone());
    let journal_dir: Option<PathBuf> = match (&config.store.journal_dir, &path) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(db)) => Some(PathBuf::from(format!("{db}.journal"))),
        // PostgreSQL without a journal directory is refused by `validate`.
        (None, None) => None,
    };
    // This process's journal exists before it looks for peers, so a peer
    // that looks at the same time finds it.
    let journal = Arc::new(Journal::open(journal_dir.as_deref())?);
    let peers = match &journal_dir {
        Some(dir) => Some(FilePeers::new(dir, journal.clone(), handle.clone())?),
        None => None,
    };
    if let Some(peers) = &peers {
        peers.meet();
    }
    if let Some(dir) = &journal_dir {
        let (records, files) = Journal::leftovers(dir)?;
        let n = records.len();
        handle.block_on(move |s| async move { s.append(&records).await }).map_err(|e| e.to_string())?;
        for (path, file) in files {
            crate::store::journal::remove_ended(&file, &path);
        }
        if n > 0 {
            log::info!(target: "tollgate", "kept {n} ledger records from journals of processes that ended");
        }
    }
    handle.block_on(move |s| bootstrap(s, accounts, keys)).map_err(|e| e.to_string())?;
    // A peer's journal lines, then the store, read in that order under the
    // lock the peers share: whatever a peer's writer moves into the store
    // meanwhile is either in the store's read or not, never in both.
    // The running totals' day and month are those of this instant.
    let now = now_ms();
    let read = |lines: Vec<Line>| -> Result<(Snapshot, Vec<Line>), String> {
        let keys: Vec<String> = lines
            .iter()
            .filter_map(|l| if let Line::Record(r) = l { Some(r.key.clone()) } else { None })
            .collect();
        let snapshot = handle
            .block_on(move |s| async move { s.snapshot(&keys, now).await })
            .map_err(|e| e.to_string())?;
        Ok((snapshot, lines))
    };
    let loading = std::time::Instant::now();
    let (snapshot, lines) = match &peers {
        Some(peers) => peers.with_lock(|| read(peers.read_all()))?,
        None => read(Vec::new())?,
    };
    log::info!(target: "tollgate", "wallets and running totals read from the store in {} ms", loading.elapsed().as_millis());
    let options = BillingOptions {
        lease_ms: options_lease_ms(config),
        key_prefix: config.billing.key_prefix.clone(),
        fallback_models: config.billing.fallback_models,
        paid_at_delivery: config.hot_state.is_some() && config.store.url.is_some(),
    };
    let totals = Arc::new(UsageTotals::default());
    let sink = Arc::new(Tallied { inner: journal.clone(), totals: totals.clone() });
    let mut billing = Billing::new(plans, sink, Arc::new(SystemClock), options);
    if let Some(peers) = &peers {
        billing = billing.with_peers(peers.clone());
    }
    let billing = Arc::new(billing);
    let (mut snapshot, lines) = (snapshot, lines);
    let present = std::mem::take(&mut snapshot.present);
    totals.load(&std::mem::take(&mut snapshot.charges), now);
    load(&billing, snapshot)?;
    for line in &lines {
        match line {
            Line::Peer(line) => billing.apply_peer_line(line),
            Line::Record(record) => {
                let in_store = present.contains(&record.key);
                if !in_store {
                    totals.add(record);
                }
                billing.apply_peer_record(record, in_store);
            }
        }
    }
    if let Some(peers) = &peers {
        peers.start(&billing, &totals);
    }
    let batch = std::time::Duration::from_millis(config.store.batch_ms.max(1));
    handle.spawn(super::writer::run(journal.clone(), store, billing.clone(), batch));
    let replays = Arc::new(crate::billing::replay::Replays::new(
        Arc::new(SystemClock),
        config.billing.idempotency_memory_bytes,
        options_lease_ms(config),
    ));
    Ok(Money { billing, store: handle, journal, replays, totals })
}

/// How long a hold, and an idempotency key's running mark, lasts.
fn options_lease_ms(config: &Config) -> u64 {
    config.billing.hold_lease_seconds.max(1) * 1000
}

/// The plan named `name`, or one that allows nothing (an account whose
/// plan was removed from the YAML is kept, and refused with 403).
pub fn plan_or_none(billing: &Billing, name: &str) -> Arc<Plan> {
    billing.plan(name).unwrap_or_else(|| {
        Arc::new(Plan {
            name: name.to_string(),
            models: Vec::new(),
            api_access: false,
            trial_days: None,
            limits: Default::default(),
            default_model: None,
        })
    })
}

async fn bootstrap(
    store: Arc<dyn Store>,
    accounts: Vec<BootAccount>,
    keys: Vec<BootKey>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut ids = HashMap::new();
    for a in accounts {
        let account = match store.account_named(&a.name).await? {
            Some(account) => account,
            None => {
                // Nodes of a fleet starting at once race to create it: a
                // node that loses finds the winner's.
                let account = match store.create_account(&a.name, &a.plan, None, now).await {
                    Ok(account) => account,
                    Err(e) => store.account_named(&a.name).await?.ok_or(e)?,
                };
                if a.opening.0 > 0 {
                    let key = format!("opening:{}", a.name);
                    let opening = LedgerRecord::adjustment(key, account.id as u64, a.opening.0, now as u64);
                    store.append(&[opening]).await?;
                }
                account
            }
        };
        ids.insert(a.name, account.id);
    }
    for k in keys {
        if store.key_by_hash(&k.digest).await?.is_some() {
            continue;
        }
        let account =
            *ids.get(&k.account).ok_or_else(|| StoreError(format!("keys '{}': no account", k.name)))?;
        let new = NewKey { name: k.name.clone(), ..NewKey::default() };
        if let Err(e) = store.insert_key(account, &k.prefix, &k.digest, &new, now).await {
            if store.key_by_hash(&k.digest).await?.is_none() {
                return Err(e);
            }
        }
    }
    Ok(())
}

fn load(billing: &Billing, snap: super::Snapshot) -> Result<(), String> {
    for a in &snap.accounts {
        let id = a.id as u64;
        billing.directory.put_account(account_state(billing, a));
        let lots: Vec<(NanoUsd, u32, NanoUsd)> = snap
            .lots
            .iter()
            .filter(|l| l.account_id == a.id)
            .map(|l| (l.paid, l.multiplier, l.granted))
            .collect();
        let debited = snap.debited.iter().find(|(acc, _)| *acc == a.id).map_or(NanoUsd::ZERO, |(_, n)| *n);
        let key_spent: Vec<(u64, NanoUsd)> = snap
            .keys
            .iter()
            .filter(|(k, _)| k.account_id == a.id)
            .filter_map(|(k, _)| {
                snap.key_spent.iter().find(|(id, _)| *id == k.id).map(|(id, n)| (*id as u64, *n))
            })
            .collect();
        billing
            .wallets()
            .restore(id, &lots, debited, &key_spent)
            .map_err(|e| format!("account {}: the store's ledger does not add up: {e:?}", a.name))?;
    }
    for (k, digest) in snap.keys {
        billing.directory.put_key(digest, key_state(&k));
    }
    billing.wallets().remember(&snap.operator_keys);
    Ok(())
}

/// An account as the request path holds it.
pub fn account_state(billing: &Billing, a: &super::Account) -> AccountState {
    AccountState {
        id: a.id as u64,
        name: Arc::from(a.name.as_str()),
        plan: plan_or_none(billing, &a.plan),
        status: Status::parse(&a.status).unwrap_or(Status::Suspended),
        trial_ends_at: a.trial_ends_at.map(|t| t as u64),
    }
}

/// A key as the request path holds it.
pub fn key_state(k: &super::KeyRecord) -> KeyState {
    KeyState {
        id: k.id as u64,
        account: k.account_id as u64,
        name: Arc::from(k.name.as_str()),
        prefix: k.prefix.clone(),
        status: Status::parse(&k.status).unwrap_or(Status::Revoked),
        expires_at: k.expires_at.map(|t| t as u64),
        spend_cap: k.spend_cap,
        models: k.models.clone(),
        fallback_model: k.fallback_model.clone(),
        limits: k.limits,
        created_at: k.created_at as u64,
        last_used_at: AtomicU64::new(k.last_used_at.unwrap_or(0) as u64),
    }
}

/// Brings the directory in line with `rows` (read from the store after
/// another node changed it): accounts and keys added or changed are put
/// in place, a key's last-used time kept. How many changed.
pub fn refresh_directory(billing: &Billing, rows: super::DirectoryRows) -> usize {
    let mut changed = 0;
    for a in &rows.accounts {
        let fresh = account_state(billing, a);
        let same = billing.directory.account(fresh.id).is_some_and(|cur| {
            cur.plan.name == fresh.plan.name
                && cur.status == fresh.status
                && cur.trial_ends_at == fresh.trial_ends_at
        });
        if !same {
            changed += 1;
            billing.directory.put_account(fresh);
        }
    }
    for (k, digest) in &rows.keys {
        let fresh = key_state(k);
        match billing.directory.key_by_id(fresh.id) {
            None => {
                changed += 1;
                billing.directory.put_key(*digest, fresh);
            }
            Some(cur) if !same_key(&cur, &fresh) => {
                changed += 1;
                billing.directory.change_key(fresh.id, |c| c.take_settings_of(&fresh));
            }
            Some(_) => {}
        }
    }
    changed
}

fn same_key(a: &KeyState, b: &KeyState) -> bool {
    a.name == b.name
        && a.status == b.status
        && a.expires_at == b.expires_at
        && a.spend_cap == b.spend_cap
        && a.models == b.models
        && a.fallback_model == b.fallback_model
        && a.limits == b.limits
}
