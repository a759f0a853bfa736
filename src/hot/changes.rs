//! Changes made through any node's admin API reach every node within a
//! second: the admin API publishes that the directory changed on Redis
//! (`tg:changes`), and every node, subscribed, reads its accounts and keys
//! again from the store (a revoked key, a plan, a status, a limit
//! override, a spend cap). A refresh every `BACKSTOP` covers a message
//! missed while a node's subscription was down. Balances need no message:
//! the wallets themselves are on Redis.

use super::redis::{unavailable, RedisState, Unavailable};
use crate::billing::Billing;
use crate::store::StoreHandle;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The channel every node listens on.
pub const CHANNEL: &str = "tg:changes";
/// How often a node reads the directory again whatever it heard.
pub const BACKSTOP: Duration = Duration::from_secs(30);
/// How long a lost subscription waits before it connects again.
const RETRY: Duration = Duration::from_millis(250);

impl RedisState {
    /// Tells every node that `what` changed (the store has it already).
    pub async fn publish(&self, what: &str) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(what)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Follows the changes for the life of the process: on each message, and
/// every `BACKSTOP`, the directory is read again from the store.
pub fn follow(redis: RedisState, billing: Arc<Billing>, store: StoreHandle) {
    let runtime = store.runtime_ref();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    runtime.spawn(subscribe(redis, tx));
    runtime.spawn(async move {
        let mut backstop = tokio::time::interval(BACKSTOP);
        backstop.tick().await;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = backstop.tick() => {}
            }
            match refresh(&billing, &store).await {
                Ok(0) => {}
                Ok(n) => {
                    log::info!(target: "tollgate", "directory: {n} accounts or keys changed on another node")
                }
                Err(e) => log::warn!(target: "tollgate", "directory refresh: {e}"),
            }
        }
    });
}

async fn subscribe(redis: RedisState, changed: tokio::sync::mpsc::Sender<()>) {
    loop {
        match redis.client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(CHANNEL).await.is_ok() {
                    // A message may have been missed while unsubscribed.
                    let _ = changed.try_send(());
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        // One refresh covers every message queued before it.
                        let _ = changed.try_send(());
                    }
                }
            }
            Err(e) => log::debug!(target: "tollgate", "change feed: {e}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reads every account and key again; how many changed.
pub async fn refresh(billing: &Billing, store: &StoreHandle) -> Result<usize, String> {
    let rows = store.run(|s| async move { s.directory().await }).await.map_err(|e| e.to_string())?;
    Ok(crate::store::boot::refresh_directory(billing, rows))
}

/// Looks a key this node does not know up in the store (another node may
/// have issued it a moment ago), with its account: whether it was found.
pub async fn fetch_key(billing: &Billing, store: &StoreHandle, digest: [u8; 32]) -> Result<bool, String> {
    let found = store
        .run(move |s| async move {
            let Some(key) = s.key_by_hash(&digest).await? else { return Ok(None) };
            let account = s.account(key.account_id).await?;
            Ok(Some((key, account)))
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some((key, account)) = found else { return Ok(false) };
    let mut rows = crate::store::DirectoryRows::default();
    rows.accounts.extend(account);
    rows.keys.push((key, digest));
    crate::store::boot::refresh_directory(billing, rows);
    Ok(true)
}
