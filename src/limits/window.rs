//! An exact sliding window: the times of the requests it let through in
//! the last `window_ms`, oldest first. In any span of `window_ms` at most
//! `limit` pass, with no burst at a boundary (fixed windows let 2× through
//! there), and a refused caller is told exactly when the oldest request
//! leaves the window. Memory: one `u64` per request in the window (600
//! RPM is 4.8 KB per active key), freed as they age out.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u32,
    window_ms: u64,
    times: VecDeque<u64>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window_ms: u64) -> Self {
        Self { limit, window_ms: window_ms.max(1), times: VecDeque::new() }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn age_out(&mut self, now: u64) {
        while self.times.front().is_some_and(|&t| t + self.window_ms <= now) {
            self.times.pop_front();
        }
    }

    /// `Ok(())` if one more may pass now; otherwise the milliseconds until
    /// one may.
    pub fn check(&mut self, now: u64) -> Result<(), u64> {
        self.age_out(now);
        if (self.times.len() as u64) < u64::from(self.limit) {
            return Ok(());
        }
        // The request that must leave for one more to fit.
        let blocking = self.times.len() + 1 - self.limit.max(1) as usize;
        let leaves = self.times.get(blocking - 1).map_or(now, |&t| t + self.window_ms);
        Err(leaves.saturating_sub(now).max(1))
    }

    /// Counts a request let through at `now` (after `check` said yes).
    pub fn take(&mut self, now: u64) {
        self.times.push_back(now);
    }

    pub fn remaining(&mut self, now: u64) -> u32 {
        self.age_out(now);
        self.limit.saturating_sub(self.times.len() as u32)
    }

    /// Milliseconds until the window is whole again (the newest leaves).
    pub fn reset_ms(&mut self, now: u64) -> u64 {
        self.age_out(now);
        self.times.back().map_or(0, |&t| (t + self.window_ms).saturating_sub(now))
    }

    /// Whether nothing is remembered (the state can be dropped).
    pub fn idle(&mut self, now: u64) -> bool {
        self.age_out(now);
        self.times.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_burst_at_a_minute_boundary() {
        let mut w = SlidingWindow::new(10, 60_000);
        // Ten at the end of one minute...
        for i in 0..10 {
            assert!(w.check(59_000 + i).is_ok());
            w.take(59_000 + i);
        }
        // ...and none at the start of the next, as a fixed window would allow.
        assert_eq!(w.check(60_001), Err(58_999), "until the first of the ten is a minute old");
        assert!(w.check(118_999).is_err());
        assert!(w.check(119_000).is_ok());
        assert_eq!(w.remaining(119_000), 1);
    }

    #[test]
    fn in_any_window_at_most_the_limit_pass() {
        let mut w = SlidingWindow::new(50, 60_000);
        let mut passed = Vec::new();
        // One attempt every 100 ms for five minutes.
        for t in (0..300_000).step_by(100) {
            if w.check(t).is_ok() {
                w.take(t);
                passed.push(t);
            }
        }
        for (i, &start) in passed.iter().enumerate() {
            let within = passed[i..].iter().take_while(|&&t| t < start + 60_000).count();
            assert!(within <= 50, "{within} in the minute from {start}");
        }
        assert_eq!(passed.len(), 250, "and the limit is used to the full");
    }

    #[test]
    fn the_wait_it_gives_is_exact() {
        let mut w = SlidingWindow::new(2, 1_000);
        w.take(0);
        w.take(400);
        let wait = w.check(500).unwrap_err();
        assert_eq!(wait, 500);
        assert!(w.check(500 + wait - 1).is_err());
        assert_eq!(w.reset_ms(500), 900, "until the newest is a second old");
        assert!(w.check(500 + wait).is_ok());
        assert_eq!(w.remaining(1_000), 1);
    }
}
