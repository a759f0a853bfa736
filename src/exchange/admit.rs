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
        Refusal::SpendCapReached { left, needed } => GatewayError::SpendCapReached(format!(
            "this key's spend cap has ${left} left, and this request can cost up to ${needed}"
        )),
    };
    metrics::refused(err.code());
    err
}

/// Who is calling with `key`: the key ring of the YAML, or, when calls
/// are billed, the accounts' keys (revoked and expired ones refused).
pub fn authenticate(
    gateway: &Gateway,
    key: &crate::secret::Secret,
    client: Option<std::net::IpAddr>,
) -> Result<Principal, GatewayError> {
    let found = known(gateway, key);
    if let (Err(GatewayError::InvalidKey | GatewayError::KeyNotUsable(_)), Some(ip)) = (&found, client) {
        if gateway.bad_keys.refused(ip) {
            return Err(GatewayError::RateLimited {
                code: "rate_limit_exceeded",
                message: "Too many invalid API keys from this address; retry later".into(),
                headers: vec![("retry-after", "60".into()), ("retry-after-ms", "60000".into())],
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
    let limits = account.plan.limits.in_force(plan.model.class.as_deref(), group, &key.limits);
    let (now, mono) = (billing.now_ms(), billing.wallets().now_monotonic());
    let ask = Ask {
        key: key.id,
        account: account.id,
        class: plan.model.class.as_deref(),
        group,
        input_estimate: plan.input_estimate,
        now,
        mono,
    };
    let permit = take(gateway, &ask, &limits, request_id).await?.map_err(|refused| {
        metrics::rate_limit(refused.kind.as_str(), "refused");
        limit_error(&refused, style, now)
    })?;
    let admission = match hold(gateway, principal, plan, request_id, group) {
        Ok(Some(admission)) => admission,
        Ok(None) => {
            permit.cancel(mono).await;
            return Ok(None);
        }
        Err(e) => {
            permit.cancel(mono).await;
            return Err(e);
        }
    };
    for s in permit.standing() {
        metrics::rate_limit(s.kind.as_str(), "allowed");
    }
    let headers = crate::limits::headers::for_standing(permit.standing(), style, now);
    Ok(Some(Admitted { admission, permit, headers }))
}

/// Takes the call from the limits: on Redis when the fleet shares them;
/// Redis down, this node's share of them in its memory (the limits
/// divided by the fleet size last seen; `on_failure: open`) or a 503
/// (`closed`).
async fn take(
    gateway: &Gateway,
    ask: &Ask<'_>,
    limits: &InForce,
    request_id: &str,
) -> Result<Result<Taken, Refused>, GatewayError> {
    let local = |gateway: &Gateway, limits: &InForce| {
        let limiter = gateway.limiter.clone();
        limiter.admit(ask, limits).map(|p| Taken::Local(limiter.clone(), p))
    };
    let Some(hot) = &gateway.hot else { return Ok(local(gateway, limits)) };
    match hot.admit(ask, limits, request_id).await {
        Ok(taken) => Ok(taken),
        Err(e) if hot.on_failure == crate::config::OnFailure::Open => {
            metrics::rate_limit("hot_state", "failed_open");
            log::debug!(target: "tollgate", "rate limits: Redis unavailable ({e}); this node's share");
            Ok(local(gateway, &hot.divided(limits)))
        }
        Err(e) => {
            metrics::refused("limits_unavailable");
            Err(GatewayError::LimitsUnavailable(e.to_string()))
        }
    }
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
    let message = match headers.iter().find(|(n, _)| *n == "retry-after") {
        Some((_, s)) if refused.retry_after_ms != u64::MAX => format!("{what}; retry after {s} s"),
        _ => what,
    };
    GatewayError::RateLimited { code, message, headers }
}

/// The wallet's part: the hold of the call's worst case.
fn hold(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    request_id: &str,
    group: &'static str,
) -> Result<Option<Admission>, GatewayError> {
    let Some(billing) = &gateway.billing else { return Ok(None) };
    let key = principal
        .billed
        .as_ref()
        .ok_or_else(|| GatewayError::Internal(format!("key {} has no account", principal.key_name)))?;
    let price = plan
        .model
        .price
        .ok_or_else(|| GatewayError::Internal(format!("model {} has no price", plan.model.id)))?;
    // Each answer asked for may use the whole limit.
    let choices = plan.choices.max(1);
    let max_output = plan.max_output.unwrap_or(plan.model.max_output_tokens).saturating_mul(choices);
    let call = Call {
        model_id: &plan.model.id,
        model_class: plan.model.class.as_deref(),
        price,
        input_tokens: plan.input_estimate,
        max_output,
        caller_set_limit: plan.max_output.is_some(),
    };
    let mut admission = billing.admit(key, &call, request_id).map_err(refusal_error)?;
    admission.group = group;
    if let Some(cap) = admission.output_cap.map(|total| total / choices) {
        plan.body = with_output_cap(&plan.body, plan.model.upstream_format, plan.provider_is_openai(), cap)?;
    }
    Ok(Some(admission))
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
