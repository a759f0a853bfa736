//! The caller's side of the exchange: reading the request head and body,
//! and writing whole responses the gateway makes itself.

use super::head_deadline::HeadDeadline;
use crate::error::GatewayError;
use crate::formats::{errors, ClientFormat};
use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Takes the query out of the request URI into `ctx`, with a customer key
/// in it (`?key=`, however encoded) masked in what stays behind, so no
/// later log line can print it.
pub fn redact_query_key(session: &mut Session, ctx: &mut super::RequestCtx) {
    let Some(query) = session.req_header().uri.query() else { return };
    ctx.query = Some(query.to_string());
    if crate::auth::query_param(query, crate::auth::KEY_QUERY_PARAM).is_none() {
        return;
    }
    let masked = crate::auth::mask_query_key(query);
    let path = session.req_header().uri.path();
    if let Ok(uri) = http::Uri::try_from(format!("{path}?{masked}")) {
        session.req_header_mut().set_uri(uri);
    }
}

/// Settings for every request on the caller's connection, once its head
/// is in: requests pipelined behind it are answered in order (Pingora
/// drops them otherwise, after a response that promised keep-alive); an
/// idle keep-alive connection closes after `idle_secs` (Pingora would keep
/// it forever); a draining node closes the connection after the answer;
/// a caller that stops reading cannot hold the call (and its hold, its
/// rate-limit slots and the provider's stream) past `write_timeout`.
pub fn configure(session: &mut Session, idle_secs: u64, write_timeout: std::time::Duration) {
    session.set_write_timeout(Some(write_timeout));
    if let Some(clock) = session.downstream_session.stream().and_then(HeadDeadline::clock_of) {
        clock.head_done();
    }
    session.set_pipelining_enabled(true);
    if crate::drain::draining() {
        session.set_keepalive(None);
    } else if session.get_keepalive().is_some() {
        // `None` means the caller or Pingora (on shutdown) chose to close.
        session.set_keepalive(Some(idle_secs));
    }
}

/// The request is answered: the next head's deadline starts with its
/// first byte. A node that began draining after this response promised
/// keep-alive does not close now: a caller may already be sending its next
/// request, which then gets `Connection: close` (or the idle timeout ends
/// the connection).
pub fn request_done(session: &mut Session) {
    if let Some(clock) = session.downstream_session.stream().and_then(HeadDeadline::clock_of) {
        clock.request_done();
    }
}

/// Resolves only once the caller has gone: its connection closed (HTTP/1)
/// or its stream was reset (HTTP/2). Call it after the body is read; it
/// consumes nothing that belongs to a pipelined next request.
pub async fn caller_left(session: &mut Session) -> Box<pingora_core::Error> {
    match session.downstream_session.read_body_or_idle(true).await {
        Err(e) => e,
        // Not returned once the body is read; if it were, the caller is
        // still there.
        Ok(_) => std::future::pending().await,
    }
}

/// Answers `Expect: 100-continue` so the caller sends its body now instead
/// of after its own timer (a second, for curl), keeping the connection
/// reusable (Pingora would close it after an early interim head).
pub async fn continue_if_expected(session: &mut Session) -> pingora_core::Result<()> {
    let req = session.req_header();
    let expects = req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects {
        return Ok(());
    }
    session.set_close_on_response_before_downstream_finish(false);
    let sent = session.write_continue_response().await;
    session.set_close_on_response_before_downstream_finish(true);
    sent
}

pub fn header(session: &Session, name: &http::HeaderName) -> Option<String> {
    header_str(session, name).map(str::to_string)
}

/// [`header`] borrowed from the request, for a look that keeps nothing.
/// Names are made at compile time: a look by a `&str` parses it into a
/// name and hashes its text first (~250 instructions), one by a standard
/// name hashes its number.
pub fn header_str<'s>(session: &'s Session, name: &http::HeaderName) -> Option<&'s str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request has `name` with a value [`header`] would give.
pub fn has_header(session: &Session, name: &http::HeaderName) -> bool {
    header_str(session, name).is_some()
}

/// Reads the whole request body, refusing more than `limit` bytes. A body
/// that arrives in one read is kept as it came (no copy).
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared =
        header_str(session, &http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let mut body = BodyBuffer::default();
    while let Some(chunk) = session.read_request_body().await.map_err(|e| {
        // The rest of the body cannot be found: the connection cannot carry another request.
        session.set_keepalive(None);
        GatewayError::BadRequest(format!("could not read the request body: {e}"))
    })? {
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        body.push(chunk, declared);
    }
    Ok(body.finish())
}

/// The body read so far: the first chunk as it came, then one buffer.
#[derive(Default)]
struct BodyBuffer {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl BodyBuffer {
    fn len(&self) -> usize {
        if self.joined.is_empty() {
            self.first.as_ref().map_or(0, Bytes::len)
        } else {
            self.joined.len()
        }
    }

    fn push(&mut self, chunk: Bytes, declared: Option<usize>) {
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(chunk),
            first => {
                if let Some(first) = first {
                    // Room beyond the body: a translation is written into
                    // this buffer once the body is parsed (see
                    // `translate_request`), and a format with more framing
                    // (Gemini's parts) or escapes may grow it. Room never
                    // written is never resident, while a buffer too small
                    // is traded for a new one and the old one's pages may
                    // stay resident a while: with an eighth to spare, a
                    // history of short turns to Gemini peaked at 2.7x or
                    // 3.7x its size, run to run; with half, at 2.7x.
                    let size = declared.unwrap_or(0).max(first.len() + chunk.len());
                    self.joined.reserve(size + size / 2);
                    self.joined.extend_from_slice(&first);
                }
                self.joined.extend_from_slice(&chunk);
            }
        }
    }

    fn finish(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => self.joined.freeze(),
        }
    }
}

pub async fn write_all(session: &mut Session, out: &mut Vec<Bytes>) -> pingora_core::Result<()> {
    for chunk in out.drain(..) {
        session.write_response_body(Some(chunk), false).await?;
    }
    Ok(())
}

/// Writes the head of a response whose body follows in pieces. A body of
/// unknown length (a stream, a rewritten stream) goes chunked to an
/// HTTP/1.1 caller: with neither a length nor chunking, the only way to end
/// a body is to close the connection, and every stream would cost the
/// caller a new connection (and TLS handshake). HTTP/2 frames bodies itself;
/// HTTP/1.0 callers cannot take chunks and keep the close-delimited body.
pub async fn write_head(session: &mut Session, mut head: ResponseHeader) -> pingora_core::Result<()> {
    let sized = head.headers.contains_key(http::header::CONTENT_LENGTH);
    if !sized && session.req_header().version == http::Version::HTTP_11 {
        head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    session.write_response_header(Box::new(head), false).await
}

/// Adds the headers the gateway sets on a relayed answer (which model
/// served it, the rate limits' standing) to a head that has none of them
/// yet: appended straight into its header map (Pingora's `append_header`
/// has `http` parse and copy a custom name every time), the limits' as
/// they were made. The head comes back without a case map: names go out
/// in their standard spelling.
pub fn add_gateway_headers(
    head: ResponseHeader,
    served_by: Vec<(&'static str, &str)>,
    limits: crate::limits::headers::Headers,
) -> Result<ResponseHeader, GatewayError> {
    let invalid = |e: &dyn std::fmt::Display| GatewayError::Internal(format!("a gateway header: {e}"));
    let mut parts = http::response::Parts::from(head);
    // Room for them all at once, not a regrowth of the map midway.
    parts.headers.reserve(served_by.len() + limits.len());
    for (name, value) in served_by {
        let value = http::HeaderValue::from_str(value).map_err(|e| invalid(&e))?;
        parts.headers.try_append(gateway_header_name(name)?, value).map_err(|e| invalid(&e))?;
    }
    for (name, value) in limits {
        parts.headers.try_append(name, value).map_err(|e| invalid(&e))?;
    }
    Ok(ResponseHeader::from(parts))
}

/// `x-request-id`, made at compile time: every answer carries it.
pub static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// `name` as a header name: the served-by headers', which only a fallback
/// sets (the hot ones are made at compile time: [`X_REQUEST_ID`] and
/// `limits::headers`' names).
pub fn gateway_header_name(name: &str) -> Result<http::HeaderName, GatewayError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| GatewayError::Internal(format!("header name {name}: {e}")))
}

/// Writes a whole response the gateway made itself.
pub async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    request_id: &str,
) -> pingora_core::Result<()> {
    respond_with(session, status, content_type, body, request_id, &[], &[]).await
}

/// [`respond`] with more headers: `extra`, and the rate limits' as made.
pub async fn respond_with(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    request_id: &str,
    extra: &[(&'static str, &str)],
    limits: &[(http::HeaderName, http::HeaderValue)],
) -> pingora_core::Result<()> {
    // Every name is set once: appended, to a head without a case map.
    let mut resp = ResponseHeader::build_no_case(status, Some(5 + extra.len() + limits.len()))?;
    for &(name, value) in extra {
        resp.append_header(name, value)?;
    }
    for (name, value) in limits {
        resp.append_header(name, value.clone())?;
    }
    resp.append_header(http::header::CONTENT_TYPE, content_type)?;
    resp.append_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.append_header(X_REQUEST_ID.clone(), request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

pub async fn respond_error(
    session: &mut Session,
    err: &GatewayError,
    format: ClientFormat,
    style: errors::ErrorStyle,
    request_id: &str,
) -> pingora_core::Result<()> {
    if matches!(err, GatewayError::PayloadTooLarge { .. }) {
        // The rest of the body was not read: the connection cannot be reused.
        session.set_keepalive(None);
    }
    respond_with(
        session,
        err.status(),
        "application/json",
        errors::render_styled(err, format, style, request_id),
        request_id,
        &[],
        err.headers(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_header_names_whatever_their_spelling() {
        assert_eq!(gateway_header_name("x-tollgate-model").unwrap(), "x-tollgate-model");
        assert_eq!(gateway_header_name("X-Served-By-Test").unwrap(), "x-served-by-test");
        assert_eq!(gateway_header_name("retry-after").unwrap(), http::header::RETRY_AFTER);
        assert_eq!(X_REQUEST_ID, "x-request-id");
        assert!(gateway_header_name("not a name").is_err());
    }

    #[test]
    fn the_body_buffer_counts_each_byte_once() {
        let mut body = BodyBuffer::default();
        let mut expected = Vec::new();
        for i in 0..5u8 {
            let chunk = Bytes::from(vec![i; 100]);
            expected.extend_from_slice(&chunk);
            body.push(chunk, None);
            assert_eq!(body.len(), expected.len());
        }
        assert_eq!(body.finish(), Bytes::from(expected));
        let mut one = BodyBuffer::default();
        one.push(Bytes::from_static(b"{}"), Some(2));
        assert_eq!((one.len(), one.finish()), (2, Bytes::from_static(b"{}")));
        assert!(BodyBuffer::default().finish().is_empty());
    }
}
