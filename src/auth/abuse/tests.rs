use super::*;
use std::collections::VecDeque;

fn ip(n: u32) -> IpAddr {
    IpAddr::from(n.to_be_bytes())
}

#[test]
fn an_address_is_refused_exactly_past_its_allowance_and_others_are_not() {
    let bad = BadKeys::new(3, 100);
    let (guesser, other) = (ip(1), ip(2));
    assert!(!(0..3).any(|t| bad.refused_at(guesser, t)));
    assert!(bad.refused_at(guesser, 3), "the fourth in the minute");
    assert!(!bad.refused_at(other, 3));
    assert!(!BadKeys::new(0, 100).refused_at(guesser, 0), "0: no limit");
}

#[test]
fn the_window_slides_so_no_boundary_lets_twice_the_limit_through() {
    let bad = BadKeys::new(3, 100);
    let a = ip(7);
    // Three at 0:59; a fixed minute would let three more through at 1:00.
    assert!(!(0..3).any(|i| bad.refused_at(a, 59_000 + i)));
    assert!((60_000..119_000).step_by(500).all(|t| bad.refused_at(a, t)));
    assert!(!bad.refused_at(a, 119_000), "the first left the window at 1:59");
    assert!(bad.refused_at(a, 119_000), "one left, one came: the limit again");
}

#[test]
fn bad_keys_of_75_000_addresses_never_refuse_a_fresh_one() {
    let bad = BadKeys::new(1, 100_000);
    for n in 0..75_000 {
        assert!(!bad.refused_at(ip(n), 10), "address {n}'s first");
        assert!(bad.refused_at(ip(n), 11), "address {n}'s second");
    }
    assert!((1_000_000..1_000_020).all(|n| !bad.refused_at(ip(n), 12)), "20 fresh addresses");
    assert_eq!(bad.addresses(), 75_020);
}

#[test]
fn the_address_whose_last_bad_key_is_oldest_is_forgotten_first() {
    let bad = BadKeys::new(2, 3);
    for n in [1, 2, 3] {
        bad.refused_at(ip(n), 0);
        bad.refused_at(ip(n), 0);
    }
    assert!(bad.refused_at(ip(1), 1), "1 is at its limit, and now the newest");
    assert!(!bad.refused_at(ip(4), 2), "4 takes the place of 2, the oldest");
    assert_eq!(bad.addresses(), 3);
    assert!(bad.refused_at(ip(1), 3) && bad.refused_at(ip(3), 3), "1 and 3 are still kept");
    assert!(!bad.refused_at(ip(2), 4), "2 was forgotten: a fresh allowance");
    assert_eq!(bad.addresses(), 3);
}

#[test]
fn the_list_agrees_with_a_plain_lru_under_any_order() {
    let kept = 50;
    let mut list = Addresses::new(kept);
    let mut model: VecDeque<IpAddr> = VecDeque::new(); // newest first
    let mut seed = 0x2545_f491_u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let a = ip((seed % 120) as u32);
        assert!(list.window(a).is_some());
        model.retain(|x| *x != a);
        model.push_front(a);
        model.truncate(kept);
        assert_eq!(list.slots.len(), model.len());
    }
    let mut walked = Vec::new();
    let mut i = list.newest;
    while let Some(node) = list.nodes.get(i as usize) {
        walked.push(node.ip);
        i = node.older;
    }
    assert_eq!(walked, Vec::from(model));
    assert_eq!(list.nodes.len(), kept, "never more nodes than addresses kept");
}
