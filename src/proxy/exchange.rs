//! One request from start to end.
//!
//! Why the upstream call is driven from `request_filter` rather than by
//! Pingora's proxy loop: routing needs the `model` from the body, and a body
//! read in `request_filter` is replayed upstream only from a 64 KiB retry
//! buffer (pingora 0.9.1), so larger bodies would hang. Driving the exchange
//! with Pingora's own connectors (`super::pool`) keeps their pooling, TLS and h2, carries any
//! body size, and gives one place to relay (and later translate) the
//! response and to settle usage however the stream ends.

use super::downstream::{self, respond, respond_error, write_all};
use super::outcome::{client_gone, Failure};
use super::pool::Upstreams;
use super::reading::next_chunk;
use super::upstream::{expected_shape, response_head, upstream_head};
use super::RequestCtx;
use crate::auth;
use crate::customer;
use crate::error::GatewayError;
use crate::exchange::idempotency::{self, Retry};
use crate::exchange::{
    admit, agents, answers_locally, count_tokens_locally, model_access, plan, plan_with_access, UpstreamPlan,
};
use crate::formats::errors::ErrorStyle;
use crate::formats::passthrough::Passthrough;
use crate::formats::{models_list, ClientFormat};
use crate::gateway::Gateway;
use crate::health::Health;
use crate::routing::{Endpoint, FormatHints, Route};
use bytes::Bytes;
use pingora_core::{Error, ErrorType};
use pingora_proxy::Session;
use std::time::Duration;

pub async fn handle(
    gateway: &Gateway,
    health: &Health,
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    // Kept once, in the context (the access log's), and routed from there.
    let request = session.req_header();
    ctx.method.clear();
    ctx.method.push_str(request.method.as_str());
    ctx.path.clear();
    ctx.path.push_str(request.uri.path());
    let query = ctx.query.clone();
    let hints = FormatHints {
        anthropic: downstream::has_header(session, &crate::exchange::headers::ANTHROPIC_VERSION)
            || downstream::has_header(session, &auth::X_API_KEY),
        gemini: downstream::has_header(session, &auth::X_GOOG_API_KEY)
            || query.as_deref().is_some_and(|q| auth::query_param(q, auth::KEY_QUERY_PARAM).is_some()),
    };
    let route = match gateway.router.route(&ctx.method, &ctx.path, hints) {
        Ok(route) => route,
        Err(err) => {
            let format = gateway.router.error_format(&ctx.path, hints);
            let style = gateway.router.error_style(&ctx.path);
            return Box::pin(fail(session, ctx, &err, format, style)).await;
        }
    };
    ctx.route = route.endpoint.label();
    ctx.format = route.format.as_str();
    // What runs before (or instead of) a relay is boxed: an open stream
    // keeps only the relay's state, not the largest future of every step
    // that came before it (issue #20 item 6).
    let served = match probe(health, &route.endpoint).await {
        Some((status, body)) => local(session, ctx, status, body).await,
        None if matches!(route.endpoint, Endpoint::Dashboard | Endpoint::DashboardSetup) => {
            Box::pin(super::dashboard::serve(gateway, session, ctx, &route.endpoint)).await
        }
        None => serve(gateway, connector, session, ctx, &route, query.as_deref()).await,
    };
    match served {
        Ok(()) => Ok(()),
        Err(Failure::Refused(err)) => {
            ctx.forget_attempt(err.status()).await;
            Box::pin(fail(session, ctx, &err, route.format, route.style)).await
        }
        Err(Failure::Aborted(why)) => {
            ctx.failure = Some(why.clone());
            Err(Error::explain(ErrorType::WriteError, why))
        }
    }
}

/// The answer to a health probe: `/livez` while the process serves,
/// the others with the backends (`crate::health`).
async fn probe(health: &Health, endpoint: &Endpoint) -> Option<(u16, Vec<u8>)> {
    match endpoint {
        Endpoint::Live => Some((200, b"{\"status\":\"ok\"}".to_vec())),
        Endpoint::Health => Some(Box::pin(health.answer()).await),
        _ => None,
    }
}

async fn fail(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
    format: ClientFormat,
    style: ErrorStyle,
) -> pingora_core::Result<()> {
    ctx.status = err.status();
    ctx.error_code = Some(err.code());
    ctx.failure = Some(match err.detail() {
        Some(detail) => format!("{}: {detail}", err.code()),
        None => err.code().to_string(),
    });
    respond_error(session, err, format, style, &ctx.request_id).await
}

async fn serve(
    gateway: &Gateway,
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    query: Option<&str>,
) -> Result<(), Failure> {
    let principal = {
        let key = auth::extract_key(&|name| downstream::header_str(session, name), query)
            .ok_or(GatewayError::MissingKey)?;
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        crate::exchange::authenticate(gateway, &key, client).await?
    };
    ctx.key_name = Some(principal.key_name.clone());
    ctx.key_id = principal.billed.as_ref().map(|k| k.id);

    if !answered_locally(&route.endpoint) {
        return match Box::pin(prepare_call(gateway, session, ctx, route, query, principal)).await? {
            Prepared::Answered => Ok(()),
            Prepared::Relay(plan, replan) => relay(connector, session, ctx, route.format, plan, replan).await,
        };
    }
    Box::pin(answer_locally(gateway, session, ctx, route, query, principal)).await
}

/// The endpoints the gateway answers itself once the key is known.
fn answered_locally(endpoint: &Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ListModels
            | Endpoint::ImageModels
            | Endpoint::Whoami
            | Endpoint::Usage
            | Endpoint::Generation
            | Endpoint::Agents
            | Endpoint::Requests
            | Endpoint::DailyUsage
            | Endpoint::StoredResponse { .. }
            | Endpoint::GetModel { .. }
    )
}

/// The gateway's own answers to a caller's key (models, usage, agents,
/// stored responses): the endpoints of [`answered_locally`].
async fn answer_locally(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    query: Option<&str>,
    principal: crate::auth::Principal,
) -> Result<(), Failure> {
    match &route.endpoint {
        Endpoint::ListModels | Endpoint::ImageModels => {
            let models = customer::models_for(gateway, principal.billed.as_deref());
            let images_only = route.endpoint == Endpoint::ImageModels;
            // An account with keys of its own sees what they reach (seed 004).
            let own = match principal.billed.as_deref() {
                Some(key) => {
                    crate::exchange::byok::keys_of(gateway, key.account).await?.filter(|k| !k.is_empty())
                }
                None => None,
            };
            let infos: Vec<_> = models
                .iter()
                .filter(|m| !images_only || m.kind == crate::config::ModelKind::Image)
                .filter(|m| own.as_ref().is_none_or(|keys| keys.iter().any(|(p, _)| *p == m.provider.name)))
                .map(|m| m.info())
                .collect();
            local(session, ctx, 200, models_list::render_list(route.format, &infos)).await
        }
        Endpoint::Whoami
        | Endpoint::Usage
        | Endpoint::Generation
        | Endpoint::Agents
        | Endpoint::Requests
        | Endpoint::DailyUsage => {
            let key = principal.billed.as_deref().ok_or_else(|| {
                GatewayError::RouteNotFound(format!("{}: this gateway bills no accounts", ctx.path))
            })?;
            gateway.customer_calls.take(key.id)?;
            let body = match route.endpoint {
                Endpoint::Whoami => customer::whoami(gateway, key).await?,
                Endpoint::Usage => customer::usage(gateway, key).await?,
                Endpoint::Agents => customer::agents(gateway, key).await?,
                Endpoint::Requests => customer::history::requests(gateway, key, query).await?,
                Endpoint::DailyUsage => customer::history::daily(gateway, key, query).await?,
                _ => customer::generation(gateway, key, query).await?,
            };
            local(session, ctx, 200, body).await
        }
        Endpoint::StoredResponse { id, items } => {
            let key = principal.billed.as_deref().ok_or_else(|| {
                GatewayError::RouteNotFound(format!("{}: this gateway keeps no responses", ctx.path))
            })?;
            gateway.customer_calls.take(key.id)?;
            let body = customer::stored_response(gateway, key, id, &ctx.method, *items).await?;
            local(session, ctx, 200, body).await
        }
        Endpoint::GetModel { id } => {
            let model = customer::model_for(gateway, principal.billed.as_deref(), id)?;
            local(session, ctx, 200, models_list::render_one(route.format, &model.info())).await
        }
        other => Err(GatewayError::Internal(format!("{other:?} is not answered locally")).into()),
    }
}

/// A call on its way upstream: planned, admitted and held, or already
/// answered (counted locally, or replayed under its idempotency key).
// Returned once and taken apart at once: boxing the plan would cost every
// call an allocation to save a move.
#[allow(clippy::large_enum_variant)]
enum Prepared<'a> {
    Answered,
    Relay(UpstreamPlan, Option<super::failover::Replan<'a>>),
}

/// Reads, plans and admits a call to a provider.
async fn prepare_call<'a>(
    gateway: &'a Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &'a Route,
    query: Option<&'a str>,
    principal: crate::auth::Principal,
) -> Result<Prepared<'a>, Failure> {
    downstream::continue_if_expected(session).await.map_err(client_gone)?;
    let body = downstream::read_body(session, gateway.max_request_body_bytes).await?;
    let body = agents::apply(gateway, principal.billed.as_deref(), &route.endpoint, body).await?;
    let (body, keep) =
        crate::exchange::stored::prepare(gateway, principal.billed.as_deref(), route, body).await?;
    ctx.keep_response = keep.map(Box::new);
    if answers_locally(gateway, route, &body) == Some(true) {
        return local(session, ctx, 200, count_tokens_locally(&body)?).await.map(|()| Prepared::Answered);
    }
    let asked = downstream::header(session, &idempotency::HEADER);
    let fingerprint = asked.as_ref().map(|_| idempotency::fingerprint(&ctx.method, &ctx.path, &body));
    // Not held across the relay: only the plan (and the failover's
    // plans, for a model with several deployments) need them.
    let headers = &session.req_header().headers;
    // Kept for a failover's plans only: otherwise the body is let go
    // once parsed, before its translation is written.
    let kept = gateway.catalog.fails_over().then(|| body.clone());
    let mut plan = match (&gateway.billing, &principal.billed) {
        (Some(billing), Some(key)) => {
            let access = model_access(gateway, billing, key);
            plan_with_access(gateway, route, body, query, headers, &ctx.request_id, &access)?
        }
        _ => plan(gateway, route, body, query, headers, &ctx.request_id)?,
    };
    let own_key = crate::exchange::byok::apply(gateway, principal.billed.as_deref(), &mut plan).await?;
    let replan = kept
        .filter(|_| !own_key && !plan.model.alternates.is_empty())
        .map(|body| super::failover::Replan { gateway, route, body, query, headers: headers.clone() });
    ctx.model = Some(plan.model.id.clone());
    // After the access rules, so a replay is refused whenever a new
    // call would be; before the hold, so a replay holds nothing.
    if let Some(fingerprint) = fingerprint {
        match idempotency::begin(gateway, &principal, asked, fingerprint, &ctx.request_id).await? {
            Some(Retry::Replay(answer)) => {
                return replay(session, ctx, &answer).await.map(|()| Prepared::Answered)
            }
            Some(Retry::Run(idempotent)) => ctx.idempotent = Some(idempotent),
            None => {}
        }
    }
    // Billed calls hold their worst case before anything goes upstream.
    let admit_from = ctx.marks.as_ref().map(|_| std::time::SystemTime::now());
    let admitted = admit(gateway, &principal, &mut plan, &ctx.request_id, route).await?;
    if let (Some(marks), Some(from)) = (ctx.marks.as_mut(), admit_from) {
        let now = std::time::SystemTime::now();
        marks.admit = Some((from, now));
        marks.upstream = Some(now);
    }
    if let Some(admitted) = admitted {
        ctx.account = Some(admitted.admission.account.name.clone());
        ctx.bill = gateway.billing.clone().map(|billing| Box::new((billing, admitted.admission)));
        ctx.limit_headers = admitted.headers;
        ctx.permit = Some(Box::new(admitted.permit));
    }
    ctx.fallback_from = plan.fallback_from.clone();

    Ok(Prepared::Relay(plan, replan))
}

/// The answer a call with the same `Idempotency-Key` got, unbilled.
async fn replay(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: &crate::billing::replay::Answer,
) -> Result<(), Failure> {
    ctx.status = answer.status;
    ctx.failure = Some("idempotent replay".into());
    let extra = [("idempotent-replayed", "true")];
    downstream::respond_with(
        session,
        answer.status,
        &answer.content_type,
        answer.body.clone(),
        &ctx.request_id,
        &extra,
        &[],
    )
    .await
    .map_err(client_gone)
}

pub(super) async fn local(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
) -> Result<(), Failure> {
    ctx.status = status;
    respond(session, status, "application/json", body, &ctx.request_id)
        .await
        .map_err(|e| Failure::Aborted(format!("client write failed: {e}")))
}

/// Sends the planned request and relays the response as it arrives.
async fn relay(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    format: ClientFormat,
    mut plan: UpstreamPlan,
    replan: Option<super::failover::Replan<'_>>,
) -> Result<(), Failure> {
    let (mut upstream, peer) =
        Box::pin(super::failover::send(connector, session, ctx, &mut plan, replan)).await?;
    if let Some(crate::exchange::Document::Images(asked)) = &plan.document {
        return Box::pin(super::images::relay(connector, session, ctx, &plan, asked, upstream)).await;
    }
    plan.request_sent();
    if let Err(e) = expected_shape(&upstream, &plan) {
        upstream.shutdown().await;
        return Err(e.into());
    }
    if let Some(document) = &plan.document {
        return Box::pin(super::translated::convert(
            connector, session, ctx, &plan, document, upstream, &peer,
        ))
        .await;
    }
    if let Some(translation) = &plan.translation {
        return Box::pin(super::translated::relay(
            connector,
            session,
            ctx,
            &plan,
            translation,
            upstream,
            &peer,
        ))
        .await;
    }
    let (head, status, is_sse) = upstream_head(&upstream)?;
    ctx.forget_attempt(status).await;
    let mut relay = Passthrough::for_answer(format, status, is_sse, plan.stream, plan.hide_usage)
        .with_event_limit(plan.max_event_bytes);
    let more = ctx.limit_headers.len() + 2;
    let response = response_head(head, status, relay.rewrites(), &ctx.request_id, more)?;
    let response =
        downstream::add_gateway_headers(response, plan.served_by(), std::mem::take(&mut ctx.limit_headers))?;
    ctx.status = status;
    if let Some(kind) = response.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        ctx.answer_type(kind);
    }
    if let Err(e) = Box::pin(downstream::write_head(session, response)).await {
        upstream.shutdown().await;
        return Err(client_gone(e));
    }

    let mut out: Vec<Bytes> = Vec::with_capacity(4);
    let mut held_back: Vec<Bytes> = Vec::with_capacity(1);
    let every = plan.ping_after.filter(|_| relay.has_keepalive());
    let cut = loop {
        let next = match next_chunk(session, &mut upstream, every, &mut |out| relay.keepalive(out)).await {
            Ok(next) => next,
            Err(gone) => {
                end_relay(ctx, &mut relay, &mut out, is_sse, true);
                upstream.shutdown().await;
                return Err(gone);
            }
        };
        match next {
            Ok(Some(chunk)) => {
                if ctx.upstream_ttfb.is_none() {
                    ctx.upstream_ttfb = Some(ctx.started.elapsed());
                }
                relay.on_chunk(chunk, &mut out);
                if is_sse {
                    ctx.relayed(&out);
                    if let Some(usage) = relay.ended() {
                        // Journaled before the caller can see its stream end.
                        ctx.usage = usage;
                        ctx.completed = !relay.failed();
                        ctx.settle();
                    }
                } else {
                    ctx.relayed_events = relay.relayed_so_far();
                    // A document's last chunk waits for the end, and the
                    // charge is journaled before it goes out.
                    std::mem::swap(&mut held_back, &mut out);
                    if let Some(last) = held_back.pop() {
                        out.append(&mut held_back);
                        held_back.push(last);
                    }
                }
                ctx.capture(&out);
                if let Err(e) = write_all(session, &mut out).await {
                    end_relay(ctx, &mut relay, &mut out, is_sse, true);
                    upstream.shutdown().await;
                    return Err(client_gone(e));
                }
                if relay.overflowed() {
                    break Some(Error::explain(
                        ErrorType::ReadError,
                        "a stream event exceeded max_stream_event_bytes",
                    ));
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let was_cut = cut.is_some();
    // A cut after an SSE stream's closing event took nothing from the
    // caller: the answer was whole (the connection is still not reused).
    let cut = cut.filter(|_| !relay.answered_whole());
    if was_cut {
        upstream.shutdown().await;
    }
    end_relay(ctx, &mut relay, &mut out, is_sse, cut.is_some());
    if is_sse && ctx.usage.is_none() {
        // What the relay held back until the body's end (a Gemini stream's
        // `finishReason` chunk, with the last of the text) goes out now: an
        // estimate counts its events too. A count the provider sent covers
        // them already (Gemini counts in every chunk).
        ctx.relayed(&out);
    }
    ctx.completed = cut.is_none() && !relay.failed();
    if cut.is_none() && relay.failed() {
        ctx.failure = Some("provider error mid-stream".into());
    }
    // The charge is in the journal before the response's last bytes go out.
    ctx.settle();
    if cut.is_none() {
        out.splice(0..0, held_back.drain(..));
    }
    ctx.capture(&out);
    if let Some(e) = cut {
        ctx.failure = Some(format!("upstream stream cut: {e}"));
        if !is_sse {
            // A document cut short cannot be repaired: make the caller see
            // the failure instead of a clean end.
            return Err(Failure::Aborted(format!("upstream body cut: {e}")));
        }
        out.push(
            relay.cut_event(format, &GatewayError::UpstreamProtocol("the upstream stream was cut".into())),
        );
    }
    write_all(session, &mut out).await.map_err(client_gone)?;
    session.write_response_body(None, true).await.map_err(client_gone)?;
    if !was_cut && upstream.response_done() {
        let idle = Some(Duration::from_millis(plan.provider.timeouts.idle_ms));
        Box::pin(connector.release(upstream, &peer, idle)).await;
    }
    Ok(())
}

/// The relay's end: the usage it read and, for a document (or a JSON-array
/// stream), the estimate of all its text, which the bill needs only
/// without a count of a completed answer (`cut`: it ended early).
fn end_relay(ctx: &mut RequestCtx, relay: &mut Passthrough, out: &mut Vec<Bytes>, is_sse: bool, cut: bool) {
    ctx.usage = relay.finish(out);
    if !is_sse && (ctx.usage.is_none() || cut || relay.failed()) {
        ctx.relayed_events = relay.relayed_estimate();
    }
}
