//! The answer to an image call: read whole; a provider that queues the
//! job (answers its `id` and a `status`) is asked again every
//! `image_poll_ms` until the images are there. Past the model's
//! `image_timeout_ms` the caller gets 504 `upstream_timeout` and nothing
//! is billed; the job is left, and a result that comes later is not
//! billed either (no one asks for it). Billed per image the answer
//! carries, at the price of its size and quality.

use super::outcome::Failure;
use super::pool::Upstreams;
use super::translated::{read_whole, respond_json};
use super::upstream::{peer_of, send_request, upstream_head};
use super::RequestCtx;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::exchange::UpstreamPlan;
use crate::formats::images::{from_gemini, read_openai, Answer, ImageRequest};
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_proxy::Session;
use std::time::Duration;

/// What a job id keeps as it is in a path: letters, digits and `-._~`.
const JOB_ID: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub(super) async fn relay(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    asked: &ImageRequest,
    mut upstream: HttpSession,
) -> Result<(), Failure> {
    let deadline = ctx.started + Duration::from_millis(plan.model.images.timeout_ms);
    let mut answer = read(session, ctx, &mut upstream).await;
    upstream.shutdown().await;
    loop {
        let (status, body) = answer?;
        if !(200..300).contains(&status) {
            let err = crate::formats::translate::parse_error_document(status, &body);
            return Err(Failure::Refused(err));
        }
        let read = if plan.provider.kind == ProviderKind::Gemini {
            from_gemini(&body, asked, created()).map(|(doc, images)| Answer::Done { body: doc, images })
        } else {
            read_openai(&body)
        };
        match read.map_err(GatewayError::UpstreamProtocol)? {
            Answer::Done { body, images } => return answer_with(session, ctx, plan, &body, images).await,
            Answer::Failed(why) => return Err(GatewayError::Upstream { status: 502, message: why }.into()),
            Answer::Pending { id } => {
                let wait = Duration::from_millis(plan.model.images.poll_ms);
                if std::time::Instant::now() + wait >= deadline {
                    ctx.failure = Some(format!("image job {id} not done in time"));
                    return Err(GatewayError::UpstreamTimeout.into());
                }
                tokio::time::sleep(wait).await;
                answer = poll(connector, session, ctx, plan, &id).await;
            }
        }
    }
}

/// Asks the provider how job `id` stands.
async fn poll(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    id: &str,
) -> Result<(u16, Vec<u8>), Failure> {
    let poll = UpstreamPlan {
        model: plan.model.clone(),
        provider: plan.provider.clone(),
        path: format!("{}/{}", plan.path, percent_encoding::utf8_percent_encode(id, JOB_ID)),
        headers: plan.headers.iter().filter(|(k, _)| *k != http::header::CONTENT_TYPE).cloned().collect(),
        body: Bytes::new(),
        stream: false,
        hide_usage: false,
        translation: None,
        document: None,
        max_event_bytes: plan.max_event_bytes,
        ping_after: None,
        input_estimate: 0,
        max_output: None,
        choices: 1,
        fallback_from: None,
        units: 0,
        price: None,
    };
    let peer = peer_of(&poll.provider).await?;
    let mut upstream = send_request(connector, &peer, &poll).await?;
    let answer = read(session, ctx, &mut upstream).await;
    upstream.shutdown().await;
    answer
}

async fn read(
    session: &mut Session,
    ctx: &mut RequestCtx,
    upstream: &mut HttpSession,
) -> Result<(u16, Vec<u8>), Failure> {
    let (_, status, _) = upstream_head(upstream)?;
    let body = read_whole(session, ctx, upstream).await?;
    Ok((status, body.to_vec()))
}

/// Bills the images and answers with them.
async fn answer_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    doc: &serde_json::Value,
    images: u64,
) -> Result<(), Failure> {
    ctx.usage = Some(crate::formats::usage::Usage::default());
    ctx.units = images;
    ctx.status = 200;
    ctx.completed = true;
    ctx.settle();
    let out = serde_json::to_vec(doc).map_err(|e| GatewayError::Internal(e.to_string()))?;
    respond_json(session, ctx, plan, 200, out).await
}

fn created() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
