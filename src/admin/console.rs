//! The operator console's page and files on the admin listener
//! (`crate::dashboard` keeps them): served without the token, which the
//! page asks for and sends to the admin API of this same origin only.

use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(serve))
        .route("/admin/", get(serve))
        .route("/admin/assets/{file}", get(serve))
}

async fn serve(uri: Uri) -> Response {
    let Some(asset) = crate::dashboard::console(uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    for (name, value) in crate::dashboard::HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}
