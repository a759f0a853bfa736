//! Customers' own provider keys on the request path (issue #19 item 7): a
//! call to a provider the caller's account has its own key for is sent
//! with that key and billed the platform fee instead of the list price.
//! The account's keys are read from the store and kept on the node for
//! `byok::CACHE_TTL`.

use super::UpstreamPlan;
use crate::billing::KeyState;
use crate::byok::OwnKeys;
use crate::error::GatewayError;
use crate::gateway::Gateway;

/// The account's own keys (none when `byok` is not configured).
pub async fn keys_of(gateway: &Gateway, account: u64) -> Result<Option<OwnKeys>, GatewayError> {
    let (Some(byok), Some(money)) = (gateway.byok.as_ref(), gateway.money.as_ref()) else { return Ok(None) };
    let account = account as i64;
    if let Some(keys) = byok.cached(account) {
        return Ok(Some(keys));
    }
    let rows = money
        .store
        .run(move |s| async move { s.provider_keys(account).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        match byok.sealer.open(account, &row.provider, &row.sealed) {
            Ok(key) => keys.push((row.provider, key)),
            Err(e) => {
                log::error!(target: "tollgate", "account {account}'s key {} for {}: {e}", row.id, row.provider)
            }
        }
    }
    Ok(Some(byok.remember(account, keys)))
}

/// `plan` with the account's own key for its provider, billed the fee;
/// `true` when it has one (the call then stays on that provider: another
/// deployment would be paid with the platform's key at the fee's price).
pub async fn apply(
    gateway: &Gateway,
    key: Option<&KeyState>,
    plan: &mut UpstreamPlan,
) -> Result<bool, GatewayError> {
    let (Some(byok), Some(key)) = (gateway.byok.as_ref(), key) else { return Ok(false) };
    let Some(keys) = keys_of(gateway, key.account).await? else { return Ok(false) };
    let Some((_, own)) = keys.iter().find(|(provider, _)| *provider == plan.provider.name) else {
        return Ok(false);
    };
    let (name, value) =
        super::headers::credential(plan.provider.auth_header_with(own.expose()), GatewayError::BadRequest)?;
    plan.headers.retain(|(n, _)| *n != name);
    plan.headers.push((name, value));
    plan.price = plan.price.or(plan.model.price).map(|list| byok.fee(list));
    Ok(true)
}
