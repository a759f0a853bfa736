//! Idempotent retries: a model call carrying an `Idempotency-Key` is run
//! once per account and key within a day. While the first runs, a retry
//! is told so (409); once it has completed, a retry gets its answer again,
//! byte for byte (a stream is replayed as the stream it was) and is not
//! billed. An attempt that did not complete (an error, a cut, a caller
//! that left) is forgotten, so a retry runs anew. Answers past a size are
//! not kept, and neither is anything older than the window.

use super::holds::Clock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a key is remembered.
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// The largest answer kept for a replay.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// An answer as the caller received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Slot {
    Running { since: u64 },
    Done { at: u64, answer: Arc<Answer> },
}

/// What a call with a key finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The first with this key (or the first since one that failed): run it.
    Fresh,
    /// One with this key is running.
    Running,
    /// One with this key completed: its answer.
    Done(Arc<Answer>),
}

/// The keys of one node: calls running, and answers not yet in the store
/// (kept ones are read back from there).
pub struct Replays {
    slots: Mutex<HashMap<(u64, String), Slot>>,
    clock: Arc<dyn Clock>,
}

impl Replays {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { slots: Mutex::new(HashMap::new()), clock }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, String), Slot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a call with `key` for `account`, or says why not. `kept` is
    /// what the store has for it (looked up by the caller beforehand).
    pub fn begin(&self, account: u64, key: &str, kept: Option<(u64, Answer)>) -> Begun {
        let now = self.clock.now_ms();
        let mut slots = self.slots();
        slots.retain(|_, s| match s {
            // A running call older than the window is a lost one.
            Slot::Running { since } | Slot::Done { at: since, .. } => now.saturating_sub(*since) < WINDOW_MS,
        });
        let id = (account, key.to_string());
        match slots.get(&id) {
            Some(Slot::Running { .. }) => return Begun::Running,
            Some(Slot::Done { answer, .. }) => return Begun::Done(answer.clone()),
            None => {}
        }
        if let Some((at, answer)) = kept.filter(|(at, _)| now.saturating_sub(*at) < WINDOW_MS) {
            let answer = Arc::new(answer);
            slots.insert(id, Slot::Done { at, answer: answer.clone() });
            return Begun::Done(answer);
        }
        slots.insert(id, Slot::Running { since: now });
        Begun::Fresh
    }

    /// The call completed with `answer`: retries get it.
    pub fn complete(&self, account: u64, key: &str, answer: Answer) -> Arc<Answer> {
        let answer = Arc::new(answer);
        let at = self.clock.now_ms();
        self.slots().insert((account, key.to_string()), Slot::Done { at, answer: answer.clone() });
        answer
    }

    /// The call did not complete: a retry runs anew.
    pub fn abandon(&self, account: u64, key: &str) {
        self.slots().remove(&(account, key.to_string()));
    }

    /// Once the store has an answer, memory need not keep it.
    pub fn kept(&self, account: u64, key: &str) {
        let mut slots = self.slots();
        if matches!(slots.get(&(account, key.to_string())), Some(Slot::Done { .. })) {
            slots.remove(&(account, key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ManualClock;

    fn answer() -> Answer {
        Answer { status: 200, content_type: "application/json".into(), body: b"{}".to_vec() }
    }

    #[test]
    fn a_key_runs_once_then_replays_for_a_day() {
        let clock = Arc::new(ManualClock::at(1_000));
        let r = Replays::new(clock.clone());
        assert_eq!(r.begin(1, "k", None), Begun::Fresh);
        assert_eq!(r.begin(1, "k", None), Begun::Running, "a retry while the first runs");
        assert_eq!(r.begin(2, "k", None), Begun::Fresh, "keys are per account");
        r.complete(1, "k", answer());
        assert_eq!(r.begin(1, "k", None), Begun::Done(Arc::new(answer())));
        r.kept(1, "k");
        assert_eq!(
            r.begin(1, "k", Some((1_000, answer()))),
            Begun::Done(Arc::new(answer())),
            "read back from the store"
        );
        clock.advance(WINDOW_MS);
        assert_eq!(r.begin(1, "k", Some((1_000, answer()))), Begun::Fresh, "a day later the key is new");
    }

    #[test]
    fn an_attempt_that_did_not_complete_is_forgotten() {
        let r = Replays::new(Arc::new(ManualClock::at(0)));
        assert_eq!(r.begin(1, "k", None), Begun::Fresh);
        r.abandon(1, "k");
        assert_eq!(r.begin(1, "k", None), Begun::Fresh);
    }
}
