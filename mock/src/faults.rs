//! Providers that break HTTP itself, for the gateway's hardening tests.
//!
//! A request carrying `x-mock-raw: FAULT` is answered by hand-written
//! HTTP/1.1 instead of hyper, because hyper cannot send what real servers
//! sometimes do: interim heads before the answer, or a malformed head.
//! FAULT is a comma-separated list of:
//! - `100`, `103`: that interim head (any number of them, in order) before
//!   the mock's normal answer;
//! - `bad-head`: a head with provider secrets (`set-cookie`, an organisation
//!   header) and a line that is no header at all.
//!
//! Every other request goes to hyper untouched, with the bytes already
//! read put back in front of the stream ([`Rewind`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The header that selects a raw fault.
pub const RAW_HEADER: &str = "x-mock-raw";

const MAX_HEAD: usize = 64 * 1024;

/// Reads until the end of the first request head (or EOF, or 64 KiB).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while memchr::memmem::find(&buf, b"\r\n\r\n").is_none() && buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The raw fault a buffered request head asks for, if any.
pub fn requested(head: &[u8]) -> Option<String> {
    let end = memchr::memmem::find(head, b"\r\n\r\n")?;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case(RAW_HEADER).then(|| value.trim().to_string())
    })
}

/// Answers one request by hand, with the faults asked for, then closes.
pub async fn serve_raw<S>(
    mut stream: S,
    mut buffered: Vec<u8>,
    faults: &str,
    journal: std::sync::Arc<super::record::Journal>,
    conn: u64,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&buffered) else {
        return stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    };
    let mut builder =
        hyper::Request::builder().method(parsed.method.unwrap_or("GET")).uri(parsed.path.unwrap_or("/"));
    let mut length = 0usize;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        }
        builder = builder.header(h.name, h.value);
    }
    while buffered.len() < head_len + length {
        let mut chunk = vec![0u8; (head_len + length - buffered.len()).min(64 * 1024)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffered.extend_from_slice(&chunk[..n]);
    }
    let body = Bytes::copy_from_slice(&buffered[head_len..head_len + length]);
    let Ok(request) = builder.body(Full::new(body)) else {
        return stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    };

    let mut out = Vec::new();
    for fault in faults.split(',').map(str::trim) {
        match fault {
            "100" => out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "103" => {
                out.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\nlink: </hint.css>; rel=preload\r\n\r\n")
            }
            "bad-head" => {
                out.extend_from_slice(
                    b"HTTP/1.1 200 OK\r\nset-cookie: session=provider-secret-cookie\r\n\
                      openai-organization: org-provider-internal\r\nthis line is no header\r\n\r\n",
                );
                stream.write_all(&out).await?;
                return stream.shutdown().await;
            }
            _ => {}
        }
    }
    // Interim heads may go out before the answer is ready, as servers do.
    stream.write_all(&out).await?;
    stream.flush().await?;
    let Ok(response) = super::handle(request, journal, conn).await;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("Unknown")
    );
    for (name, value) in &parts.headers {
        if name != "content-length" {
            head.push_str(&format!("{}: {}\r\n", name, String::from_utf8_lossy(value.as_bytes())));
        }
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// A stream with bytes already read from it put back in front.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix: Bytes::from(prefix), inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let taken = self.prefix.split_to(n);
            buf.put_slice(&taken);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fault_header_in_a_head() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\nX-Mock-Raw: 103,100\r\n\r\n{}";
        assert_eq!(requested(head).as_deref(), Some("103,100"));
        assert_eq!(requested(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(requested(b"POST /x HTTP/1.1\r\nx-mock-raw: 1"), None, "head not complete");
    }
}
