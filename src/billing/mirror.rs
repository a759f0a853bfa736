//! The wallets' side of sharing them with peers (see [`super::peers`]):
//! a peer's holds mirrored as holds that never lapse here, its charges and
//! releases settling them, its top-ups and adjustments applied, and this
//! process's open holds handed to a peer that arrives.

use super::holds::KeyCap;
use super::money::NanoUsd;
use super::peers::{PeerApply, PeerLine};
use super::record::{LedgerRecord, RecordKind};
use super::service::Billing;

impl PeerApply for Billing {
    /// A hold, or a release, another process journaled.
    fn apply_peer_line(&self, line: &PeerLine) {
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
    fn apply_peer_record(&self, record: &LedgerRecord, in_store: bool) {
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
    fn open_hold_lines(&self) -> Vec<PeerLine> {
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
