//! Billing's side of a fleet whose wallets are on Redis (`crate::hot`,
//! which this module knows nothing of): the admission of a call Redis
//! held, its refusal in the caller's terms, its charge (at most the
//! hold, journaled here; the paid value attributed by the store when it
//! can), and the balances Redis last answered, which a node holds against
//! while Redis is down (`on_failure: open`).

use super::directory::{AccountState, KeyState};
use super::holds::HoldToken;
use super::money::NanoUsd;
use super::service::{Admission, Billing, Call, Charge, Quote, Refusal};
use crate::formats::usage::Usage;
use std::sync::Arc;

impl Billing {
    /// A call held on the fleet's shared wallet (see `crate::hot`): the
    /// admission this node settles by journaling the charge.
    pub fn shared_admission(
        &self,
        key: &Arc<KeyState>,
        account: Arc<AccountState>,
        call: &Call<'_>,
        quote: Quote,
        hold_key: &str,
    ) -> Admission {
        Admission {
            account,
            key: key.clone(),
            hold_key: hold_key.to_string(),
            model: call.model_id.clone(),
            price: call.price,
            held: quote.held,
            input_estimate: quote.input_estimate,
            output_cap: quote.output_cap,
            alive: HoldToken::default(),
            group: "messages",
            shared: true,
        }
    }

    /// The refusal for a hold the shared wallet (`spend_cap`: the key's
    /// cap) could not take: `left` is what it had.
    pub fn shared_refusal(call: &Call<'_>, held: NanoUsd, spend_cap: Option<NanoUsd>, left: i64) -> Refusal {
        let left = NanoUsd(left.max(0));
        if let Some(cap) = spend_cap {
            Refusal::SpendCapReached { left, needed: held, cap }
        } else {
            Refusal::InsufficientCredits {
                available: left,
                needed: held,
                affordable_output: call.price.affordable_output(left, call.input_tokens),
            }
        }
    }

    /// Redis answered `available` for `account`'s wallet (a fleet).
    pub fn saw_shared_balance(&self, account: u64, available: i64) {
        self.last_known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(account, available);
    }

    /// Redis is down (`on_failure: open`): this node's wallet for
    /// `account` is brought to the balance Redis last answered, once per
    /// answer, so it holds against the fleet's last known balance rather
    /// than only what this node saw (nothing is journaled: the ledger is
    /// not changed, only this node's view of it).
    pub fn hold_from_last_known(&self, account: u64) {
        let known =
            self.last_known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&account);
        let Some(known) = known else { return };
        let delta = known - self.wallets.available(account).0;
        if delta != 0 {
            let n = self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = self.wallets.grant(account, NanoUsd(delta), &format!("last-known:{account}:{n}"), || {});
        }
    }

    /// The charge of a call held on the shared wallet: at most its hold
    /// (which the wallet and the key's cap reserved for it on Redis); the
    /// rest is unpaid. The charge is journaled here, before the answer's
    /// last bytes; the caller's permit applies it to Redis. This node's
    /// own wallets follow it too: the last balances it knows, which it
    /// holds against while Redis is down (`on_failure: open`). The paid
    /// value is the store's to attribute when it can (PostgreSQL), else
    /// this node's lots'.
    pub(super) fn charge_shared(
        &self,
        admission: &Admission,
        cost: NanoUsd,
        usage: Usage,
        estimated: bool,
        request_id: &str,
    ) -> Option<Charge> {
        let charged = NanoUsd(cost.0.min(admission.held.0).max(0));
        let unpaid = NanoUsd(cost.0 - charged.0);
        if charged.0 == 0 && unpaid.0 == 0 {
            return Some(Charge { cost: charged, estimated, usage, unpaid });
        }
        let paid = self
            .wallets
            .mirror_charge(&admission.hold_key, charged, admission.account.id, Some(admission.key.id))
            .ok()
            .flatten()
            .map_or(NanoUsd::ZERO, |s| s.paid);
        let paid = if self.options.paid_at_delivery { NanoUsd(super::PAID_AT_DELIVERY) } else { paid };
        self.sink.record(self.charge_record(admission, charged, paid, unpaid, usage, estimated, request_id));
        Some(Charge { cost: charged, estimated, usage, unpaid })
    }
}
