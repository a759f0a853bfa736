//! `POST /admin/v1/reload`: reads the configuration file again, as
//! `SIGHUP` does (`crate::reload`), and says what was put in force, or,
//! with a 400 `reload_refused`, why the file was refused (the
//! configuration in force then stays).

use super::{AdminError, AdminState};
use crate::reload::Reloaded;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

#[utoipa::path(post, path = "/admin/v1/reload",
    responses((status = 200, body = Reloaded), (status = 400, description = "the file was refused; the reason")))]
pub async fn reload(State(state): State<AdminState>) -> Result<Json<Reloaded>, AdminError> {
    let live = state.live.clone();
    // Reading and validating a file (and its CA files) is blocking work.
    let outcome = tokio::task::spawn_blocking(move || live.reload()).await.map_err(|e| {
        AdminError(StatusCode::INTERNAL_SERVER_ERROR, "reload_failed", format!("the reload did not run: {e}"))
    })?;
    outcome.map(Json).map_err(|reason| AdminError(StatusCode::BAD_REQUEST, "reload_refused", reason))
}
