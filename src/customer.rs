//! The customer endpoints a key may call about itself, under every mount:
//! `whoami` (the fields of both seed 003's and seed 004's, so dashboards
//! written for either work), `usage` (seed 002's shape), `generation`
//! (one request's bill) and the model list filtered to what the key may
//! call. Amounts are integers (nano- or micro-USD) with exact decimal
//! dollar figures beside them, written from integers, never from floats.
//! `whoami` and `usage` answer from memory (the running totals of
//! [`crate::usage_totals`] and the wallets), never from the store;
//! `generation` reads one indexed row, on the store's pool of reads.

pub mod history;
pub mod rate;

use crate::billing::{Billing, KeyState, NanoUsd};
use crate::calendar::format_time;
use crate::error::GatewayError;
use crate::gateway::{Gateway, ModelEntry};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Dollars as an exact JSON number (`12.45`), written from nano-USD.
fn usd(n: NanoUsd) -> Value {
    RawValue::from_string(n.to_string())
        .ok()
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .unwrap_or(Value::Null)
}

fn money(gateway: &Gateway) -> Result<(&Arc<Billing>, &crate::store::boot::Money), GatewayError> {
    match (&gateway.billing, &gateway.money) {
        (Some(b), Some(m)) => Ok((b, m)),
        _ => Err(GatewayError::RouteNotFound("this gateway bills no accounts".into())),
    }
}

fn slug(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.trim_matches('-').to_string()
}

/// Where each of the key's limits stands (for models without a class, and
/// the `messages` group), as `{"rpm": {"limit", "remaining", "reset_seconds"}, ...}`:
/// on Redis when the fleet shares the limits (this node's own while it is down).
async fn limits_of(
    gateway: &Gateway,
    key: &KeyState,
    account: &crate::billing::AccountState,
    now: u64,
) -> Map<String, Value> {
    let limits = account.plan.limits.in_force(None, "messages", &key.limits);
    let mono = crate::billing::Clock::monotonic_ms(&crate::billing::SystemClock);
    let ask = crate::limits::Ask {
        key: key.id,
        account: account.id,
        class: None,
        group: "messages",
        input_estimate: 0,
        now,
        mono,
    };
    let shared = match &gateway.hot {
        Some(hot) => hot.standing(&ask, &limits).await.ok(),
        None => None,
    };
    shared
        .unwrap_or_else(|| gateway.limiter.standing(&ask, &limits))
        .into_iter()
        .map(|s| {
            let v = json!({"limit": s.limit, "remaining": s.remaining, "reset_seconds": s.reset_ms.div_ceil(1000)});
            (s.kind.as_str().to_string(), v)
        })
        .collect()
}

/// The balance and `key`'s spend: on Redis in a fleet, else this node's
/// (and this node's last known while Redis does not answer).
async fn wallet_of(
    gateway: &Gateway,
    billing: &crate::billing::Billing,
    money: &crate::store::boot::Money,
    account: u64,
    key: u64,
) -> (NanoUsd, NanoUsd) {
    if let Some(hot) = &gateway.hot {
        match crate::hot::sidecar::balance(&hot.redis, &money.store, &money.journal, account, Some(key)).await
        {
            Ok(on) => return (NanoUsd(on.credit - on.debit - on.held), NanoUsd(on.key_spent)),
            Err(e) => log::debug!(target: "tollgate", "whoami: the wallet on Redis: {e}; this node's"),
        }
    }
    (billing.available(account), billing.key_spent(key))
}

pub async fn whoami(gateway: &Gateway, key: &KeyState) -> Result<Vec<u8>, GatewayError> {
    let (billing, m) = money(gateway)?;
    let account = billing.directory.account(key.account).ok_or(GatewayError::InvalidKey)?;
    let view = m.totals.view(account.id, billing.now_ms() as i64);
    let mut per_model = Map::new();
    for (model, c) in &view.per_model {
        let entry = json!({
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "cached_tokens": c.cached_tokens,
            "requests": c.requests,
            "spent_nano_usd": c.spent_nano,
            "spent_usd": usd(NanoUsd(c.spent_nano)),
        });
        per_model.insert(model.clone(), entry);
    }
    let (input, output, spent) = (view.total.input_tokens, view.total.output_tokens, view.total.spent_nano);
    let (balance, key_spend) = wallet_of(gateway, billing, m, account.id, key.id).await;
    let rate_limits = limits_of(gateway, key, &account, billing.now_ms()).await;
    let body = json!({
        "auth": "api_key",
        "token": format!("{}...", key.prefix),
        "org": {"id": account.id.to_string(), "name": &*account.name, "slug": slug(&account.name)},
        "account": {
            "id": account.id,
            "name": &*account.name,
            "plan": account.plan.name,
            "status": account.status.as_str(),
            "trial_ends_at": account.trial_ends_at.map(|t| format_time(t as i64)),
        },
        "plan": account.plan.name,
        "balance_usd": usd(balance),
        "balance_nano_usd": balance.0,
        "balance_micro_usd": balance.micro_usd(),
        "balance_credits": balance.credits(),
        "total_spent_usd": usd(NanoUsd(spent)),
        "total_spent_nano_usd": spent,
        "total_input_tokens": input,
        "total_output_tokens": output,
        "per_model": per_model,
        "rate_limits": rate_limits,
        "api_key": {
            "id": key.id.to_string(),
            "name": &*key.name,
            "prefix": key.prefix,
            "spend_micro_usd": key_spend.micro_usd(),
            "spend_nano_usd": key_spend.0,
            "spend_cap_micro_usd": key.spend_cap.map(NanoUsd::micro_usd),
            "spend_cap_nano_usd": key.spend_cap.map(|c| c.0),
            "fallback_model": key.fallback_model,
            "models": key.models,
            "expires_at": key.expires_at.map(|t| format_time(t as i64)),
        },
    });
    Ok(body.to_string().into_bytes())
}

pub async fn usage(gateway: &Gateway, key: &KeyState) -> Result<Vec<u8>, GatewayError> {
    let (billing, m) = money(gateway)?;
    let account = billing.directory.account(key.account).ok_or(GatewayError::InvalidKey)?;
    let now = billing.now_ms() as i64;
    let view = m.totals.view(account.id, now);
    let limits = limits_of(gateway, key, &account, now as u64).await;
    // The daily cap's own count when the plan has one (its day may be local).
    let (used, limit) = match limits.get("daily_messages") {
        // On Redis the count is the fleet's: the account's billed calls of
        // the (UTC) day stand for it here.
        Some(d) if gateway.hot.is_some() => (view.today_requests, d["limit"].clone()),
        Some(d) => {
            let zone = account.plan.limits.zone;
            let used = gateway.limiter.daily_used(account.id, now as u64, zone);
            (i64::try_from(used).unwrap_or(i64::MAX), d["limit"].clone())
        }
        None => (view.today_requests, Value::Null),
    };
    let month = view.month;
    let cost = NanoUsd(month.spent_nano);
    let body = json!({
        "today": {"used": used, "limit": limit},
        "month": {
            "requests": month.requests,
            "tokensIn": month.input_tokens,
            "tokensOut": month.output_tokens,
            "cost": usd(cost),
            "cost_nano_usd": cost.0,
        },
        "plan": account.plan.name,
        "rate_limits": limits,
    });
    Ok(body.to_string().into_bytes())
}

/// A response kept for the caller's account: itself (`GET`), its input
/// items (`input_items`), or removed (`DELETE`). Never billed.
pub async fn stored_response(
    gateway: &Gateway,
    key: &KeyState,
    id: &str,
    method: &str,
    items: bool,
) -> Result<Vec<u8>, GatewayError> {
    let (_, m) = money(gateway)?;
    let account = key.account as i64;
    let not_found = || GatewayError::NotFound(format!("Response with id '{id}'"));
    let stored = crate::exchange::stored::load(m, account, id).await?.ok_or_else(not_found)?;
    let doc = if items {
        crate::formats::responses::stored::input_items_list(&stored)
    } else if method == "DELETE" {
        let wanted = id.to_string();
        m.store
            .run(move |s| async move { s.delete_stored_response(&wanted).await })
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .ok_or_else(not_found)?;
        json!({ "id": id, "object": "response", "deleted": true })
    } else {
        stored.response
    };
    Ok(doc.to_string().into_bytes())
}

/// The caller's account's saved agents (seed 002), as an OpenAI-style list.
pub async fn agents(gateway: &Gateway, key: &KeyState) -> Result<Vec<u8>, GatewayError> {
    let (_, m) = money(gateway)?;
    let account = key.account as i64;
    let agents = m
        .store
        .run(move |s| async move { s.agents(account).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let data: Vec<serde_json::Value> = agents
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "object": "agent",
                "name": a.name,
                "model": a.model,
                "system_prompt": a.system_prompt,
                "created_at": format_time(a.created_at),
            })
        })
        .collect();
    Ok(json!({ "object": "list", "data": data }).to_string().into_bytes())
}

pub async fn generation(
    gateway: &Gateway,
    key: &KeyState,
    query: Option<&str>,
) -> Result<Vec<u8>, GatewayError> {
    let (_, m) = money(gateway)?;
    let id = query
        .and_then(|q| crate::auth::query_param(q, "id"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| GatewayError::BadRequest("give the request's id as '?id=<x-request-id>'".into()))?;
    m.journal.flushed().await;
    let lookup = id.clone();
    let found = m
        .store
        .run(move |s| async move { s.generation(&lookup).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .filter(|g| g.account_id == key.account as i64)
        .ok_or_else(|| GatewayError::NotFound(format!("A billed request with id '{id}'")))?;
    let cost = NanoUsd(-found.row.amount_nano_usd);
    let body = json!({
        "id": id,
        "model": found.row.model,
        "input_tokens": found.row.input_tokens.unwrap_or(0),
        "output_tokens": found.row.output_tokens.unwrap_or(0),
        "cached_tokens": found.row.cached_tokens.unwrap_or(0),
        "cost_nano_usd": cost.0,
        "cost_usd": usd(cost),
        "estimated": found.row.estimated,
        "created_at": format_time(found.row.at),
    });
    Ok(body.to_string().into_bytes())
}

/// The models `key` may call (a fallback-served model counts too, as the
/// key can use it), in the catalog's order.
/// Whether `key` may see `model` (one it may call, or one coming soon).
fn visible(gateway: &Gateway, key: Option<&KeyState>, model: &ModelEntry) -> bool {
    match (&gateway.billing, key) {
        (Some(billing), Some(key)) => {
            model.status == crate::config::ModelStatus::ComingSoon
                || billing.access(key, &model.id, model.class.as_deref()).is_ok()
        }
        _ => true,
    }
}

/// The model `id` names, if the key may see it: 404 otherwise, as the list
/// hides it.
pub fn model_for<'a>(
    gateway: &'a Gateway,
    key: Option<&KeyState>,
    id: &str,
) -> Result<&'a Arc<ModelEntry>, GatewayError> {
    gateway
        .catalog
        .resolve(id)
        .filter(|m| visible(gateway, key, m))
        .ok_or_else(|| GatewayError::ModelNotFound(id.to_string()))
}

pub fn models_for<'a>(gateway: &'a Gateway, key: Option<&KeyState>) -> Vec<&'a Arc<ModelEntry>> {
    gateway.catalog.entries().iter().filter(|m| visible(gateway, key, m)).collect()
}
