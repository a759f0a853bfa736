use super::*;

fn ask(key: u64, account: u64, now: u64) -> Ask<'static> {
    Ask { key, account, class: Some("sonnet"), group: "messages", input_estimate: 100, now }
}

#[test]
fn overrides_raise_or_lower_the_plans_values() {
    let mut plan = PlanLimits { rpm: Some(60), daily_messages: Some(500), ..PlanLimits::default() };
    plan.rpm_by_class.insert("opus".into(), 200);
    plan.rph.insert("messages".into(), 1_000);
    let none = Overrides::default();
    assert_eq!(plan.in_force(Some("opus"), "messages", &none).rpm, Some(200), "the class's own value");
    assert_eq!(plan.in_force(Some("haiku"), "messages", &none).rpm, Some(60), "the plan's default");
    assert_eq!(plan.in_force(None, "images", &none).rph, None, "no limit for a group it does not name");
    let lower = Overrides { rpm: Some(5), daily_messages: Some(10_000), ..Overrides::default() };
    let f = plan.in_force(Some("opus"), "messages", &lower);
    assert_eq!((f.rpm, f.daily_messages, f.rph), (Some(5), Some(10_000), Some(1_000)));
}

#[test]
fn a_call_refused_by_one_limit_takes_from_none() {
    let l = Limiter::default();
    let limits =
        InForce { rpm: Some(10), daily_messages: Some(2), concurrent: Some(5), ..InForce::default() };
    let a = l.admit(&ask(1, 1, 0), &limits).unwrap_or_else(|e| unreachable!("{e:?}"));
    let b = l.admit(&ask(1, 1, 1), &limits).unwrap_or_else(|e| unreachable!("{e:?}"));
    let refused = l.admit(&ask(1, 1, 2), &limits).unwrap_err();
    assert_eq!(refused.kind, Kind::Daily);
    // The refused call used no rpm and no concurrency.
    let wider = InForce { daily_messages: Some(3), ..limits };
    let c = l.admit(&ask(1, 1, 3), &wider).unwrap_or_else(|e| unreachable!("{e:?}"));
    let rpm = c.standing.iter().find(|s| s.kind == Kind::Rpm).map(|s| s.remaining);
    assert_eq!(rpm, Some(7), "three taken, not four");
    let slots = c.standing.iter().find(|s| s.kind == Kind::Concurrent).map(|s| s.remaining);
    assert_eq!(slots, Some(2));
    for p in [a, b, c] {
        l.finish(&p, None, 4);
    }
}

#[test]
fn concurrency_frees_as_calls_end() {
    let l = Limiter::default();
    let limits = InForce { concurrent: Some(2), ..InForce::default() };
    let a = l.admit(&ask(7, 1, 0), &limits).unwrap_or_else(|e| unreachable!("{e:?}"));
    let _b = l.admit(&ask(7, 1, 0), &limits).unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(l.admit(&ask(7, 1, 0), &limits).map_err(|r| r.kind), Err(Kind::Concurrent));
    assert!(l.admit(&ask(8, 1, 0), &limits).is_ok(), "another key has its own");
    l.finish(&a, None, 1);
    assert!(l.admit(&ask(7, 1, 1), &limits).is_ok());
}

#[test]
fn windows_are_per_model_class_and_hours_per_account_group() {
    let l = Limiter::default();
    let limits = InForce { rpm: Some(1), rph: Some(2), ..InForce::default() };
    assert!(l.admit(&ask(1, 1, 0), &limits).is_ok());
    assert_eq!(
        l.admit(&ask(1, 1, 1), &limits).map_err(|r| (r.kind, r.retry_after_ms)),
        Err((Kind::Rpm, 59_999))
    );
    let opus = Ask { class: Some("opus"), ..ask(1, 1, 2) };
    assert!(l.admit(&opus, &limits).is_ok(), "another class, another window");
    let other_key = ask(2, 1, 3);
    assert_eq!(
        l.admit(&other_key, &limits).map_err(|r| r.kind),
        Err(Kind::Rph),
        "the account's hour is shared"
    );
    let images = Ask { group: "images", ..ask(2, 1, 3) };
    assert!(l.admit(&images, &limits).is_ok(), "another group");
}

#[test]
fn the_bucket_is_charged_the_estimate_and_corrected_by_the_count() {
    let l = Limiter::default();
    let limits = InForce { input_tpm: Some(1_000), ..InForce::default() };
    let p = l
        .admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits)
        .unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(
        l.admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits)
            .map_err(|r| (r.kind, r.retry_after_ms)),
        Err((Kind::InputTpm, 12_000)),
        "200 more tokens at 1,000 a minute"
    );
    l.finish(&p, Some(100), 0);
    assert!(
        l.admit(&Ask { input_estimate: 600, ..ask(1, 1, 0) }, &limits).is_ok(),
        "the count gave 500 back"
    );
}

#[test]
fn the_tightest_limit_is_the_one_nearest_its_end() {
    let s = [
        Standing { kind: Kind::Rpm, limit: 600, remaining: 300, reset_ms: 1 },
        Standing { kind: Kind::Daily, limit: 10, remaining: 2, reset_ms: 1 },
    ];
    assert_eq!(tightest(&s).map(|s| s.kind), Some(Kind::Daily));
}
