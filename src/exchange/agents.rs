//! Saved agents on the request path (seed 002, issue #19 item 4): a Chat
//! request naming `agentId` gets the agent's system prompt before its own
//! messages and the agent's model; on seed 002's `/chat` route a request
//! with neither `model` nor `agentId` gets its plan's default model. The
//! body is rewritten before it is planned, so every rule after (the plan's
//! models, the key's allowlist, the hold) sees the model that is called.

use crate::billing::KeyState;
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
use crate::gateway::Gateway;
use crate::routing::Endpoint;
use bytes::Bytes;

/// `body` with its agent applied (or the plan's default model on `/chat`).
pub async fn apply(
    gateway: &Gateway,
    key: Option<&KeyState>,
    endpoint: &Endpoint,
    body: Bytes,
) -> Result<Bytes, GatewayError> {
    let agent_route = *endpoint == Endpoint::AgentChat;
    if !agent_route
        && (*endpoint != Endpoint::ChatCompletions || memchr::memmem::find(&body, b"\"agentId\"").is_none())
    {
        return Ok(body);
    }
    let top = TopLevel::parse(&body).map_err(GatewayError::BadRequest)?;
    if agent_route && !top.raw("messages").is_some_and(|m| non_empty_array(m.get())) {
        return Err(GatewayError::BadRequest("'messages' must be a non-empty array".into()));
    }
    let mut edits: Vec<(&str, Option<String>)> = Vec::new();
    match top.str_field("agentId").map_err(GatewayError::BadRequest)? {
        Some(id) => {
            let agent = lookup(gateway, key, &id).await?;
            edits.push(("agentId", None));
            edits.push(("model", Some(json_string(&agent.model))));
            let messages = top.raw("messages").map_or("[]", |m| m.get());
            edits.push(("messages", Some(with_system_prompt(&agent.system_prompt, messages))));
        }
        None if top.raw("agentId").is_some() => {
            return Err(GatewayError::BadRequest("'agentId' must be a string".into()));
        }
        None if agent_route && top.str_field("model").ok().flatten().is_none() => {
            let plan = key
                .and_then(|k| gateway.billing.as_ref()?.directory.account(k.account))
                .map(|a| a.plan.clone());
            let model = plan.and_then(|p| p.default_model.clone()).ok_or_else(|| {
                GatewayError::BadRequest("'model' is required: this plan has no default model".into())
            })?;
            edits.push(("model", Some(json_string(&model))));
        }
        None => return Ok(body),
    }
    Ok(Bytes::from(top.rewrite(&edits)))
}

/// The agent `id` of the caller's account.
async fn lookup(
    gateway: &Gateway,
    key: Option<&KeyState>,
    id: &str,
) -> Result<crate::store::Agent, GatewayError> {
    let not_found = || GatewayError::AgentNotFound(id.to_string());
    let (Some(key), Some(money)) = (key, gateway.money.as_ref()) else { return Err(not_found()) };
    let wanted = id.to_string();
    let agent = money
        .store
        .run(move |s| async move { s.agent(&wanted).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    agent.filter(|a| a.account_id == key.account as i64).ok_or_else(not_found)
}

fn non_empty_array(raw: &str) -> bool {
    let raw = raw.trim();
    raw.starts_with('[') && raw.len() > 2 && !raw[1..raw.len() - 1].trim().is_empty()
}

/// `messages` (a JSON array) with the system prompt first.
fn with_system_prompt(prompt: &str, messages: &str) -> String {
    let system = serde_json::json!({ "role": "system", "content": prompt }).to_string();
    let raw = messages.trim();
    let inner = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or("").trim();
    if inner.is_empty() {
        format!("[{system}]")
    } else {
        format!("[{system},{inner}]")
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_prompt_goes_first() {
        assert_eq!(
            with_system_prompt("Be \"brief\".", r#" [ {"role":"user","content":"hi"} ] "#),
            r#"[{"content":"Be \"brief\".","role":"system"},{"role":"user","content":"hi"}]"#
        );
        assert_eq!(with_system_prompt("x", "[]"), r#"[{"content":"x","role":"system"}]"#);
        assert!(non_empty_array(r#"[{"a":1}]"#));
        assert!(!non_empty_array("[ ]"));
        assert!(!non_empty_array(r#""x""#));
    }
}
