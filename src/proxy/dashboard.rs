//! The customer page on the main listener: its files (`crate::dashboard`)
//! and the set-up it fills its snippets with, answered without a key.

use super::downstream::respond_with;
use super::outcome::{client_gone, Failure};
use super::RequestCtx;
use crate::config::{ModelKind, ModelStatus};
use crate::formats::ClientFormat;
use crate::gateway::Gateway;
use crate::routing::Endpoint;
use pingora_proxy::Session;

pub(super) async fn serve(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    endpoint: &Endpoint,
) -> Result<(), Failure> {
    let (status, content_type, body) = match endpoint {
        Endpoint::DashboardSetup => (200, "application/json", setup(gateway)),
        _ => match crate::dashboard::customer(&ctx.path) {
            Some(asset) => (200, asset.content_type, asset.body.to_vec()),
            None => (404, "text/plain; charset=utf-8", b"not found".to_vec()),
        },
    };
    ctx.status = status;
    respond_with(session, status, content_type, body, &ctx.request_id, &crate::dashboard::HEADERS, &[])
        .await
        .map_err(client_gone)
}

/// The mounts, and a live chat model to show per client format (one its
/// own provider speaks natively, else the first).
fn setup(gateway: &Gateway) -> Vec<u8> {
    let chat: Vec<_> = gateway
        .catalog
        .entries()
        .iter()
        .filter(|m| m.kind == ModelKind::Chat && m.status != ModelStatus::ComingSoon)
        .collect();
    let models: Vec<(&'static str, String)> = ClientFormat::ALL
        .iter()
        .filter_map(|&format| {
            let native = |m: &&&std::sync::Arc<crate::gateway::ModelEntry>| match format {
                ClientFormat::Responses => {
                    matches!(m.upstream_format, ClientFormat::Openai | ClientFormat::Responses)
                }
                other => m.upstream_format == other,
            };
            let model = chat.iter().find(native).or(chat.first())?;
            Some((format.as_str(), model.id.to_string()))
        })
        .collect();
    crate::dashboard::setup(&gateway.router.mounts(), &models)
}
