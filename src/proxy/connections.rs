//! The caller's connections, from accept to close: at most
//! `max_connections_per_address` from one client address (a 429 past it),
//! a deadline for every HTTP/1 request head ([`HeadDeadline`]), and a
//! count of what is open, so a draining node neither exits nor drops its
//! idle keep-alive connections while a caller may still send on them.
//!
//! It wraps Pingora's HTTP service ([`HttpProxy`]), whose one call per
//! connection spans the connection's whole life.

use super::head_deadline::HeadDeadline;
use super::TollgateProxy;
use crate::drain::{self, OpenConnection};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// 0: no limit.
    pub max_per_address: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
}

pub struct ConnectionGuard {
    inner: Arc<HttpProxy<TollgateProxy>>,
    limits: ConnectionLimits,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionGuard {
    pub fn new(inner: HttpProxy<TollgateProxy>, limits: ConnectionLimits) -> Self {
        Self { inner: Arc::new(inner), limits, per_address: Mutex::new(HashMap::new()) }
    }

    /// Counts a connection from `ip` in, unless it is one too many.
    fn admit(&self, ip: IpAddr) -> bool {
        let Ok(mut counts) = self.per_address.lock() else { return true };
        let count = counts.entry(ip).or_insert(0);
        if self.limits.max_per_address > 0 && *count >= self.limits.max_per_address {
            return false;
        }
        *count += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        if let Ok(mut counts) = self.per_address.lock() {
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

const TOO_MANY: &str = "{\"error\":{\"message\":\"Too many connections from this address\",\"type\":\"rate_limit_error\",\"code\":\"too_many_connections\"}}";

#[async_trait]
impl ServerApp for ConnectionGuard {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let ip =
            stream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        if let Some(ip) = ip {
            if !self.admit(ip) {
                crate::metrics::connection_refused("per_address_limit");
                if !h2 {
                    let answer = format!(
                        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{TOO_MANY}",
                        TOO_MANY.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.flush().await;
                }
                return None;
            }
        }
        let _open = OpenConnection::open();
        let stream = if h2 { stream } else { HeadDeadline::wrap(stream, self.limits.head_timeout) };
        let reused = self.inner.process_new(stream, shutdown).await;
        if let Some(ip) = ip {
            self.leave(ip);
        }
        reused
    }

    /// Called once the listeners have stopped. Pingora's own cleanup drops
    /// every idle keep-alive connection at once, losing any request sent on
    /// one at that moment; so it waits until callers have closed them (each
    /// response now says `Connection: close`) or their idle timeout has.
    async fn cleanup(&self) {
        let deadline =
            Instant::now() + self.limits.idle_timeout + self.limits.head_timeout + Duration::from_secs(1);
        while drain::open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.inner.cleanup().await;
    }
}
