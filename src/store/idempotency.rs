//! What the store keeps of idempotency keys: the claim that lets exactly
//! one call run under a key (across every process sharing the store), and
//! what a retry finds there afterwards. The rules are in
//! [`crate::exchange::idempotency`].

use crate::billing::replay::Answer;
pub use crate::billing::replay::{Fingerprint, Scope};

/// A call asking to run under `scope`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub scope: Scope,
    pub fingerprint: Fingerprint,
    /// Who claims it (the request id): only it may complete or release it.
    pub owner: String,
    pub now: i64,
    /// When the running mark lapses if its owner never ends it.
    pub expires_at: i64,
}

/// What a key holds when someone else has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Its call is running (or its process died less than a lease ago).
    Running,
    /// Its call completed with this answer.
    Done(Answer),
    /// Its call completed and was billed, but its answer was not kept.
    Unkept,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key is the claimant's: run the call.
    Ours,
    /// Another call has the key: the request it was made with, and its state.
    Theirs { fingerprint: Fingerprint, held: Held },
}
