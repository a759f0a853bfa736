//! Graceful drain: counts the requests in flight and the connections
//! open, and ends the process once a shutdown (SIGTERM, or SIGQUIT after
//! handing the listeners to a new process) has begun and the last of them
//! is done. While draining, every response tells its caller the
//! connection closes (`Connection: close`; GOAWAY on HTTP/2), and idle
//! connections stay open until their caller has had the chance to see
//! that or their idle timeout ends them: closing an idle keep-alive
//! connection as a request arrives on it loses that request.
//!
//! Why: Pingora 0.9.1 stops accepting, then sleeps the whole
//! `grace_period_seconds` whether or not anything is still running, then
//! drops whatever is left (a runtime's shutdown timeout does not wait for
//! async tasks). LLM streams run for minutes, so the grace period has to be
//! long; without this an idle node would take that long to stop, and with
//! it a node stops as soon as its last stream ends.

use pingora_core::server::ShutdownWatch;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether a shutdown has begun: responses then close their connection.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// Held by every caller connection while it is open.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    pub fn open() -> Self {
        CONNECTIONS.fetch_add(1, Ordering::AcqRel);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn open_connections() -> usize {
    CONNECTIONS.load(Ordering::Acquire)
}

/// Held by every request while it is served.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// How often a draining process looks at the count.
const POLL: Duration = Duration::from_millis(100);

/// Waits for the shutdown, then for the requests in flight and the open
/// connections, then exits. Pingora's own grace period stays the upper bound.
pub async fn exit_when_drained(mut shutdown: ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
    DRAINING.store(true, Ordering::Release);
    log::info!(
        target: "tollgate",
        "shutdown: draining {} request(s) in flight on {} connection(s)",
        in_flight(),
        open_connections()
    );
    loop {
        if in_flight() == 0 && open_connections() == 0 {
            log::info!(target: "tollgate", "shutdown: nothing in flight, exiting");
            std::process::exit(0);
        }
        tokio::time::sleep(POLL).await;
    }
}
