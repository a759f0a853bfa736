//! Other processes spending the same wallets at the same time: the old
//! and the new process of a graceful upgrade, which overlap for as long as
//! the old one's streams run. Every change to the wallets goes through
//! [`Peers::exclusive`]: alone, that is nothing but a call; with peers, it
//! takes a lock all of them share, first applies what the others wrote
//! since (their journal lines), and the change is journaled before the
//! lock is let go. So each process decides on the wallets as they are
//! after every other's last change, and none can overdraw a wallet or a
//! key's cap the other already spent. The lines beyond the ledger records
//! ([`PeerLine`]) are for the peers only: the store never sees them.

use super::record::LedgerRecord;
pub use super::record::{PeerEnvelope, PeerLine};

/// The processes that share this one's wallets.
pub trait Peers: Send + Sync {
    /// Runs `change` as the only change to the wallets in any process:
    /// with peers, after applying theirs through `apply`. `change` is told
    /// whether peers are there (its lines must then be journaled).
    fn exclusive(&self, apply: &dyn PeerApply, change: &mut dyn FnMut(bool));
}

/// A process alone with its wallets (tests, a store in memory).
#[derive(Debug, Default)]
pub struct Alone;

impl Peers for Alone {
    fn exclusive(&self, _apply: &dyn PeerApply, change: &mut dyn FnMut(bool)) {
        change(false);
    }
}

/// What a process applies of its peers' journals, under the lock they
/// share (from [`Peers::exclusive`], or at start): the wallets implement
/// it (`billing::mirror`).
pub trait PeerApply {
    /// A hold, or a release, another process journaled.
    fn apply_peer_line(&self, line: &PeerLine);
    /// A ledger record another process journaled; `in_store`: the store
    /// this process loaded its wallets from had it already (so only a hold
    /// it mirrored is to be ended).
    fn apply_peer_record(&self, record: &LedgerRecord, in_store: bool);
    /// The holds open now, as the lines a peer that just arrived mirrors.
    fn open_hold_lines(&self) -> Vec<PeerLine>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lines_never_read_as_ledger_records() {
        let lines = [
            PeerLine::Hold { key: "r".into(), account: 1, key_id: Some(2), cap: None, amount: 5 },
            PeerLine::Release { key: "r".into() },
            PeerLine::Ack { pid: 7 },
        ];
        for line in lines {
            let text = serde_json::to_string(&PeerEnvelope { peer: line.clone() }).unwrap_or_default();
            assert!(serde_json::from_str::<LedgerRecord>(&text).is_err(), "{text}");
            let back: PeerEnvelope = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back.peer, line);
        }
    }
}
