//! The admin API: accounts, top-ups, keys, the ledger, usage and prices,
//! and configuration reloads, as JSON on a listener of its own, behind `Authorization: Bearer
//! <admin token>`. Routing and extraction come from axum, the OpenAPI
//! document (`/admin/v1/openapi.json`) from utoipa. It runs as a Pingora
//! service, so it takes part in graceful upgrades like the proxy; every
//! change goes to the in-memory state the request path reads and to the
//! store.

mod agents;
pub mod cli;
mod console;
mod extract;
mod handlers;
mod pages;
mod provider_keys;
mod reload;
mod types;

use crate::billing::Billing;
use crate::reload::Live;
use crate::secret::Secret;
use crate::store::journal::Journal;
use crate::store::StoreHandle;
use async_trait::async_trait;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

pub use types::*;

#[derive(Clone)]
pub struct AdminState {
    /// The gateway in force (its catalog checks keys' models).
    pub live: Arc<Live>,
    pub billing: Arc<Billing>,
    pub store: StoreHandle,
    pub journal: Arc<Journal>,
    token: Arc<Secret>,
}

/// An admin API error: its status, a stable code and a message.
#[derive(Debug)]
pub struct AdminError(pub StatusCode, pub &'static str, pub String);

impl AdminError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, "invalid_request", message.into())
    }

    /// A backend the fleet shares (Redis, the store) did not answer.
    pub fn store(message: impl Into<String>) -> Self {
        let message = message.into();
        log::error!(target: "tollgate", "admin: {message}");
        Self(StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        log::error!(target: "tollgate", "admin: {e}");
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the store failed; see the gateway's log".into(),
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.1, "message": self.2 } });
        (self.0, Json(body)).into_response()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tollgate admin API", description = "Accounts, keys, top-ups, the ledger and usage."),
    paths(
        handlers::create_account,
        handlers::get_account,
        handlers::patch_account,
        handlers::topup,
        handlers::adjust,
        handlers::create_key,
        handlers::get_key,
        handlers::patch_key,
        handlers::revoke_key,
        handlers::ledger,
        handlers::usage,
        handlers::models,
        pages::list_accounts,
        pages::account_keys,
        pages::plans,
        pages::stats,
        agents::create_agent,
        agents::list_agents,
        agents::get_agent,
        agents::patch_agent,
        agents::delete_agent,
        provider_keys::create_provider_key,
        provider_keys::list_provider_keys,
        provider_keys::delete_provider_key,
        reload::reload,
    ),
    modifiers(&BearerAuth),
    security(("admin_token" = []))
)]
pub struct AdminDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/accounts", post(handlers::create_account).get(pages::list_accounts))
        .route("/admin/v1/accounts/{id}", get(handlers::get_account).patch(handlers::patch_account))
        .route("/admin/v1/accounts/{id}/topups", post(handlers::topup))
        .route("/admin/v1/accounts/{id}/adjustments", post(handlers::adjust))
        .route("/admin/v1/accounts/{id}/keys", post(handlers::create_key).get(pages::account_keys))
        .route(
            "/admin/v1/keys/{id}",
            get(handlers::get_key).patch(handlers::patch_key).delete(handlers::revoke_key),
        )
        .route("/admin/v1/accounts/{id}/agents", post(agents::create_agent).get(agents::list_agents))
        .route(
            "/admin/v1/agents/{id}",
            get(agents::get_agent).patch(agents::patch_agent).delete(agents::delete_agent),
        )
        .route(
            "/admin/v1/accounts/{id}/provider_keys",
            post(provider_keys::create_provider_key).get(provider_keys::list_provider_keys),
        )
        .route("/admin/v1/provider_keys/{id}", axum::routing::delete(provider_keys::delete_provider_key))
        .route("/admin/v1/ledger", get(handlers::ledger))
        .route("/admin/v1/usage", get(handlers::usage))
        .route("/admin/v1/models", get(handlers::models))
        .route("/admin/v1/plans", get(pages::plans))
        .route("/admin/v1/stats", get(pages::stats))
        .route("/admin/v1/reload", post(reload::reload))
        .route("/admin/v1/openapi.json", get(|| async { Json(AdminDoc::openapi()) }))
        .fallback(|| async { AdminError(StatusCode::NOT_FOUND, "not_found", "no such admin route".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
        // The console's page and assets hold no secret: they ask for the token.
        .merge(console::router())
}

async fn require_token(
    axum::extract::State(state): axum::extract::State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let ok = presented.is_some_and(|p| {
        let (a, b) = (crate::auth::digest(p), crate::auth::digest(state.token.expose()));
        bool::from(a.ct_eq(&b))
    });
    if !ok {
        return AdminError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// The admin API as a Pingora service: each accepted connection is served
/// by hyper with the axum router.
pub struct AdminApp {
    router: Router,
}

impl AdminApp {
    pub fn new(live: Arc<Live>, token: Secret) -> Option<Self> {
        let gateway = live.current();
        let money = gateway.money.as_ref()?;
        let state = AdminState {
            billing: money.billing.clone(),
            store: money.store.clone(),
            journal: money.journal.clone(),
            token: Arc::new(token),
            live,
        };
        Some(Self { router: router(state) })
    }
}

#[async_trait]
impl ServerApp for AdminApp {
    async fn process_new(self: &Arc<Self>, stream: Stream, _shutdown: &ShutdownWatch) -> Option<Stream> {
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            async move {
                use tower::ServiceExt;
                router.oneshot(request.map(axum::body::Body::new)).await
            }
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
            log::debug!(target: "tollgate", "admin connection: {e}");
        }
        None
    }
}
