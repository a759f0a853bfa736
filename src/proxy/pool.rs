//! Connections to providers: Pingora's `Connector` (its pools, TLS and
//! HTTP/2), and beside it a connector of its own for providers that speak
//! only HTTP/1, whose pooled connection is taken without building the
//! connect future. That future (TCP, TLS, the HTTP/2 handshake) is ~9 KB,
//! and a future is moved whole into its box, built or not: on a pooled
//! connection it was a 9 KB copy for nothing, on every call.

use pingora_core::connectors::http::{v1, Connector};
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use std::time::Duration;

pub struct Upstreams {
    any: Connector,
    /// Peers that speak only HTTP/1, with a pool of their own.
    h1_only: v1::Connector,
}

/// Whether `peer` speaks only HTTP/1 (plain HTTP, or TLS offering only
/// `http/1.1`): Pingora's `Connector` would take its connection from its
/// HTTP/1 pool as well, and nothing else.
fn h1_only(peer: &HttpPeer) -> bool {
    peer.get_peer_options().is_none_or(|o| matches!(o.alpn, ALPN::H1))
}

impl Upstreams {
    pub fn new(options: Option<ConnectorOptions>) -> Self {
        Self { any: Connector::new(options.clone()), h1_only: v1::Connector::new(options) }
    }

    /// A session to `peer`, and whether it was pooled.
    pub async fn session(&self, peer: &HttpPeer) -> pingora_core::Result<(HttpSession, bool)> {
        if !h1_only(peer) {
            return Box::pin(self.any.get_http_session(peer)).await;
        }
        if let Some(pooled) = self.h1_only.reused_http_session(peer).await {
            return Ok((HttpSession::H1(pooled), true));
        }
        let (fresh, reused) = Box::pin(self.h1_only.get_http_session(peer)).await?;
        Ok((HttpSession::H1(fresh), reused))
    }

    /// Gives `session` back to the pool it came from (or closes it).
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer, idle: Option<Duration>) {
        match session {
            HttpSession::H1(h1) if h1_only(peer) => self.h1_only.release_http_session(h1, peer, idle).await,
            other => self.any.release_http_session(other, peer, idle).await,
        }
    }
}
