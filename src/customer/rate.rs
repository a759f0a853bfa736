//! A per-key allowance of calls that are not messages: the customer
//! endpoints (`whoami`, `usage`, `generation`, `server.customer_endpoint_rpm`
//! together) and `count_tokens` (`server.count_tokens_rpm`): so many calls
//! in any 60 s, an exact sliding window per key ([`SlidingWindow`]).
//! A key past it gets 429 in its caller's format with `retry-after`; other
//! keys never notice (16 shards by key id, a call locks one). Memory: one
//! window per key that has called (8 bytes per call in its window).

use crate::error::GatewayError;
use crate::limits::window::SlidingWindow;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

const SHARDS: usize = 16;
const WINDOW_MS: u64 = 60_000;

pub struct PerKey {
    per_minute: u32,
    /// What the allowance covers, as its refusal says.
    what: &'static str,
    start: Instant,
    shards: [Mutex<HashMap<u64, SlidingWindow>>; SHARDS],
}

impl PerKey {
    /// `per_minute` calls per key in any minute (0: no limit).
    pub fn new(per_minute: u32, what: &'static str) -> Self {
        Self { per_minute, what, start: Instant::now(), shards: Default::default() }
    }

    /// Takes one call of `key` at `now` (monotonic ms), or tells how many
    /// milliseconds until one may pass.
    pub fn take_at(&self, key: u64, now: u64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut windows = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows.entry(key).or_insert_with(|| SlidingWindow::new(WINDOW_MS));
        window.check(now, self.per_minute)?;
        window.take(now);
        Ok(())
    }

    /// Takes one call of `key` now, or the caller's 429.
    pub fn take(&self, key: u64) -> Result<(), GatewayError> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.take_at(key, now).map_err(|wait_ms| GatewayError::RateLimited {
            code: "rate_limit_exceeded",
            message: format!(
                "This key may call {} {} times a minute; retry later",
                self.what, self.per_minute
            ),
            headers: crate::limits::headers::retry_after(wait_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_past_its_allowance_waits_and_others_do_not() {
        let limit = PerKey::new(3, "x");
        assert!((0..3).all(|i| limit.take_at(1, i).is_ok()));
        assert_eq!(limit.take_at(1, 10), Err(60_000 - 10));
        assert!(limit.take_at(2, 10).is_ok(), "another key has its own");
        assert!(limit.take_at(1, 60_000).is_ok(), "the first call left the window");
        assert!(PerKey::new(0, "x").take_at(1, 0).is_ok());
        let once = PerKey::new(1, "x");
        assert!(once.take(7).is_ok());
        let Err(GatewayError::RateLimited { headers, .. }) = once.take(7) else { panic!("refused") };
        assert!(headers.iter().any(|(h, _)| *h == "retry-after"));
    }
}
