//! What the invalid-key limiter holds in memory per client address,
//! measured with a counting allocator: 100,000 addresses with one invalid
//! key each (a spray), and 10,000 with a full window of 60. Run with
//! `--nocapture` for the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use tollgate::auth::abuse::BadKeys;

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

fn ip(n: u32) -> IpAddr {
    IpAddr::from(n.to_be_bytes())
}

#[test]
fn memory_per_address_is_bounded() {
    let kept = 100_000usize;
    let before = ALLOCATOR.current_usage();
    let bad = BadKeys::new(60, kept);
    for n in 0..kept as u32 {
        assert!(!bad.refused_at(ip(n), 0));
    }
    let spray = (ALLOCATOR.current_usage() - before) / kept;
    // Twice as many again: each takes an evicted address's place. The map
    // grows once (its deleted slots), then nothing grows.
    for n in kept as u32..2 * kept as u32 {
        assert!(!bad.refused_at(ip(n), 1));
    }
    let steady = ALLOCATOR.current_usage();
    for n in 2 * kept as u32..3 * kept as u32 {
        assert!(!bad.refused_at(ip(n), 2));
    }
    let grown = ALLOCATOR.current_usage() as i64 - steady as i64;
    let kept_bytes = steady - before;
    assert_eq!(bad.addresses(), kept);
    drop(bad);

    let addresses = 10_000u32;
    let before = ALLOCATOR.current_usage();
    let bad = BadKeys::new(60, kept);
    for n in 0..addresses {
        for t in 0..60 {
            assert!(!bad.refused_at(ip(n), t));
        }
        assert!(bad.refused_at(ip(n), 60));
    }
    let at_limit = (ALLOCATOR.current_usage() - before) / addresses as usize;
    println!(
        "invalid-key limiter: {spray} bytes per address with one invalid key, {at_limit} with a full window of 60; \
         {kept} kept after 3x as many addresses: {kept_bytes} bytes in all, the last {kept} added {grown} bytes"
    );
    assert!(spray < 400, "{spray}");
    assert!(at_limit < 1_000, "{at_limit}");
    assert!(grown <= 0, "{grown} bytes more for addresses that replace others");
    assert!(kept_bytes < kept * 300, "{kept_bytes}");
}
