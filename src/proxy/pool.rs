//! Connections to providers. Every HTTP/1 connection waits between calls
//! in a pool of this module's own: a plain-HTTP provider's (such as a
//! local inference server), connected here, and a TLS provider's whose
//! server chose HTTP/1 (every TLS provider offers HTTP/2 as well,
//! `crate::providers`), connected by Pingora's `Connector`, which keeps
//! HTTP/2, its pools and its TLS.
//!
//! Why a pool of its own: Pingora hands each idle connection to a task
//! that watches it. Releasing one spawns that task and arms its timer;
//! taking one wakes it, and the caller waits on its mutex until it lets
//! go: a spawn, two task switches and a timer on every call. Here an
//! idle connection waits in a list. Taking one asks the reactor, without
//! a system call, whether the provider closed it or wrote to it (as
//! Pingora checks too); a sweep once a second closes the connections
//! idle past their timeout or closed by the provider; a full pool closes
//! its oldest idle connection for a new one, as Pingora's LRU does. And the connection
//! is handed out as a stream, so a call makes one HTTP session, not two
//! (`super::h1_request` writes on the stream, then makes the session).

use futures_util::FutureExt;
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::{ConnectorOptions, TransportConnector};
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// How often idle connections are looked at when no call takes them.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Upstreams {
    any: Connector,
    /// Connects peers that speak only HTTP/1 (TCP, and TLS).
    transport: TransportConnector,
    idle: Arc<IdlePool>,
    swept: AtomicBool,
}

/// A connection to a provider, as [`Upstreams::session`] hands it out.
// Taken apart as soon as it is returned (Pingora's session was returned
// by value before): boxing it would cost an HTTP/2 call an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Leased {
    /// An HTTP/1 connection, bare: taken from this module's pool, or made
    /// here for a plain-HTTP provider.
    H1(Stream),
    /// A new connection from Pingora's connector to a provider on TLS
    /// (HTTP/2, or HTTP/1 when its server chose it).
    Pingora(HttpSession),
}

/// Whether `peer` speaks only HTTP/1 (plain HTTP, or TLS offering only
/// `http/1.1`).
fn h1_only(peer: &HttpPeer) -> bool {
    peer.get_peer_options().is_none_or(|o| matches!(o.alpn, ALPN::H1))
}

impl Upstreams {
    pub fn new(options: Option<ConnectorOptions>) -> Self {
        // Every peer together, as Pingora counts it (its default when
        // none is given; from a server's configuration, its per-thread
        // size times the threads).
        let capacity = options.as_ref().map_or(128, |o| o.keepalive_pool_size);
        Self {
            any: Connector::new(options.clone()),
            transport: TransportConnector::new(options),
            idle: Arc::new(IdlePool::new(capacity)),
            swept: AtomicBool::new(false),
        }
    }

    /// A connection to `peer`, and whether it was pooled; `fresh` asks
    /// for a new one (a retry after a pooled one failed: others pooled
    /// at the same time may have died the same way).
    pub async fn session(&self, peer: &HttpPeer, fresh: bool) -> pingora_core::Result<(Leased, bool)> {
        if !fresh {
            // A TLS provider's too: one that answered in HTTP/1 once
            // always will, and Pingora's own HTTP/1 pool stays empty.
            if let Some(pooled) = self.idle.take(peer.reuse_hash(), Instant::now()) {
                return Ok((Leased::H1(pooled), true));
            }
        }
        if !h1_only(peer) {
            let (session, reused) = Box::pin(self.any.get_http_session(peer)).await?;
            return Ok((Leased::Pingora(session), reused));
        }
        // Boxed: the connect future (TCP, TLS) is kilobytes, and a call on
        // a pooled connection should not carry it.
        let fresh = Box::pin(self.transport.new_stream(peer)).await?;
        Ok((Leased::H1(fresh), false))
    }

    /// Gives `session` back to its pool (this module's for every HTTP/1
    /// connection), or closes it when its answer leaves it unusable.
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer, idle: Option<Duration>) {
        match session {
            HttpSession::H1(mut h1) => {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    self.idle.put(peer.reuse_hash(), stream, idle, Instant::now());
                    self.sweep_from_now_on();
                }
            }
            other => self.any.release_http_session(other, peer, idle).await,
        }
    }

    /// Starts the sweep (once, from the first release: it needs the
    /// runtime the connections belong to). It ends with the pool.
    fn sweep_from_now_on(&self) {
        if self.swept.swap(true, Ordering::Relaxed) {
            return;
        }
        let idle = Arc::downgrade(&self.idle);
        tokio::spawn(sweep(idle));
    }
}

async fn sweep(idle: Weak<IdlePool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = idle.upgrade() else { return };
        pool.sweep(Instant::now());
    }
}

/// Idle connections by peer (`Peer::reuse_hash`), the most recently
/// released last.
struct IdlePool {
    by_peer: Mutex<Lists>,
    /// The most kept at once, every peer together; past it the oldest
    /// idle connection is closed for the one released.
    capacity: usize,
}

#[derive(Default)]
struct Lists {
    by_peer: HashMap<u64, Vec<Idle>>,
    count: usize,
}

impl Lists {
    /// Takes out the connection idle the longest, every peer together
    /// (each list holds its own in the order they were released).
    fn remove_oldest(&mut self) -> Option<Idle> {
        let key =
            *self.by_peer.iter().filter_map(|(k, l)| Some((k, l.first()?.since))).min_by_key(|(_, s)| *s)?.0;
        let list = self.by_peer.get_mut(&key)?;
        let oldest = list.remove(0);
        if list.is_empty() {
            self.by_peer.remove(&key);
        }
        self.count -= 1;
        Some(oldest)
    }
}

struct Idle {
    stream: Stream,
    since: Instant,
    timeout: Option<Duration>,
}

impl Idle {
    /// Whether the connection may carry another request at `now`.
    fn usable(&mut self, now: Instant) -> bool {
        let timed_out = self.timeout.is_some_and(|t| now.saturating_duration_since(self.since) >= t);
        !timed_out && quiet(&mut self.stream)
    }
}

/// Whether nothing arrived on an idle connection: no answer is pending on
/// it, so anything readable (bytes, the provider's close, an error) makes
/// it unusable. Asked of the reactor: no system call unless it saw an
/// event on the socket.
fn quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // `unconstrained`: tokio's budget could make a ready read look pending.
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => true,
        Some(Ok(0)) | Some(Err(_)) => false,
        Some(Ok(_)) => {
            // A provider that answers what was not asked (a 408 before its
            // close, a body longer than its length) is worth knowing of.
            log::warn!(target: "tollgate", "a provider sent bytes on an idle connection; it is closed");
            false
        }
    }
}

fn lock(m: &Mutex<Lists>) -> std::sync::MutexGuard<'_, Lists> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl IdlePool {
    fn new(capacity: usize) -> Self {
        Self { by_peer: Mutex::new(Lists::default()), capacity }
    }

    /// The most recently released usable connection to the peer `key`;
    /// the unusable ones met on the way are closed. Each is looked at
    /// outside the lock (an event on it makes that a system call).
    fn take(&self, key: u64, now: Instant) -> Option<Stream> {
        loop {
            let mut idle = {
                let mut lists = lock(&self.by_peer);
                let Lists { by_peer, count } = &mut *lists;
                let idle = by_peer.get_mut(&key)?.pop()?;
                *count -= 1;
                idle
            };
            if idle.usable(now) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream` for the peer `key`, unless it is unusable already;
    /// a full pool closes its oldest idle connection to make room.
    fn put(&self, key: u64, stream: Stream, timeout: Option<Duration>, now: Instant) {
        let mut idle = Idle { stream, since: now, timeout };
        if !idle.usable(now) || self.capacity == 0 {
            return;
        }
        let oldest = {
            let mut lists = lock(&self.by_peer);
            let oldest = if lists.count >= self.capacity { lists.remove_oldest() } else { None };
            lists.count += 1;
            lists.by_peer.entry(key).or_default().push(idle);
            oldest
        };
        drop(oldest); // closed outside the lock
    }

    /// Closes the connections that timed out or that the provider closed,
    /// looked at outside the lock; what was released meanwhile stays.
    fn sweep(&self, now: Instant) {
        let taken = {
            let mut lists = lock(&self.by_peer);
            lists.count = 0;
            std::mem::take(&mut lists.by_peer)
        };
        let mut kept: HashMap<u64, Vec<Idle>> = HashMap::with_capacity(taken.len());
        for (key, list) in taken {
            let usable: Vec<Idle> = list.into_iter().filter_map(|mut i| i.usable(now).then_some(i)).collect();
            if !usable.is_empty() {
                kept.insert(key, usable);
            }
        }
        let mut lists = lock(&self.by_peer);
        for (key, mut older) in kept {
            lists.count += older.len();
            let list = lists.by_peer.entry(key).or_default();
            // Older than what was released meanwhile: first in the list.
            older.append(list);
            *list = older;
        }
        // Whatever came in meanwhile may have passed the bound: it holds again.
        let mut closed = Vec::new();
        while lists.count > self.capacity {
            match lists.remove_oldest() {
                Some(idle) => closed.push(idle),
                None => break,
            }
        }
        drop(lists);
        drop(closed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.by_peer).count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the gateway's end as Pingora's stream, the
    /// provider's end as it is.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let ours: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(ours.unwrap()));
        (ours, theirs.unwrap().0)
    }

    /// Lets the reactor see what the other end did.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_released_connection_is_taken_again_the_last_released_first() {
        let pool = IdlePool::new(8);
        let now = Instant::now();
        let (a, _a) = pair().await;
        let (b, _b) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        pool.put(1, a, None, now);
        pool.put(1, b, None, now);
        assert_eq!(pool.len(), 2);
        assert!(pool.take(2, now).is_none(), "another peer's connection is never handed out");
        assert_eq!(pool.take(1, now).map(|s| s.id()), Some(b_id));
        assert_eq!(pool.take(1, now).map(|s| s.id()), Some(a_id));
        assert!(pool.take(1, now).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_provider_closed_or_wrote_to_is_not_handed_out() {
        let pool = IdlePool::new(8);
        let (closed, theirs) = pair().await;
        let (written, mut chatty) = pair().await;
        let (fine, _fine) = pair().await;
        let fine_id = fine.id();
        let now = Instant::now();
        pool.put(1, fine, None, now);
        pool.put(1, closed, None, now);
        pool.put(1, written, None, now);
        drop(theirs);
        chatty.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await.unwrap();
        settle().await;
        assert_eq!(pool.take(1, Instant::now()).map(|s| s.id()), Some(fine_id));
        assert_eq!(pool.len(), 0, "the two unusable ones were closed on the way");
    }

    #[tokio::test]
    async fn a_connection_idle_past_its_timeout_is_closed_not_handed_out() {
        let pool = IdlePool::new(8);
        let (stream, mut theirs) = pair().await;
        let then = Instant::now();
        pool.put(1, stream, Some(Duration::from_secs(5)), then);
        assert!(pool.take(1, then + Duration::from_secs(5)).is_none());
        let mut buf = [0u8; 1];
        assert_eq!(theirs.read(&mut buf).await.unwrap(), 0, "the provider sees it closed");
    }

    #[tokio::test]
    async fn the_sweep_closes_what_timed_out_and_what_the_provider_closed() {
        let pool = IdlePool::new(8);
        let then = Instant::now();
        let (short, mut short_theirs) = pair().await;
        let (closed, closed_theirs) = pair().await;
        let (long, _long_theirs) = pair().await;
        pool.put(1, short, Some(Duration::from_secs(1)), then);
        pool.put(2, closed, None, then);
        pool.put(2, long, Some(Duration::from_secs(60)), then);
        drop(closed_theirs);
        settle().await;
        pool.sweep(then + Duration::from_secs(2));
        assert_eq!(pool.len(), 1);
        let mut buf = [0u8; 1];
        assert_eq!(short_theirs.read(&mut buf).await.unwrap(), 0);
        assert!(pool.take(1, then + Duration::from_secs(2)).is_none());
        assert!(pool.take(2, then + Duration::from_secs(2)).is_some());
    }

    #[tokio::test]
    async fn a_full_pool_closes_its_oldest_connection_for_a_new_one() {
        let pool = IdlePool::new(2);
        let then = Instant::now();
        let (a, mut a_theirs) = pair().await;
        let (b, _b) = pair().await;
        let (c, _c) = pair().await;
        let (b_id, c_id) = (b.id(), c.id());
        pool.put(1, a, None, then);
        pool.put(2, b, None, then + Duration::from_millis(1));
        pool.put(3, c, None, then + Duration::from_millis(2));
        assert_eq!(pool.len(), 2);
        let mut buf = [0u8; 1];
        assert_eq!(a_theirs.read(&mut buf).await.unwrap(), 0, "the oldest, another peer's, was closed");
        let now = then + Duration::from_millis(3);
        assert!(pool.take(1, now).is_none());
        assert_eq!(pool.take(2, now).map(|s| s.id()), Some(b_id));
        assert_eq!(pool.take(3, now).map(|s| s.id()), Some(c_id));
    }

    #[tokio::test]
    async fn the_sweep_keeps_the_order_of_what_it_kept_and_what_came_meanwhile() {
        let pool = IdlePool::new(8);
        let then = Instant::now();
        let (a, _a) = pair().await;
        let (b, _b) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        pool.put(1, a, None, then);
        pool.sweep(then);
        pool.put(1, b, None, then);
        pool.sweep(then);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(1, then).map(|s| s.id()), Some(b_id), "the last released first");
        assert_eq!(pool.take(1, then).map(|s| s.id()), Some(a_id));
    }
}
