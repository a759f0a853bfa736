//! The one step before a billed call goes upstream: the access rules (key,
//! account, trial, plan, allowlist, with the key's fallback model when the
//! operator enables it) and a hold of the call's worst-case cost, through
//! `billing`. A call without its own output limit that the wallet cannot
//! pay in full is capped at what the hold pays for, in the provider's own
//! field.

use super::UpstreamPlan;
use crate::auth::Principal;
use crate::billing::{Admission, Billing, Call, KeyState, Refusal};
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
use crate::formats::ClientFormat;
use crate::gateway::{Gateway, ModelEntry};
use crate::hot::Taken;
use crate::limits::headers::{Headers, Style};
use crate::limits::{Ask, InForce, Kind, Refused};
use crate::metrics;
use crate::routing::Route;
use bytes::Bytes;
use std::sync::Arc;

/// The caller's error for a refusal; counted by code.
pub fn refusal_error(refusal: Refusal) -> GatewayError {
    let err = match refusal {
        Refusal::InvalidKey("invalid") => GatewayError::InvalidKey,
        Refusal::InvalidKey(why) => GatewayError::KeyNotUsable(why),
        Refusal::AccountSuspended => GatewayError::AccountSuspended,
        Refusal::TrialExpired => GatewayError::TrialExpired,
        Refusal::UpgradeRequired(why) => GatewayError::UpgradeRequired(why),
        Refusal::InsufficientCredits { available, needed, affordable_output } => {
            GatewayError::InsufficientCredits(format!(
                "the balance is ${available}, this request can cost up to ${needed}, and the balance \
                 pays for at most {affordable_output} output tokens"
            ))
        }
        Refusal::SpendCapReached { left, needed, cap } => GatewayError::SpendCapReached {
            cap_nano_usd: cap.0,
            why: format!("this key's spend cap has ${left} left, and this request can cost up to ${needed}"),
        },
    };
    metrics::refused(err.code());
    err
}

/// Who is calling with `key`: the key ring of the YAML, or, when calls
/// are billed, the accounts' keys (revoked and expired ones refused). In a
/// fleet, a key this node does not know may have been issued by another
/// node a moment ago: it is looked up in the store (for addresses not
/// over the invalid-key limit, which bounds those lookups).
pub async fn authenticate(
    gateway: &Gateway,
    key: &crate::secret::Secret,
    client: Option<std::net::IpAddr>,
) -> Result<Principal, GatewayError> {
    let mut found = known(gateway, key);
    if let (Err(GatewayError::InvalidKey), Some(_), Some(billing), Some(money)) =
        (&found, &gateway.hot, &gateway.billing, &gateway.money)
    {
        if !client.is_some_and(|ip| gateway.bad_keys.over(ip)) {
            let digest = crate::auth::digest(key.expose());
            match crate::hot::changes::fetch_key(billing, &money.store, digest).await {
                Ok(true) => found = known(gateway, key),
                Ok(false) => {}
                Err(e) => log::warn!(target: "tollgate", "a key another node may have issued: {e}"),
            }
        }
    }
    if let (Err(GatewayError::InvalidKey | GatewayError::KeyNotUsable(_)), Some(ip)) = (&found, client) {
        if gateway.bad_keys.refused(ip) {
            return Err(GatewayError::RateLimited {
                code: "rate_limit_exceeded",
                message: "Too many invalid API keys from this address; retry later".into(),
                headers: crate::limits::headers::retry_after(60_000),
            });
        }
    }
    found
}

fn known(gateway: &Gateway, key: &crate::secret::Secret) -> Result<Principal, GatewayError> {
    match &gateway.billing {
        None => gateway.keys.authenticate(key).cloned().ok_or(GatewayError::InvalidKey),
        Some(billing) => billing
            .authenticate(&crate::auth::digest(key.expose()))
            .map(|k| Principal { key_name: k.name.clone(), billed: Some(k) })
            .map_err(refusal_error),
    }
}

/// The access rule for `key`'s calls: a model its account or allowlist
/// excludes goes to the key's fallback model when that is enabled and
/// allowed, and is refused otherwise.
pub fn model_access<'a>(
    gateway: &'a Gateway,
    billing: &'a Billing,
    key: &'a KeyState,
) -> impl Fn(&Arc<ModelEntry>) -> Result<Option<Arc<ModelEntry>>, GatewayError> + 'a {
    move |model| match billing.access(key, &model.id, model.class.as_deref()) {
        Ok(_) => Ok(None),
        Err(Refusal::UpgradeRequired(why)) => {
            let fallback = billing
                .options
                .fallback_models
                .then_some(key.fallback_model.as_deref())
                .flatten()
                .and_then(|name| gateway.catalog.resolve(name))
                .filter(|m| m.status == crate::config::ModelStatus::Live)
                .filter(|m| billing.access(key, &m.id, m.class.as_deref()).is_ok());
            match fallback {
                Some(m) => Ok(Some(m.clone())),
                None => Err(refusal_error(Refusal::UpgradeRequired(why))),
            }
        }
        Err(other) => Err(refusal_error(other)),
    }
}

/// A billed call let through: its hold, what it took from the rate
/// limits, and the rate-limit headers its answer carries.
pub struct Admitted {
    pub admission: Admission,
    pub permit: Taken,
    pub headers: Headers,
}

/// Admits the planned call for `principal`'s account, against its rate
/// limits and then its wallet: a call over a limit gets the limit's 429
/// and holds nothing; a call the wallet cannot hold gives back what it
/// took from the limits, so it takes from nothing. `Ok(None)` when
/// nothing is billed here, and for counting tokens: free, held for
/// nothing, no message against any limit.
pub async fn admit(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    request_id: &str,
    route: &Route,
) -> Result<Option<Admitted>, GatewayError> {
    let (Some(billing), Some(key)) = (&gateway.billing, principal.billed.as_ref()) else { return Ok(None) };
    if route.endpoint == crate::routing::Endpoint::CountTokens {
        gateway.count_tokens_calls.take(key.id)?;
        return Ok(None);
    }
    let account = billing.directory.account(key.account).ok_or(GatewayError::InvalidKey)?;
    let style = match route.format {
        ClientFormat::Openai | ClientFormat::Responses => Style::OpenAi,
        ClientFormat::Anthropic => Style::Anthropic,
        ClientFormat::Gemini => Style::Plain,
    };
    let group = route.endpoint.limit_group();
    let model = plan.model.clone();
    let limits = account.plan.limits.in_force(model.class.as_deref(), group, &key.limits);
    let (now, mono) = (billing.now_ms(), billing.wallets().now_monotonic());
    let ask = Ask {
        key: key.id,
        account: account.id,
        class: model.class.as_deref(),
        group,
        input_estimate: plan.input_estimate,
        now,
        mono,
    };
    let (permit, mut admission) = match &gateway.hot {
        Some(hot) => match shared(gateway, principal, plan, &ask, &limits, request_id, style).await {
            Ok(taken) => taken?,
            Err(e) if hot.on_failure == crate::config::OnFailure::Open => {
                metrics::rate_limit("hot_state", "failed_open");
                billing.hold_from_last_known(account.id);
                log::debug!(target: "tollgate", "hot state: Redis unavailable ({e}); this node's share and last balances");
                match local(gateway, principal, plan, &ask, &hot.divided(&limits), request_id, style).await? {
                    Some(taken) => taken,
                    None => return Ok(None),
                }
            }
            Err(e) => {
                metrics::refused("limits_unavailable");
                return Err(GatewayError::LimitsUnavailable(e.to_string()));
            }
        },
        None => match local(gateway, principal, plan, &ask, &limits, request_id, style).await? {
            Some(taken) => taken,
            None => return Ok(None),
        },
    };
    admission.group = group;
    for s in permit.standing() {
        metrics::rate_limit(s.kind.as_str(), "allowed");
    }
    let headers = crate::limits::headers::for_standing(permit.standing(), style, now);
    Ok(Some(Admitted { admission, permit, headers }))
}

/// This node alone: the call taken from the limits in its memory, then
/// held against its wallets; a call the wallet cannot hold gives back
/// what it took from the limits, so it takes from nothing.
async fn local(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    ask: &Ask<'_>,
    limits: &InForce,
    request_id: &str,
    style: Style,
) -> Result<Option<(Taken, Admission)>, GatewayError> {
    let limiter = gateway.limiter.clone();
    let permit = match limiter.admit(ask, limits) {
        Ok(p) => Taken::Local(limiter.clone(), p),
        Err(refused) => {
            metrics::rate_limit(refused.kind.as_str(), "refused");
            return Err(limit_error(&refused, style, ask.now));
        }
    };
    match hold(gateway, principal, plan, request_id) {
        Ok(Some(admission)) => Ok(Some((permit, admission))),
        Ok(None) => {
            permit.cancel(ask.mono).await;
            Ok(None)
        }
        Err(e) => {
            permit.cancel(ask.mono).await;
            Err(e)
        }
    }
}

/// The fleet: the call taken from the limits and held against the wallet
/// and the key's cap on Redis, in one round trip. A wallet Redis does
/// not have yet is seeded from the ledger first; a call that did not set
/// its own output limit and that the wallet cannot pay in full is asked
/// again, once, capped at what the wallet affords. `Err`: Redis could not
/// answer (the outage policy decides).
async fn shared(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    ask: &Ask<'_>,
    limits: &InForce,
    request_id: &str,
    style: Style,
) -> Result<Result<(Taken, Admission), GatewayError>, crate::hot::redis::Unavailable> {
    use crate::hot::redis::{HoldAsk, Unavailable};
    use crate::hot::Held;
    let (Some(hot), Some(billing), Some(money), Some(key)) =
        (&gateway.hot, &gateway.billing, &gateway.money, principal.billed.as_ref())
    else {
        return Ok(Err(GatewayError::Internal("a shared hold with no billing".into())));
    };
    let account = match billing.access(key, &plan.model.id, plan.model.class.as_deref()) {
        Ok(account) => account,
        Err(refusal) => return Ok(Err(refusal_error(refusal))),
    };
    let model = plan.model.clone();
    let call = match call_of(&model, plan) {
        Ok(call) => call,
        Err(e) => return Ok(Err(e)),
    };
    let mut quote = Billing::quote(&call, crate::billing::NanoUsd(i64::MAX));
    let mut capped_once = false;
    for _ in 0..4 {
        let hold = HoldAsk {
            amount: u64::try_from(quote.held.0).unwrap_or(0),
            key_id: key.id,
            cap: key.spend_cap.map(|c| u64::try_from(c.0).unwrap_or(0)),
            lease_ms: hot.redis.lease_ms,
        };
        match hot.take(ask, limits, request_id, &hold).await? {
            Held::Taken(permit) => {
                if let Some(available) = permit.available() {
                    billing.saw_shared_balance(account.id, available);
                }
                let admission = billing.shared_admission(key, account, &call, quote, request_id);
                if let Err(e) = cap_output(plan, &admission) {
                    permit.cancel(ask.mono).await;
                    return Ok(Err(e));
                }
                return Ok(Ok((permit, admission)));
            }
            Held::Limit(refused) => {
                metrics::rate_limit(refused.kind.as_str(), "refused");
                return Ok(Err(limit_error(&refused, style, ask.now)));
            }
            Held::Wallet(w) => {
                let smaller = Billing::quote(&call, crate::billing::NanoUsd(w.budget));
                if !capped_once && smaller.output_cap.is_some() && smaller.held.0 <= w.budget {
                    capped_once = true;
                    quote = smaller;
                    continue;
                }
                return Ok(Err(refusal_error(Billing::shared_refusal(
                    &call,
                    quote.held,
                    w.spend_cap.then(|| key.spend_cap.unwrap_or(crate::billing::NanoUsd::ZERO)),
                    w.left,
                ))));
            }
            Held::Unseeded => {
                crate::hot::sidecar::seed(&hot.redis, &money.store, &money.journal, account.id)
                    .await
                    .map_err(Unavailable)?;
            }
        }
    }
    Err(Unavailable(format!("the wallet of account {} could not be seeded", account.id)))
}

/// The caller's error for a limit that refused: 429 with when to retry,
/// or 403 for a limit of 0, which blocks.
fn limit_error(refused: &Refused, style: Style, now: u64) -> GatewayError {
    let name = refused.kind.as_str();
    if refused.blocked() {
        return GatewayError::LimitBlocked(format!(
            "the {name} limit of this key or its plan is 0: no call is let through"
        ));
    }
    let (code, what) = match refused.kind {
        Kind::Daily => ("daily_limit", "Daily message limit reached for your plan".to_string()),
        Kind::InputTpm if refused.retry_after_ms == u64::MAX => (
            "rate_limit_exceeded",
            format!("This request's input is more than the {} tokens a minute allowed", refused.limit),
        ),
        _ => ("rate_limit_exceeded", format!("Rate limit exceeded ({} {name})", refused.limit)),
    };
    let headers = crate::limits::headers::for_refusal(refused, style, now);
    let message = match headers.iter().find(|(n, _)| *n == crate::limits::headers::RETRY_AFTER) {
        Some((_, s)) if refused.retry_after_ms != u64::MAX => {
            format!("{what}; retry after {} s", s.to_str().unwrap_or_default())
        }
        _ => what,
    };
    GatewayError::RateLimited { code, message, headers }
}

/// The wallet's part on this node: the hold of the call's worst case.
fn hold(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    request_id: &str,
) -> Result<Option<Admission>, GatewayError> {
    let Some(billing) = &gateway.billing else { return Ok(None) };
    let key = principal
        .billed
        .as_ref()
        .ok_or_else(|| GatewayError::Internal(format!("key {} has no account", principal.key_name)))?;
    let model = plan.model.clone();
    let call = call_of(&model, plan)?;
    let admission = billing.admit(key, &call, request_id).map_err(refusal_error)?;
    cap_output(plan, &admission)?;
    Ok(Some(admission))
}

/// What the planned call asks for, as far as its price goes: each answer
/// asked for may use the whole output limit.
fn call_of<'a>(model: &'a ModelEntry, plan: &UpstreamPlan) -> Result<Call<'a>, GatewayError> {
    let price = plan
        .price
        .or(model.price)
        .ok_or_else(|| GatewayError::Internal(format!("model {} has no price", model.id)))?;
    let choices = plan.choices.max(1);
    let max_output = plan.max_output.unwrap_or(model.max_output_tokens).saturating_mul(choices);
    Ok(Call {
        model_id: model.id.clone(),
        model_class: model.class.as_deref(),
        price,
        input_tokens: plan.input_estimate,
        max_output,
        caller_set_limit: plan.max_output.is_some(),
        units: plan.units,
    })
}

/// A hold that pays for less than the model's whole output caps the
/// output in the provider's own field, shared among the answers asked for.
pub fn cap_output(plan: &mut UpstreamPlan, admission: &Admission) -> Result<(), GatewayError> {
    if let Some(cap) = admission.output_cap.map(|total| total / plan.choices.max(1)) {
        plan.body = with_output_cap(&plan.body, plan.model.upstream_format, plan.provider_is_openai(), cap)?;
    }
    Ok(())
}

/// The provider's body asking for at most `cap` output tokens.
fn with_output_cap(
    body: &Bytes,
    format: ClientFormat,
    openai: bool,
    cap: u64,
) -> Result<Bytes, GatewayError> {
    let top = TopLevel::parse(body).map_err(GatewayError::Internal)?;
    let edit = match format {
        ClientFormat::Openai if openai => ("max_completion_tokens", cap.to_string()),
        ClientFormat::Openai | ClientFormat::Anthropic => ("max_tokens", cap.to_string()),
        ClientFormat::Responses => ("max_output_tokens", cap.to_string()),
        ClientFormat::Gemini => {
            let mut config: serde_json::Map<String, serde_json::Value> = top
                .raw("generationConfig")
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or_default();
            config.insert("maxOutputTokens".into(), cap.into());
            ("generationConfig", serde_json::Value::Object(config).to_string())
        }
    };
    Ok(Bytes::from(top.rewrite(&[(edit.0, Some(edit.1))])))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_goes_in_each_providers_own_field() {
        let cap = |body: &str, format, openai| {
            let out =
                with_output_cap(&Bytes::from(body.to_string()), format, openai, 321).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap_or_default()
        };
        assert_eq!(cap(r#"{"model":"m"}"#, ClientFormat::Openai, true)["max_completion_tokens"], 321);
        assert_eq!(cap(r#"{"model":"m"}"#, ClientFormat::Openai, false)["max_tokens"], 321);
        assert_eq!(cap(r#"{"max_tokens":8192}"#, ClientFormat::Anthropic, false)["max_tokens"], 321);
        assert_eq!(cap(r#"{"input":"x"}"#, ClientFormat::Responses, true)["max_output_tokens"], 321);
        let gemini = cap(r#"{"generationConfig":{"temperature":0.5}}"#, ClientFormat::Gemini, false);
        assert_eq!(gemini["generationConfig"]["maxOutputTokens"], 321);
        assert_eq!(gemini["generationConfig"]["temperature"], 0.5);
    }
}
