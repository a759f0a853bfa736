//! The sidecar of every node, beside its ledger writer (which moves the
//! node's journal into the store, each record kept once by its key, so a
//! crash between the insert and the acknowledgement books nothing twice):
//!
//! - **seeding**: a wallet Redis does not have (first use, or Redis lost
//!   its data) is written from the ledger plus this node's records the
//!   ledger does not have yet, before any hold is taken against it; the
//!   first node's seed stands.
//! - **reconciling**: one node at a time (a lease on Redis) compares every
//!   wallet Redis has with the ledger, records applied on Redis and not
//!   yet in the ledger set aside. A difference seen twice in a row, the
//!   same both times, is a drift (a settlement Redis never got, a seed
//!   that missed another node's undelivered records): it is corrected and
//!   counted. Seen once, it may be a record between the journal and the
//!   ledger, which the next pass no longer sees.

use super::redis::{RedisState, Unavailable};
use super::wallet::{Correction, Seed};
use crate::billing::{Billing, RecordKind};
use crate::store::journal::Journal;
use crate::store::StoreHandle;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who reconciles: the node holding this lease, three passes long (so a
/// reconciler that died is replaced within three passes).
const LEADER: &str = "tg:reconciler";

/// Seeds `account`'s wallet on Redis unless a node did already.
pub async fn seed(
    redis: &RedisState,
    store: &StoreHandle,
    journal: &Journal,
    account: u64,
) -> Result<(), String> {
    let undelivered = journal.undelivered(account);
    let keys: Vec<String> = undelivered.iter().map(|r| r.key.clone()).collect();
    let id = i64::try_from(account).map_err(|_| "account id out of range".to_string())?;
    let sums =
        store.run(move |s| async move { s.wallet_sums(id, &keys).await }).await.map_err(|e| e.to_string())?;
    let mut seed =
        Seed { credit: sums.credit, debit: sums.debit, key_spent: sums.key_spent, pending: Vec::new() };
    for r in undelivered.into_iter().filter(|r| !sums.present.contains(&r.key)) {
        if r.wallet_nano >= 0 {
            seed.credit += r.wallet_nano;
        } else {
            seed.debit -= r.wallet_nano;
            if let (RecordKind::Charge, Some(key)) = (r.kind, r.key_id) {
                let key = i64::try_from(key).unwrap_or(i64::MAX);
                match seed.key_spent.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, spent)) => *spent -= r.wallet_nano,
                    None => seed.key_spent.push((key, -r.wallet_nano)),
                }
            }
        }
        seed.pending.push((r.key, r.wallet_nano, r.key_id));
    }
    if redis.seed(account, &seed).await.map_err(|e| e.to_string())? {
        crate::metrics::wallet_seeded();
        log::info!(target: "tollgate", "wallet of account {account} seeded on Redis from the ledger");
    }
    Ok(())
}

/// The wallet as a caller sees it (and `key`'s spend), seeded from the
/// ledger first when Redis does not have it.
pub async fn balance(
    redis: &RedisState,
    store: &StoreHandle,
    journal: &Journal,
    account: u64,
    key: Option<u64>,
) -> Result<super::wallet::OnRedis, String> {
    let on = redis.read(account, key).await.map_err(|e| e.to_string())?;
    if on.seeded {
        return Ok(on);
    }
    seed(redis, store, journal, account).await?;
    redis.read(account, key).await.map_err(|e| e.to_string())
}

/// How often the records delivered meanwhile leave the pending records
/// on Redis (one call per account, not one per batch the writer keeps).
const UNPEND_EVERY: Duration = Duration::from_millis(200);

/// How long a delivered record stays pending on Redis: its pending entry
/// is what keeps its charge from being taken twice, and the charge's call
/// to Redis (sent when its record is journaled, before delivery) may be
/// sent once more, on a dropped connection, within `CALL_TIMEOUT`
/// (750 ms) of the first.
const UNPEND_AFTER: Duration = Duration::from_secs(1);

/// Has the records this node's writer delivers to the ledger leave the
/// wallets' pending records on Redis soon after (every `UNPEND_EVERY`),
/// so the reconciler's pass reads and checks those still on their way,
/// not every record of its interval. A crash before then leaves them to
/// the reconciler, which finds them in the ledger; a record Redis has not
/// seen yet is no harm: its settlement, arriving later, finds it pending
/// again, and the reconciler finds it in the ledger.
pub fn unpend_on_delivery(
    redis: RedisState,
    runtime: tokio::runtime::Handle,
    journal: &Journal,
) -> Result<(), String> {
    // Batches kept, in the order kept: when, and their records by account.
    type Kept = std::collections::VecDeque<(Instant, HashMap<u64, Vec<String>>)>;
    let delivered: Arc<std::sync::Mutex<Kept>> = Arc::default();
    let kept = delivered.clone();
    journal.on_delivery(Box::new(move |batch: &[crate::billing::LedgerRecord]| {
        let mut by_account: HashMap<u64, Vec<String>> = HashMap::new();
        for r in batch.iter().filter(|r| r.wallet_nano != 0) {
            by_account.entry(r.account).or_default().push(r.key.clone());
        }
        if !by_account.is_empty() {
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_back((Instant::now(), by_account));
        }
    }))?;
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(UNPEND_EVERY);
        loop {
            tick.tick().await;
            let mut due: HashMap<u64, Vec<String>> = HashMap::new();
            {
                let mut kept = delivered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while kept.front().is_some_and(|(at, _)| at.elapsed() >= UNPEND_AFTER) {
                    for (account, records) in kept.pop_front().map(|(_, b)| b).unwrap_or_default() {
                        due.entry(account).or_default().extend(records);
                    }
                }
            }
            for (account, records) in due {
                if let Err(e) = redis.delivered(account, &records).await {
                    // The rest wait for the reconciler, which finds them
                    // in the ledger: a Redis that is down costs one timeout.
                    log::debug!(target: "tollgate", "delivered records left pending on Redis ({e}); the reconciler finds them");
                    break;
                }
            }
        }
    });
    Ok(())
}

/// Reconciles every `every` while this node holds the reconciler's lease.
pub fn start(redis: RedisState, store: StoreHandle, billing: Arc<Billing>, node: String, every: Duration) {
    let runtime = store.runtime_ref();
    runtime.spawn(async move {
        let mut seen: HashMap<u64, Correction> = HashMap::new();
        let mut last_pass = Instant::now();
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let lease_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).saturating_mul(3).max(1_000);
            match lead(&redis, &node, lease_ms).await {
                Ok(true) => {}
                Ok(false) => {
                    crate::metrics::reconcile_lag(0);
                    seen.clear();
                    continue;
                }
                Err(e) => {
                    log::debug!(target: "tollgate", "reconciler: {e}");
                    continue;
                }
            }
            let accounts: Vec<u64> = billing.directory.account_ids();
            let mut complete = true;
            for account in accounts {
                if let Err(e) = reconcile(&redis, &store, account, &mut seen).await {
                    log::warn!(target: "tollgate", "reconciler: account {account}: {e}");
                    complete = false;
                    break;
                }
            }
            if complete {
                last_pass = Instant::now();
            }
            crate::metrics::reconcile_lag(last_pass.elapsed().as_secs());
        }
    });
}

/// Takes or keeps the reconciler's lease: whether this node holds it.
async fn lead(redis: &RedisState, node: &str, lease_ms: u64) -> Result<bool, Unavailable> {
    let mut conn = redis.conn.clone();
    let taken: Option<String> = redis::cmd("SET")
        .arg(LEADER)
        .arg(node)
        .arg("NX")
        .arg("PX")
        .arg(lease_ms)
        .query_async(&mut conn)
        .await
        .map_err(super::redis::unavailable)?;
    if taken.is_some() {
        return Ok(true);
    }
    let holder: Option<String> =
        redis::cmd("GET").arg(LEADER).query_async(&mut conn).await.map_err(super::redis::unavailable)?;
    if holder.as_deref() == Some(node) {
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(LEADER)
            .arg(lease_ms)
            .query_async(&mut conn)
            .await
            .map_err(super::redis::unavailable)?;
        return Ok(true);
    }
    Ok(false)
}

/// Compares one wallet on Redis with the ledger (see the module's doc).
async fn reconcile(
    redis: &RedisState,
    store: &StoreHandle,
    account: u64,
    seen: &mut HashMap<u64, Correction>,
) -> Result<(), String> {
    let on = redis.read(account, None).await.map_err(|e| e.to_string())?;
    if !on.seeded {
        seen.remove(&account);
        return Ok(());
    }
    let keys: Vec<String> = on.pending.iter().map(|(k, _, _)| k.clone()).collect();
    let id = i64::try_from(account).map_err(|_| "account id out of range".to_string())?;
    let sums =
        store.run(move |s| async move { s.wallet_sums(id, &keys).await }).await.map_err(|e| e.to_string())?;
    let fix = difference(&on, &sums);
    if fix.credit == 0 && fix.debit == 0 && fix.key_spent.is_empty() {
        seen.remove(&account);
        if !fix.delivered.is_empty() {
            redis.delivered(account, &fix.delivered).await.map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let again =
        seen.get(&account).is_some_and(|before| before.credit == fix.credit && before.debit == fix.debit);
    if !again {
        seen.insert(account, fix);
        return Ok(());
    }
    seen.remove(&account);
    if redis.correct(account, &fix).await.map_err(|e| e.to_string())? {
        let size = fix.credit.unsigned_abs().saturating_add(fix.debit.unsigned_abs());
        crate::metrics::drift_corrected(size);
        log::warn!(
            target: "tollgate",
            "reconciler: account {account}'s wallet on Redis drifted from the ledger: credit {:+}, debit {:+} nano-USD, key spend {:?} corrected",
            fix.credit,
            fix.debit,
            fix.key_spent
        );
    }
    Ok(())
}

/// What the wallet on Redis lacks against the ledger (its credit, its
/// debit, each key's spend), the records applied there and not yet in the
/// ledger set aside; and those of its pending records the ledger has now.
pub fn difference(on: &super::wallet::OnRedis, ledger: &crate::store::WalletSums) -> Correction {
    let (mut credit, mut debit) = (ledger.credit, ledger.debit);
    let mut keys: std::collections::BTreeMap<i64, i64> = ledger.key_spent.iter().copied().collect();
    let mut delivered = Vec::new();
    for (record, amount, key) in &on.pending {
        if ledger.present.contains(record) {
            delivered.push(record.clone());
        } else if *amount >= 0 {
            credit += amount;
        } else {
            debit -= amount;
            if let Some(key) = key.and_then(|k| i64::try_from(k).ok()) {
                *keys.entry(key).or_default() -= amount;
            }
        }
    }
    // A key Redis counts and the ledger does not is corrected to 0.
    for (key, _) in &on.keys {
        keys.entry(i64::try_from(*key).unwrap_or(i64::MAX)).or_default();
    }
    let key_spent = keys
        .into_iter()
        .filter_map(|(key, want)| {
            let have =
                on.keys.iter().find(|(k, _)| i64::try_from(*k).ok() == Some(key)).map_or(0, |(_, s)| *s);
            (want != have).then_some((key, want - have))
        })
        .collect();
    Correction { credit: credit - on.credit, debit: debit - on.debit, key_spent, delivered }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hot::wallet::OnRedis;
    use crate::store::WalletSums;

    #[test]
    fn records_on_redis_not_yet_in_the_ledger_are_no_drift() {
        let on = OnRedis {
            seeded: true,
            credit: 1_000,
            debit: 300,
            held: 50,
            key_spent: 0,
            pending: vec![("a:charge".into(), -100, Some(3)), ("b:charge".into(), -50, Some(3))],
            keys: vec![(3, 150)],
        };
        // The ledger has `a` already, not `b`.
        let ledger = WalletSums {
            credit: 1_000,
            debit: 250,
            key_spent: vec![(3, 100)],
            present: ["a:charge".to_string()].into_iter().collect(),
        };
        let fix = difference(&on, &ledger);
        assert_eq!((fix.credit, fix.debit), (0, 0));
        assert!(fix.key_spent.is_empty(), "{fix:?}");
        assert_eq!(fix.delivered, vec!["a:charge".to_string()]);
    }

    #[test]
    fn a_charge_redis_never_got_is_a_drift() {
        let on = OnRedis { seeded: true, credit: 1_000, debit: 200, ..OnRedis::default() };
        let ledger =
            WalletSums { credit: 1_000, debit: 300, key_spent: vec![(4, 100)], ..WalletSums::default() };
        let fix = difference(&on, &ledger);
        assert_eq!((fix.debit, fix.key_spent), (100, vec![(4, 100)]));
    }
}
