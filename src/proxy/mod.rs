//! The Pingora `ProxyHttp` implementation: the only code that touches
//! pingora-proxy. Each hook delegates: `request_filter` answers every
//! request itself (see `exchange` for why the upstream call is driven from
//! there), `logging` hands the finished request to metrics and the access log.

mod connections;
mod context;
mod dashboard;
mod downstream;
mod exchange;
mod failover;
mod h1_request;
mod head_deadline;
mod images;
mod outcome;
mod pool;
mod reading;
mod translated;
mod upstream;

pub use connections::{ConnectionGuard, ConnectionLimits};
pub use context::RequestCtx;
pub use pool::Upstreams;

use crate::health::Health;
use crate::reload::Live;
use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;

pub struct TollgateProxy {
    /// The gateway in force: each request takes it at its start and keeps
    /// it to its end, across configuration reloads.
    live: Arc<Live>,
    health: Arc<Health>,
    connector: Upstreams,
    /// Seconds an idle keep-alive connection waits for its next request.
    idle_timeout_secs: u64,
    /// How long one write to a caller that stopped reading may wait.
    write_timeout: std::time::Duration,
}

impl TollgateProxy {
    pub fn new(
        live: Arc<Live>,
        health: Arc<Health>,
        connector: Upstreams,
        idle_timeout_secs: u64,
        write_timeout: std::time::Duration,
    ) -> Self {
        Self { live, health, connector, idle_timeout_secs: idle_timeout_secs.max(1), write_timeout }
    }
}

#[async_trait]
impl ProxyHttp for TollgateProxy {
    /// Boxed: Pingora keeps the context inline in each request's future,
    /// which it moves into a box of its own per request (a memcpy of the
    /// whole future); a context of 500-odd bytes made that copy ~1.5k
    /// instructions longer than a bare proxy's.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new())
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<()> {
        downstream::redact_query_key(session, ctx);
        downstream::configure(session, self.idle_timeout_secs, self.write_timeout);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<bool> {
        let gateway = self.live.current();
        exchange::handle(&gateway, &self.health, &self.connector, session, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter`; reaching here is a bug.
        Err(Error::explain(ErrorType::InternalError, "tollgate answers every request in request_filter"))
    }

    fn request_summary(&self, session: &Session, _ctx: &Box<RequestCtx>) -> String {
        // Pingora's own summary prints the query, where a key may be.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Box<RequestCtx>, _error: &Error) -> bool {
        // A caller hanging up mid-stream is routine, not an error; the
        // access log still records it.
        ctx.client_went_away()
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        downstream::request_done(session);
        ctx.finish(session.response_written().map(|r| r.status.as_u16()), error.is_some());
        if let Some((idempotent, status, completed)) = ctx.idempotent_end.take() {
            idempotent.finish(status, completed).await;
        }
    }
}
