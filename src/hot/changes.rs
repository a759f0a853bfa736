//! Changes made through any node's admin API reach every node within a
//! second: the admin API publishes that the directory changed on Redis
//! (`tg:changes`), and every node, subscribed, reads its accounts and keys
//! again from the store (a revoked key, a plan, a status, a limit
//! override, a spend cap). A refresh every `BACKSTOP` covers a message
//! missed while a node's subscription was down. Balances need no message:
//! the wallets themselves are on Redis. A deployment's circuit that opens
//! on one node opens on every node (`tg:circuits`): the fleet stops
//! sending to a failing provider together.

use super::redis::{unavailable, RedisState, Unavailable};
use crate::billing::Billing;
use crate::store::StoreHandle;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The channel every node listens on.
pub const CHANNEL: &str = "tg:changes";
/// Circuits opened: "<until ms> <deployment label>".
pub const CIRCUITS: &str = "tg:circuits";
/// How often a node reads the directory again whatever it heard.
pub const BACKSTOP: Duration = Duration::from_secs(30);
/// How long a lost subscription waits before it connects again.
const RETRY: Duration = Duration::from_millis(250);

impl RedisState {
    /// Tells every node that `what` changed (the store has it already).
    pub async fn publish(&self, what: &str) -> Result<(), Unavailable> {
        self.publish_on(CHANNEL, what).await
    }

    /// Tells every node that deployment `label`'s circuit is open until
    /// `until_ms` (wall clock).
    pub async fn announce_circuit(&self, label: &str, until_ms: u64) -> Result<(), Unavailable> {
        self.publish_on(CIRCUITS, &format!("{until_ms} {label}")).await
    }

    async fn publish_on(&self, channel: &str, what: &str) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(what)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Opens, on this node, the circuits other nodes announce, for the life
/// of the process (`deployments`: this node's, by label).
pub fn follow_circuits(
    redis: RedisState,
    runtime: &'static tokio::runtime::Runtime,
    deployments: Vec<Arc<crate::providers::deployment::Deployment>>,
) {
    runtime.spawn(async move {
        loop {
            if let Ok(mut pubsub) = redis.client.get_async_pubsub().await {
                if pubsub.subscribe(CIRCUITS).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let text: String = message.get_payload().unwrap_or_default();
                        let Some((until, label)) = text.split_once(' ') else { continue };
                        let Ok(until) = until.parse::<u64>() else { continue };
                        for d in deployments.iter().filter(|d| d.label == label) {
                            d.opened_elsewhere(until);
                        }
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hot::testing::RedisServer;
    use crate::providers::deployment::Deployment;

    #[test]
    fn a_circuit_opened_on_one_node_opens_on_the_others() {
        let server = RedisServer::start();
        let runtime: &'static tokio::runtime::Runtime =
            Box::leak(Box::new(tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"))));
        let (here, there) = runtime.block_on(async {
            let connect = || RedisState::connect(&server.url);
            (
                connect().await.unwrap_or_else(|e| panic!("{e}")),
                connect().await.unwrap_or_else(|e| panic!("{e}")),
            )
        });
        let primary = Arc::new(Deployment::new("openai/primary".into(), None, None));
        let other = Arc::new(Deployment::new("openai/other".into(), None, None));
        follow_circuits(there, runtime, vec![primary.clone(), other.clone()]);
        let now = crate::billing::Clock::now_ms(&crate::billing::SystemClock);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while primary.take(now).is_some() {
            assert!(std::time::Instant::now() < deadline, "the announcement never arrived");
            // Announced until it is heard: the subscription may not be up yet.
            runtime
                .block_on(here.announce_circuit("openai/primary", now + 60_000))
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(primary.take(now + 59_000).is_none(), "open for the cooldown");
        assert!(other.take(now).is_some(), "another deployment's circuit stays closed");
    }
}
