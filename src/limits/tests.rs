use super::*;
use proptest::prelude::*;

fn ask(key: u64, account: u64, now: u64) -> Ask<'static> {
    Ask { key, account, class: Some("sonnet"), group: "messages", input_estimate: 100, now, mono: now }
}

fn ok(r: Result<Permit, Refused>) -> Permit {
    r.unwrap_or_else(|e| unreachable!("{e:?}"))
}

#[test]
fn overrides_raise_or_lower_the_plans_values() {
    let mut plan = PlanLimits { rpm: Some(600), daily_messages: Some(500), ..PlanLimits::default() };
    plan.rpm_by_class.insert("opus".into(), 200);
    plan.rph.insert("messages".into(), 1_000);
    let none = Overrides::default();
    let opus = plan.in_force(Some("opus"), "messages", &none);
    assert_eq!((opus.rpm, opus.rpm_class), (Some(600), Some(200)), "the key's total and the class's own");
    let haiku = plan.in_force(Some("haiku"), "messages", &none);
    assert_eq!((haiku.rpm, haiku.rpm_class), (Some(600), None));
    assert_eq!(plan.in_force(None, "images", &none).rph, None, "no limit for a group it does not name");
    let lower = Overrides { rpm: Some(5), daily_messages: Some(10_000), ..Overrides::default() };
    let f = plan.in_force(Some("opus"), "messages", &lower);
    assert_eq!((f.rpm, f.rpm_class, f.daily_messages, f.rph), (Some(5), Some(5), Some(10_000), Some(1_000)));
}

#[test]
fn a_call_refused_by_one_limit_takes_from_none() {
    let l = Limiter::default();
    let limits =
        InForce { rpm: Some(10), daily_messages: Some(2), concurrent: Some(5), ..InForce::default() };
    let a = ok(l.admit(&ask(1, 1, 0), &limits));
    let b = ok(l.admit(&ask(1, 1, 1), &limits));
    let refused = l.admit(&ask(1, 1, 2), &limits).unwrap_err();
    assert_eq!(refused.kind, Kind::Daily);
    // The refused call used no rpm and no concurrency.
    let wider = InForce { daily_messages: Some(3), ..limits };
    let c = ok(l.admit(&ask(1, 1, 3), &wider));
    let rpm = c.standing.iter().find(|s| s.kind == Kind::Rpm).map(|s| s.remaining);
    assert_eq!(rpm, Some(7), "three taken, not four");
    let slots = c.standing.iter().find(|s| s.kind == Kind::Concurrent).map(|s| s.remaining);
    assert_eq!(slots, Some(2));
    for p in [a, b, c] {
        l.finish(&p, true, None, 4);
    }
}

#[test]
fn a_cancelled_call_gives_everything_back() {
    let l = Limiter::default();
    let limits = InForce {
        rpm: Some(1),
        rph: Some(1),
        daily_messages: Some(1),
        input_tpm: Some(100),
        concurrent: Some(1),
        ..InForce::default()
    };
    let p = ok(l.admit(&ask(1, 1, 0), &limits));
    l.cancel(&p, 0);
    ok(l.admit(&ask(1, 1, 0), &limits));
}

#[test]
fn concurrency_frees_as_calls_end_and_a_new_limit_counts_the_calls_in_flight() {
    let l = Limiter::default();
    let limits = InForce { concurrent: Some(3), ..InForce::default() };
    let a = ok(l.admit(&ask(7, 1, 0), &limits));
    let _b = ok(l.admit(&ask(7, 1, 0), &limits));
    let _c = ok(l.admit(&ask(7, 1, 0), &limits));
    let one = InForce { concurrent: Some(1), ..InForce::default() };
    assert_eq!(l.admit(&ask(7, 1, 0), &one).map_err(|r| r.kind), Err(Kind::Concurrent), "three in flight");
    assert!(l.admit(&ask(8, 1, 0), &one).is_ok(), "another key has its own");
    l.finish(&a, true, None, 1);
    assert_eq!(l.admit(&ask(7, 1, 1), &limits).map(|_| ()).map_err(|r| r.kind), Ok(()));
}

#[test]
fn calls_admitted_under_no_concurrency_limit_count_against_one_set_later() {
    let l = Limiter::default();
    let none = InForce { rpm: Some(100), ..InForce::default() };
    let a = ok(l.admit(&ask(7, 1, 0), &none));
    let b = ok(l.admit(&ask(7, 1, 0), &none));
    let one = InForce { concurrent: Some(1), ..none };
    assert_eq!(l.admit(&ask(7, 1, 0), &one).map_err(|r| r.kind).err(), Some(Kind::Concurrent));
    l.finish(&a, true, None, 1);
    l.cancel(&b, 1);
    let c = ok(l.admit(&ask(7, 1, 1), &one));
    l.finish(&c, true, None, 2);
    l.sweep_all(120_000, 120_000);
    assert_eq!(l.tracked().0, 0, "nothing left in flight: the key is freed");
}

#[test]
fn rpm_is_the_keys_total_and_classes_add_their_own() {
    let l = Limiter::default();
    let limits = InForce { rpm: Some(2), ..InForce::default() };
    ok(l.admit(&ask(1, 1, 0), &limits));
    let opus = Ask { class: Some("opus"), ..ask(1, 1, 1) };
    ok(l.admit(&opus, &limits));
    let haiku = Ask { class: Some("haiku"), ..ask(1, 1, 2) };
    assert_eq!(l.admit(&haiku, &limits).map_err(|r| r.kind).err(), Some(Kind::Rpm), "two across classes");
    let classed = InForce { rpm: Some(10), rpm_class: Some(1), ..InForce::default() };
    let l = Limiter::default();
    ok(l.admit(&opus, &classed));
    assert_eq!(l.admit(&opus, &classed).map_err(|r| r.kind).err(), Some(Kind::RpmClass));
    assert!(l.admit(&ask(1, 1, 2), &classed).is_ok(), "other models still have the total");
}

#[test]
fn hours_are_per_account_and_group() {
    let l = Limiter::default();
    let limits = InForce { rph: Some(2), ..InForce::default() };
    ok(l.admit(&ask(1, 1, 0), &limits));
    ok(l.admit(&ask(2, 1, 1), &limits));
    assert_eq!(l.admit(&ask(3, 1, 2), &limits).map_err(|r| r.kind).err(), Some(Kind::Rph), "shared");
    let responses = Ask { group: "responses", ..ask(2, 1, 3) };
    assert!(l.admit(&responses, &limits).is_ok(), "another group");
}

#[test]
fn account_counters_survive_differing_and_changing_limits() {
    // Key A on the plan's 5 a day, key B overridden to 6: one count.
    let l = Limiter::default();
    let plan = InForce { daily_messages: Some(5), ..InForce::default() };
    let raised = InForce { daily_messages: Some(6), ..InForce::default() };
    let mut passed = 0;
    for i in 0..20 {
        let (key, limits) = if i % 2 == 0 { (1, &plan) } else { (2, &raised) };
        if l.admit(&ask(key, 9, i), limits).is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 6, "five on A's limit, the sixth only B's lets through");
    // rpm 5, five calls, lowered to 3, then back: the same five count.
    let l = Limiter::default();
    let five = InForce { rpm: Some(5), ..InForce::default() };
    let three = InForce { rpm: Some(3), ..InForce::default() };
    for t in 0..5 {
        ok(l.admit(&ask(1, 1, t), &five));
    }
    assert!(l.admit(&ask(1, 1, 10), &three).is_err());
    assert!(l.admit(&ask(1, 1, 11), &five).is_err());
    assert!(l.admit(&ask(1, 1, 60_001), &three).is_err(), "three of the five are still in the minute");
    assert!(l.admit(&ask(1, 1, 60_002), &three).is_ok(), "until the third oldest leaves");
}

#[test]
fn an_unbilled_call_gives_its_daily_message_back() {
    let l = Limiter::default();
    let limits = InForce { daily_messages: Some(1), ..InForce::default() };
    let p = ok(l.admit(&ask(1, 1, 0), &limits));
    l.finish(&p, false, None, 1);
    let p = ok(l.admit(&ask(1, 1, 2), &limits));
    l.finish(&p, true, Some(10), 3);
    assert_eq!(l.admit(&ask(1, 1, 4), &limits).map_err(|r| r.kind).err(), Some(Kind::Daily));
}

#[test]
fn a_limit_of_zero_blocks() {
    let l = Limiter::default();
    for limits in [
        InForce { rpm: Some(0), ..InForce::default() },
        InForce { rph: Some(0), ..InForce::default() },
        InForce { daily_messages: Some(0), ..InForce::default() },
        InForce { concurrent: Some(0), ..InForce::default() },
        InForce { input_tpm: Some(0), ..InForce::default() },
    ] {
        let refused = l.admit(&ask(1, 1, 0), &limits).unwrap_err();
        assert!(refused.blocked(), "{refused:?}");
        assert_eq!(refused.retry_after_ms, u64::MAX);
    }
}

#[test]
fn the_bucket_is_charged_the_estimate_and_corrected_by_the_count() {
    let l = Limiter::default();
    let limits = InForce { input_tpm: Some(1_000), ..InForce::default() };
    let p = ok(l.admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits));
    assert_eq!(
        l.admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits)
            .map_err(|r| (r.kind, r.retry_after_ms)),
        Err((Kind::InputTpm, 12_000)),
        "200 more tokens at 1,000 a minute"
    );
    l.finish(&p, true, Some(100), 0);
    assert!(
        l.admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits).is_ok(),
        "the count gave 500 back"
    );
}

#[test]
fn a_restart_counts_the_ledgers_calls_again() {
    let l = Limiter::default();
    let limits = InForce { rpm: Some(2), daily_messages: Some(3), ..InForce::default() };
    l.replay(&ask(1, 1, 1_000), &limits);
    l.replay(&ask(1, 1, 2_000), &limits);
    assert_eq!(l.admit(&ask(1, 1, 3_000), &limits).map_err(|r| r.kind).err(), Some(Kind::Rpm));
    ok(l.admit(&ask(1, 1, 61_000), &limits));
    assert_eq!(l.admit(&ask(1, 1, 122_000), &limits).map_err(|r| r.kind).err(), Some(Kind::Daily));
}

#[test]
fn idle_keys_and_accounts_are_freed() {
    let l = Limiter::default();
    let limits = InForce { rpm: Some(10), rph: Some(10), ..InForce::default() };
    for key in 0..100 {
        let p = ok(l.admit(&ask(key, key, 0), &limits));
        l.finish(&p, true, None, 0);
    }
    assert_eq!(l.tracked(), (100, 100));
    l.sweep_all(59_999, 59_999);
    assert_eq!(l.tracked(), (100, 100), "an hour's window is still open");
    l.sweep_all(3_600_000, 3_600_000);
    assert_eq!(l.tracked(), (0, 0));
}

#[test]
fn the_tightest_limit_is_the_one_nearest_its_end() {
    let s = [
        Standing { kind: Kind::Rpm, limit: 600, remaining: 300, reset_ms: 1 },
        Standing { kind: Kind::Daily, limit: 10, remaining: 2, reset_ms: 1 },
    ];
    assert_eq!(tightest(&s).map(|s| s.kind), Some(Kind::Daily));
}

/// What a random run did: each call's time and the limits it was judged by.
#[derive(Debug, Clone)]
enum Op {
    Call { dt: u64, key: u64, limit: u32, billed: bool },
    Restart,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random limits, changes, keys, unbilled endings, restarts (the
    /// windows rebuilt from what was billed) and clock steps: no window
    /// ever admits more than the threshold in force when a call was let
    /// through, in any span of a minute, and nothing panics.
    #[test]
    fn no_window_lets_more_than_its_threshold_through(
        ops in proptest::collection::vec(
            prop_oneof![
                8 => (0u64..5_000, 0u64..3, 0u32..6, any::<bool>())
                    .prop_map(|(dt, key, limit, billed)| Op::Call { dt, key, limit, billed }),
                1 => Just(Op::Restart),
            ],
            1..300,
        )
    ) {
        let mut l = Limiter::default();
        let mut now = 0u64;
        let mut passed: Vec<(u64, u64, u32, bool)> = Vec::new();
        let mut billed_calls: Vec<(u64, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Call { dt, key, limit, billed } => {
                    now += dt;
                    let limits = InForce { rpm: Some(limit), concurrent: Some(limit.max(1)), ..InForce::default() };
                    if let Ok(p) = l.admit(&ask(key, 1, now), &limits) {
                        passed.push((now, key, limit, billed));
                        l.finish(&p, billed, Some(1), now);
                        if billed {
                            billed_calls.push((now, key));
                        } else {
                            // An unbilled call is not in the ledger: a restart forgets it.
                        }
                    }
                }
                Op::Restart => {
                    l = Limiter::default();
                    for &(at, key) in &billed_calls {
                        l.replay(&ask(key, 1, at), &InForce { rpm: Some(1), ..InForce::default() });
                    }
                    // Calls let through but never billed are forgotten by a restart.
                    passed.retain(|&(_, _, _, billed)| billed);
                }
            }
        }
        // Each call let through saw fewer than its threshold in the minute before it.
        for (i, &(at, key, limit, _)) in passed.iter().enumerate() {
            let before = passed[..i].iter().filter(|(t, k, _, _)| *k == key && t + 60_000 > at).count();
            prop_assert!(before < limit as usize, "{before} before a call under {limit} at {at}");
        }
    }
}
