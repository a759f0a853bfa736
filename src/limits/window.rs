//! A sliding window of requests per minute or hour, in two forms:
//!
//! - up to [`EXACT_UP_TO`] requests, the times of the requests it let
//!   through, oldest first: in any span of the window at most `limit`
//!   pass, with no burst at a boundary (fixed windows let 2× through
//!   there), and a refusal names exactly when the request that must leave
//!   does. Memory: 8 bytes per request in the window (600 RPM: 4.8 KB).
//! - above it, a thousand sub-windows of counts, so memory stays at most
//!   16 KB whatever the limit. A sub-window still partly inside the window
//!   counts whole, so this form can never let more than `limit` through in
//!   any span either (no overshoot); it may refuse up to a thousandth of
//!   the window early, and its retry-after is late by at most as much.

use std::collections::VecDeque;

/// Limits up to this keep every request time.
pub const EXACT_UP_TO: u32 = 4096;

const SUB_WINDOWS: u64 = 1000;

#[derive(Debug, Clone)]
enum Times {
    Exact(VecDeque<u64>),
    /// `(start, count)` of each sub-window with requests, oldest first.
    Counts {
        width: u64,
        slots: VecDeque<(u64, u32)>,
        total: u64,
    },
}

#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u32,
    window_ms: u64,
    times: Times,
}

impl SlidingWindow {
    pub fn new(limit: u32, window_ms: u64) -> Self {
        let window_ms = window_ms.max(1);
        let times = if limit <= EXACT_UP_TO {
            Times::Exact(VecDeque::new())
        } else {
            Times::Counts { width: (window_ms / SUB_WINDOWS).max(1), slots: VecDeque::new(), total: 0 }
        };
        Self { limit, window_ms, times }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn age_out(&mut self, now: u64) {
        let window = self.window_ms;
        match &mut self.times {
            Times::Exact(times) => {
                while times.front().is_some_and(|&t| t + window <= now) {
                    times.pop_front();
                }
            }
            Times::Counts { width, slots, total } => {
                // A sub-window leaves once all of it is older than the window.
                while slots.front().is_some_and(|&(start, _)| start + *width + window <= now + 1) {
                    if let Some((_, n)) = slots.pop_front() {
                        *total -= u64::from(n);
                    }
                }
            }
        }
    }

    fn count(&self) -> u64 {
        match &self.times {
            Times::Exact(times) => times.len() as u64,
            Times::Counts { total, .. } => *total,
        }
    }

    /// `Ok(())` if one more may pass now; otherwise the milliseconds until
    /// one may.
    pub fn check(&mut self, now: u64) -> Result<(), u64> {
        self.age_out(now);
        let limit = u64::from(self.limit);
        let count = self.count();
        if count < limit {
            return Ok(());
        }
        // How many must leave for one more to fit, and when the last of them does.
        let must_leave = count + 1 - limit.max(1);
        let leaves = match &self.times {
            Times::Exact(times) => times.get(must_leave as usize - 1).map_or(now, |&t| t + self.window_ms),
            Times::Counts { width, slots, .. } => {
                let mut gone = 0u64;
                slots
                    .iter()
                    .find(|&&(_, n)| {
                        gone += u64::from(n);
                        gone >= must_leave
                    })
                    .map_or(now, |&(start, _)| start + width - 1 + self.window_ms)
            }
        };
        Err(leaves.saturating_sub(now).max(1))
    }

    /// Counts a request let through at `now` (after `check` said yes).
    pub fn take(&mut self, now: u64) {
        match &mut self.times {
            Times::Exact(times) => times.push_back(now),
            Times::Counts { width, slots, total } => {
                let start = now - now % *width;
                match slots.back_mut() {
                    Some((s, n)) if *s == start => *n += 1,
                    _ => slots.push_back((start, 1)),
                }
                *total += 1;
            }
        }
    }

    pub fn remaining(&mut self, now: u64) -> u32 {
        self.age_out(now);
        u32::try_from(u64::from(self.limit).saturating_sub(self.count())).unwrap_or(0)
    }

    /// Milliseconds until the window is whole again (the newest leaves).
    pub fn reset_ms(&mut self, now: u64) -> u64 {
        self.age_out(now);
        let newest = match &self.times {
            Times::Exact(times) => times.back().map(|&t| t + self.window_ms),
            Times::Counts { width, slots, .. } => slots.back().map(|&(s, _)| s + width - 1 + self.window_ms),
        };
        newest.map_or(0, |t| t.saturating_sub(now))
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

    /// One attempt every `step` ms for `span` ms: what passed, and the most
    /// that passed in any one window.
    fn drive(limit: u32, window: u64, step: u64, span: u64) -> (usize, usize) {
        let mut w = SlidingWindow::new(limit, window);
        let mut passed = Vec::new();
        for t in (0..span).step_by(step as usize) {
            if w.check(t).is_ok() {
                w.take(t);
                passed.push(t);
            }
        }
        let most = (0..passed.len())
            .map(|i| passed[i..].iter().take_while(|&&t| t < passed[i] + window).count())
            .max()
            .unwrap_or(0);
        (passed.len(), most)
    }

    #[test]
    fn in_any_window_at_most_the_limit_pass() {
        let (passed, most) = drive(50, 60_000, 100, 300_000);
        assert!(most <= 50, "{most} in one minute");
        assert_eq!(passed, 250, "and the limit is used to the full");
    }

    #[test]
    fn a_large_limit_counts_in_sub_windows_without_overshoot() {
        // 5,000 a second, tried every 100 µs (as ms here: a 10 s window, 1 ms steps).
        let (passed, most) = drive(5_000, 10_000, 1, 60_000);
        assert!(most <= 5_000, "never more than the limit in a window: {most}");
        // A thousandth of the window early at most: at least 99.9% of the full rate.
        assert!(passed as f64 >= 6.0 * 5_000.0 * 0.999, "{passed}");
        let w = SlidingWindow::new(1_000_000, 3_600_000);
        assert!(matches!(w.times, Times::Counts { width: 3_600, .. }), "an hour in 3.6 s sub-windows");
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
        // In sub-windows, the wait is what lets the retry through.
        let mut big = SlidingWindow::new(5_000, 10_000);
        for t in 0..5_000 {
            big.take(t);
        }
        let wait = big.check(5_000).unwrap_err();
        assert!(big.check(5_000 + wait - 1).is_err());
        assert!(big.check(5_000 + wait).is_ok());
    }
}
