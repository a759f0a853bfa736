//! Billing on the request path of one node: who may call which model
//! (keys, accounts, plans), the one step before a request goes upstream (a
//! hold of its worst-case cost against the wallet and the key's spend cap)
//! and the one after (the hold settled to what the usage costs, handed to
//! the [`Sink`] before the response ends). In memory: the request path
//! never waits on the store.

use super::directory::{AccountState, Directory, KeyDigest, KeyState, Status};
use super::holds::{Clock, HoldRefused, HoldToken, KeyCap, Wallets};
use super::money::NanoUsd;
use super::peers::{Alone, PeerLine, Peers};
pub use super::plan::{matches_any, Plan};
use super::price::ModelPrice;
use super::record::{LedgerRecord, Metered, RecordKind, Sink};
use crate::formats::usage::Usage;
use foldhash::{HashMap, HashMapExt};
use std::sync::{Arc, RwLock};

/// How long a hold may stay open before it is released unbilled, unless
/// configured: longer than any request may run.
pub const HOLD_LEASE_MS: u64 = 60 * 60 * 1000;

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked or expired key (401).
    InvalidKey(&'static str),
    AccountSuspended,
    TrialExpired,
    /// The plan has no API access, or the plan or key excludes the model.
    UpgradeRequired(String),
    /// Even a small answer cannot be paid for.
    InsufficientCredits {
        available: NanoUsd,
        needed: NanoUsd,
        affordable_output: u64,
    },
    SpendCapReached {
        left: NanoUsd,
        needed: NanoUsd,
        /// The key's cap.
        cap: NanoUsd,
    },
}

/// What a call asks for, as far as its price goes.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The catalog's name for the model, shared into the admission and
    /// its charge.
    pub model_id: Arc<str>,
    /// The model's class (`opus`, `sonnet`), which plans may name.
    pub model_class: Option<&'a str>,
    pub price: ModelPrice,
    /// Estimated from the body.
    pub input_tokens: u64,
    /// The caller's limit, or the model's.
    pub max_output: u64,
    pub caller_set_limit: bool,
    /// Priced units besides tokens the call can use (images asked for,
    /// search units; see `ModelPrice::cost`).
    pub units: u64,
}

/// A request let through: what it holds, to settle when it ends.
#[derive(Debug)]
pub struct Admission {
    pub account: Arc<AccountState>,
    pub key: Arc<KeyState>,
    pub hold_key: String,
    pub model: Arc<str>,
    pub price: ModelPrice,
    pub held: NanoUsd,
    pub input_estimate: u64,
    /// Output tokens the hold pays for, when the wallet or cap could not
    /// pay for the model's full output.
    pub output_cap: Option<u64>,
    /// Keeps the hold's lease renewed while the request lives.
    pub alive: HoldToken,
    /// The endpoint group its hourly limit counts in (kept with the
    /// charge, so a restart can rebuild the windows from the ledger).
    pub group: &'static str,
    /// Held on the fleet's shared wallet (Redis), which settles it: the
    /// charge is at most the hold, and this node only journals it.
    pub shared: bool,
}

/// What a call is to hold: its worst case, or, for a call that did not
/// set its own output limit and that the budget cannot pay in full, what
/// the budget affords, with the output cap that keeps it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub held: NanoUsd,
    pub output_cap: Option<u64>,
    pub input_estimate: u64,
}

/// How a request ended, for its bill.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// The provider's count, when it sent one.
    pub usage: Option<Usage>,
    /// `usage` is the gateway's own count, for a provider that counts
    /// nothing (Gemini's embeddings): billed, and flagged as estimated.
    pub usage_estimated: bool,
    /// Output tokens the caller received, counted by the relay: the
    /// estimate when the provider's count never came.
    pub relayed_output_tokens: u64,
    /// Whether the caller received anything of an answer.
    pub relayed_any: bool,
    /// Whether the answer ended as the provider meant it to: a stream cut
    /// or left early may carry a count made before its end.
    pub completed: bool,
    /// Priced units the call used besides tokens (see `ModelPrice::cost`).
    pub units: u64,
}

/// What a settled request was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub cost: NanoUsd,
    pub estimated: bool,
    pub usage: Usage,
    /// What the usage cost beyond what the hold, the wallet and the key's
    /// cap could pay: recorded, never taken.
    pub unpaid: NanoUsd,
}

#[derive(Debug, Clone)]
pub struct BillingOptions {
    pub lease_ms: u64,
    /// Prefix of every customer key this deployment issues.
    pub key_prefix: String,
    /// Route a call for a model the key may not use to the key's fallback
    /// model instead of refusing it.
    pub fallback_models: bool,
    /// A fleet's charges leave their paid value to the store, which
    /// attributes it in the ledger's order ([`super::PAID_AT_DELIVERY`]):
    /// no node's lots see every charge.
    pub paid_at_delivery: bool,
}

impl Default for BillingOptions {
    fn default() -> Self {
        Self {
            lease_ms: HOLD_LEASE_MS,
            key_prefix: "sk-tollgate-".into(),
            fallback_models: false,
            paid_at_delivery: false,
        }
    }
}

pub struct Billing {
    pub directory: Directory,
    pub(super) wallets: Wallets<Arc<dyn Clock>>,
    /// By name; replaced whole by a configuration reload (`replace_plans`).
    plans: RwLock<HashMap<String, Arc<Plan>>>,
    pub(super) sink: Arc<dyn Sink>,
    /// Other processes on the same wallets (an upgrade's overlap).
    peers: Arc<dyn Peers>,
    pub options: BillingOptions,
    /// A fleet's wallets as Redis last answered (balance after the hold),
    /// for the node to hold against while Redis is down.
    pub(super) last_known: std::sync::Mutex<HashMap<u64, i64>>,
    pub(super) syncs: std::sync::atomic::AtomicU64,
}

/// The fewest output tokens worth sending a request upstream for.
pub(super) const MIN_OUTPUT_TOKENS: u64 = 16;

/// Input tokens the output cap adds to a body, at four bytes a token:
/// `,"max_completion_tokens":18446744073709551615` is 46 bytes, and a
/// Gemini `generationConfig` written anew may change by a few more.
const OUTPUT_CAP_FIELD_TOKENS: u64 = 16;

impl Billing {
    pub fn new(
        plans: Vec<Arc<Plan>>,
        sink: Arc<dyn Sink>,
        clock: Arc<dyn Clock>,
        options: BillingOptions,
    ) -> Self {
        Self {
            directory: Directory::default(),
            wallets: Wallets::new(clock, options.lease_ms),
            plans: RwLock::new(plans.into_iter().map(|p| (p.name.clone(), p)).collect()),
            sink,
            peers: Arc::new(Alone),
            options,
            last_known: std::sync::Mutex::new(HashMap::new()),
            syncs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The same, sharing its wallets with `peers`.
    pub fn with_peers(mut self, peers: Arc<dyn Peers>) -> Self {
        self.peers = peers;
        self
    }

    /// Runs `change` as the only change to the wallets in any process
    /// (see [`super::peers`]); `change` is told whether peers are there.
    fn exclusive<T>(&self, change: impl FnOnce(bool) -> T) -> Option<T> {
        let mut change = Some(change);
        let mut out = None;
        self.peers.exclusive(self, &mut |shared| {
            if let Some(change) = change.take() {
                out = Some(change(shared));
            }
        });
        out
    }

    pub fn now_ms(&self) -> u64 {
        self.wallets.now_ms()
    }

    pub fn plan(&self, name: &str) -> Option<Arc<Plan>> {
        self.plans.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned()
    }

    /// Every plan in force, by name.
    pub fn plans(&self) -> Vec<Arc<Plan>> {
        let plans = self.plans.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<Arc<Plan>> = plans.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The plans of a reloaded configuration: each account is pointed at
    /// its plan's new version by name (one no longer configured allows
    /// nothing, as at start). Calls already admitted keep the plan they
    /// were admitted under.
    pub fn replace_plans(&self, plans: Vec<Arc<Plan>>) {
        let plans: HashMap<String, Arc<Plan>> = plans.into_iter().map(|p| (p.name.clone(), p)).collect();
        let of = |name: &str| plans.get(name).cloned().unwrap_or_else(|| Arc::new(Plan::none(name)));
        self.directory.replan(of);
        *self.plans.write().unwrap_or_else(std::sync::PoisonError::into_inner) = plans;
    }

    pub fn wallets(&self) -> &Wallets<Arc<dyn Clock>> {
        &self.wallets
    }

    pub fn available(&self, account: u64) -> NanoUsd {
        self.wallets.available(account)
    }

    pub fn key_spent(&self, key_id: u64) -> NanoUsd {
        self.wallets.key_spent(key_id)
    }

    /// The key behind `digest`, if it may be used now.
    pub fn authenticate(&self, digest: &KeyDigest) -> Result<Arc<KeyState>, Refusal> {
        let key = self.directory.key(digest).ok_or(Refusal::InvalidKey("invalid"))?;
        let now = self.now_ms();
        if key.status == Status::Revoked {
            return Err(Refusal::InvalidKey("revoked"));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(Refusal::InvalidKey("expired"));
        }
        key.touch(now);
        Ok(key)
    }

    /// Whether `key`'s account may call `model_id` now: its status, trial,
    /// plan and the key's own allowlist.
    pub fn access(
        &self,
        key: &KeyState,
        model_id: &str,
        class: Option<&str>,
    ) -> Result<Arc<AccountState>, Refusal> {
        let account = self.directory.account(key.account).ok_or(Refusal::InvalidKey("invalid"))?;
        if account.status != Status::Active {
            return Err(Refusal::AccountSuspended);
        }
        if account.trial_ends_at.is_some_and(|t| t <= self.now_ms()) {
            return Err(Refusal::TrialExpired);
        }
        if !account.plan.api_access {
            return Err(Refusal::UpgradeRequired("your plan does not include API access".into()));
        }
        if !account.plan.allows(model_id, class) {
            return Err(Refusal::UpgradeRequired(format!(
                "your plan does not include the model '{model_id}'"
            )));
        }
        if !key.allows(model_id, class) {
            return Err(Refusal::UpgradeRequired(format!("this key may not call the model '{model_id}'")));
        }
        Ok(account)
    }

    /// Holds what request `hold_key` can cost at most, before it goes
    /// upstream: `input_tokens` (an estimate from the body) and
    /// `max_output` output tokens. A request that did not set its own
    /// output limit holds what the wallet and the key's cap afford, down to
    /// a small answer, and is capped at that.
    pub fn admit(&self, key: &Arc<KeyState>, call: &Call<'_>, hold_key: &str) -> Result<Admission, Refusal> {
        let account = self.access(key, &call.model_id, call.model_class)?;
        self.exclusive(|shared| self.hold(key, call, hold_key, account, shared)).unwrap_or(Err(
            Refusal::InsufficientCredits {
                available: NanoUsd::ZERO,
                needed: NanoUsd::ZERO,
                affordable_output: 0,
            },
        ))
    }

    fn hold(
        &self,
        key: &Arc<KeyState>,
        call: &Call<'_>,
        hold_key: &str,
        account: Arc<AccountState>,
        shared: bool,
    ) -> Result<Admission, Refusal> {
        let Call { ref model_id, price, input_tokens, .. } = *call;
        let wallet = self.wallets.available(account.id);
        let cap_left = key.spend_cap.map(|cap| NanoUsd((cap.0 - self.wallets.key_spent(key.id).0).max(0)));
        let budget = cap_left.map_or(wallet, |left| left.min(wallet));
        let Quote { held, output_cap, input_estimate } = Self::quote(call, budget);
        let cap = Some(KeyCap { key_id: key.id, cap: key.spend_cap });
        match self.wallets.hold(account.id, cap, held, hold_key) {
            Ok(alive) => {
                if shared {
                    self.sink.peer(PeerLine::Hold {
                        key: hold_key.to_string(),
                        account: account.id,
                        key_id: Some(key.id),
                        cap: key.spend_cap.map(|c| c.0),
                        amount: held.0,
                    });
                }
                Ok(Admission {
                    account,
                    key: key.clone(),
                    hold_key: hold_key.to_string(),
                    model: model_id.clone(),
                    price,
                    held,
                    input_estimate,
                    output_cap,
                    alive,
                    group: "messages",
                    shared: false,
                })
            }
            Err(HoldRefused::SpendCap { left, wanted }) => Err(Refusal::SpendCapReached {
                left,
                needed: wanted,
                cap: key.spend_cap.unwrap_or(NanoUsd::ZERO),
            }),
            Err(HoldRefused::Wallet { available, wanted }) => Err(Refusal::InsufficientCredits {
                available,
                needed: wanted,
                affordable_output: price.affordable_output(available, input_tokens),
            }),
            Err(HoldRefused::Invalid(_)) => {
                Err(Refusal::InsufficientCredits { available: wallet, needed: held, affordable_output: 0 })
            }
        }
    }

    /// What `call` is to hold against `budget` (see [`Quote`]).
    pub fn quote(call: &Call<'_>, budget: NanoUsd) -> Quote {
        let Call { price, input_tokens, max_output, caller_set_limit, units, .. } = *call;
        let mut output_cap = None;
        let mut input_estimate = input_tokens;
        let mut held = price.worst_case(input_tokens, max_output, units);
        if held > budget && !caller_set_limit {
            // The cap goes into the body as one more field, which the
            // provider counts as input too: its bytes are held with it.
            let input = input_tokens.saturating_add(OUTPUT_CAP_FIELD_TOKENS);
            let affordable = price.affordable_output(budget, input).min(max_output);
            if affordable >= MIN_OUTPUT_TOKENS {
                output_cap = Some(affordable);
                input_estimate = input;
                held = price.worst_case(input, affordable, units);
            }
        }
        Quote { held: NanoUsd(held.0.max(1)), output_cap, input_estimate }
    }

    /// Settles `admission` by how the request ended (see the README's
    /// billing rules): the provider's count when it sent one; otherwise,
    /// when the caller received part of an answer, an estimate from what
    /// was relayed (flagged); otherwise nothing. The rest of the hold is
    /// released, and the charge is handed to the sink before returning.
    /// The admission is spent: a request settles once.
    pub fn settle(&self, admission: Admission, ending: &Ending, request_id: &str) -> Option<Charge> {
        let (usage, estimated) = match ending.usage {
            // A count from the start of a stream that did not finish (an
            // Anthropic `message_start`) says less than was relayed.
            Some(mut usage) if !ending.completed && ending.relayed_output_tokens > usage.output_tokens => {
                usage.output_tokens = ending.relayed_output_tokens;
                (usage, true)
            }
            Some(usage) => (usage, ending.usage_estimated),
            None if ending.relayed_any => (
                Usage {
                    input_tokens: admission.input_estimate,
                    output_tokens: ending.relayed_output_tokens.max(1),
                    ..Usage::default()
                },
                true,
            ),
            None => (Usage::default(), false),
        };
        let cost = if usage == Usage::default() && ending.units == 0 {
            NanoUsd::ZERO
        } else {
            admission.price.cost(&usage, ending.units)
        };
        if admission.shared {
            return self.charge_shared(&admission, cost, usage, estimated, request_id);
        }
        self.exclusive(|shared| self.charge(&admission, cost, usage, estimated, request_id, shared))?
    }

    fn charge(
        &self,
        admission: &Admission,
        cost: NanoUsd,
        usage: Usage,
        estimated: bool,
        request_id: &str,
        shared: bool,
    ) -> Option<Charge> {
        let cap = Some(KeyCap { key_id: admission.key.id, cap: admission.key.spend_cap });
        let settlement =
            self.wallets.settle(&admission.hold_key, cost, admission.account.id, cap).ok().flatten()?;
        let charged = settlement.settled.charged;
        let unpaid = settlement.settled.unpaid;
        if charged.0 == 0 && unpaid.0 == 0 && shared {
            self.sink.peer(PeerLine::Release { key: admission.hold_key.clone() });
        }
        if charged.0 > 0 || unpaid.0 > 0 {
            self.sink.record(self.charge_record(
                admission,
                charged,
                settlement.paid,
                unpaid,
                usage,
                estimated,
                request_id,
            ));
        }
        Some(Charge { cost: charged, estimated, usage, unpaid })
    }

    /// The ledger record of a call's charge.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn charge_record(
        &self,
        admission: &Admission,
        charged: NanoUsd,
        paid: NanoUsd,
        unpaid: NanoUsd,
        usage: Usage,
        estimated: bool,
        request_id: &str,
    ) -> LedgerRecord {
        LedgerRecord {
            key: super::charge_key(&admission.hold_key),
            kind: RecordKind::Charge,
            account: admission.account.id,
            key_id: Some(admission.key.id),
            wallet_nano: -charged.0,
            paid_nano: paid.0,
            unpaid_nano: unpaid.0,
            multiplier: None,
            metered: Some(Metered {
                model: admission.model.clone(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cached_input_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                estimated,
                request_id: request_id.into(),
                group: Some(admission.group.into()),
            }),
            at: self.now_ms(),
        }
    }

    /// A payment of `paid` at `multiplier`; `None` when `idempotency_key`
    /// was used before (nothing changes).
    pub fn topup(
        &self,
        account: u64,
        paid: NanoUsd,
        multiplier: u32,
        idempotency_key: &str,
    ) -> Result<Option<NanoUsd>, String> {
        let key = format!("topup:{account}:{idempotency_key}");
        let at = self.now_ms();
        // Journaled under the wallets' lock, as its lot enters the wallet:
        // the store then keeps lots in the order memory spends them.
        self.exclusive(|_| {
            self.wallets
                .topup(account, paid, multiplier, &key, |list| {
                    self.sink.record(LedgerRecord {
                        key: key.clone(),
                        kind: RecordKind::Topup,
                        account,
                        key_id: None,
                        wallet_nano: list.0,
                        paid_nano: paid.0,
                        unpaid_nano: 0,
                        multiplier: Some(multiplier),
                        metered: None,
                        at,
                    });
                })
                .map_err(|e| format!("{e:?}"))
        })
        .unwrap_or(Ok(None))
    }

    /// Credit granted (an opening balance, an operator's correction; down
    /// when negative). `false` when `key` was used before.
    pub fn adjust(&self, account: u64, amount: NanoUsd, key: &str) -> Result<bool, String> {
        let at = self.now_ms();
        self.exclusive(|_| {
            self.wallets
                .grant(account, amount, key, || {
                    self.sink.record(LedgerRecord::adjustment(key.to_string(), account, amount.0, at));
                })
                .map_err(|e| format!("{e:?}"))
        })
        .unwrap_or(Ok(false))
    }

    /// Releases holds whose lease ended with no request left to settle
    /// them; how many.
    pub fn expire_holds(&self) -> usize {
        self.exclusive(|shared| {
            let released = self.wallets.expire();
            if shared {
                for key in &released {
                    self.sink.peer(PeerLine::Release { key: key.clone() });
                }
            }
            released.len()
        })
        .unwrap_or(0)
    }

    pub fn open_holds(&self) -> usize {
        self.wallets.open_holds()
    }

    /// The sum over every book of the ledger: zero, always.
    pub fn ledger_total(&self) -> i64 {
        self.wallets.ledger_total()
    }
}

impl Clock for Arc<dyn Clock> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }

    fn monotonic_ms(&self) -> u64 {
        (**self).monotonic_ms()
    }
}
