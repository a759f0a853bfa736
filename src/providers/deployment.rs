//! One place a model is served (a provider and its name for the model),
//! with what keeps calls off it while it fails: its circuit breaker and
//! its limit on calls in flight. A model's deployments are tried in order
//! (the first among the weighted ones drawn by weight) until one answers.

use super::breaker::{Breaker, BreakerRules, Verdict};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct Deployment {
    /// `provider/upstream model`: the access log's and the metrics' name.
    pub label: String,
    pub weight: Option<u32>,
    pub max_in_flight: Option<u32>,
    in_flight: AtomicU32,
    breaker: Mutex<Breaker>,
}

/// A call on a deployment, counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Deployment>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Deployment {
    pub fn new(label: String, weight: Option<u32>, max_in_flight: Option<u32>) -> Self {
        Self { label, weight, max_in_flight, in_flight: AtomicU32::new(0), breaker: Mutex::default() }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more call now, or `None` (its circuit is open, or
    /// it has as many calls in flight as it may).
    pub fn take(self: &Arc<Self>, now_ms: u64) -> Option<InFlight> {
        if self.breaker().verdict(now_ms) == Verdict::Skip {
            return None;
        }
        let limit = self.max_in_flight.unwrap_or(u32::MAX);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        taken.ok().map(|_| InFlight(self.clone()))
    }

    pub fn succeeded(&self) {
        self.breaker().succeeded();
    }

    /// A failed attempt; `true` when it opened the circuit.
    pub fn failed(&self, now_ms: u64, rules: BreakerRules) -> bool {
        self.breaker().failed(now_ms, rules)
    }

    /// Another node opened this circuit until `until_ms`.
    pub fn opened_elsewhere(&self, until_ms: u64) {
        self.breaker().open_until(until_ms);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// The order to try `weights.len()` deployments in: the first drawn among
/// the weighted ones in proportion to their weights (`pick` in [0, 1)),
/// then the rest as listed.
pub fn attempt_order(weights: &[Option<u32>], pick: f64) -> Vec<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(w.unwrap_or(0))).sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    if total == 0 {
        return order;
    }
    let mut point = (pick.clamp(0.0, 1.0) * total as f64) as u64;
    let first = weights
        .iter()
        .position(|w| {
            let w = u64::from(w.unwrap_or(0));
            if point < w {
                return true;
            }
            point -= w;
            false
        })
        .unwrap_or(0);
    order.remove(first);
    order.insert(0, first);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_drawn_by_weight_and_the_rest_follow_in_order() {
        let weights = [Some(3), None, Some(1)];
        assert_eq!(attempt_order(&weights, 0.0), [0, 1, 2]);
        assert_eq!(attempt_order(&weights, 0.74), [0, 1, 2]);
        assert_eq!(attempt_order(&weights, 0.76), [2, 0, 1]);
        assert_eq!(attempt_order(&[None, None], 0.9), [0, 1], "no weights: as listed");
        let draws = (0..1000).filter(|i| attempt_order(&weights, f64::from(*i) / 1000.0)[0] == 2).count();
        assert_eq!(draws, 250, "a quarter of first calls");
    }

    #[test]
    fn calls_in_flight_are_limited_and_an_open_circuit_is_skipped() {
        let d = Arc::new(Deployment::new("p/m".into(), None, Some(2)));
        let (a, b) = (d.take(0), d.take(0));
        assert!(a.is_some() && b.is_some());
        assert!(d.take(0).is_none(), "two in flight at most");
        drop(a);
        assert!(d.take(0).is_some());
        let rules = BreakerRules { failures: 1, cooldown_ms: 100 };
        assert!(d.failed(10, rules));
        drop(b);
        assert!(d.take(50).is_none(), "open");
        assert!(d.take(110).is_some(), "the probe after the cooldown");
    }
}
