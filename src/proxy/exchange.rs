//! One request from start to end.
//!
//! Why the upstream call is driven from `request_filter` rather than by
//! Pingora's proxy loop: routing needs the `model` from the body, and a body
//! read in `request_filter` is replayed upstream only from a 64 KiB retry
//! buffer (pingora 0.9.1), so larger bodies would hang. Driving the exchange
//! with Pingora's own `Connector` keeps its pooling, TLS and h2, carries any
//! body size, and gives one place to relay (and later translate) the
//! response and to settle usage however the stream ends.

use super::context::CLIENT_GONE;
use super::downstream::{self, respond, respond_error};
use super::RequestCtx;
use crate::auth;
use crate::error::GatewayError;
use crate::exchange::{
    answers_locally, count_tokens_locally, headers::keep_response_header, plan, UpstreamPlan,
};
use crate::formats::passthrough::Passthrough;
use crate::formats::{models_list, ClientFormat};
use crate::gateway::Gateway;
use crate::routing::{Endpoint, FormatHints, Route};
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::time::Duration;

pub async fn handle(
    gateway: &Gateway,
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let method = session.req_header().method.as_str().to_string();
    let path = session.req_header().uri.path().to_string();
    let query = ctx.query.clone();
    ctx.method.clone_from(&method);
    ctx.path.clone_from(&path);
    let hints = FormatHints {
        anthropic: downstream::header(session, "anthropic-version").is_some()
            || downstream::header(session, "x-api-key").is_some(),
        gemini: downstream::header(session, "x-goog-api-key").is_some()
            || query.as_deref().is_some_and(|q| auth::query_param(q, auth::KEY_QUERY_PARAM).is_some()),
    };
    let route = match gateway.router.route(&method, &path, hints) {
        Ok(route) => route,
        Err(err) => {
            let format = gateway.router.error_format(&path, hints);
            return fail(session, ctx, &err, format).await;
        }
    };
    ctx.route = route.endpoint.label();
    ctx.format = route.format.as_str();
    match serve(gateway, connector, session, ctx, &route, query.as_deref()).await {
        Ok(()) => Ok(()),
        Err(Failure::Refused(err)) => fail(session, ctx, &err, route.format).await,
        Err(Failure::Aborted(why)) => {
            ctx.failure = Some(why.clone());
            Err(Error::explain(ErrorType::WriteError, why))
        }
    }
}

pub(super) enum Failure {
    /// Nothing was sent yet: answer with this error in the caller's format.
    Refused(GatewayError),
    /// The response had started (or the caller left): close the connection.
    Aborted(String),
}

/// The caller's connection failed under a write: it went away.
pub(super) fn client_gone(e: Box<Error>) -> Failure {
    Failure::Aborted(format!("{CLIENT_GONE}: {e}"))
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Refused(e)
    }
}

async fn fail(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
    format: ClientFormat,
) -> pingora_core::Result<()> {
    ctx.status = err.status();
    ctx.failure = Some(match err.detail() {
        Some(detail) => format!("{}: {detail}", err.code()),
        None => err.code().to_string(),
    });
    respond_error(session, err, format, &ctx.request_id).await
}

async fn serve(
    gateway: &Gateway,
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    query: Option<&str>,
) -> Result<(), Failure> {
    if route.endpoint == Endpoint::Health {
        return local(session, ctx, 200, b"{\"status\":\"ok\"}".to_vec()).await;
    }
    let key = auth::extract_key(&|name| downstream::header(session, name), query)
        .ok_or(GatewayError::MissingKey)?;
    let principal = gateway.keys.authenticate(&key).ok_or(GatewayError::InvalidKey)?;
    ctx.key_name = Some(principal.key_name.clone());

    match &route.endpoint {
        Endpoint::ListModels => {
            let infos: Vec<_> = gateway.catalog.entries().iter().map(|m| m.info()).collect();
            local(session, ctx, 200, models_list::render_list(route.format, &infos)).await
        }
        Endpoint::GetModel { id } => {
            let model = gateway.catalog.resolve(id).ok_or_else(|| GatewayError::ModelNotFound(id.clone()))?;
            local(session, ctx, 200, models_list::render_one(route.format, &model.info())).await
        }
        _ => {
            downstream::continue_if_expected(session).await.map_err(client_gone)?;
            let body = downstream::read_body(session, gateway.max_request_body_bytes).await?;
            if answers_locally(gateway, route, &body) == Some(true) {
                return local(session, ctx, 200, count_tokens_locally(&body)?).await;
            }
            let headers = downstream::all_headers(session);
            let plan = plan(gateway, route, body, query, &headers, &ctx.request_id)?;
            ctx.provider = Some(plan.provider.name.clone());
            ctx.model = Some(plan.model.id.clone());
            relay(connector, session, ctx, route.format, plan).await
        }
    }
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
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
    format: ClientFormat,
    plan: UpstreamPlan,
) -> Result<(), Failure> {
    let peer = plan.provider.peer().ok_or_else(|| {
        GatewayError::UpstreamUnavailable(format!("{} is not resolved yet", plan.provider.origin.host))
    })?;
    let sent = tokio::select! {
        sent = send_request(connector, &peer, &plan) => sent,
        gone = downstream::caller_left(session) => return Err(client_gone(gone)),
    };
    let mut upstream = sent?;
    if let Err(e) = expected_shape(&upstream, &plan) {
        upstream.shutdown().await;
        return Err(e.into());
    }
    if let Some(translation) = &plan.translation {
        return super::translated::relay(connector, session, ctx, &plan, translation, upstream, &peer).await;
    }
    let (head, status, is_sse) = upstream_head(&upstream)?;
    let mut relay = Passthrough::new(format, is_sse, plan.hide_usage).with_event_limit(plan.max_event_bytes);
    let response = response_head(head, status, relay.rewrites(), &ctx.request_id)?;
    ctx.status = status;
    if let Err(e) = downstream::write_head(session, response).await {
        upstream.shutdown().await;
        return Err(client_gone(e));
    }

    let mut out: Vec<Bytes> = Vec::with_capacity(4);
    let cut = loop {
        let next = tokio::select! {
            next = upstream.read_response_body() => next,
            gone = downstream::caller_left(session) => {
                ctx.usage = relay.finish(&mut out);
                upstream.shutdown().await;
                return Err(client_gone(gone));
            }
        };
        match next {
            Ok(Some(chunk)) => {
                if ctx.upstream_ttfb.is_none() {
                    ctx.upstream_ttfb = Some(ctx.started.elapsed());
                }
                relay.on_chunk(chunk, &mut out);
                if let Err(e) = write_all(session, &mut out).await {
                    ctx.usage = relay.finish(&mut out);
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
    ctx.usage = relay.finish(&mut out);
    let was_cut = cut.is_some();
    if let Some(e) = cut {
        ctx.failure = Some(format!("upstream stream cut: {e}"));
        upstream.shutdown().await;
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
        connector
            .release_http_session(
                upstream,
                &peer,
                Some(Duration::from_millis(plan.provider.timeouts.idle_ms)),
            )
            .await;
    }
    Ok(())
}

/// A caller that asked for a document gets one or an error, never an
/// event stream its SDK cannot read.
fn expected_shape(upstream: &HttpSession, plan: &UpstreamPlan) -> Result<(), GatewayError> {
    let (_, status, is_sse) = upstream_head(upstream)?;
    if (200..300).contains(&status) && is_sse && !plan.stream {
        return Err(GatewayError::UpstreamProtocol(
            "the provider answered a request for a document with an event stream".into(),
        ));
    }
    Ok(())
}

/// The provider's response head, its status, and whether it is an event stream.
pub(super) fn upstream_head(upstream: &HttpSession) -> Result<(&ResponseHeader, u16, bool), GatewayError> {
    let head = upstream
        .response_header()
        .ok_or_else(|| GatewayError::UpstreamProtocol("no response header".into()))?;
    let is_sse = head
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    Ok((head, head.status.as_u16(), is_sse))
}

pub(super) async fn write_all(session: &mut Session, out: &mut Vec<Bytes>) -> pingora_core::Result<()> {
    for chunk in out.drain(..) {
        session.write_response_body(Some(chunk), false).await?;
    }
    Ok(())
}

/// Connects and sends the request; one retry on a fresh connection when a
/// pooled one turns out to have been closed by the provider.
async fn send_request(
    connector: &Connector,
    peer: &HttpPeer,
    plan: &UpstreamPlan,
) -> Result<HttpSession, GatewayError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut upstream, reused) =
            connector.get_http_session(peer).await.map_err(|e| connect_error(&plan.provider.name, &e))?;
        let timeouts = plan.provider.timeouts;
        upstream.set_read_timeout(Some(Duration::from_millis(timeouts.read_ms)));
        upstream.set_write_timeout(Some(Duration::from_millis(timeouts.write_ms)));
        match exchange_head(&mut upstream, plan).await {
            Ok(()) => return Ok(upstream),
            Err(e) => {
                upstream.shutdown().await;
                let stale =
                    reused && !matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout);
                if stale && attempt < 2 {
                    continue;
                }
                return Err(classify(&e));
            }
        }
    }
}

async fn exchange_head(upstream: &mut HttpSession, plan: &UpstreamPlan) -> pingora_core::Result<()> {
    let req = upstream_request(plan, upstream.as_http2().is_some())?;
    upstream.write_request_header(Box::new(req)).await?;
    upstream.write_request_body(plan.body.clone(), true).await?;
    upstream.finish_request_body().await?;
    read_final_head(upstream).await
}

/// The request head for the provider. HTTP/2 carries the authority in
/// `:authority` (taken from an absolute URI) and must not also carry
/// `Host`: servers such as nginx refuse the duplicate, and Pingora's client
/// copies `Host` into `:authority` without removing it.
fn upstream_request(plan: &UpstreamPlan, h2: bool) -> pingora_core::Result<RequestHeader> {
    let mut req = RequestHeader::build("POST", plan.path.as_bytes(), Some(plan.headers.len() + 2))?;
    let authority = plan.provider.origin.authority();
    if h2 {
        let uri = http::Uri::builder()
            .scheme(if plan.provider.origin.tls { "https" } else { "http" })
            .authority(authority.as_str())
            .path_and_query(plan.path.as_str())
            .build()
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream URI", e))?;
        req.set_uri(uri);
    } else {
        req.insert_header("host", authority)?;
    }
    for (name, value) in &plan.headers {
        req.append_header(name.clone(), value.as_str())?;
    }
    req.insert_header("content-length", plan.body.len().to_string())?;
    Ok(req)
}

/// Interim heads a provider may send before its answer (RFC 9110 §15.2).
const MAX_INTERIM_HEADS: usize = 16;

/// Reads the provider's final response head, skipping interim ones
/// (`100 Continue`, `103 Early Hints`): Pingora's HTTP/1 client returns
/// each of them, and reading a body after one panics. Its HTTP/2 client
/// (the h2 crate) skips them itself and may be asked only once.
async fn read_final_head(upstream: &mut HttpSession) -> pingora_core::Result<()> {
    for _ in 0..MAX_INTERIM_HEADS {
        upstream.read_response_header().await?;
        let status = upstream.response_header().map(|h| h.status.as_u16());
        match status {
            Some(101) => {
                return Err(Error::explain(ErrorType::InvalidHTTPHeader, "provider switched protocols"))
            }
            Some(100..=199) if upstream.as_http1().is_some() => continue,
            _ => return Ok(()),
        }
    }
    Err(Error::explain(ErrorType::InvalidHTTPHeader, "too many interim responses"))
}

pub(super) fn response_head(
    upstream: &ResponseHeader,
    status: u16,
    rewrites: bool,
    request_id: &str,
) -> Result<ResponseHeader, GatewayError> {
    let internal = |e: Box<Error>| GatewayError::Internal(e.to_string());
    let mut resp = ResponseHeader::build(status, Some(upstream.headers.len() + 1)).map_err(internal)?;
    for (name, value) in &upstream.headers {
        if keep_response_header(name.as_str()) && !(rewrites && name == "content-length") {
            resp.append_header(name.clone(), value.clone()).map_err(internal)?;
        }
    }
    resp.insert_header("x-request-id", request_id).map_err(internal)?;
    Ok(resp)
}

/// A failed connection to a provider, counted by cause. Running out of
/// file descriptors is the gateway's own trouble, not the provider's.
fn connect_error(provider: &str, e: &Error) -> GatewayError {
    let os_error = e.root_cause().downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error);
    let cause = match os_error {
        Some(24 | 23) => "too_many_open_files",
        _ => crate::metrics::os_error_cause(&e.to_string()),
    };
    crate::metrics::connect_failed(provider, cause);
    if cause == "too_many_open_files" {
        log::error!(target: "tollgate", "connecting to {provider}: too many open files ({e}); raise LimitNOFILE");
        return GatewayError::Overloaded(format!("too many open files connecting to {provider}: {e}"));
    }
    classify(e)
}

pub(super) fn classify(e: &Error) -> GatewayError {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            GatewayError::UpstreamTimeout
        }
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => {
            GatewayError::UpstreamProtocol(e.to_string())
        }
        _ => GatewayError::UpstreamUnavailable(e.to_string()),
    }
}
