//! Customers' own provider keys (issue #19 item 7, seed 004) through the
//! admin API: registered for one of the configured providers, sealed at
//! rest (see `crate::byok`) and never shown again: a listing shows each
//! key's provider and last four characters.

use super::extract::{Body, Id};
use super::handlers::account_of;
use super::{AdminError, AdminState};
use crate::store::ProviderKeyRow;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderKey {
    /// A configured provider's name.
    pub provider: String,
    /// The provider's key: kept sealed, never shown again.
    #[schema(value_type = String)]
    pub api_key: crate::secret::Secret,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKeyView {
    pub id: i64,
    pub account_id: i64,
    pub provider: String,
    /// All that is ever shown of the key.
    pub last4: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKeysView {
    pub provider_keys: Vec<ProviderKeyView>,
}

fn view(row: ProviderKeyRow) -> ProviderKeyView {
    ProviderKeyView {
        id: row.id,
        account_id: row.account_id,
        provider: row.provider,
        last4: row.last4,
        created_at: row.created_at,
    }
}

fn byok(state: &AdminState) -> Result<std::sync::Arc<crate::byok::Byok>, AdminError> {
    state.live.current().byok.clone().ok_or_else(|| {
        AdminError(
            StatusCode::NOT_FOUND,
            "byok_not_configured",
            "customers' own keys are not configured (byok)".into(),
        )
    })
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/provider_keys", params(("id" = i64, Path)),
    request_body = CreateProviderKey, responses((status = 201, body = ProviderKeyView), (status = 400), (status = 404)))]
pub async fn create_provider_key(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<CreateProviderKey>,
) -> Result<(StatusCode, Json<ProviderKeyView>), AdminError> {
    let byok = byok(&state)?;
    let account = account_of(&state, id).await?.id as i64;
    if !state.live.current().providers.iter().any(|p| p.name == body.provider) {
        return Err(AdminError::bad(format!("no provider named '{}'", body.provider)));
    }
    let key = body.api_key.expose().trim();
    if key.is_empty() {
        return Err(AdminError::bad("'api_key' cannot be empty"));
    }
    if http::HeaderValue::from_str(key).is_err() {
        return Err(AdminError::bad(
            "'api_key' cannot hold control characters: it is sent as a header value",
        ));
    }
    let row = ProviderKeyRow {
        id: 0,
        account_id: account,
        provider: body.provider.clone(),
        sealed: byok.sealer.seal(account, &body.provider, key).map_err(AdminError::bad)?,
        last4: crate::byok::last4(key),
        created_at: state.billing.now_ms() as i64,
    };
    let kept = state.store.run(move |s| async move { s.insert_provider_key(&row).await }).await?;
    byok.forget(account);
    Ok((StatusCode::CREATED, Json(view(kept))))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}/provider_keys", params(("id" = i64, Path)),
    responses((status = 200, body = ProviderKeysView), (status = 404)))]
pub async fn list_provider_keys(
    State(state): State<AdminState>,
    Id(id): Id,
) -> Result<Json<ProviderKeysView>, AdminError> {
    let account = account_of(&state, id).await?.id as i64;
    let rows = state.store.run(move |s| async move { s.provider_keys(account).await }).await?;
    Ok(Json(ProviderKeysView { provider_keys: rows.into_iter().map(view).collect() }))
}

#[utoipa::path(delete, path = "/admin/v1/provider_keys/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_provider_key(
    State(state): State<AdminState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, AdminError> {
    let gone = state.store.run(move |s| async move { s.delete_provider_key(id).await }).await?;
    match gone {
        Some(account) => {
            if let Ok(byok) = byok(&state) {
                byok.forget(account);
            }
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(AdminError::not_found("provider key")),
    }
}
