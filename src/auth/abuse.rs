//! Slowing down key guessing: a client address whose requests carry more
//! than `invalid_keys_per_minute_per_address` invalid keys in any 60 s
//! gets 429 instead of 401 for its further invalid keys. Only requests
//! with an invalid key are counted and refused, so valid keys behind the
//! same address (an office, a NAT) are not affected.
//!
//! Exact per address: each address has its own sliding window
//! ([`SlidingWindow`], the times of its invalid keys answered 401), so no
//! address is ever refused for another's invalid keys, and none gets more
//! than the limit of 401s in any 60 s, across any boundary. Bounded: at
//! most `invalid_key_addresses_kept` addresses are kept; a new address
//! past that takes the place of the one whose last invalid key is oldest
//! (a least-recently-used list over a slab, O(1) per invalid key). One
//! lock, held for that O(1) step, on the invalid-key path only.

use crate::limits::window::SlidingWindow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

const WINDOW_MS: u64 = 60_000;
const NONE: u32 = u32::MAX;

struct Node {
    ip: IpAddr,
    window: SlidingWindow,
    /// Neighbours in the list, newest first (`NONE` at either end).
    newer: u32,
    older: u32,
}

/// The addresses kept, in a slab (`nodes`) linked newest to oldest.
struct Addresses {
    kept: usize,
    slots: HashMap<IpAddr, u32>,
    nodes: Vec<Node>,
    newest: u32,
    oldest: u32,
}

impl Addresses {
    fn new(kept: usize) -> Self {
        let kept = kept.clamp(1, NONE as usize - 1);
        Self { kept, slots: HashMap::new(), nodes: Vec::new(), newest: NONE, oldest: NONE }
    }

    fn unlink(&mut self, i: u32) {
        let Some(node) = self.nodes.get(i as usize) else { return };
        let (newer, older) = (node.newer, node.older);
        match self.nodes.get_mut(newer as usize) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.nodes.get_mut(older as usize) {
            Some(n) => n.newer = newer,
            None => self.oldest = newer,
        }
    }

    fn push_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        if let Some(node) = self.nodes.get_mut(i as usize) {
            node.newer = NONE;
            node.older = old_newest;
        }
        match self.nodes.get_mut(old_newest as usize) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }

    /// The window of `ip`, made the newest: a new one when `ip` is not
    /// kept (in the oldest address's place when all places are taken).
    fn window(&mut self, ip: IpAddr) -> Option<&mut SlidingWindow> {
        let i = match self.slots.get(&ip) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None if self.nodes.len() < self.kept => {
                let i = u32::try_from(self.nodes.len()).ok()?;
                let window = SlidingWindow::new(WINDOW_MS);
                self.nodes.push(Node { ip, window, newer: NONE, older: NONE });
                self.slots.insert(ip, i);
                i
            }
            None => {
                let i = self.oldest;
                self.unlink(i);
                let node = self.nodes.get_mut(i as usize)?;
                let evicted = std::mem::replace(&mut node.ip, ip);
                node.window = SlidingWindow::new(WINDOW_MS);
                self.slots.remove(&evicted);
                self.slots.insert(ip, i);
                i
            }
        };
        self.push_newest(i);
        self.nodes.get_mut(i as usize).map(|n| &mut n.window)
    }
}

pub struct BadKeys {
    per_minute: u32,
    start: Instant,
    addresses: Mutex<Addresses>,
}

impl BadKeys {
    /// `per_minute` invalid keys per address in any minute (0: no limit),
    /// remembering at most `kept` addresses.
    pub fn new(per_minute: u32, kept: usize) -> Self {
        Self { per_minute, start: Instant::now(), addresses: Mutex::new(Addresses::new(kept)) }
    }

    /// Counts an invalid key from `ip`; whether the address is over its
    /// allowance (then it gets 429, and this one is not counted).
    pub fn refused(&self, ip: IpAddr) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.refused_at(ip, now)
    }

    /// Whether `ip` is over its allowance now, counting nothing.
    pub fn over(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        addresses.window(ip).is_some_and(|w| w.check(now, self.per_minute).is_err())
    }

    /// The same at `now`, monotonic milliseconds.
    pub fn refused_at(&self, ip: IpAddr, now: u64) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = addresses.window(ip) else { return false };
        match window.check(now, self.per_minute) {
            Ok(()) => {
                window.take(now);
                false
            }
            Err(_) => true,
        }
    }

    /// How many addresses are kept now.
    pub fn addresses(&self) -> usize {
        self.addresses.lock().unwrap_or_else(PoisonError::into_inner).slots.len()
    }
}

#[cfg(test)]
mod tests;
