//! The admin API's handlers: each validates its input, changes the store,
//! then the in-memory state the request path reads (or, for money, goes
//! through `billing`, whose journal reaches the store).

use super::extract::{Body, Id, Params};
use super::types::*;
use super::{AdminError, AdminState};
use crate::billing::{AccountState, NanoUsd, Status};
use crate::calendar::format_time;
use crate::store::boot::{account_state, key_state};
use crate::store::{AccountPatch, KeyPatch, KeyRecord, LedgerPage, NewKey, UsageFilter, UsageRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

type Answer<T> = Result<Json<T>, AdminError>;
type Created<T> = Result<(StatusCode, Json<T>), AdminError>;

/// A time a PATCH may set, clear (`null`) or leave alone (absent).
fn nullable_time(t: &Option<Option<TimeInput>>) -> Result<Option<Option<i64>>, AdminError> {
    t.as_ref().map(|t| t.as_ref().map(TimeInput::millis).transpose().map_err(AdminError::bad)).transpose()
}

/// The fleet's hot state (Redis), when this node is part of one.
fn hot(state: &AdminState) -> Option<Arc<crate::hot::Hot>> {
    state.live.current().hot.clone()
}

/// Account `id`; one another node created a moment ago is read from the
/// store (its change message may not have arrived yet).
pub(super) async fn account_of(state: &AdminState, id: i64) -> Result<Arc<AccountState>, AdminError> {
    let Ok(id) = u64::try_from(id) else { return Err(AdminError::not_found("account")) };
    if let Some(account) = state.billing.directory.account(id) {
        return Ok(account);
    }
    if hot(state).is_some() {
        crate::hot::changes::refresh(&state.billing, &state.store).await.map_err(AdminError::store)?;
    }
    state.billing.directory.account(id).ok_or_else(|| AdminError::not_found("account"))
}

/// Tells the fleet's other nodes that accounts or keys changed: they read
/// them again from the store within a second (the refresh every 30 s
/// covers a message lost meanwhile).
async fn announce(state: &AdminState, what: &str) {
    if let Some(hot) = hot(state) {
        if let Err(e) = hot.redis.publish(what).await {
            log::warn!(target: "tollgate", "admin: the other nodes learn of {what} at their next refresh: {e}");
        }
    }
}

/// The wallet's balance and holds: on Redis in a fleet (seeded from the
/// ledger when Redis does not have it yet), else this node's.
async fn wallet_of(state: &AdminState, account: u64) -> Result<(NanoUsd, NanoUsd), AdminError> {
    if let Some(hot) = hot(state) {
        let on = crate::hot::sidecar::balance(&hot.redis, &state.store, &state.journal, account, None)
            .await
            .map_err(AdminError::store)?;
        return Ok((NanoUsd(on.credit - on.debit - on.held), NanoUsd(on.held)));
    }
    let balance = state.billing.available(account);
    Ok((balance, NanoUsd((state.billing.wallets().lots_available(account).0 - balance.0).max(0))))
}

/// An operator's record (a top-up, an adjustment) on the wallet on Redis
/// too, once whichever node is asked again. Only once the store keeps it:
/// the store attributes a fleet's charges to the lots it has, so no charge
/// may spend a lot before the ledger has it. A store that does not keep
/// it in time answers 503; the record stays journaled, and the reconciler
/// brings it to Redis once the ledger has it.
async fn apply_shared(state: &AdminState, account: u64, record: &str, amount: i64) -> Result<(), AdminError> {
    if let Some(hot) = hot(state) {
        if tokio::time::timeout(STORE_WAIT, state.journal.flushed()).await.is_err() {
            return Err(AdminError::store(format!(
                "the store did not keep '{record}' within {} s: it is journaled, and reaches the wallet when the store has it",
                STORE_WAIT.as_secs()
            )));
        }
        hot.redis.apply(account, record, amount).await.map_err(|e| AdminError::store(e.to_string()))?;
    }
    Ok(())
}

/// How long an operator's record waits for the store before the answer.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn spent(state: &AdminState, account: i64) -> Result<i64, AdminError> {
    state.journal.flushed().await;
    let filter = UsageFilter { account: Some(account), ..UsageFilter::default() };
    let rows = state.store.run(move |s| async move { s.usage(&filter).await }).await?;
    Ok(rows.iter().map(|r| r.cost_nano_usd).sum())
}

async fn account_view(state: &AdminState, account: &AccountState) -> Result<AccountView, AdminError> {
    let (balance, held) = wallet_of(state, account.id).await?;
    Ok(AccountView {
        id: account.id as i64,
        name: account.name.to_string(),
        plan: account.plan.name.clone(),
        status: account.status.as_str().into(),
        trial_ends_at: account.trial_ends_at.map(|t| format_time(t as i64)),
        balance_credits: balance.credits(),
        balance_nano_usd: balance.0,
        held_nano_usd: held.0,
        spent_nano_usd: spent(state, account.id as i64).await?,
    })
}

#[utoipa::path(post, path = "/admin/v1/accounts", request_body = CreateAccount,
    responses((status = 201, body = AccountView), (status = 400), (status = 401)))]
pub async fn create_account(
    State(state): State<AdminState>,
    Body(body): Body<CreateAccount>,
) -> Created<AccountView> {
    let plan = state
        .billing
        .plan(&body.plan)
        .ok_or_else(|| AdminError::bad(format!("no plan named '{}'", body.plan)))?;
    if body.name.trim().is_empty() {
        return Err(AdminError::bad("'name' cannot be empty"));
    }
    let now = state.billing.now_ms() as i64;
    let trial_ends_at = match &body.trial_ends_at {
        Some(t) => Some(t.millis().map_err(AdminError::bad)?),
        None => plan.trial_days.map(|days| now + i64::from(days) * 86_400_000),
    };
    let (name, plan_name) = (body.name.clone(), body.plan.clone());
    let account = state
        .store
        .run(move |s| async move {
            if s.account_named(&name).await?.is_some() {
                return Ok(None);
            }
            s.create_account(&name, &plan_name, trial_ends_at, now).await.map(Some)
        })
        .await?
        .ok_or_else(|| {
            AdminError(
                StatusCode::CONFLICT,
                "account_exists",
                format!("an account named '{}' exists", body.name),
            )
        })?;
    let state_account = state.billing.directory.put_account(AccountState {
        id: account.id as u64,
        name: Arc::from(account.name.as_str()),
        plan,
        status: Status::Active,
        trial_ends_at: trial_ends_at.map(|t| t as u64),
    });
    announce(&state, "account").await;
    Ok((StatusCode::CREATED, Json(account_view(&state, &state_account).await?)))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = AccountView), (status = 404)))]
pub async fn get_account(State(state): State<AdminState>, Id(id): Id) -> Answer<AccountView> {
    let account = account_of(&state, id).await?;
    Ok(Json(account_view(&state, &account).await?))
}

#[utoipa::path(patch, path = "/admin/v1/accounts/{id}", params(("id" = i64, Path)), request_body = PatchAccount,
    responses((status = 200, body = AccountView), (status = 400), (status = 404)))]
pub async fn patch_account(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<PatchAccount>,
) -> Answer<AccountView> {
    account_of(&state, id).await?;
    if let Some(plan) = &body.plan {
        if state.billing.plan(plan).is_none() {
            return Err(AdminError::bad(format!("no plan named '{plan}'")));
        }
    }
    let status = match body.status.as_deref() {
        None => None,
        Some(s @ ("active" | "suspended")) => Some(s.to_string()),
        Some(other) => {
            return Err(AdminError::bad(format!("status must be 'active' or 'suspended', not '{other}'")))
        }
    };
    let trial = nullable_time(&body.trial_ends_at)?;
    let patch = AccountPatch { plan: body.plan.clone(), status, trial_ends_at: trial };
    let kept = state
        .store
        .run(move |s| async move { s.update_account(id, &patch).await })
        .await?
        .ok_or_else(|| AdminError::not_found("account"))?;
    let next = state.billing.directory.put_account(account_state(&state.billing, &kept));
    announce(&state, "account").await;
    Ok(Json(account_view(&state, &next).await?))
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/topups", params(("id" = i64, Path)), request_body = Topup,
    responses((status = 200, body = TopupView), (status = 400), (status = 404)))]
pub async fn topup(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<Topup>,
) -> Answer<TopupView> {
    let account = account_of(&state, id).await?;
    let paid = body.amount_usd.nano().map_err(AdminError::bad)?;
    if paid.0 <= 0 {
        return Err(AdminError::bad("'amount_usd' must be more than zero"));
    }
    if !(1..=100).contains(&body.multiplier) {
        return Err(AdminError::bad("'multiplier' must be a whole number from 1 to 100"));
    }
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 200 {
        return Err(AdminError::bad("'idempotency_key' must be 1 to 200 characters"));
    }
    let credited = state
        .billing
        .topup(account.id, paid, body.multiplier, &body.idempotency_key)
        .map_err(AdminError::bad)?;
    let list = NanoUsd(paid.0.saturating_mul(i64::from(body.multiplier)));
    let record = format!("topup:{}:{}", account.id, body.idempotency_key);
    apply_shared(&state, account.id, &record, list.0).await?;
    let (balance, _) = wallet_of(&state, account.id).await?;
    Ok(Json(TopupView {
        balance_credits: balance.credits(),
        balance_nano_usd: balance.0,
        credited_nano_usd: credited.map_or(0, |c| c.0),
        duplicate: credited.is_none(),
    }))
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/adjustments", params(("id" = i64, Path)), request_body = Adjustment,
    responses((status = 200, body = TopupView), (status = 400), (status = 404)))]
pub async fn adjust(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<Adjustment>,
) -> Answer<TopupView> {
    let account = account_of(&state, id).await?;
    let amount = body.amount_usd.nano().map_err(AdminError::bad)?;
    if amount.0 == 0 || body.idempotency_key.is_empty() {
        return Err(AdminError::bad("an adjustment needs a non-zero 'amount_usd' and an 'idempotency_key'"));
    }
    let key = format!("adjust:{}:{}", account.id, body.idempotency_key);
    let fresh = state.billing.adjust(account.id, amount, &key).map_err(AdminError::bad)?;
    apply_shared(&state, account.id, &key, amount.0).await?;
    let (balance, _) = wallet_of(&state, account.id).await?;
    Ok(Json(TopupView {
        balance_credits: balance.credits(),
        balance_nano_usd: balance.0,
        credited_nano_usd: if fresh { amount.0 } else { 0 },
        duplicate: !fresh,
    }))
}

fn limits_view(state: &AdminState, k: &crate::billing::KeyState) -> LimitsView {
    let plan = state.billing.directory.account(k.account).map(|a| a.plan.limits.clone()).unwrap_or_default();
    let o = k.limits;
    // What the request path would put in force, for each class and group.
    let base = plan.in_force(None, "messages", &o);
    let rpm_by_class = plan
        .rpm_by_class
        .keys()
        .filter_map(|c| Some((c.clone(), plan.in_force(Some(c), "messages", &o).rpm?)))
        .collect();
    let rph = ["messages", "responses", "images"]
        .into_iter()
        .filter_map(|g| Some((g.to_string(), plan.in_force(None, g, &o).rph?)))
        .collect();
    LimitsView {
        rpm: base.rpm,
        rpm_by_class,
        rph,
        daily_messages: base.daily_messages,
        input_tpm: base.input_tpm,
        concurrent: base.concurrent,
        overrides: o,
    }
}

/// What `k` has spent: on Redis in a fleet, else this node's count.
async fn key_spend(state: &AdminState, k: &crate::billing::KeyState) -> Result<NanoUsd, AdminError> {
    match hot(state) {
        Some(hot) => {
            let on =
                crate::hot::sidecar::balance(&hot.redis, &state.store, &state.journal, k.account, Some(k.id))
                    .await;
            Ok(NanoUsd(on.map_err(AdminError::store)?.key_spent))
        }
        None => Ok(state.billing.key_spent(k.id)),
    }
}

pub(super) async fn key_view(
    state: &AdminState,
    k: &crate::billing::KeyState,
) -> Result<KeyView, AdminError> {
    let spend = key_spend(state, k).await?;
    Ok(KeyView {
        id: k.id as i64,
        account_id: k.account as i64,
        name: k.name.to_string(),
        prefix: k.prefix.clone(),
        status: k.status.as_str().into(),
        expires_at: k.expires_at.map(|t| format_time(t as i64)),
        spend_cap_nano_usd: k.spend_cap.map(|c| c.0),
        spend_cap_micro_usd: k.spend_cap.map(NanoUsd::micro_usd),
        spend_nano_usd: spend.0,
        spend_micro_usd: spend.micro_usd(),
        models: k.models.clone(),
        fallback_model: k.fallback_model.clone(),
        limits: limits_view(state, k),
        created_at: format_time(k.created_at as i64),
        last_used_at: k.last_used().map(|t| format_time(t as i64)),
    })
}

fn check_models(
    state: &AdminState,
    models: Option<&Vec<String>>,
    fallback: Option<&String>,
) -> Result<(), AdminError> {
    if let Some(models) = models {
        for pattern in models {
            allowlist_entry(&state.live.current().catalog, pattern).map_err(AdminError::bad)?;
        }
    }
    if let Some(f) = fallback {
        if state.live.current().catalog.resolve(f).is_none() {
            return Err(AdminError::bad(format!("'fallback_model': no model '{f}'")));
        }
    }
    Ok(())
}

/// One entry of a key's allowlist, as `plan::matches_any`
/// reads it: a model id, a `prefix*` glob, or `class:NAME` of a configured
/// class. A name that matches nothing (a typo, or an alias: allowlists
/// match ids) would only make the key refuse what it was meant to allow.
fn allowlist_entry(catalog: &crate::gateway::Catalog, pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("'models' cannot hold an empty id".into());
    }
    if pattern.ends_with('*') {
        return Ok(());
    }
    if let Some(class) = pattern.strip_prefix("class:") {
        return if catalog.entries().iter().any(|m| m.class.as_deref() == Some(class)) {
            Ok(())
        } else {
            Err(format!("'models': no model has the class '{class}' (in '{pattern}')"))
        };
    }
    match catalog.resolve(pattern) {
        Some(m) if *m.id == *pattern => Ok(()),
        Some(m) => {
            Err(format!("'models': '{pattern}' is an alias; allowlists name the model's id '{}'", m.id))
        }
        None => Err(format!("'models': no model '{pattern}'")),
    }
}

fn cap_of(cap: Option<&UsdInput>) -> Result<Option<NanoUsd>, AdminError> {
    cap.map(|c| c.nano().map_err(AdminError::bad))
        .transpose()?
        .map(|c| if c.0 < 0 { Err(AdminError::bad("'spend_cap_usd' cannot be negative")) } else { Ok(c) })
        .transpose()
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/keys", params(("id" = i64, Path)), request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 404)))]
pub async fn create_key(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<CreateKey>,
) -> Created<CreatedKey> {
    let account = account_of(&state, id).await?;
    check_models(&state, body.models.as_ref(), body.fallback_model.as_ref())?;
    let new = NewKey {
        name: body.name.clone(),
        spend_cap: cap_of(body.spend_cap_usd.as_ref())?,
        models: body.models.clone(),
        fallback_model: body.fallback_model.clone(),
        expires_at: body.expires_at.as_ref().map(TimeInput::millis).transpose().map_err(AdminError::bad)?,
        limits: body.limits.as_ref().map_or_else(Default::default, |l| l.apply(Default::default())),
    };
    let prefix = state.billing.options.key_prefix.clone();
    let key = crate::store::new_key(&prefix)?;
    let digest = crate::auth::digest(key.expose());
    let shown = crate::store::shown_prefix(&prefix, key.expose());
    let now = state.billing.now_ms() as i64;
    let account_id = account.id as i64;
    let shown_kept = shown.clone();
    let record = state
        .store
        .run(move |s| async move { s.insert_key(account_id, &shown_kept, &digest, &new, now).await })
        .await?;
    state.billing.directory.put_key(digest, key_state(&record));
    announce(&state, "key").await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey { id: record.id, key: key.expose().to_string(), prefix: shown }),
    ))
}

/// Key `id`; one another node created a moment ago is read from the store.
async fn key_of(state: &AdminState, id: i64) -> Result<Arc<crate::billing::KeyState>, AdminError> {
    let Ok(id) = u64::try_from(id) else { return Err(AdminError::not_found("key")) };
    if let Some(key) = state.billing.directory.key_by_id(id) {
        return Ok(key);
    }
    if hot(state).is_some() {
        crate::hot::changes::refresh(&state.billing, &state.store).await.map_err(AdminError::store)?;
    }
    state.billing.directory.key_by_id(id).ok_or_else(|| AdminError::not_found("key"))
}

#[utoipa::path(get, path = "/admin/v1/keys/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = KeyView), (status = 404)))]
pub async fn get_key(State(state): State<AdminState>, Id(id): Id) -> Answer<KeyView> {
    let key = key_of(&state, id).await?;
    Ok(Json(key_view(&state, &key).await?))
}

async fn change_key(state: &AdminState, id: i64, patch: KeyPatch) -> Answer<KeyView> {
    key_of(state, id).await?;
    let record: KeyRecord = state
        .store
        .run(move |s| async move { s.update_key(id, &patch).await })
        .await?
        .ok_or_else(|| AdminError::not_found("key"))?;
    let fresh = key_state(&record);
    let next = state
        .billing
        .directory
        .change_key(id as u64, |k| k.take_settings_of(&fresh))
        .ok_or_else(|| AdminError::not_found("key"))?;
    announce(state, "key").await;
    Ok(Json(key_view(state, &next).await?))
}

#[utoipa::path(patch, path = "/admin/v1/keys/{id}", params(("id" = i64, Path)), request_body = PatchKey,
    responses((status = 200, body = KeyView), (status = 400), (status = 404)))]
pub async fn patch_key(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<PatchKey>,
) -> Answer<KeyView> {
    let status = match body.status.as_deref() {
        None => None,
        Some(s @ ("active" | "revoked")) => Some(s.to_string()),
        Some(other) => {
            return Err(AdminError::bad(format!("status must be 'active' or 'revoked', not '{other}'")))
        }
    };
    check_models(
        &state,
        body.models.as_ref().and_then(Option::as_ref),
        body.fallback_model.as_ref().and_then(Option::as_ref),
    )?;
    let spend_cap = match &body.spend_cap_usd {
        None => None,
        Some(cap) => Some(cap_of(cap.as_ref())?),
    };
    let expires_at = nullable_time(&body.expires_at)?;
    let current = key_of(&state, id).await?;
    let patch = KeyPatch {
        limits: body.limits.as_ref().map(|l| l.apply(current.limits)),
        name: body.name.clone(),
        status,
        spend_cap,
        models: body.models.clone(),
        fallback_model: body.fallback_model.clone(),
        expires_at,
    };
    change_key(&state, id, patch).await
}

#[utoipa::path(delete, path = "/admin/v1/keys/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = KeyView, description = "revoked: the next request with it gets 401"), (status = 404)))]
pub async fn revoke_key(State(state): State<AdminState>, Id(id): Id) -> Answer<KeyView> {
    change_key(&state, id, KeyPatch { status: Some("revoked".into()), ..KeyPatch::default() }).await
}

#[utoipa::path(get, path = "/admin/v1/ledger", params(LedgerQuery),
    responses((status = 200, body = LedgerView), (status = 404)))]
pub async fn ledger(State(state): State<AdminState>, Params(q): Params<LedgerQuery>) -> Answer<LedgerView> {
    account_of(&state, q.account).await?;
    // Without a limit, every entry (as before pages existed); the console
    // always asks for a page.
    if q.limit.is_some_and(|l| !(1..=10_000).contains(&l)) {
        return Err(AdminError::bad("limit is from 1 to 10000"));
    }
    let limit = q.limit.unwrap_or(i64::MAX - 1);
    let newest_first = match q.order.as_deref() {
        None => q.before.is_some(),
        Some("oldest") if q.before.is_some() => {
            return Err(AdminError::bad("'before' pages newest first: use 'after' with order=oldest"))
        }
        Some("oldest") => false,
        Some("newest") => true,
        Some(other) => return Err(AdminError::bad(format!("order is oldest or newest, not {other:?}"))),
    };
    state.journal.flushed().await;
    // One more than asked: whether there is a next page.
    let page = LedgerPage {
        account: q.account,
        charges_only: false,
        before: q.before,
        after: q.after,
        newest_first,
        limit: limit + 1,
    };
    let mut rows = state.store.run(move |s| async move { s.ledger_page(&page).await }).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let cursor = if more { rows.last().map(|r| r.id) } else { None };
    let entries = rows
        .into_iter()
        .map(|r| LedgerEntryView {
            id: r.id,
            kind: r.kind,
            amount_nano_usd: r.amount_nano_usd,
            paid_nano_usd: r.paid_nano_usd,
            unpaid_nano_usd: r.unpaid_nano_usd,
            key_id: r.key_id,
            model: r.model,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens,
            estimated: r.estimated,
            request_id: r.request_id,
            at: format_time(r.at),
        })
        .collect();
    let (next_after, next_before) = if newest_first { (None, cursor) } else { (cursor, None) };
    Ok(Json(LedgerView { entries, next_after, next_before }))
}

#[utoipa::path(get, path = "/admin/v1/usage", params(UsageQuery),
    responses((status = 200, body = UsageView), (status = 404)))]
pub async fn usage(State(state): State<AdminState>, Params(q): Params<UsageQuery>) -> Answer<UsageView> {
    if let Some(account) = q.account {
        account_of(&state, account).await?;
    }
    let from_day = match q.days {
        Some(0) => return Err(AdminError::bad("days is at least 1")),
        Some(days) => Some(crate::calendar::utc_day_before(
            state.billing.now_ms() as i64,
            days.saturating_sub(1).min(36_600),
        )),
        None => None,
    };
    state.journal.flushed().await;
    let filter = UsageFilter {
        account: q.account,
        key_id: q.key,
        model: q.model.clone(),
        day: q.day.clone(),
        since: None,
        from_day,
    };
    let rows = state.store.run(move |s| async move { s.usage(&filter).await }).await?;
    let mut total = UsageRow { day: "all".into(), model: "all".into(), ..UsageRow::default() };
    for r in &rows {
        total.requests += r.requests;
        total.input_tokens += r.input_tokens;
        total.output_tokens += r.output_tokens;
        total.cached_tokens += r.cached_tokens;
        total.cost_nano_usd += r.cost_nano_usd;
    }
    Ok(Json(UsageView { account: q.account, usage: rows, total }))
}

/// `n` nano-USD per million tokens as an exact decimal of nano-USD per token.
fn per_token(n: NanoUsd) -> Box<serde_json::value::RawValue> {
    let (whole, fraction) = (n.0 / 1_000_000, n.0 % 1_000_000);
    let text = if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{fraction:06}").trim_end_matches('0'))
    };
    serde_json::value::RawValue::from_string(text).unwrap_or_else(|_| Box::default())
}

#[utoipa::path(get, path = "/admin/v1/models", responses((status = 200, body = ModelsView)))]
pub async fn models(State(state): State<AdminState>) -> Json<ModelsView> {
    let gateway = state.live.current();
    let models = gateway
        .catalog
        .entries()
        .iter()
        .map(|m| ModelPriceView {
            id: m.id.to_string(),
            status: if m.status == crate::config::ModelStatus::ComingSoon { "coming_soon" } else { "live" }
                .into(),
            kind: m.kind.as_str().into(),
            price_nano_usd: m.price.map(|p| PriceView {
                input: per_token(p.input),
                output: per_token(p.output),
                cache_read: per_token(p.cache_read),
                cache_write: per_token(p.cache_write),
                per_image: p.per_image.0,
                per_search_unit: p.per_search_unit.0,
                per_request: p.per_request.0,
            }),
        })
        .collect();
    Json(ModelsView { models })
}
