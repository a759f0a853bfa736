//! The fleet's metrics: Redis round trips and script errors, the fleet
//! size a node sees, the journal's depth, and the reconciler's lag and
//! corrections (see `crate::hot`).

use super::{counter, gauge, histogram};
use once_cell::sync::Lazy;
use prometheus::{HistogramVec, IntCounterVec, IntGauge};
use std::time::Duration;

static ROUND_TRIP: Lazy<HistogramVec> = Lazy::new(|| {
    histogram(
        "tollgate_redis_round_trip_seconds",
        "Time of one script call to Redis (admit, settle, wallet), as the node measured it.",
        &[],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0],
    )
});

static SCRIPT_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter("tollgate_redis_script_errors_total", "Script calls Redis answered with an error.", &[])
});

static FLEET_SIZE: Lazy<IntGauge> = Lazy::new(|| {
    gauge("tollgate_fleet_size", "Nodes alive in the fleet, as this node last saw them on Redis.")
});

static JOURNAL_DEPTH: Lazy<IntGauge> = Lazy::new(|| {
    gauge("tollgate_journal_depth", "Ledger records in this node's journal not yet delivered to the store.")
});

static RECONCILE_LAG: Lazy<IntGauge> = Lazy::new(|| {
    gauge(
        "tollgate_reconcile_lag_seconds",
        "Seconds since the reconciler last compared every active wallet on Redis with the ledger \
         (0 on a node that is not the fleet's reconciler).",
    )
});

static DRIFT: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_reconcile_drift_corrected_nano_usd_total",
        "Drift between Redis's wallets and the ledger the reconciler corrected, in nano-USD (absolute).",
        &[],
    )
});

static CORRECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter("tollgate_reconcile_corrections_total", "Wallets on Redis the reconciler corrected.", &[])
});

static SEEDS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_wallet_seeds_total",
        "Wallets this node seeded on Redis from the ledger (first use, or after Redis lost its data).",
        &[],
    )
});

pub fn redis_round_trip(took: Duration) {
    ROUND_TRIP.with_label_values(&[] as &[&str]).observe(took.as_secs_f64());
}

pub fn redis_script_error() {
    SCRIPT_ERRORS.with_label_values(&[] as &[&str]).inc();
}

pub fn fleet_size(n: u64) {
    FLEET_SIZE.set(i64::try_from(n).unwrap_or(i64::MAX));
}

pub fn journal_depth(n: u64) {
    JOURNAL_DEPTH.set(i64::try_from(n).unwrap_or(i64::MAX));
}

pub fn reconcile_lag(seconds: u64) {
    RECONCILE_LAG.set(i64::try_from(seconds).unwrap_or(i64::MAX));
}

pub fn drift_corrected(nanos: u64) {
    DRIFT.with_label_values(&[] as &[&str]).inc_by(nanos);
    CORRECTIONS.with_label_values(&[] as &[&str]).inc();
}

pub fn wallet_seeded() {
    SEEDS.with_label_values(&[] as &[&str]).inc();
}

/// Registers every fleet metric, so a scrape shows them from the start
/// (a vector without labels shows nothing until its one child exists: it
/// is made here, at 0).
pub fn init() {
    let none: &[&str] = &[];
    Lazy::force(&ROUND_TRIP).with_label_values(none);
    for counter in [&SCRIPT_ERRORS, &DRIFT, &CORRECTIONS, &SEEDS] {
        Lazy::force(counter).with_label_values(none);
    }
    Lazy::force(&FLEET_SIZE);
    Lazy::force(&JOURNAL_DEPTH);
    Lazy::force(&RECONCILE_LAG);
}
