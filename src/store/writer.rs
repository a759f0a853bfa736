//! The background writer: moves journaled records into the store in
//! batches (a failed batch is retried, and a retried record is kept once),
//! releases holds whose lease ran out, and keeps the keys' last-used
//! times. It runs on the store's runtime, never on the request path.

use super::journal::Journal;
use super::Store;
use crate::billing::Billing;
use crate::metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// Moves a batch every `batch`, or at once when a reader waits for one.
pub async fn run(journal: Arc<Journal>, store: Arc<dyn Store>, billing: Arc<Billing>, batch: Duration) {
    let mut touched: HashMap<u64, u64> = HashMap::new();
    let mut last_touch = Instant::now();
    loop {
        tokio::select! {
            () = journal.arrived.notified() => {}
            () = tokio::time::sleep(batch) => {}
        }
        if let Some(batch) = journal.take() {
            let n = batch.len() as u64;
            match store.append(&batch).await {
                Ok(_) => {
                    journal.kept(n);
                    journal.delivered(&batch);
                }
                Err(e) => {
                    log::error!(target: "tollgate", "ledger writer: {e}; {n} records wait in the journal");
                    journal.put_back(batch);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let released = billing.expire_holds();
        if released > 0 {
            log::warn!(target: "tollgate", "released {released} holds whose lease ended");
        }
        metrics::billing_state(billing.open_holds(), journal.lag());
        if last_touch.elapsed() >= TOUCH_EVERY {
            last_touch = Instant::now();
            let used: Vec<(i64, i64)> = billing
                .directory
                .keys()
                .iter()
                .filter_map(|k| {
                    let at = k.last_used()?;
                    (touched.insert(k.id, at) != Some(at)).then(|| (k.id as i64, at as i64))
                })
                .collect();
            if !used.is_empty() {
                if let Err(e) = store.touch_keys(&used).await {
                    log::warn!(target: "tollgate", "key last-used times: {e}");
                }
            }
        }
    }
}
