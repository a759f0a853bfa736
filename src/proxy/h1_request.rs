//! A request to an HTTP/1 provider in one write: head and body go out
//! together. Pingora's HTTP/1 client flushes the head on its own before
//! the body is written, so each call was two sends (two segments, and a
//! provider that wakes for the head and again for the body). Here the head
//! is written into the connection's write buffer, the body after it (as
//! one vectored write when it does not fit the buffer), and one flush
//! sends both; the session is then made on the connection, as Pingora's
//! connector makes one, to read the answer.
//!
//! The head holds what Pingora's `RequestHeader` would put on the wire for
//! the same parts: the request line, then each header as `name: value`,
//! names in lower case (Pingora title-cases a few it knows; HTTP names
//! are case-insensitive).
//! The session never learns the request it did not write: what it would
//! read from it (a `HEAD` method, `Connection: close`, an upgrade) is
//! never in a provider call (`exchange::headers` forwards none of them).

use crate::exchange::UpstreamPlan;
use pingora_core::protocols::http::v1::client::HttpSession as H1Session;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType};
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Sends `plan`'s request on `stream` and returns a session on it ready
/// to read the answer. A connection that fails is dropped (closed).
pub async fn send(
    mut stream: Stream,
    peer: &HttpPeer,
    plan: &UpstreamPlan,
) -> pingora_core::Result<H1Session> {
    let head = head_bytes(&plan.path, plan.provider.origin.authority(), &plan.headers, &plan.body)?;
    let wait = Duration::from_millis(plan.provider.timeouts.write_ms);
    // Pingora's own timer, as its client times its writes: cheaper than
    // tokio's for a deadline that nearly always goes unused.
    match pingora_timeout::timeout(wait, write_request(&mut stream, &head, &plan.body)).await {
        Ok(Ok(())) => Ok(H1Session::new_with_options(stream, peer)),
        Ok(Err(e)) => Err(Error::because(ErrorType::WriteError, "while writing the request", e)),
        Err(_) => Err(Error::explain(ErrorType::WriteTimedout, "while writing the request (timeout)")),
    }
}

/// Head then body, flushed once: one send when both fit the connection's
/// write buffer, one `writev` when they do not (the buffer passes a
/// vectored write larger than itself straight to the socket).
async fn write_request<W: AsyncWrite + Unpin>(out: &mut W, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let written = out.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = head.get(from_head..).unwrap_or_default();
        // A writer that claims more than it was given is broken: refused,
        // not trusted.
        body = body.get(written - from_head..).ok_or(std::io::ErrorKind::InvalidData)?;
    }
    out.flush().await
}

/// The request line and headers: `host`, the plan's headers, and the
/// body's length (the plan never carries `host` or `content-length`).
/// Every model call has a JSON body; a request without one asks a
/// provider how a queued job stands (`super::images`).
fn head_bytes(
    path: &str,
    authority: &str,
    headers: &[(http::HeaderName, http::HeaderValue)],
    body: &[u8],
) -> pingora_core::Result<Vec<u8>> {
    // No byte that could end the request line or a header early, or
    // start a fragment: `Uri` stops checking at a `#`, and the raw path
    // is what goes out (Pingora's writer refused control bytes itself).
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "upstream URI: a byte a request line cannot carry",
        ));
    }
    http::Uri::try_from(path).map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream URI", e))?;
    let host = http::HeaderValue::from_str(authority)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream host", e))?;
    let method: &[u8] = if body.is_empty() { b"GET " } else { b"POST " };
    let mut length = itoa::Buffer::new();
    let length = length.format(body.len()).as_bytes();
    let mut head = Vec::with_capacity(
        64 + path.len()
            + host.len()
            + headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>(),
    );
    head.extend_from_slice(method);
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(length);
    head.extend_from_slice(b"\r\n\r\n");
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket as each test wants it: a write takes at most `take` bytes
    /// (from every slice when `vectored`, else from the first non-empty
    /// one) and claims `claims_extra` more than it took. What reached it
    /// is kept, one entry per write.
    struct Socket {
        take: usize,
        vectored: bool,
        claims_extra: usize,
        sends: Vec<Vec<u8>>,
    }

    impl Socket {
        fn new(take: usize, vectored: bool) -> Self {
            Self { take, vectored, claims_extra: 0, sends: Vec::new() }
        }
        fn received(&self) -> Vec<u8> {
            self.sends.concat()
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let given: Vec<u8> = if this.vectored {
                bufs.iter().flat_map(|b| b.iter().copied()).collect()
            } else {
                bufs.iter().find(|b| !b.is_empty()).map(|b| b.to_vec()).unwrap_or_default()
            };
            let n = given.len().min(this.take);
            this.sends.push(given[..n].to_vec());
            Poll::Ready(Ok(n + this.claims_extra))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The connection as Pingora buffers it: 1,460 bytes of write buffer.
    fn connection() -> tokio::io::BufWriter<Socket> {
        tokio::io::BufWriter::with_capacity(1460, Socket::new(usize::MAX, true))
    }

    #[tokio::test]
    async fn a_small_request_is_one_send() {
        let mut out = connection();
        write_request(&mut out, b"POST /v1 HTTP/1.1\r\n\r\n", &[b'x'; 1000]).await.unwrap();
        let sends = &out.get_ref().sends;
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].len(), 21 + 1000);
    }

    #[tokio::test]
    async fn a_large_request_is_one_vectored_send() {
        let mut out = connection();
        let body = vec![b'x'; 100_000];
        write_request(&mut out, b"POST /v1 HTTP/1.1\r\n\r\n", &body).await.unwrap();
        let sends = &out.get_ref().sends;
        assert_eq!(sends.len(), 1);
        assert!(sends[0].starts_with(b"POST /v1") && sends[0].len() == 21 + 100_000);
    }

    #[tokio::test]
    async fn short_writes_lose_nothing() {
        let mut out = Socket::new(7, false);
        write_request(&mut out, b"HEAD-", b"and the body").await.unwrap();
        assert_eq!(out.received(), b"HEAD-and the body");
    }

    /// A short vectored write may end inside the head or inside the body.
    #[tokio::test]
    async fn short_vectored_writes_lose_nothing() {
        for head in [&b"HEAD-"[..], b"HEAD-LINE-"] {
            let mut out = Socket::new(5, true);
            write_request(&mut out, head, b"and the body").await.unwrap();
            assert_eq!(out.received(), [head, b"and the body"].concat());
        }
    }

    #[tokio::test]
    async fn a_writer_claiming_too_much_is_an_error_not_a_panic() {
        let mut liar = Socket { claims_extra: 100, ..Socket::new(usize::MAX, false) };
        let err = write_request(&mut liar, b"HEAD-", b"body").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_head_is_the_request_line_host_headers_and_length() {
        let headers = [(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer k"))];
        let head = head_bytes("/v1/chat/completions?x=1", "api.example:8443", &headers, b"{\"model\":\"m\"}")
            .unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: api.example:8443\r\n\
             authorization: Bearer k\r\ncontent-length: 13\r\n\r\n"
        );
        let poll = head_bytes("/v1/jobs/1", "api.example", &[], b"").unwrap();
        assert!(poll.starts_with(b"GET /v1/jobs/1 HTTP/1.1\r\nhost: api.example\r\n"));
        for path in ["/v1 x", "/v1#\r\nx: y", "/v1#frag", "/v1\u{7f}", "v1", "/v1\tx"] {
            assert!(head_bytes(path, "api.example", &[], b"").is_err(), "{path:?}");
        }
        assert!(head_bytes("/v1", "api.example\r\nx: y", &[], b"").is_err());
    }
}
