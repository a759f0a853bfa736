//! What one node keeps in memory for idempotent retries: the bytes of
//! answers being captured, under one bound for all calls together, and the
//! answers that completed but are not in the store yet (so a retry on this
//! node a moment later is replayed rather than told the call still runs).
//! The store decides who runs a key; see [`crate::exchange::idempotency`].

use super::holds::Clock;
/// An idempotency key as scoped: the account, the API key that made the
/// call, and the caller's `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: i64,
    pub key_id: i64,
    pub key: String,
}

/// SHA-256 of the request's method, path and body.
pub type Fingerprint = [u8; 32];
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How long a completed key is remembered.
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// The largest answer kept for a replay.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// The default bound on all answers being captured at once.
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

/// An answer as the caller received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A completed key, as kept until the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    Answer(Arc<Answer>),
    /// Completed and billed, with an answer too large to keep.
    Unkept,
}

pub struct Replays {
    /// Completed keys whose store write is under way.
    pending: Mutex<HashMap<Scope, (Fingerprint, Kept)>>,
    in_flight: AtomicUsize,
    limit: usize,
    /// How long a running mark holds if its process dies.
    pub lease_ms: u64,
    pub clock: Arc<dyn Clock>,
}

impl Replays {
    /// `limit`: the bytes all captures together may take.
    pub fn new(clock: Arc<dyn Clock>, limit: usize, lease_ms: u64) -> Self {
        Self { pending: Mutex::new(HashMap::new()), in_flight: AtomicUsize::new(0), limit, lease_ms, clock }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, (Fingerprint, Kept)>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What this node completed under `scope` and has not yet stored.
    pub fn pending_answer(&self, scope: &Scope) -> Option<(Fingerprint, Kept)> {
        self.pending().get(scope).cloned()
    }

    pub fn completing(&self, scope: Scope, fingerprint: Fingerprint, kept: Kept) {
        self.pending().insert(scope, (fingerprint, kept));
    }

    /// The store has it (or failed to keep it): memory lets go.
    pub fn stored(&self, scope: &Scope) {
        self.pending().remove(scope);
    }

    /// Bytes of captures in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Bytes a capture took from its node's bound; given back when dropped.
pub struct Reservation {
    replays: Arc<Replays>,
    bytes: usize,
}

impl Reservation {
    pub fn new(replays: Arc<Replays>) -> Self {
        Self { replays, bytes: 0 }
    }

    /// Takes `more` bytes, or nothing if that would pass the bound.
    pub fn grow(&mut self, more: usize) -> bool {
        let limit = self.replays.limit;
        let taken = self.replays.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(more).filter(|total| *total <= limit)
        });
        if taken.is_ok() {
            self.bytes += more;
        }
        taken.is_ok()
    }

    /// Gives everything back.
    pub fn clear(&mut self) {
        self.replays.in_flight.fetch_sub(std::mem::take(&mut self.bytes), Ordering::AcqRel);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ManualClock;

    #[test]
    fn captures_share_one_bound_and_give_it_back() {
        let replays = Arc::new(Replays::new(Arc::new(ManualClock::at(0)), 100, 1_000));
        let mut a = Reservation::new(replays.clone());
        let mut b = Reservation::new(replays.clone());
        assert!(a.grow(60));
        assert!(!b.grow(41), "past the bound of all captures together");
        assert!(b.grow(40));
        assert_eq!(replays.in_flight(), 100);
        drop(a);
        assert_eq!(replays.in_flight(), 40);
        b.clear();
        assert_eq!(replays.in_flight(), 0);
        drop(b);
        assert_eq!(replays.in_flight(), 0);
    }

    #[test]
    fn a_completed_key_is_kept_until_stored() {
        let replays = Replays::new(Arc::new(ManualClock::at(0)), 100, 1_000);
        let scope = Scope { account: 1, key_id: 2, key: "k".into() };
        replays.completing(scope.clone(), [1; 32], Kept::Unkept);
        assert_eq!(replays.pending_answer(&scope), Some(([1; 32], Kept::Unkept)));
        replays.stored(&scope);
        assert_eq!(replays.pending_answer(&scope), None);
    }
}
