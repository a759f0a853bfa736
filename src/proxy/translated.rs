//! The response side of a translated request: a stream is translated
//! chunk by chunk as it arrives and written on; a document (or an error)
//! is read whole, translated once and answered with the translated status.

use super::downstream::{caller_left, respond_with, write_all, write_head};
use super::outcome::{client_gone, Failure};
use super::pool::Upstreams;
use super::reading::next_chunk;
use super::upstream::{classify, upstream_head};
use super::RequestCtx;
use crate::error::GatewayError;
use crate::exchange::{Document, Translation, UpstreamPlan};
use crate::formats::estimate;
use crate::formats::translate::relay::{content_type, translate_document, StreamTranslation};
use crate::formats::ClientFormat;
use crate::formats::{embeddings, rerank};
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::Duration;

const IGNORED_HEADER: &str = "x-tollgate-ignored-params";

/// Documents past this size are refused rather than translated.
const MAX_DOCUMENT: usize = 64 * 1024 * 1024;

pub(super) async fn relay(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    translation: &Translation,
    mut upstream: HttpSession,
    peer: &HttpPeer,
) -> Result<(), Failure> {
    let (_, status, is_sse) = upstream_head(&upstream)?;
    // Gemini's stream without SSE framing is its JSON array.
    let array = !is_sse && plan.stream && translation.translator.provider.format == ClientFormat::Gemini;
    let keep_alive = if (200..300).contains(&status) && (is_sse || array) {
        stream(session, ctx, plan, translation, &mut upstream, is_sse).await?
    } else {
        document(session, ctx, plan, translation, status, &mut upstream).await?
    };
    if keep_alive && upstream.response_done() {
        let idle = Some(Duration::from_millis(plan.provider.timeouts.idle_ms));
        Box::pin(connector.release(upstream, peer, idle)).await;
    } else {
        upstream.shutdown().await;
    }
    Ok(())
}

/// Relays a translated stream; `Ok(true)` when the upstream ended cleanly.
async fn stream(
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    translation: &Translation,
    upstream: &mut HttpSession,
    is_sse: bool,
) -> Result<bool, Failure> {
    let client = translation.translator.client.format;
    let mut head = ResponseHeader::build_no_case(200, Some(6 + ctx.limit_headers.len())).map_err(internal)?;
    head.append_header(http::header::CONTENT_TYPE, content_type(client, true, translation.ctx.gemini_sse))
        .map_err(internal)?;
    head.append_header(http::header::CACHE_CONTROL, "no-cache").map_err(internal)?;
    head.append_header(super::downstream::X_REQUEST_ID.clone(), ctx.request_id.as_str()).map_err(internal)?;
    if !translation.ignored.is_empty() {
        head.append_header(IGNORED_HEADER, translation.ignored.as_str()).map_err(internal)?;
    }
    let head = super::downstream::add_gateway_headers(
        head,
        plan.served_by(),
        std::mem::take(&mut ctx.limit_headers),
    )?;
    ctx.status = 200;
    ctx.answer_type(content_type(client, true, translation.ctx.gemini_sse));
    write_head(session, head).await.map_err(client_gone)?;

    let mut translated = StreamTranslation::new(translation.translator, &translation.ctx);
    if !is_sse {
        translated = translated.with_json_array();
    }
    let mut translated = translated.with_event_limit(plan.max_event_bytes);
    let mut out: Vec<Bytes> = Vec::with_capacity(4);
    let ended = loop {
        let every = translation.ping_after.filter(|_| translated.has_keepalive());
        let next = match next_chunk(session, upstream, every, &mut |out| translated.keepalive(out)).await {
            Ok(next) => next,
            Err(left) => break Err(left),
        };
        match next {
            Ok(Some(chunk)) => {
                if ctx.upstream_ttfb.is_none() {
                    ctx.upstream_ttfb = Some(ctx.started.elapsed());
                }
                translated.on_chunk(&chunk, &mut out);
                keep_if_completed(ctx, out.iter().map(|b| b.as_ref())).await;
                ctx.relayed(&out);
                if let Some(usage) = translated.ended() {
                    // Journaled before the caller can see its stream end.
                    ctx.usage = usage;
                    ctx.completed = !translated.failed();
                    ctx.settle();
                }
                ctx.capture(&out);
                if let Err(e) = write_all(session, &mut out).await {
                    break Err(client_gone(e));
                }
                if translated.overflowed() {
                    let why = "a stream event exceeded max_stream_event_bytes";
                    break Ok(Some(pingora_core::Error::explain(pingora_core::ErrorType::ReadError, why)));
                }
            }
            Ok(None) => break Ok(None),
            Err(e) => break Ok(Some(e)),
        }
    };
    let cut = match ended {
        Ok(cut) => cut,
        Err(left) => {
            // The caller left: what was relayed is still metered.
            ctx.usage = translated.finish(&mut Vec::new());
            return Err(left);
        }
    };
    let reusable = cut.is_none();
    let ended_in_stream = translated.ended().is_some();
    // A cut stream makes the parser end the caller's stream in its own
    // format (an error event, or the end a finish reason already made).
    ctx.usage = translated.finish(&mut out);
    // A cut after the caller's stream had its end took nothing from the
    // caller: the answer was whole (the connection is still not reused).
    // The end came from the provider's own closing event, or (Gemini's,
    // which ends with its body) from a finish reason with a count of the
    // output.
    let counted = ctx.usage.is_some_and(|u| u.output_tokens > 0);
    let cut = cut.filter(|_| translated.failed() || !(ended_in_stream || counted));
    keep_if_completed(ctx, out.iter().map(|b| b.as_ref())).await;
    if let Some(e) = &cut {
        ctx.failure = Some(format!("upstream stream cut: {e}"));
    } else if translated.failed() {
        ctx.failure = Some("provider error mid-stream".into());
    }
    // The charge is in the journal before the stream's last bytes go out.
    ctx.completed = cut.is_none() && !translated.failed();
    ctx.settle();
    ctx.capture(&out);
    write_all(session, &mut out).await.map_err(client_gone)?;
    session.write_response_body(None, true).await.map_err(client_gone)?;
    Ok(reusable)
}

/// The response to a call whose whole answer is turned into another
/// shape (see [`Document`]): read whole, converted, answered.
pub(super) async fn convert(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    document: &Document,
    mut upstream: HttpSession,
    peer: &HttpPeer,
) -> Result<(), Failure> {
    let (_, upstream_status, _) = upstream_head(&upstream)?;
    let body = match read_whole(session, ctx, &mut upstream).await {
        Ok(body) => body,
        Err(e) => {
            upstream.shutdown().await;
            return Err(e);
        }
    };
    let (status, out, usage, estimated, units) = match document {
        Document::GeminiEmbeddings(asked) => {
            let (status, out, usage) = embeddings::answer(upstream_status, &body, asked);
            // Gemini counts no tokens: the count is the gateway's own.
            (status, out, usage, true, 0)
        }
        Document::Images(_) => {
            return Err(GatewayError::Internal("an image answer is not converted here".into()).into());
        }
        Document::Rerank(asked, id) => {
            let (status, out, billed) = rerank::answer(upstream_status, &body, asked, id);
            let units = billed.map_or(0, |b| b.search_units);
            (status, out, billed.map(|b| b.usage), billed.is_some_and(|b| b.estimated), units)
        }
    };
    ctx.usage = usage;
    ctx.usage_estimated = estimated && usage.is_some();
    ctx.units = units;
    ctx.status = status;
    ctx.forget_attempt(status).await;
    ctx.completed = true;
    ctx.settle();
    if status >= 400 {
        ctx.failure = Some(format!("provider answered {upstream_status}"));
    }
    respond_json(session, ctx, plan, status, out).await?;
    if upstream.response_done() {
        let idle = Some(Duration::from_millis(plan.provider.timeouts.idle_ms));
        Box::pin(connector.release(upstream, peer, idle)).await;
    } else {
        upstream.shutdown().await;
    }
    Ok(())
}

/// Answers a whole JSON document the call was settled for, with the
/// plan's and the limits' headers.
pub(super) async fn respond_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    status: u16,
    out: Vec<u8>,
) -> Result<(), Failure> {
    ctx.answer_type("application/json");
    ctx.capture(&[&out]);
    let extra = plan.served_by();
    respond_with(session, status, "application/json", out, &ctx.request_id, &extra, &ctx.limit_headers)
        .await
        .map_err(client_gone)
}

/// The upstream body, whole (at most [`MAX_DOCUMENT`]).
pub(super) async fn read_whole(
    session: &mut Session,
    ctx: &mut RequestCtx,
    upstream: &mut HttpSession,
) -> Result<BytesMut, Failure> {
    let mut body = BytesMut::new();
    loop {
        let next = tokio::select! {
            next = upstream.read_response_body() => next,
            gone = caller_left(session) => return Err(client_gone(gone)),
        };
        match next {
            Ok(Some(chunk)) => {
                if ctx.upstream_ttfb.is_none() {
                    ctx.upstream_ttfb = Some(ctx.started.elapsed());
                }
                if body.len() + chunk.len() > MAX_DOCUMENT {
                    return Err(GatewayError::UpstreamProtocol(
                        "the provider's response is too large".into(),
                    )
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(classify(&e).into()),
        }
    }
    Ok(body)
}

/// Reads the whole upstream body and answers with its translation.
async fn document(
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
    translation: &Translation,
    upstream_status: u16,
    upstream: &mut HttpSession,
) -> Result<bool, Failure> {
    let body = read_whole(session, ctx, upstream).await?;
    let client = translation.translator.client.format;
    let (status, out, usage) =
        translate_document(translation.translator, &translation.ctx, upstream_status, &body, plan.stream);
    ctx.usage = usage;
    ctx.status = status;
    ctx.forget_attempt(status).await;
    ctx.completed = true;
    if (200..300).contains(&status) {
        ctx.relayed_events = estimate::output_tokens(&out);
    }
    ctx.settle();
    if status >= 400 {
        ctx.failure = Some(format!("provider answered {upstream_status}"));
    }
    let streams = plan.stream && status < 400;
    if status == 200 {
        if streams {
            keep_if_completed(ctx, [out.as_slice()]).await;
        } else if let Some(keep) = ctx.keep_response.take() {
            if let Ok(response) = serde_json::from_slice(&out) {
                keep_now(ctx, &keep, response).await;
            }
        }
    }
    let kind = content_type(client, streams, translation.ctx.gemini_sse);
    ctx.answer_type(kind);
    ctx.capture(&[&out]);
    let mut extra: Vec<(&'static str, &str)> = plan.served_by();
    if !translation.ignored.is_empty() {
        extra.push((IGNORED_HEADER, translation.ignored.as_str()));
    }
    respond_with(session, status, kind, out, &ctx.request_id, &extra, &ctx.limit_headers)
        .await
        .map_err(client_gone)?;
    Ok(true)
}

/// A kept Responses call whose `response.completed` is in `out` (about to
/// be written) is stored first: the caller's next turn may name it as
/// soon as it sees the event.
async fn keep_if_completed<'a>(ctx: &mut RequestCtx, out: impl IntoIterator<Item = &'a [u8]>) {
    if ctx.keep_response.is_none() {
        return;
    }
    let Some(response) = out.into_iter().find_map(crate::formats::responses::stored::completed_in) else {
        return;
    };
    if let Some(keep) = ctx.keep_response.take() {
        keep_now(ctx, &keep, response).await;
    }
}

async fn keep_now(ctx: &RequestCtx, keep: &crate::exchange::stored::Keep, response: serde_json::Value) {
    if let Err(e) = crate::exchange::stored::save(keep, response).await {
        log::warn!(target: "tollgate", "{}: the response was not kept: {e}", ctx.request_id);
    }
}

fn internal(e: Box<pingora_core::Error>) -> GatewayError {
    GatewayError::Internal(e.to_string())
}
