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

use super::holds::KeyCap;
use super::money::NanoUsd;
use super::record::{LedgerRecord, RecordKind};
use super::service::Billing;
use serde::{Deserialize, Serialize};

/// A change to the wallets that is not a ledger record: what a peer must
/// mirror to decide as this process would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerLine {
    /// Request `key` holds `amount` of `account`'s wallet (and of key
    /// `key_id`'s cap).
    Hold { key: String, account: u64, key_id: Option<u64>, cap: Option<i64>, amount: i64 },
    /// Request `key` ended costing nothing: its hold is given back whole.
    /// (One that cost something ends with its charge record.)
    Release { key: String },
    /// This process has seen process `pid` and journals every change from
    /// now on, its open holds first.
    Ack { pid: u32 },
}

/// How a [`PeerLine`] is written in a journal: under a key no ledger
/// record has, so each reader can tell the two apart.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerEnvelope {
    pub peer: PeerLine,
}

/// The processes that share this one's wallets.
pub trait Peers: Send + Sync {
    /// Runs `change` as the only change to the wallets in any process:
    /// with peers, after applying theirs to `billing`. `change` is told
    /// whether peers are there (its lines must then be journaled).
    fn exclusive(&self, billing: &Billing, change: &mut dyn FnMut(bool));
}

/// A process alone with its wallets (tests, a store in memory).
#[derive(Debug, Default)]
pub struct Alone;

impl Peers for Alone {
    fn exclusive(&self, _billing: &Billing, change: &mut dyn FnMut(bool)) {
        change(false);
    }
}

/// What a process applies of its peers' journals, under the lock they
/// share (from [`Peers::exclusive`], or at start).
impl Billing {
    /// A hold, or a release, another process journaled.
    pub fn apply_peer_line(&self, line: &PeerLine) {
        let applied = match line {
            PeerLine::Hold { key, account, key_id, cap, amount } => {
                let cap = key_id.map(|key_id| KeyCap { key_id, cap: cap.map(NanoUsd) });
                self.wallets().mirror_hold(*account, cap, NanoUsd(*amount), key)
            }
            PeerLine::Release { key } => self.wallets().mirror_charge(key, NanoUsd::ZERO, 0, None).map(drop),
            PeerLine::Ack { .. } => Ok(()),
        };
        if let Err(e) = applied {
            log::error!(target: "tollgate", "a peer's journal line could not be applied: {e:?}: {line:?}");
        }
    }

    /// A ledger record another process journaled; `in_store`: the store
    /// this process loaded its wallets from had it already (so only a
    /// hold it mirrored is to be ended).
    pub fn apply_peer_record(&self, record: &LedgerRecord, in_store: bool) {
        let wallets = self.wallets();
        let applied = match record.kind {
            RecordKind::Charge => {
                let hold = record.key.strip_suffix(":charge").unwrap_or(&record.key);
                let charged = if in_store { 0 } else { record.wallet_nano.saturating_neg() };
                wallets.mirror_charge(hold, NanoUsd(charged), record.account, record.key_id).map(drop)
            }
            _ if in_store => Ok(()),
            RecordKind::Topup => {
                let multiplier = record.multiplier.unwrap_or(1);
                wallets
                    .topup(record.account, NanoUsd(record.paid_nano), multiplier, &record.key, |_| {})
                    .map(drop)
            }
            RecordKind::Adjustment | RecordKind::Refund => {
                wallets.grant(record.account, NanoUsd(record.wallet_nano), &record.key, || {}).map(drop)
            }
        };
        if let Err(e) = applied {
            log::error!(target: "tollgate", "a peer's ledger record could not be applied: {e:?}: {}", record.key);
        }
    }

    /// The holds open now, as the lines a peer that just arrived mirrors.
    pub fn open_hold_lines(&self) -> Vec<PeerLine> {
        self.wallets()
            .open()
            .into_iter()
            .map(|(key, account, cap, amount)| PeerLine::Hold {
                key,
                account,
                key_id: cap.map(|c| c.key_id),
                cap: cap.and_then(|c| c.cap).map(|c| c.0),
                amount: amount.0,
            })
            .collect()
    }
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
            assert!(serde_json::from_str::<super::super::LedgerRecord>(&text).is_err(), "{text}");
            let back: PeerEnvelope = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back.peer, line);
        }
    }
}
