//! Stored responses on the request path (issue #19 item 5): a Responses
//! call to a model served through translation gets its conversation
//! rebuilt from the store (`previous_response_id`, `item_reference`), and
//! is kept when it ends (`store`, true by default) for the next turn and
//! for `GET /v1/responses/{id}`. A call to OpenAI's own Responses API is
//! left to OpenAI, which stores it itself.

use crate::billing::KeyState;
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
use crate::formats::responses::stored::{self, Stored};
use crate::formats::ClientFormat;
use crate::gateway::Gateway;
use crate::routing::{Endpoint, Route};
use crate::store::boot::Money;
use crate::store::StoredResponseRow;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// What to keep of a call once it is answered.
pub struct Keep {
    pub money: Arc<Money>,
    pub account: i64,
    /// The conversation the call was answered from: the request's
    /// `input` as JSON text (a string or a list of items).
    pub input: String,
    pub previous: Option<String>,
    pub rules: crate::config::StoredResponsesSection,
}

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keep")
            .field("account", &self.account)
            .field("input_bytes", &self.input.len())
            .finish()
    }
}

/// The body as it goes to planning, and what to keep of the call.
pub async fn prepare(
    gateway: &Gateway,
    key: Option<&KeyState>,
    route: &Route,
    body: Bytes,
) -> Result<(Bytes, Option<Keep>), GatewayError> {
    let (Some(key), Some(money)) = (key, gateway.money.clone()) else { return Ok((body, None)) };
    if route.endpoint != Endpoint::Responses {
        return Ok((body, None));
    }
    let top = TopLevel::parse(&body).map_err(GatewayError::BadRequest)?;
    let Some(model) =
        top.str_field("model").ok().flatten().and_then(|m| gateway.catalog.resolve(&m).cloned())
    else {
        return Ok((body, None));
    };
    if model.speaks(ClientFormat::Responses) {
        return Ok((body, None));
    }
    let keep = top.bool_field("store").map_err(GatewayError::BadRequest)?.unwrap_or(true);
    let previous = top.str_field("previous_response_id").map_err(GatewayError::BadRequest)?;
    let raw_input = top.raw("input").map(|r| r.get()).unwrap_or("null");
    let rules = gateway.stored_responses;
    let account = key.account as i64;
    // Without a previous response or an item reference the body goes on
    // as it came and the input is kept as its text: never a tree of
    // values, and not even that past what would be stored (a 30 MB input
    // cost five times its size here before it was refused at the end).
    if previous.is_none() && memchr::memmem::find(raw_input.as_bytes(), b"item_reference").is_none() {
        if !keep {
            return Ok((body, None));
        }
        if raw_input.len() > rules.max_bytes {
            log::info!(target: "tollgate", "an input larger than {} bytes is not kept", rules.max_bytes);
            return Ok((body, None));
        }
        let input = raw_input.to_string();
        return Ok((body, Some(Keep { money, account, input, previous, rules })));
    }
    let raw_input =
        serde_json::from_str::<Value>(raw_input).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let input = stored::input_items(raw_input).map_err(GatewayError::BadRequest)?;
    let references = stored::references(&input);
    let earlier = match &previous {
        Some(id) => Some(
            load(&money, account, id)
                .await?
                .ok_or_else(|| GatewayError::NotFound(format!("Previous response with id '{id}'")))?,
        ),
        None => None,
    };
    let found = if references.is_empty() {
        Vec::new()
    } else {
        let rows = money
            .store
            .run(move |s| async move { s.response_items(account, &references).await })
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        rows.into_iter().filter_map(|(id, item)| Some((id, serde_json::from_str(&item).ok()?))).collect()
    };
    let rebuilt = stored::rebuild(earlier.as_ref(), input, &found)
        .map_err(|why| GatewayError::NotFound(why.replace(" not found", "")))?;
    let text = serde_json::to_string(&rebuilt).map_err(|e| GatewayError::Internal(e.to_string()))?;
    drop(rebuilt);
    let kept = keep.then(|| text.clone());
    let body = Bytes::from(top.rewrite(&[("previous_response_id", None), ("input", Some(text))]));
    Ok((body, kept.map(|input| Keep { money, account, input, previous, rules })))
}

/// Response `id` of `account`, if it is kept.
pub async fn load(money: &Money, account: i64, id: &str) -> Result<Option<Stored>, GatewayError> {
    let (wanted, now) = (id.to_string(), now_ms());
    let row = money
        .store
        .run(move |s| async move { s.stored_response(&wanted, now).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(row.filter(|r| r.account_id == account).and_then(|r| {
        Some(Stored {
            id: r.id,
            account_id: r.account_id,
            input: serde_json::from_str(&r.input).ok()?,
            response: serde_json::from_str(&r.response).ok()?,
        })
    }))
}

/// Keeps the call's `response` (the object its caller got), before the
/// caller can see its answer end: its next turn may name it at once.
pub async fn save(keep: &Keep, mut response: Value) -> Result<(), GatewayError> {
    let Some(id) = response.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Err(GatewayError::Internal("a response without an id is not kept".into()));
    };
    response["store"] = Value::Bool(true);
    response["previous_response_id"] = keep.previous.clone().map_or(Value::Null, Value::String);
    let input =
        serde_json::from_str::<Value>(&keep.input).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let input = stored::with_ids(stored::input_items(input).map_err(GatewayError::Internal)?, &id);
    let text = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let mut items: Vec<(String, String)> = Vec::new();
    let outputs = response.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
    for item in input.iter().chain(&outputs) {
        if let Some(item_id) = item.get("id").and_then(Value::as_str) {
            items.push((item_id.to_string(), text(item)));
        }
    }
    let now = now_ms();
    let row = StoredResponseRow {
        id,
        account_id: keep.account,
        created_at: now,
        expires_at: now.saturating_add(
            i64::try_from(keep.rules.keep_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
        ),
        input: text(&Value::Array(input)),
        response: text(&response),
    };
    if row.input.len() + row.response.len() > keep.rules.max_bytes {
        log::info!(target: "tollgate", "response {} is larger than {} bytes: not kept", row.id, keep.rules.max_bytes);
        return Ok(());
    }
    keep.money
        .store
        .run(move |s| async move { s.put_response(&row, &items).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

fn now_ms() -> i64 {
    i64::try_from(crate::billing::Clock::now_ms(&crate::billing::SystemClock)).unwrap_or(i64::MAX)
}
