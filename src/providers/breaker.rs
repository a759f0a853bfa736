//! A deployment's circuit breaker: after `failures` failures in a row its
//! circuit opens and calls skip it for `cooldown_ms`; then one call probes
//! it (half-open): a success closes the circuit, a failure opens it again.
//! Time is passed in (milliseconds), so the rules are tested with a clock
//! the test controls.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRules {
    pub failures: u32,
    pub cooldown_ms: u64,
}

#[derive(Debug, Default)]
pub struct Breaker {
    in_a_row: u32,
    /// While open: until when (ms). 0: closed.
    open_until: u64,
    /// A probe is out (half-open): other calls still skip it.
    probing: bool,
}

/// What a breaker says of a call about to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// The one call that tests an open circuit after its cooldown.
    Probe,
    Skip,
}

impl Breaker {
    pub fn verdict(&mut self, now: u64) -> Verdict {
        if self.open_until == 0 {
            return Verdict::Go;
        }
        if now < self.open_until || self.probing {
            return Verdict::Skip;
        }
        self.probing = true;
        Verdict::Probe
    }

    pub fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    /// A failure; `true` when it opened the circuit.
    pub fn failed(&mut self, now: u64, rules: BreakerRules) -> bool {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.probing || self.in_a_row >= rules.failures.max(1) {
            let opened = self.open_until == 0 || self.probing;
            self.open_until = now.saturating_add(rules.cooldown_ms).max(1);
            self.probing = false;
            return opened;
        }
        false
    }

    /// Opened by another node of the fleet until `until` (ms).
    pub fn open_until(&mut self, until: u64) {
        if until > self.open_until {
            self.open_until = until;
            self.probing = false;
        }
    }

    pub fn is_open(&self, now: u64) -> bool {
        self.open_until != 0 && (now < self.open_until || self.probing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: BreakerRules = BreakerRules { failures: 3, cooldown_ms: 1_000 };

    #[test]
    fn opens_after_failures_in_a_row_and_one_probe_closes_it() {
        let mut b = Breaker::default();
        assert!(!b.failed(0, RULES));
        b.succeeded();
        assert!(!b.failed(1, RULES));
        assert!(!b.failed(2, RULES));
        assert!(b.failed(3, RULES), "the third in a row opens it");
        assert_eq!(b.verdict(500), Verdict::Skip);
        assert_eq!(b.verdict(1_003), Verdict::Probe, "after the cooldown, one probe");
        assert_eq!(b.verdict(1_004), Verdict::Skip, "while it is out, the others skip");
        b.succeeded();
        assert_eq!(b.verdict(1_005), Verdict::Go);
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cooldown() {
        let mut b = Breaker::default();
        for t in 0..3 {
            b.failed(t, RULES);
        }
        assert_eq!(b.verdict(2_000), Verdict::Probe);
        assert!(b.failed(2_000, RULES));
        assert_eq!(b.verdict(2_999), Verdict::Skip);
        assert_eq!(b.verdict(3_000), Verdict::Probe);
        b.open_until(10_000);
        assert!(b.is_open(9_999));
    }
}
