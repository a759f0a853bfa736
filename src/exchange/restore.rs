//! At start, the rate limits' open windows and the day's message count
//! are rebuilt from the ledger's charged calls, so a restart grants no new
//! allowance for what was sold: each call counts again in the limits in
//! force for it now (its account's plan and its key's overrides), at the
//! time it was made. Calls that were not billed are not in the ledger: they
//! gave their daily message back when they ended anyway, and a restart
//! forgets them in the minute and hour windows (the README says so).

use crate::gateway::Gateway;
use crate::limits::Ask;
use crate::store::RecentCall;

/// How far back the ledger is read: the longest local day (25 hours, when
/// daylight saving ends) and then some.
pub const LOOKBACK_MS: u64 = 26 * 3_600_000;

/// Reads the ledger's recent charges and counts them into the gateway's
/// limits (nothing when nothing is billed here).
pub fn rebuild(gateway: &Gateway) -> Result<(), String> {
    let (Some(money), Some(billing)) = (&gateway.money, &gateway.billing) else { return Ok(()) };
    if gateway.hot.is_some() {
        // The limits live in Redis, which outlives this process.
        return Ok(());
    }
    let since = billing.now_ms().saturating_sub(LOOKBACK_MS) as i64;
    let calls = money
        .store
        .block_on(move |s| async move { s.recent_calls(since).await })
        .map_err(|e| format!("store: the rate limits' recent calls: {e}"))?;
    let counted = rebuild_limits(gateway, &calls);
    if counted > 0 {
        log::info!(target: "tollgate", "rate limits: {counted} calls of the last day counted again from the ledger");
    }
    Ok(())
}

/// Counts `calls` (oldest first) into the gateway's limits.
pub fn rebuild_limits(gateway: &Gateway, calls: &[RecentCall]) -> usize {
    let Some(billing) = &gateway.billing else { return 0 };
    let (now, mono) = (billing.now_ms(), billing.wallets().now_monotonic());
    let mut counted = 0;
    for call in calls {
        let (Some(account), Some(key)) = (
            billing.directory.account(call.account_id as u64),
            call.key_id.and_then(|id| billing.directory.key_by_id(id as u64)),
        ) else {
            continue;
        };
        let class =
            call.model.as_deref().and_then(|m| gateway.catalog.resolve(m)).and_then(|m| m.class.clone());
        // Each endpoint's own group: embeddings, rerank and images have
        // hourly windows of their own, as at admission.
        let group = crate::routing::Endpoint::limit_group_named(call.group.as_deref());
        let limits = account.plan.limits.in_force(class.as_deref(), group, &key.limits);
        if !limits.any() {
            continue;
        }
        let at = u64::try_from(call.at).unwrap_or(0);
        let ask = Ask {
            key: key.id,
            account: account.id,
            class: class.as_deref(),
            group,
            input_estimate: 0,
            now: at,
            mono: mono.saturating_sub(now.saturating_sub(at)),
        };
        gateway.limiter.replay(&ask, &limits);
        counted += 1;
    }
    counted
}
