//! What the operator console lists, as the admin API's own routes: the
//! accounts (paged, with a name search), an account's keys, the plans,
//! and this node's live counters. Lists read pages from the store, never a
//! whole table.

use super::extract::{Id, Params};
use super::handlers::{account_of, key_view};
use super::types::*;
use super::{AdminError, AdminState};
use crate::calendar::format_time;
use crate::store::boot::key_state;
use crate::store::AccountsPage;
use axum::extract::State;
use axum::Json;

type Answer<T> = Result<Json<T>, AdminError>;

#[utoipa::path(get, path = "/admin/v1/accounts", params(AccountsQuery),
    responses((status = 200, body = AccountsView), (status = 401)))]
pub async fn list_accounts(
    State(state): State<AdminState>,
    Params(q): Params<AccountsQuery>,
) -> Answer<AccountsView> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AdminError::bad("limit is from 1 to 500"));
    }
    let page = AccountsPage { search: q.search.clone(), after: q.after, limit: limit + 1 };
    let mut rows = state.store.run(move |s| async move { s.accounts(&page).await }).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_after = if more { rows.last().map(|a| a.id) } else { None };
    let data = rows
        .into_iter()
        .map(|a| AccountListItem {
            id: a.id,
            name: a.name,
            plan: a.plan,
            status: a.status,
            trial_ends_at: a.trial_ends_at.map(format_time),
        })
        .collect();
    Ok(Json(AccountsView { data, next_after }))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}/keys", params(("id" = i64, Path)),
    responses((status = 200, body = KeysView), (status = 404)))]
pub async fn account_keys(State(state): State<AdminState>, Id(id): Id) -> Answer<KeysView> {
    account_of(&state, id).await?;
    let records = state.store.run(move |s| async move { s.keys_of(id).await }).await?;
    let mut data = Vec::with_capacity(records.len());
    // Settings from the store (the source of truth), spend from the wallets.
    for record in records {
        data.push(key_view(&state, &key_state(&record)).await?);
    }
    Ok(Json(KeysView { data }))
}

#[utoipa::path(get, path = "/admin/v1/plans", responses((status = 200, body = PlansView)))]
pub async fn plans(State(state): State<AdminState>) -> Json<PlansView> {
    let data = state
        .billing
        .plans()
        .iter()
        .map(|p| PlanView {
            name: p.name.clone(),
            models: p.models.clone(),
            api_access: p.api_access,
            trial_days: p.trial_days,
        })
        .collect();
    Json(PlansView { data })
}

#[utoipa::path(get, path = "/admin/v1/stats", responses((status = 200, body = StatsView)))]
pub async fn stats() -> Json<StatsView> {
    let s = crate::metrics::summary();
    Json(StatsView {
        requests_total: s.requests_total,
        server_errors_total: s.server_errors_total,
        in_flight: s.in_flight,
        errors: s
            .errors
            .into_iter()
            .map(|(code, status, count)| ErrorCount { code, status, count })
            .collect(),
    })
}
