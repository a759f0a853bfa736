//! What the rate limits hold in memory per active key, measured with a
//! counting allocator: 1,000 keys, each with a full 600-a-minute window,
//! an hourly window on its account, a token bucket, a daily cap and a
//! concurrency count; and all of it freed once the keys are idle past
//! their longest window. Run with `--nocapture` for the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tollgate::limits::{Ask, InForce, Limiter};

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

#[test]
fn a_full_600_rpm_window_costs_about_eight_bytes_a_request() {
    let limiter = Limiter::default();
    let limits = InForce {
        rpm: Some(600),
        rpm_class: None,
        rph: Some(1_000),
        daily_messages: Some(1_000_000),
        input_tpm: Some(1_000_000),
        concurrent: Some(10),
        zone: Default::default(),
    };
    let keys = 1_000u64;
    let before = ALLOCATOR.current_usage();
    for key in 0..keys {
        for i in 0..600u64 {
            let ask = Ask {
                key,
                account: key,
                class: Some("sonnet"),
                group: "messages",
                input_estimate: 10,
                now: 1_000 + i,
                mono: 1_000 + i,
            };
            let permit = limiter.admit(&ask, &limits).unwrap();
            limiter.finish(&permit, true, Some(10), 1_000 + i);
        }
    }
    let per_key = (ALLOCATOR.current_usage() - before) / keys as usize;
    println!("rate-limit state per active key at 600 rpm (and 600 in the hour): {per_key} bytes");
    // Two windows of 600 request times (8 bytes each, in deques that grow
    // by doubling) and a few small fixed parts.
    assert!(per_key < 24 * 1024, "{per_key} bytes per key");
    assert!(per_key > 2 * 600 * 8, "{per_key}: both windows are held");

    // Idle past the hour (and the day): every key and account is freed.
    let two_days = 2 * 86_400_000;
    limiter.sweep_all(two_days, two_days);
    assert_eq!(limiter.tracked(), (0, 0));
    let left = ALLOCATOR.current_usage().saturating_sub(before);
    println!("rate-limit state left once 1,000 keys are idle: {left} bytes");
    assert!(left < 64 * 1024, "{left} bytes left for no active key");
}
