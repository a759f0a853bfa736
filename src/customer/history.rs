//! A key's look back over its account: the billed requests, newest first,
//! a page at a time (`/v1/requests`), and spend and tokens per UTC day
//! (`/v1/usage/daily`), for the customer dashboard's table and chart. Both
//! read pages and daily totals from the store (the ledger's index and the
//! `usage_daily` totals its writer keeps), never the whole ledger, after
//! the journal's pending records reached it, so a call just answered is
//! listed.

use super::{money, usd};
use crate::billing::{KeyState, NanoUsd};
use crate::calendar::format_time;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::store::{LedgerPage, UsageFilter};
use serde_json::{json, Map, Value};

/// A whole-number query parameter within `range`, or `default` when absent.
fn number(
    query: Option<&str>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, GatewayError> {
    match query.and_then(|q| crate::auth::query_param(q, name)) {
        None => Ok(default),
        Some(text) => text.parse::<i64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "'{name}' must be a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        }),
    }
}

fn failed(e: crate::store::StoreError) -> GatewayError {
    GatewayError::Internal(e.to_string())
}

/// `GET /v1/requests?limit=&before=`: the account's billed requests.
pub async fn requests(
    gateway: &Gateway,
    key: &KeyState,
    query: Option<&str>,
) -> Result<Vec<u8>, GatewayError> {
    let (_, m) = money(gateway)?;
    let limit = number(query, "limit", 1..=100, 20)?;
    let before = match query.and_then(|q| crate::auth::query_param(q, "before")) {
        None => None,
        Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
            GatewayError::BadRequest("'before' is the 'next_before' of the page before".into())
        })?),
    };
    m.journal.flushed().await;
    let page = LedgerPage {
        account: key.account as i64,
        charges_only: true,
        before,
        after: None,
        newest_first: true,
        limit: limit + 1,
    };
    let mut rows = m.store.run(move |s| async move { s.ledger_page(&page).await }).await.map_err(failed)?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_before = if has_more { rows.last().map(|r| r.id.to_string()) } else { None };
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let cost = NanoUsd(-r.amount_nano_usd);
            json!({
                "id": r.request_id,
                "model": r.model,
                "key_id": r.key_id,
                "input_tokens": r.input_tokens.unwrap_or(0),
                "output_tokens": r.output_tokens.unwrap_or(0),
                "cached_tokens": r.cached_tokens.unwrap_or(0),
                "cost_nano_usd": cost.0,
                "cost_usd": usd(cost),
                "estimated": r.estimated,
                "created_at": format_time(r.at),
            })
        })
        .collect();
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "next_before": next_before })
        .to_string()
        .into_bytes())
}

/// `GET /v1/usage/daily?days=`: the account's spend per UTC day, the
/// last `days` (30 unless asked; today included), each with its models.
pub async fn daily(gateway: &Gateway, key: &KeyState, query: Option<&str>) -> Result<Vec<u8>, GatewayError> {
    let (billing, m) = money(gateway)?;
    let days = number(query, "days", 1..=366, 30)?;
    let from_day = crate::calendar::utc_day_before(billing.now_ms() as i64, (days - 1) as u32);
    m.journal.flushed().await;
    let filter = UsageFilter {
        account: Some(key.account as i64),
        from_day: Some(from_day.clone()),
        ..UsageFilter::default()
    };
    let rows = m.store.run(move |s| async move { s.usage(&filter).await }).await.map_err(failed)?;
    let mut out: Vec<Value> = Vec::new();
    let mut current: Option<(String, Map<String, Value>, [i64; 5])> = None;
    let close = |(day, models, t): (String, Map<String, Value>, [i64; 5])| {
        json!({
            "day": day,
            "requests": t[0],
            "input_tokens": t[1],
            "output_tokens": t[2],
            "cached_tokens": t[3],
            "cost_nano_usd": t[4],
            "cost_usd": usd(NanoUsd(t[4])),
            "models": models,
        })
    };
    // The rows come by day, then model.
    for r in rows {
        if current.as_ref().is_some_and(|(day, _, _)| *day != r.day) {
            out.extend(current.take().map(close));
        }
        let (_, models, t) = current.get_or_insert_with(|| (r.day.clone(), Map::new(), [0; 5]));
        for (sum, n) in
            t.iter_mut().zip([r.requests, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_nano_usd])
        {
            *sum += n;
        }
        models.insert(
            r.model.clone(),
            json!({ "requests": r.requests, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                    "cost_nano_usd": r.cost_nano_usd }),
        );
    }
    out.extend(current.take().map(close));
    Ok(json!({ "object": "list", "from": from_day, "days": days, "data": out }).to_string().into_bytes())
}
