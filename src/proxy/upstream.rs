//! The provider's side of an exchange: connecting (with one retry on a new
//! connection when a pooled one turns out stale), the request as HTTP/1.1
//! (in one write, `super::h1_request`) or HTTP/2 need it, interim heads
//! skipped, and provider failures sorted into the gateway's errors.

use super::pool::{Leased, Upstreams};
use crate::error::GatewayError;
use crate::exchange::headers::keep_response_header;
use crate::exchange::UpstreamPlan;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::Duration;

/// A peer for the provider; its host is looked up now when the background
/// lookup has not answered yet (the first requests after a start).
pub async fn peer_of(provider: &crate::providers::Provider) -> Result<Arc<HttpPeer>, GatewayError> {
    if let Some(peer) = provider.peer() {
        return Ok(peer);
    }
    let wait = Duration::from_millis(provider.timeouts.connect_ms);
    match tokio::time::timeout(wait, crate::providers::resolve(provider)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(GatewayError::UpstreamUnavailable(format!(
                "cannot resolve {}: {e}",
                provider.origin.host
            )))
        }
        Err(_) => return Err(GatewayError::UpstreamTimeout),
    }
    provider
        .peer()
        .ok_or_else(|| GatewayError::UpstreamUnavailable(format!("{} has no address", provider.origin.host)))
}

/// A caller that asked for a document gets one or an error, never an
/// event stream its SDK cannot read.
pub fn expected_shape(upstream: &HttpSession, plan: &UpstreamPlan) -> Result<(), GatewayError> {
    let (_, status, is_sse) = upstream_head(upstream)?;
    if (200..300).contains(&status) && is_sse && !plan.stream {
        return Err(GatewayError::UpstreamProtocol(
            "the provider answered a request for a document with an event stream".into(),
        ));
    }
    Ok(())
}

/// The provider's response head, its status, and whether it is an event stream.
pub fn upstream_head(upstream: &HttpSession) -> Result<(&ResponseHeader, u16, bool), GatewayError> {
    let head = upstream
        .response_header()
        .ok_or_else(|| GatewayError::UpstreamProtocol("no response header".into()))?;
    let is_sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    Ok((head, head.status.as_u16(), is_sse))
}

/// Connects and sends the request; one retry on a fresh connection when a
/// pooled one turns out to have been closed by the provider.
pub async fn send_request(
    connector: &Upstreams,
    peer: &HttpPeer,
    plan: &UpstreamPlan,
) -> Result<HttpSession, GatewayError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The retry asks for a new connection: others pooled beside the
        // stale one may have died with it (a provider's restart).
        let (upstream, reused) =
            connector.session(peer, attempt > 1).await.map_err(|e| connect_error(&plan.provider.name, &e))?;
        match exchange_head(upstream, peer, plan).await {
            Ok(upstream) => return Ok(upstream),
            Err(e) => {
                // A head the gateway cannot write fails the same way on a
                // fresh connection: only the connection's own failures retry.
                let stale = reused
                    && !matches!(
                        e.etype(),
                        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::InvalidHTTPHeader
                    );
                if stale && attempt < 2 {
                    continue;
                }
                return Err(classify(&e));
            }
        }
    }
}

/// Sends the request and reads the final response head; a connection
/// that fails on the way is closed. HTTP/1 sends head and body in one
/// write (`super::h1_request`); HTTP/2 through Pingora's session.
async fn exchange_head(
    upstream: Leased,
    peer: &HttpPeer,
    plan: &UpstreamPlan,
) -> pingora_core::Result<HttpSession> {
    let timeouts = plan.provider.timeouts;
    let mut upstream = match upstream {
        Leased::H1(stream) => HttpSession::H1(super::h1_request::send(stream, peer, plan).await?),
        Leased::Pingora(HttpSession::H1(h1)) => {
            HttpSession::H1(super::h1_request::send(h1.into_inner(), peer, plan).await?)
        }
        Leased::Pingora(mut other) => {
            other.set_write_timeout(Some(Duration::from_millis(timeouts.write_ms)));
            if let Err(e) = write_through_session(&mut other, plan).await {
                other.shutdown().await;
                return Err(e);
            }
            other
        }
    };
    upstream.set_read_timeout(Some(Duration::from_millis(timeouts.read_ms)));
    upstream.set_write_timeout(Some(Duration::from_millis(timeouts.write_ms)));
    if let Err(e) = read_final_head(&mut upstream).await {
        upstream.shutdown().await;
        return Err(e);
    }
    Ok(upstream)
}

async fn write_through_session(upstream: &mut HttpSession, plan: &UpstreamPlan) -> pingora_core::Result<()> {
    let req = upstream_request(plan, upstream.as_http2().is_some())?;
    upstream.write_request_header(Box::new(req)).await?;
    upstream.write_request_body(plan.body.clone(), true).await?;
    upstream.finish_request_body().await
}

/// The request head for a provider not on HTTP/1 (which gets its head
/// from `super::h1_request`, in one write with the body). HTTP/2 carries the authority in
/// `:authority` (taken from an absolute URI) and must not also carry
/// `Host`: servers such as nginx refuse the duplicate, and Pingora's client
/// copies `Host` into `:authority` without removing it.
fn upstream_request(plan: &UpstreamPlan, h2: bool) -> pingora_core::Result<RequestHeader> {
    let authority = plan.provider.origin.authority();
    let uri = if h2 {
        http::Uri::builder()
            .scheme(if plan.provider.origin.tls { "https" } else { "http" })
            .authority(authority)
            .path_and_query(plan.path.as_str())
            .build()
            .map_err(head_error("upstream URI"))?
    } else {
        http::Uri::try_from(plan.path.as_str()).map_err(head_error("upstream URI"))?
    };
    let mut parts = http::Request::new(()).into_parts().0;
    // Every model call has a JSON body; a request without one asks a
    // provider how a queued job stands (see `super::images`).
    parts.method = if plan.body.is_empty() { http::Method::GET } else { http::Method::POST };
    parts.uri = uri;
    // Built as `http` parts and appended straight into the map: Pingora's
    // `append_header` turns each name back into text and parses it again.
    // No case map: names go out in their standard spelling (HTTP names
    // are case-insensitive). The plan never carries `host` or
    // `content-length` (`exchange::headers` never forwards them).
    let headers = &mut parts.headers;
    headers.reserve(plan.headers.len() + 2);
    if !h2 {
        let host = http::HeaderValue::from_str(authority).map_err(head_error("upstream host"))?;
        headers.try_append(http::header::HOST, host).map_err(head_error("upstream headers"))?;
    }
    for (name, value) in &plan.headers {
        headers.try_append(name.clone(), value.clone()).map_err(head_error("upstream headers"))?;
    }
    let length = http::HeaderValue::from_str(itoa::Buffer::new().format(plan.body.len()))
        .map_err(head_error("upstream content-length"))?;
    headers.try_append(http::header::CONTENT_LENGTH, length).map_err(head_error("upstream headers"))?;
    Ok(RequestHeader::from(parts))
}

/// A request head that could not be made, as Pingora's error.
fn head_error<E>(what: &'static str) -> impl Fn(E) -> Box<Error>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| Error::because(ErrorType::InvalidHTTPHeader, what, e)
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

pub fn response_head(
    upstream: &ResponseHeader,
    status: u16,
    rewrites: bool,
    request_id: &str,
    more: usize,
) -> Result<ResponseHeader, GatewayError> {
    let invalid = |e: &dyn std::fmt::Display| GatewayError::Internal(format!("the response head: {e}"));
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = http::StatusCode::from_u16(status).map_err(|e| invalid(&e))?;
    // Sized for the headers the gateway adds after: a header map that
    // grows rehashes every header in it. The provider's headers go in as
    // they are (Pingora's `append_header` would parse and copy each name
    // again), without the case map: names go out in their standard
    // spelling, and each header costs one map insert instead of two.
    parts.headers =
        http::HeaderMap::try_with_capacity(upstream.headers.len() + 1 + more).map_err(|e| invalid(&e))?;
    for (name, value) in &upstream.headers {
        if keep_response_header(name.as_str()) && !(rewrites && name == "content-length") {
            parts.headers.try_append(name.clone(), value.clone()).map_err(|e| invalid(&e))?;
        }
    }
    let id = http::HeaderValue::from_str(request_id).map_err(|e| invalid(&e))?;
    parts.headers.try_append(super::downstream::X_REQUEST_ID.clone(), id).map_err(|e| invalid(&e))?;
    Ok(ResponseHeader::from(parts))
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

pub fn classify(e: &Error) -> GatewayError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderConfig, ProviderKind, Timeouts};
    use crate::providers::Provider;

    #[tokio::test]
    async fn a_provider_not_yet_resolved_is_looked_up_on_demand() {
        let provider = Provider::from_config(&ProviderConfig {
            name: "p".into(),
            kind: ProviderKind::Openai,
            base_url: "http://localhost:1/v1".into(),
            api_keys: vec![crate::secret::Secret::new("k")],
            key_weights: Vec::new(),
            timeouts: Timeouts::default(),
            ca_file: None,
            forward_headers: Vec::new(),
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        // No background lookup has run: the first request resolves itself.
        assert!(provider.peer().is_none());
        assert!(peer_of(&provider).await.is_ok());
        assert!(provider.peer().is_some());
    }
}
