//! A token bucket for input tokens per minute: full, it lets a burst of
//! its whole capacity through; it refills at capacity per minute, exactly
//! (the level is kept in token-milliseconds, integers only). A call takes
//! its estimate up front; when it ends the provider's count corrects the
//! level, which may then go below zero: the next calls wait for it.

const MINUTE_MS: i128 = 60_000;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_minute: u64,
    /// Tokens × 60,000: refilling by `per_minute` each millisecond.
    level: i128,
    at: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_minute: u64, now: u64) -> Self {
        Self { per_minute, level: i128::from(per_minute) * MINUTE_MS, at: now }
    }

    pub fn capacity(&self) -> u64 {
        self.per_minute
    }

    /// A new limit: the tokens in the bucket stay (at most the new
    /// capacity), and it refills at the new rate from now on.
    pub fn resize(&mut self, per_minute: u64, now: u64) {
        if per_minute == self.per_minute {
            return;
        }
        self.refill(now);
        self.per_minute = per_minute;
        self.level = self.level.min(i128::from(per_minute) * MINUTE_MS);
    }

    /// Whether the bucket is full (nothing to remember).
    pub fn full(&mut self, now: u64) -> bool {
        self.refill(now);
        self.level >= i128::from(self.per_minute) * MINUTE_MS
    }

    fn refill(&mut self, now: u64) {
        let elapsed = i128::from(now.saturating_sub(self.at));
        let full = i128::from(self.per_minute) * MINUTE_MS;
        self.level = (self.level + elapsed * i128::from(self.per_minute)).min(full);
        self.at = self.at.max(now);
    }

    /// `Ok(())` if `tokens` may be taken now; otherwise the milliseconds
    /// until they may (`u64::MAX`: never, more than the bucket holds).
    pub fn check(&mut self, tokens: u64, now: u64) -> Result<(), u64> {
        self.refill(now);
        let want = i128::from(tokens) * MINUTE_MS;
        if want <= self.level {
            return Ok(());
        }
        if tokens > self.per_minute || self.per_minute == 0 {
            return Err(u64::MAX);
        }
        let short = want - self.level;
        let per_ms = i128::from(self.per_minute);
        Err(u64::try_from((short + per_ms - 1) / per_ms).unwrap_or(u64::MAX).max(1))
    }

    pub fn take(&mut self, tokens: u64, now: u64) {
        self.refill(now);
        self.level -= i128::from(tokens) * MINUTE_MS;
    }

    /// A call that took `estimated` used `actual`: the difference goes
    /// back (or is taken too).
    pub fn correct(&mut self, estimated: u64, actual: u64, now: u64) {
        self.refill(now);
        let full = i128::from(self.per_minute) * MINUTE_MS;
        self.level = (self.level + (i128::from(estimated) - i128::from(actual)) * MINUTE_MS).min(full);
    }

    /// Whole tokens available now (0 while in debt).
    pub fn remaining(&mut self, now: u64) -> u64 {
        self.refill(now);
        u64::try_from(self.level.max(0) / MINUTE_MS).unwrap_or(0)
    }

    /// Milliseconds until the bucket is full again.
    pub fn reset_ms(&mut self, now: u64) -> u64 {
        self.refill(now);
        let short = i128::from(self.per_minute) * MINUTE_MS - self.level;
        let per_ms = i128::from(self.per_minute.max(1));
        u64::try_from((short + per_ms - 1) / per_ms).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_refills_by_the_minute() {
        let mut b = TokenBucket::new(1_000_000, 0);
        assert!(b.check(1_000_000, 0).is_ok(), "a whole minute's worth at once");
        b.take(1_000_000, 0);
        assert_eq!(b.check(1, 0), Err(1), "one token refills in 60 µs: the first millisecond");
        assert_eq!(b.check(500_000, 0), Err(30_000), "half the bucket in half a minute");
        assert!(b.check(500_000, 30_000).is_ok());
        assert_eq!(b.remaining(60_000), 1_000_000);
        assert_eq!(b.remaining(120_000), 1_000_000, "never past full");
        assert_eq!(b.check(1_000_001, 120_000), Err(u64::MAX), "more than the bucket holds");
    }

    #[test]
    fn the_providers_count_corrects_the_estimate() {
        let mut b = TokenBucket::new(600, 0);
        b.take(100, 0);
        b.correct(100, 700, 0);
        assert_eq!(b.remaining(0), 0, "in debt by 100");
        assert_eq!(b.check(1, 0), Err(10_100), "100 of debt and 1 token at 10 per second");
        b.correct(50, 0, 0);
        assert_eq!(b.reset_ms(0), 65_000);
    }

    #[test]
    fn what_passes_never_exceeds_the_bucket() {
        let mut b = TokenBucket::new(6_000, 0);
        let mut passed = 0u64;
        for t in (0..600_000).step_by(10) {
            if b.check(7, t).is_ok() {
                b.take(7, t);
                passed += 7;
            }
        }
        // Ten minutes: the full bucket at the start plus ten minutes of refill.
        assert!(passed <= 6_000 + 10 * 6_000, "{passed}");
        assert!(passed >= 10 * 6_000, "{passed}");
    }
}
