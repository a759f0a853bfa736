//! A sliding window of requests per minute or hour: a counter of the
//! requests a key or an account was let through, kept apart from any
//! threshold, so a call is judged against the limit that applies to it and
//! a change of limit moves the threshold, never the count. Two forms:
//!
//! - up to [`EXACT_UP_TO`] requests in the window, their times, oldest
//!   first: in any span of the window at most the limit passes, with no
//!   burst at a boundary (fixed windows let 2x through there), and a
//!   refusal names exactly when the request that must leave does. Memory:
//!   8 bytes per request in the window (600 a minute: 4.8 KB).
//! - past that, a thousand sub-windows of counts, so memory stays at most
//!   16 KB whatever the traffic. A sub-window still partly inside the
//!   window counts whole, so this form never lets more than a limit
//!   through in any span either (no overshoot); it may refuse up to a
//!   thousandth of the window early, and its retry-after is late by at
//!   most as much. It goes back to the first form once it empties.
//!
//! Times are milliseconds on a monotonic clock.

use std::collections::VecDeque;

/// Up to this many requests in the window, every time is kept.
pub const EXACT_UP_TO: usize = 4096;

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
    window_ms: u64,
    times: Times,
}

impl SlidingWindow {
    pub fn new(window_ms: u64) -> Self {
        Self { window_ms: window_ms.max(1), times: Times::Exact(VecDeque::new()) }
    }

    fn age_out(&mut self, now: u64) {
        let window = self.window_ms;
        match &mut self.times {
            Times::Exact(times) => {
                while times.front().is_some_and(|&t| t.saturating_add(window) <= now) {
                    times.pop_front();
                }
            }
            Times::Counts { width, slots, total } => {
                // A sub-window leaves once all of it is older than the window.
                while slots
                    .front()
                    .is_some_and(|&(start, _)| start.saturating_add(*width).saturating_add(window) <= now + 1)
                {
                    if let Some((_, n)) = slots.pop_front() {
                        *total = total.saturating_sub(u64::from(n));
                    }
                }
                if *total == 0 {
                    self.times = Times::Exact(VecDeque::new());
                }
            }
        }
    }

    /// Requests in the window now.
    pub fn count(&mut self, now: u64) -> u64 {
        self.age_out(now);
        match &self.times {
            Times::Exact(times) => times.len() as u64,
            Times::Counts { total, .. } => *total,
        }
    }

    /// `Ok(())` if one more may pass now under `limit`; otherwise the
    /// milliseconds until one may. A limit of 0 never lets one through
    /// (`u64::MAX`).
    pub fn check(&mut self, now: u64, limit: u32) -> Result<(), u64> {
        let count = self.count(now);
        let limit = u64::from(limit);
        if count < limit {
            return Ok(());
        }
        if limit == 0 {
            return Err(u64::MAX);
        }
        // How many must leave for one more to fit, and when the last of them does.
        let must_leave = count + 1 - limit;
        let leaves = match &self.times {
            Times::Exact(times) => usize::try_from(must_leave - 1)
                .ok()
                .and_then(|i| times.get(i))
                .map_or(now, |&t| t.saturating_add(self.window_ms)),
            Times::Counts { width, slots, .. } => {
                let mut gone = 0u64;
                slots
                    .iter()
                    .find(|&&(_, n)| {
                        gone += u64::from(n);
                        gone >= must_leave
                    })
                    .map_or(now, |&(start, _)| start.saturating_add(width - 1).saturating_add(self.window_ms))
            }
        };
        Err(leaves.saturating_sub(now).max(1))
    }

    /// Counts a request let through at `now`.
    pub fn take(&mut self, now: u64) {
        self.age_out(now);
        if let Times::Exact(times) = &mut self.times {
            if times.len() < EXACT_UP_TO {
                times.push_back(now);
                return;
            }
            // Too many to keep each: into sub-windows, each time in its own.
            let width = (self.window_ms / SUB_WINDOWS).max(1);
            let mut slots: VecDeque<(u64, u32)> = VecDeque::new();
            for &t in times.iter() {
                let start = t - t % width;
                match slots.back_mut() {
                    Some((s, n)) if *s == start => *n = n.saturating_add(1),
                    _ => slots.push_back((start, 1)),
                }
            }
            let total = times.len() as u64;
            self.times = Times::Counts { width, slots, total };
        }
        if let Times::Counts { width, slots, total } = &mut self.times {
            let start = now - now % *width;
            match slots.back_mut() {
                Some((s, n)) if *s >= start => *n = n.saturating_add(1),
                _ => slots.push_back((start, 1)),
            }
            *total += 1;
        }
    }

    /// Gives back a request taken at `at` (its call was refused by
    /// another limit or by the wallet, or it is not to be counted).
    pub fn untake(&mut self, at: u64) {
        match &mut self.times {
            Times::Exact(times) => {
                if let Some(i) = times.iter().rposition(|&t| t == at) {
                    times.remove(i);
                }
            }
            Times::Counts { width, slots, total } => {
                let start = at - at % *width;
                if let Some(slot) = slots.iter_mut().rev().find(|(s, n)| *s <= start && *n > 0) {
                    slot.1 -= 1;
                    *total = total.saturating_sub(1);
                }
            }
        }
    }

    pub fn remaining(&mut self, now: u64, limit: u32) -> u64 {
        u64::from(limit).saturating_sub(self.count(now))
    }

    /// Milliseconds until the window is whole again (the newest leaves).
    pub fn reset_ms(&mut self, now: u64) -> u64 {
        self.age_out(now);
        let newest = match &self.times {
            Times::Exact(times) => times.back().map(|&t| t.saturating_add(self.window_ms)),
            Times::Counts { width, slots, .. } => {
                slots.back().map(|&(s, _)| s.saturating_add(width - 1).saturating_add(self.window_ms))
            }
        };
        newest.map_or(0, |t| t.saturating_sub(now))
    }

    /// Bytes this window holds beyond its own size.
    pub fn heap_bytes(&self) -> usize {
        match &self.times {
            Times::Exact(times) => times.capacity() * 8,
            Times::Counts { slots, .. } => slots.capacity() * 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_burst_at_a_minute_boundary() {
        let mut w = SlidingWindow::new(60_000);
        // Ten at the end of one minute...
        for i in 0..10 {
            assert!(w.check(59_000 + i, 10).is_ok());
            w.take(59_000 + i);
        }
        // ...and none at the start of the next, as a fixed window would allow.
        assert_eq!(w.check(60_001, 10), Err(58_999), "until the first of the ten is a minute old");
        assert!(w.check(118_999, 10).is_err());
        assert!(w.check(119_000, 10).is_ok());
        assert_eq!(w.remaining(119_000, 10), 1);
    }

    /// One attempt every `step` ms for `span` ms: what passed, and the most
    /// that passed in any one window.
    fn drive(limit: u32, window: u64, step: u64, span: u64) -> (usize, usize) {
        let mut w = SlidingWindow::new(window);
        let mut passed = Vec::new();
        for t in (0..span).step_by(step as usize) {
            if w.check(t, limit).is_ok() {
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
    fn a_large_count_goes_into_sub_windows_without_overshoot() {
        // 5,000 a second, tried every 100 µs (as ms here: a 10 s window, 1 ms steps).
        let (passed, most) = drive(5_000, 10_000, 1, 60_000);
        assert!(most <= 5_000, "never more than the limit in a window: {most}");
        // A thousandth of the window early at most: at least 99.9% of the full rate.
        assert!(passed as f64 >= 6.0 * 5_000.0 * 0.999, "{passed}");
        let mut w = SlidingWindow::new(3_600_000);
        for t in 0..10_000 {
            w.take(t);
        }
        assert!(matches!(w.times, Times::Counts { width: 3_600, .. }), "an hour in 3.6 s sub-windows");
        assert!(w.heap_bytes() <= 16 * 1024);
        assert_eq!(w.count(3_700_000), 0);
        assert!(matches!(w.times, Times::Exact(_)), "back to times once empty");
    }

    #[test]
    fn the_wait_it_gives_is_exact() {
        let mut w = SlidingWindow::new(1_000);
        w.take(0);
        w.take(400);
        let wait = w.check(500, 2).unwrap_err();
        assert_eq!(wait, 500);
        assert!(w.check(500 + wait - 1, 2).is_err());
        assert_eq!(w.reset_ms(500), 900, "until the newest is a second old");
        assert!(w.check(500 + wait, 2).is_ok());
        assert_eq!(w.remaining(1_000, 2), 1);
        // In sub-windows, the wait is what lets the retry through.
        let mut big = SlidingWindow::new(10_000);
        for t in 0..5_000 {
            big.take(t);
        }
        let wait = big.check(5_000, 5_000).unwrap_err();
        assert!(big.check(5_000 + wait - 1, 5_000).is_err());
        assert!(big.check(5_000 + wait, 5_000).is_ok());
    }

    #[test]
    fn a_new_threshold_judges_the_same_count() {
        let mut w = SlidingWindow::new(60_000);
        for t in 0..5 {
            w.take(t);
        }
        assert!(w.check(10, 5).is_err());
        assert!(w.check(10, 3).is_err(), "lowered: still five in the window");
        assert_eq!(w.check(10, 3), Err(60_002 - 10), "until the third oldest leaves");
        assert!(w.check(10, 6).is_ok(), "raised: one more");
        assert_eq!(w.check(10, 0), Err(u64::MAX), "zero: never");
        w.untake(4);
        assert_eq!(w.count(10), 4, "a request given back");
    }
}
