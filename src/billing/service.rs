//! Billing on the request path of one node: who may call which model
//! (plans), and the one step before a request goes upstream, a hold of its
//! worst-case cost against the account's wallet, and the one after, the
//! hold settled to what the provider's usage costs. In memory: the request
//! path never waits on the store.

use super::holds::{SystemClock, Wallets};
use super::ledger::{AccountId, LedgerError};
use super::money::NanoUsd;
use super::price::ModelPrice;
use crate::formats::usage::Usage;
use std::collections::HashMap;
use std::sync::Arc;

/// How long a hold may stay open before it is released unbilled: longer
/// than any request may run.
pub const HOLD_LEASE_MS: u64 = 60 * 60 * 1000;

/// A plan: the models it may call (ids, `prefix/*` globs, `*`) and whether
/// it includes API access at all.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub models: Vec<String>,
    pub api_access: bool,
}

impl Plan {
    pub fn allows(&self, model_id: &str) -> bool {
        self.models.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => model_id.starts_with(prefix),
            None => pattern == model_id,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AccountState {
    pub id: AccountId,
    pub name: Arc<str>,
    pub plan: Arc<Plan>,
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plan has no API access, or does not include the model.
    UpgradeRequired(String),
    /// Even a small answer cannot be paid for.
    InsufficientCredits { available: NanoUsd, needed: NanoUsd },
}

/// What a call asks for, as far as its price goes.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub model_id: &'a str,
    pub price: ModelPrice,
    /// Estimated from the body.
    pub input_tokens: u64,
    /// The caller's limit, or the model's.
    pub max_output: u64,
    pub caller_set_limit: bool,
}

/// A request let through: what it holds, to settle when it ends.
#[derive(Debug)]
pub struct Admission {
    pub account: Arc<AccountState>,
    pub hold_key: String,
    pub price: ModelPrice,
    pub held: NanoUsd,
    /// Output tokens the hold pays for, when the wallet could not pay for
    /// the model's full output.
    pub output_cap: Option<u64>,
}

pub struct Billing {
    wallets: Wallets<SystemClock>,
    accounts: HashMap<String, Arc<AccountState>>,
}

/// The fewest output tokens worth sending a request upstream for.
const MIN_OUTPUT_TOKENS: u64 = 16;

impl Billing {
    /// Accounts with their plans and opening balances (the YAML bootstrap).
    pub fn new(accounts: Vec<(String, Arc<Plan>, NanoUsd)>) -> Result<Self, String> {
        let wallets = Wallets::new(SystemClock, HOLD_LEASE_MS);
        let mut by_name = HashMap::new();
        for (i, (name, plan, balance)) in accounts.into_iter().enumerate() {
            let id = i as AccountId + 1;
            if balance.0 > 0 {
                wallets
                    .topup(id, balance, &format!("opening:{name}"))
                    .map_err(|e| format!("accounts '{name}': {e:?}"))?;
            }
            let state = Arc::new(AccountState { id, name: Arc::from(name.as_str()), plan });
            if by_name.insert(name.clone(), state).is_some() {
                return Err(format!("accounts: the name '{name}' is used twice"));
            }
        }
        Ok(Self { wallets, accounts: by_name })
    }

    pub fn account(&self, name: &str) -> Option<&Arc<AccountState>> {
        self.accounts.get(name)
    }

    pub fn available(&self, account: &AccountState) -> NanoUsd {
        self.wallets.available(account.id)
    }

    /// Holds what request `key` can cost at most, before it goes upstream:
    /// `input_tokens` (an estimate from the body) and `max_output` output
    /// tokens. A request that did not set its own output limit holds what
    /// the wallet affords, down to a small answer, and is capped at that.
    pub fn admit(
        &self,
        account: &Arc<AccountState>,
        call: &Call<'_>,
        key: &str,
    ) -> Result<Admission, Refusal> {
        let Call { model_id, price, input_tokens, max_output, caller_set_limit } = *call;
        if !account.plan.api_access {
            return Err(Refusal::UpgradeRequired("your plan does not include API access".into()));
        }
        if !account.plan.allows(model_id) {
            return Err(Refusal::UpgradeRequired(format!(
                "your plan does not include the model '{model_id}'"
            )));
        }
        let available = self.wallets.available(account.id);
        let mut output_cap = None;
        let mut held = price.worst_case(input_tokens, max_output);
        if held > available && !caller_set_limit {
            let affordable = price.affordable_output(available, input_tokens).min(max_output);
            if affordable >= MIN_OUTPUT_TOKENS {
                output_cap = Some(affordable);
                held = price.worst_case(input_tokens, affordable);
            }
        }
        let held = NanoUsd(held.0.max(1));
        match self.wallets.hold(account.id, held, key) {
            Ok(()) => {
                Ok(Admission { account: account.clone(), hold_key: key.to_string(), price, held, output_cap })
            }
            Err(LedgerError::Insufficient { available, wanted }) => {
                Err(Refusal::InsufficientCredits { available, needed: wanted })
            }
            Err(_) => Err(Refusal::InsufficientCredits { available, needed: held }),
        }
    }

    /// Settles `admission` to what `usage` costs; the rest of the hold is
    /// released. The cost charged.
    pub fn settle(&self, admission: &Admission, usage: Option<&Usage>) -> NanoUsd {
        let cost = usage.map_or(NanoUsd::ZERO, |u| admission.price.cost(u, 0));
        match self.wallets.settle(&admission.hold_key, cost) {
            Ok(Some(settled)) => settled.charged,
            _ => NanoUsd::ZERO,
        }
    }

    /// The sum over every book of the ledger: zero, always.
    pub fn ledger_total(&self) -> i64 {
        self.wallets.ledger_total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::price::PriceConfig;

    fn price() -> ModelPrice {
        ModelPrice::from_config(&PriceConfig {
            input: "1".into(),
            output: "10".into(),
            ..PriceConfig::default()
        })
        .unwrap_or_default()
    }

    fn call(model_id: &str, input_tokens: u64, max_output: u64, caller_set_limit: bool) -> Call<'_> {
        Call { model_id, price: price(), input_tokens, max_output, caller_set_limit }
    }

    fn billing(balance: i64, models: &[&str], api: bool) -> (Billing, Arc<AccountState>) {
        let plan = Arc::new(Plan {
            name: "p".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            api_access: api,
        });
        let b =
            Billing::new(vec![("a".into(), plan, NanoUsd(balance))]).unwrap_or_else(|e| unreachable!("{e}"));
        let account = b.account("a").cloned().unwrap_or_else(|| unreachable!());
        (b, account)
    }

    #[test]
    fn plans_decide_who_may_call_what() {
        let (b, a) = billing(1_000_000_000, &["openai/*", "google/gemini-3-flash-preview"], true);
        assert!(b.admit(&a, &call("openai/gpt-5.5", 10, 10, true), "r1").is_ok());
        assert!(matches!(
            b.admit(&a, &call("anthropic/claude", 10, 10, true), "r2"),
            Err(Refusal::UpgradeRequired(_))
        ));
        let (b, a) = billing(1_000_000_000, &["*"], false);
        assert!(matches!(
            b.admit(&a, &call("openai/gpt-5.5", 10, 10, true), "r3"),
            Err(Refusal::UpgradeRequired(_))
        ));
    }

    #[test]
    fn a_request_holds_its_worst_case_and_settles_to_its_cost() {
        // $0.01: 1,000 input tokens ($0.001) and up to 900 output tokens ($0.009).
        let (b, a) = billing(10_000_000, &["*"], true);
        let admitted =
            b.admit(&a, &call("m", 1_000, 900, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(admitted.held, NanoUsd(10_000_000));
        assert!(matches!(
            b.admit(&a, &call("m", 1, 1, true), "r2"),
            Err(Refusal::InsufficientCredits { .. })
        ));
        let usage = Usage { input_tokens: 1_000, output_tokens: 100, ..Usage::default() };
        assert_eq!(b.settle(&admitted, Some(&usage)), NanoUsd(2_000_000));
        assert_eq!(b.available(&a), NanoUsd(8_000_000));
        assert_eq!(b.ledger_total(), 0);
    }

    #[test]
    fn without_its_own_limit_a_request_holds_what_the_wallet_affords() {
        let (b, a) = billing(10_000_000, &["*"], true);
        let admitted =
            b.admit(&a, &call("m", 1_000, 128_000, false), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(admitted.output_cap, Some(900));
        let (b, a) = billing(1_000_000, &["*"], true);
        assert!(
            matches!(
                b.admit(&a, &call("m", 1_000, 128_000, false), "r1"),
                Err(Refusal::InsufficientCredits { .. })
            ),
            "not even the input"
        );
    }
}
