//! A whole-request-head deadline for HTTP/1 connections: the caller's
//! stream wrapped so that, from the first byte of a request head (or the
//! connection's start), the head must be complete within a limit, however
//! slowly its bytes trickle in. Pingora has only a per-read timeout, which
//! a client sending a byte every few seconds never trips.
//!
//! The request path moves the clock: `Body` once the head is parsed (the
//! body has Pingora's own read timeouts), `Idle` when the request is done
//! (the keep-alive idle timeout governs the wait for the next one).

use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, IO,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BODY: u8 = 2;

/// Where a connection is in its request cycle.
#[derive(Debug)]
pub struct HeadClock(AtomicU8);

impl HeadClock {
    /// The head is in: no deadline while the body and response go.
    pub fn head_done(&self) {
        self.0.store(BODY, Ordering::Release);
    }

    /// The request is answered: the next head's deadline starts with its first byte.
    pub fn request_done(&self) {
        self.0.store(IDLE, Ordering::Release);
    }
}

#[derive(Debug)]
pub struct HeadDeadline {
    inner: Stream,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    clock: Arc<HeadClock>,
}

impl HeadDeadline {
    /// Wraps a fresh connection, whose first head is due within `limit`.
    pub fn wrap(inner: Stream, limit: Duration) -> Stream {
        Box::new(Self { inner, limit, timer: None, clock: Arc::new(HeadClock(AtomicU8::new(HEAD))) })
    }

    /// The clock of a wrapped connection.
    pub fn clock_of(stream: &Stream) -> Option<&HeadClock> {
        let io: &dyn IO = &**stream;
        io.as_any().downcast_ref::<HeadDeadline>().map(|d| &*d.clock)
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.clock.0.load(Ordering::Acquire) {
            HEAD => {
                let limit = self.limit;
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request head was not complete in time",
                    )));
                }
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
            IDLE => {
                self.timer = None;
                let before = buf.filled().len();
                let read = Pin::new(&mut self.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    let _ = self.clock.0.compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire);
                }
                read
            }
            _ => {
                self.timer = None;
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, b)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait::async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora_core::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<pingora_core::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<pingora_core::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait::async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
