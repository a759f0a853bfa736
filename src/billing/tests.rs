//! The billing service's rules, each with a clock the test sets.

use super::*;
use crate::formats::usage::Usage;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

struct Fixture {
    billing: Billing,
    sink: Arc<MemorySink>,
    clock: Arc<ManualClock>,
}

fn price() -> ModelPrice {
    ModelPrice::from_config(&PriceConfig { input: "1".into(), output: "10".into(), ..PriceConfig::default() })
        .unwrap_or_default()
}

fn call(model_id: &str, input_tokens: u64, max_output: u64, caller_set_limit: bool) -> Call<'_> {
    Call {
        model_id: model_id.into(),
        model_class: None,
        price: price(),
        input_tokens,
        max_output,
        caller_set_limit,
        units: 0,
    }
}

fn fixture(balance: i64, models: &[&str], api: bool) -> Fixture {
    let plan = Arc::new(Plan {
        name: "p".into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        api_access: api,
        trial_days: None,
        limits: Default::default(),
        default_model: None,
    });
    let sink = Arc::new(MemorySink::default());
    let clock = Arc::new(ManualClock::at(1_000_000));
    let billing = Billing::new(vec![plan.clone()], sink.clone(), clock.clone(), BillingOptions::default());
    billing.directory.put_account(AccountState {
        id: 1,
        name: "a".into(),
        plan,
        status: Status::Active,
        trial_ends_at: None,
    });
    if balance > 0 {
        assert_eq!(billing.topup(1, NanoUsd(balance), 1, "opening"), Ok(Some(NanoUsd(balance))));
    }
    sink.take();
    Fixture { billing, sink, clock }
}

fn key(f: &Fixture, id: u64, change: impl FnOnce(&mut KeyState)) -> Arc<KeyState> {
    let mut k = KeyState {
        id,
        account: 1,
        name: format!("k{id}").into(),
        prefix: "sk-".into(),
        status: Status::Active,
        expires_at: None,
        spend_cap: None,
        models: None,
        fallback_model: None,
        limits: Default::default(),
        created_at: 0,
        last_used_at: AtomicU64::new(0),
    };
    change(&mut k);
    f.billing.directory.put_key([id as u8; 32], k)
}

#[test]
fn plans_and_key_allowlists_decide_who_may_call_what() {
    let f = fixture(1_000_000_000, &["openai/*", "google/gemini-3-flash-preview"], true);
    let k = key(&f, 1, |_| {});
    assert!(f.billing.admit(&k, &call("openai/gpt-5.5", 10, 10, true), "r1").is_ok());
    assert!(matches!(
        f.billing.admit(&k, &call("anthropic/claude", 10, 10, true), "r2"),
        Err(Refusal::UpgradeRequired(_))
    ));
    let narrow = key(&f, 2, |k| k.models = Some(vec!["google/*".into()]));
    assert!(matches!(
        f.billing.admit(&narrow, &call("openai/gpt-5.5", 10, 10, true), "r3"),
        Err(Refusal::UpgradeRequired(why)) if why.contains("this key")
    ));
    let f = fixture(1_000_000_000, &["*"], false);
    let k = key(&f, 1, |_| {});
    assert!(matches!(
        f.billing.admit(&k, &call("openai/gpt-5.5", 10, 10, true), "r4"),
        Err(Refusal::UpgradeRequired(_))
    ));
}

#[test]
fn revoked_expired_and_suspended_are_refused_by_the_clock() {
    let f = fixture(1_000_000, &["*"], true);
    key(&f, 1, |k| k.expires_at = Some(1_000_500));
    assert!(f.billing.authenticate(&[1; 32]).is_ok());
    f.clock.advance(500);
    assert_eq!(f.billing.authenticate(&[1; 32]).err(), Some(Refusal::InvalidKey("expired")));
    key(&f, 2, |k| k.status = Status::Revoked);
    assert_eq!(f.billing.authenticate(&[2; 32]).err(), Some(Refusal::InvalidKey("revoked")));
    assert_eq!(f.billing.authenticate(&[9; 32]).err(), Some(Refusal::InvalidKey("invalid")));
    let k = key(&f, 3, |_| {});
    let account = f.billing.directory.account(1).unwrap_or_else(|| unreachable!());
    f.billing.directory.put_account(AccountState { status: Status::Suspended, ..(*account).clone() });
    assert_eq!(f.billing.access(&k, "m", None).err(), Some(Refusal::AccountSuspended));
}

#[test]
fn a_trial_ends_on_time() {
    let f = fixture(1_000_000, &["*"], true);
    let account = f.billing.directory.account(1).unwrap_or_else(|| unreachable!());
    f.billing.directory.put_account(AccountState { trial_ends_at: Some(1_060_000), ..(*account).clone() });
    let k = key(&f, 1, |_| {});
    assert!(f.billing.access(&k, "m", None).is_ok());
    f.clock.advance(59_999);
    assert!(f.billing.access(&k, "m", None).is_ok());
    f.clock.advance(1);
    assert_eq!(f.billing.access(&k, "m", None).err(), Some(Refusal::TrialExpired));
}

#[test]
fn a_request_holds_its_worst_case_and_settles_to_its_cost() {
    // $0.01: 1,000 input tokens ($0.001) and up to 900 output tokens ($0.009).
    let f = fixture(10_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let admitted =
        f.billing.admit(&k, &call("m", 1_000, 900, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(admitted.held, NanoUsd(10_000_000));
    assert!(matches!(
        f.billing.admit(&k, &call("m", 1, 1, true), "r2"),
        Err(Refusal::InsufficientCredits { .. })
    ));
    let usage = Usage { input_tokens: 1_000, output_tokens: 100, ..Usage::default() };
    let ending = Ending { usage: Some(usage), ..Ending::default() };
    let charge = f.billing.settle(admitted, &ending, "r1");
    assert_eq!(charge.map(|c| (c.cost, c.estimated)), Some((NanoUsd(2_000_000), false)));
    assert_eq!(f.billing.available(1), NanoUsd(8_000_000));
    assert_eq!(f.billing.ledger_total(), 0);
    let records = f.sink.take();
    assert_eq!(records.len(), 1, "one charge, journaled");
    assert_eq!((records[0].wallet_nano, records[0].paid_nano), (-2_000_000, 2_000_000));
}

#[test]
fn without_usage_a_partial_answer_is_estimated_and_no_answer_is_free() {
    let f = fixture(10_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let a = f.billing.admit(&k, &call("m", 100, 900, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    let relayed = Ending {
        usage: None,
        relayed_output_tokens: 40,
        relayed_any: true,
        completed: false,
        usage_estimated: false,
        units: 0,
    };
    let charge = f.billing.settle(a, &relayed, "r1").unwrap_or_else(|| unreachable!());
    assert!(charge.estimated);
    assert_eq!(charge.cost, NanoUsd(100 * 1_000 + 40 * 10_000));
    assert!(f.sink.take()[0].metered.as_ref().is_some_and(|m| m.estimated));
    let b = f.billing.admit(&k, &call("m", 100, 900, true), "r2").unwrap_or_else(|e| unreachable!("{e:?}"));
    let nothing = f.billing.settle(b, &Ending::default(), "r2").unwrap_or_else(|| unreachable!());
    assert_eq!(nothing.cost, NanoUsd::ZERO);
    assert!(f.sink.take().is_empty(), "nothing charged, nothing recorded");
    assert_eq!(f.billing.open_holds(), 0);
}

#[test]
fn without_its_own_limit_a_request_holds_what_the_wallet_affords() {
    let f = fixture(10_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let a = f
        .billing
        .admit(&k, &call("m", 1_000, 128_000, false), "r1")
        .unwrap_or_else(|e| unreachable!("{e:?}"));
    // $0.009 after the input, less the 16 tokens of the cap's own field.
    assert_eq!(a.output_cap, Some(898));
    assert_eq!(a.input_estimate, 1_016);
    let f = fixture(1_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    assert!(
        matches!(
            f.billing.admit(&k, &call("m", 1_000, 128_000, false), "r1"),
            Err(Refusal::InsufficientCredits { affordable_output: 0, .. })
        ),
        "not even the input"
    );
}

#[test]
fn a_spend_cap_is_held_against_like_a_wallet() {
    let f = fixture(1_000_000_000, &["*"], true);
    // Cap $0.01: one call of up to $0.006 fits, a second does not while the first holds.
    let k = key(&f, 1, |k| k.spend_cap = Some(NanoUsd(10_000_000)));
    let first =
        f.billing.admit(&k, &call("m", 1_000, 500, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    assert!(matches!(
        f.billing.admit(&k, &call("m", 1_000, 500, true), "r2"),
        Err(Refusal::SpendCapReached { .. })
    ));
    let usage = Usage { input_tokens: 1_000, output_tokens: 500, ..Usage::default() };
    f.billing.settle(first, &Ending { usage: Some(usage), ..Ending::default() }, "r1");
    assert_eq!(f.billing.key_spent(1), NanoUsd(6_000_000));
    // $0.004 left: a call without its own limit is capped to fit.
    let capped =
        f.billing.admit(&k, &call("m", 1_000, 32_000, false), "r3").unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(capped.output_cap, Some(298), "less the cap's own field, as input");
    let other = key(&f, 2, |_| {});
    assert!(f.billing.admit(&other, &call("m", 1_000, 500, true), "r4").is_ok(), "the cap is the key's own");
}

#[test]
fn top_ups_are_idempotent_and_lots_know_what_was_paid() {
    let f = fixture(0, &["*"], true);
    assert_eq!(f.billing.topup(1, NanoUsd(10_000_000_000), 4, "pay-1"), Ok(Some(NanoUsd(40_000_000_000))));
    assert_eq!(f.billing.topup(1, NanoUsd(10_000_000_000), 4, "pay-1"), Ok(None), "a retry changes nothing");
    assert_eq!(f.billing.available(1), NanoUsd(40_000_000_000));
    let records = f.sink.take();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].paid_nano, records[0].multiplier), (10_000_000_000, Some(4)));
    let k = key(&f, 1, |_| {});
    let a = f.billing.admit(&k, &call("m", 0, 400_000, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    let usage = Usage { output_tokens: 400_000, ..Usage::default() };
    f.billing.settle(a, &Ending { usage: Some(usage), ..Ending::default() }, "r1");
    let charge = f.sink.take();
    // $4 of list price bought at 4x cost $1 of what was paid.
    assert_eq!((charge[0].wallet_nano, charge[0].paid_nano), (-4_000_000_000, 1_000_000_000));
}

#[test]
fn a_hold_never_outlives_its_lease() {
    let f = fixture(1_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let a = f.billing.admit(&k, &call("m", 10, 10, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    f.clock.advance(service::HOLD_LEASE_MS * 5);
    assert_eq!(f.billing.expire_holds(), 0, "renewed while the request lives");
    // A request that is gone without settling gives its hold back.
    let lost = f.billing.admit(&k, &call("m", 10, 10, true), "r2").unwrap_or_else(|e| unreachable!("{e:?}"));
    let lost_hold = lost.held;
    drop(lost);
    let before = f.billing.available(1);
    f.clock.advance(service::HOLD_LEASE_MS);
    assert_eq!(f.billing.expire_holds(), 1);
    assert_eq!(f.billing.available(1), NanoUsd(before.0 + lost_hold.0));
    // The live one is charged in full, however long it took.
    let usage = Usage { input_tokens: 10, output_tokens: 10, ..Usage::default() };
    let charge = f.billing.settle(a, &Ending { usage: Some(usage), ..Ending::default() }, "r1");
    assert!(charge.is_some_and(|c| c.cost.0 > 0 && c.unpaid == NanoUsd::ZERO));
    assert_eq!(f.billing.ledger_total(), 0);
}

#[test]
fn a_count_from_the_start_of_an_unfinished_stream_is_raised_to_what_was_relayed() {
    let f = fixture(10_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let early = Usage { input_tokens: 100, output_tokens: 1, ..Usage::default() };
    let a = f.billing.admit(&k, &call("m", 100, 900, true), "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    let left = Ending {
        usage: Some(early),
        relayed_output_tokens: 30,
        relayed_any: true,
        completed: false,
        usage_estimated: false,
        units: 0,
    };
    let charge = f.billing.settle(a, &left, "r1").unwrap_or_else(|| unreachable!());
    assert!(charge.estimated);
    assert_eq!(charge.usage.output_tokens, 30);
    let b = f.billing.admit(&k, &call("m", 100, 900, true), "r2").unwrap_or_else(|e| unreachable!("{e:?}"));
    let done = Ending {
        usage: Some(early),
        relayed_output_tokens: 30,
        relayed_any: true,
        completed: true,
        usage_estimated: false,
        units: 0,
    };
    let charge = f.billing.settle(b, &done, "r2").unwrap_or_else(|| unreachable!());
    assert!(!charge.estimated, "a finished stream's own count stands");
    assert_eq!(charge.usage.output_tokens, 1);
}

#[test]
fn cached_input_is_billed_at_the_cache_price_only() {
    let f = fixture(10_000_000_000, &["*"], true);
    let k = key(&f, 1, |_| {});
    let mut call = call("m", 1_000, 10, true);
    call.price.cache_read = NanoUsd(100_000_000); // $0.10 per million
    let a = f.billing.admit(&k, &call, "r1").unwrap_or_else(|e| unreachable!("{e:?}"));
    let usage =
        Usage { input_tokens: 1_000, cached_input_tokens: 800, output_tokens: 10, ..Usage::default() };
    let charge =
        f.billing.settle(a, &Ending { usage: Some(usage), completed: true, ..Ending::default() }, "r1");
    // 200 fresh at $1/M, 800 cached at $0.10/M, 10 out at $10/M.
    assert_eq!(charge.map(|c| c.cost), Some(NanoUsd(200 * 1_000 + 800 * 100 + 10 * 10_000)));
}

mod restart {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Topup(i64, u32),
        Grant(i64),
        Call { input: u64, max_out: u64, out: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..5_000_000, 1u32..7).prop_map(|(p, m)| Op::Topup(p, m)),
            (-2_000_000i64..5_000_000).prop_filter("non-zero", |n| *n != 0).prop_map(Op::Grant),
            (0u64..2_000, 1u64..500, 0u64..600).prop_map(|(input, max_out, out)| Op::Call {
                input,
                max_out,
                out
            }),
        ]
    }

    proptest! {
        /// What the journal's records say, replayed into a fresh node as the
        /// store's snapshot is at start, is the wallet the live node has:
        /// balance = top-ups + grants - charges, each key's spend, zero sum.
        #[test]
        fn a_node_rebuilt_from_its_records_has_the_same_wallets(ops in proptest::collection::vec(op(), 1..60)) {
            let f = fixture(0, &["*"], true);
            let k = key(&f, 1, |_| {});
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Topup(paid, m) => { let _ = f.billing.topup(1, NanoUsd(paid), m, &format!("t{i}")); }
                    Op::Grant(n) => { let _ = f.billing.adjust(1, NanoUsd(n), &format!("g{i}")); }
                    Op::Call { input, max_out, out } => {
                        let id = format!("r{i}");
                        if let Ok(a) = f.billing.admit(&k, &call("m", input, max_out, true), &id) {
                            let usage = Usage { input_tokens: input, output_tokens: out, ..Usage::default() };
                            f.billing.settle(a, &Ending { usage: Some(usage), completed: true, ..Ending::default() }, &id);
                        }
                    }
                }
                prop_assert!(f.billing.available(1).0 >= 0);
            }
            let records = f.sink.take();
            let balance: i64 = records.iter().map(|r| r.wallet_nano).sum();
            prop_assert_eq!(balance, f.billing.available(1).0, "balance = top-ups + grants - charges");
            let lots: Vec<(NanoUsd, u32, NanoUsd)> = records
                .iter()
                .filter(|r| r.wallet_nano > 0)
                .map(|r| match r.kind {
                    RecordKind::Topup => (NanoUsd(r.paid_nano), r.multiplier.unwrap_or(1), NanoUsd::ZERO),
                    _ => (NanoUsd::ZERO, 1, NanoUsd(r.wallet_nano)),
                })
                .collect();
            let debited = NanoUsd(records.iter().filter(|r| r.wallet_nano < 0).map(|r| -r.wallet_nano).sum());
            let spent = NanoUsd(records.iter().filter(|r| r.kind == RecordKind::Charge).map(|r| -r.wallet_nano).sum());
            let paid_used: i64 = records.iter().filter(|r| r.kind == RecordKind::Charge).map(|r| r.paid_nano).sum();
            let paid_in: i64 = records.iter().filter(|r| r.kind == RecordKind::Topup).map(|r| r.paid_nano).sum();
            prop_assert!(paid_used <= paid_in, "charges never use more paid dollars than were paid");

            let rebuilt = fixture(0, &["*"], true);
            rebuilt.billing.wallets().restore(1, &lots, debited, &[(1, spent)]).unwrap_or_else(|e| unreachable!("{e:?}"));
            prop_assert_eq!(rebuilt.billing.available(1), f.billing.available(1));
            prop_assert_eq!(rebuilt.billing.key_spent(1), f.billing.key_spent(1));
            prop_assert_eq!(rebuilt.billing.wallets().lots_available(1), f.billing.wallets().lots_available(1));
            prop_assert_eq!(rebuilt.billing.ledger_total(), 0);
            prop_assert_eq!(f.billing.ledger_total(), 0);
        }
    }
}

#[test]
fn reloaded_plans_reach_accounts_by_name_and_a_removed_plan_allows_nothing() {
    let f = fixture(1_000_000_000, &["openai/*"], true);
    let k = key(&f, 1, |_| {});
    let held = f.billing.admit(&k, &call("openai/gpt-5.5", 10, 10, true), "before");
    assert!(held.is_ok());
    let wider = Plan { models: vec!["*".into()], api_access: true, ..Plan::none("p") };
    f.billing.replace_plans(vec![Arc::new(wider)]);
    assert!(f.billing.admit(&k, &call("anthropic/claude", 10, 10, true), "after").is_ok());
    assert_eq!(f.billing.plan("p").map(|p| p.models.clone()), Some(vec!["*".to_string()]));
    // The call admitted before keeps the plan it was admitted under.
    assert_eq!(held.map(|a| a.account.plan.models.clone()).ok(), Some(vec!["openai/*".to_string()]));
    f.billing.replace_plans(Vec::new());
    assert!(f.billing.plan("p").is_none());
    assert!(matches!(
        f.billing.admit(&k, &call("openai/gpt-5.5", 10, 10, true), "gone"),
        Err(Refusal::UpgradeRequired(_))
    ));
}
