//! The one step before a billed call goes upstream: the plan's check and
//! a hold of the call's worst-case cost, in one call into `billing`. A
//! call without its own output limit that the wallet cannot pay in full
//! is capped at what the hold pays for, in the provider's own field.

use super::UpstreamPlan;
use crate::auth::Principal;
use crate::billing::{Admission, Call, Refusal};
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
use crate::formats::ClientFormat;
use crate::gateway::Gateway;
use bytes::Bytes;

/// Admits the planned call for `principal`'s account: `Ok(None)` when
/// nothing is billed on this gateway.
pub fn admit(
    gateway: &Gateway,
    principal: &Principal,
    plan: &mut UpstreamPlan,
    request_id: &str,
) -> Result<Option<Admission>, GatewayError> {
    let Some(billing) = &gateway.billing else { return Ok(None) };
    let account = principal
        .account
        .as_deref()
        .and_then(|name| billing.account(name))
        .ok_or_else(|| GatewayError::Internal(format!("key {} has no account", principal.key_name)))?;
    let price = plan
        .model
        .price
        .ok_or_else(|| GatewayError::Internal(format!("model {} has no price", plan.model.id)))?;
    let max_output = plan.max_output.unwrap_or(plan.model.max_output_tokens);
    let call = Call {
        model_id: &plan.model.id,
        price,
        input_tokens: plan.input_estimate,
        max_output,
        caller_set_limit: plan.max_output.is_some(),
    };
    let admission = billing.admit(account, &call, request_id).map_err(|refusal| match refusal {
        Refusal::UpgradeRequired(why) => GatewayError::UpgradeRequired(why),
        Refusal::InsufficientCredits { available, needed } => GatewayError::InsufficientCredits(format!(
            "the balance is ${available}, and this request can cost up to ${needed}"
        )),
    })?;
    if let Some(cap) = admission.output_cap {
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
