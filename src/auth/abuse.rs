//! Slowing down key guessing: a client address whose requests carry many
//! invalid keys gets 429 instead of 401 for the rest of the minute. Only
//! requests with an invalid key are counted and refused, so valid keys
//! behind the same address (an office, a NAT) are not affected; the
//! estimate (pingora-limits' two-slot counter, per minute) is cheap and
//! needs no lock, which is what matters on a path attackers drive.

use pingora_limits::rate::Rate;
use std::net::IpAddr;
use std::time::Duration;

pub struct BadKeys {
    rate: Rate,
    per_minute: isize,
}

impl BadKeys {
    pub fn new(per_minute: u32) -> Self {
        Self { rate: Rate::new(Duration::from_secs(60)), per_minute: per_minute as isize }
    }

    /// Counts an invalid key from `ip`; whether the address is over its
    /// allowance (0 allows any number).
    pub fn refused(&self, ip: IpAddr) -> bool {
        let seen = self.rate.observe(&ip, 1);
        self.per_minute > 0 && seen > self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_allowance_is_refused_and_others_are_not() {
        let bad = BadKeys::new(3);
        let guesser: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(!(0..3).any(|_| bad.refused(guesser)));
        assert!(bad.refused(guesser));
        assert!(!bad.refused(other));
        assert!(!BadKeys::new(0).refused(guesser), "0: no limit");
    }
}
