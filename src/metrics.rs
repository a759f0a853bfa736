//! Prometheus metrics, with low-cardinality labels only (route, format,
//! provider, public model id, status; never a key), and the small HTTP app
//! that serves them on the metrics listener.

use crate::formats::usage::Usage;
use once_cell::sync::Lazy;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::time::Duration;

mod fleet;
mod series;
pub use fleet::{
    drift_corrected, fleet_size, journal_depth, reconcile_lag, redis_round_trip, redis_script_error,
    wallet_seeded,
};

pub static REGISTRY: Lazy<Registry> = Lazy::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = REGISTRY.register(Box::new(c.clone()));
    c
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = REGISTRY.register(Box::new(h.clone()));
    h
}

/// Metric definitions are constants; a failure here is a programming error
/// caught by the unit test below, so there is nothing to recover.
#[allow(clippy::panic)]
fn unreachable_metric(name: &str, e: prometheus::Error) -> ! {
    panic!("metric {name} is malformed: {e}")
}

const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_requests_total",
        "Requests answered, by route, client format, provider, model and status.",
        &["route", "format", "provider", "model", "status"],
    )
});

static DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    histogram(
        "tollgate_request_duration_seconds",
        "Time from request start to the last byte sent.",
        &["route", "format", "provider"],
        LATENCY_BUCKETS.to_vec(),
    )
});

static UPSTREAM_TTFB: Lazy<HistogramVec> = Lazy::new(|| {
    histogram(
        "tollgate_upstream_ttfb_seconds",
        "Time from request start to the upstream's first body byte.",
        &["provider"],
        LATENCY_BUCKETS.to_vec(),
    )
});

static TOKENS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_tokens_total",
        "Tokens metered, by model and kind (input, output, cached_input, cache_write, reasoning).",
        &["model", "kind"],
    )
});

static UNMETERED: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_unmetered_responses_total",
        "Successful model calls without a usage the gateway could read (billed an estimate of what was relayed), by provider and model.",
        &["provider", "model"],
    )
});

static ACCEPT_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_accept_errors_total",
        "Connections the listeners failed to accept, by cause (too_many_open_files, other).",
        &["cause"],
    )
});

static CONNECT_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_upstream_connect_errors_total",
        "Upstream connections that failed, by provider and cause.",
        &["provider", "cause"],
    )
});

static CONNECTIONS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_connections_refused_total",
        "Caller connections closed at once, by reason (per_address_limit).",
        &["reason"],
    )
});

/// A caller's connection was refused.
pub fn connection_refused(reason: &'static str) {
    CONNECTIONS_REFUSED.with_label_values(&[reason]).inc();
}

/// A listener's `accept()` failed.
pub fn accept_failed(cause: &'static str) {
    ACCEPT_ERRORS.with_label_values(&[cause]).inc();
}

/// A connection to `provider` failed.
pub fn connect_failed(provider: &str, cause: &'static str) {
    CONNECT_ERRORS.with_label_values(&[provider, cause]).inc();
}

/// The bounded label for an OS error named in `message`.
pub fn os_error_cause(message: &str) -> &'static str {
    if message.contains("os error 24") || message.contains("os error 23") {
        "too_many_open_files"
    } else if message.contains("os error 111") {
        "refused"
    } else if message.contains("os error 104") {
        "reset"
    } else if message.contains("timed out") || message.contains("Timedout") {
        "timeout"
    } else if message.contains("TLS") || message.contains("Tls") || message.contains("certificate") {
        "tls"
    } else {
        "other"
    }
}

static SPEND: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_spend_nano_usd_total",
        "What billed calls were charged at list price, in nano-USD, by model and plan.",
        &["model", "plan"],
    )
});

/// A billed call was charged `nanos`.
pub fn spend(model: &str, plan: &str, nanos: i64) {
    series::add_spend(model, plan, u64::try_from(nanos).unwrap_or(0));
}

static UNPAID: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_unpaid_nano_usd_total",
        "What billed calls cost beyond what their hold, wallet and key cap could pay, in nano-USD \
         (recorded in the ledger, never taken), by model and plan.",
        &["model", "plan"],
    )
});

/// A billed call cost `nanos` more than could be charged.
pub fn unpaid(model: &str, plan: &str, nanos: i64) {
    UNPAID.with_label_values(&[model, plan]).inc_by(u64::try_from(nanos).unwrap_or(0));
}

static DEPLOYMENT_ATTEMPTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_deployment_attempts_total",
        "Attempts on a model's deployments, by model, deployment (provider/upstream model) and outcome: \
         served, failed_over (a connection error, a timeout, a 429 or a 5xx before the first byte), \
         failed (the last attempt's error), skipped (circuit open or in-flight limit).",
        &["model", "deployment", "outcome"],
    )
});

static CIRCUITS_OPENED: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_circuit_opened_total",
        "A deployment's circuit opened after failures in a row, by deployment.",
        &["deployment"],
    )
});

pub fn deployment_attempt(model: &str, deployment: &str, outcome: &str) {
    DEPLOYMENT_ATTEMPTS.with_label_values(&[model, deployment, outcome]).inc();
}

pub fn circuit_opened(deployment: &str) {
    CIRCUITS_OPENED.with_label_values(&[deployment]).inc();
}

static ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_errors_total",
        "Answers with a 4xx or 5xx status, by error code (the gateway's own, `upstream` for a provider's \
         error passed on, `internal` for a failure with no code) and status.",
        &["code", "status"],
    )
});

static REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_billing_refusals_total",
        "Calls refused before going upstream by billing or access rules, by code (402s, 403s, 401s).",
        &["code"],
    )
});

static HOLDS_OPEN: Lazy<prometheus::IntGauge> = Lazy::new(|| {
    gauge("tollgate_holds_open", "Holds of worst-case cost open on this node (requests in flight).")
});

static JOURNAL_LAG: Lazy<prometheus::IntGauge> = Lazy::new(|| {
    gauge("tollgate_journal_lag_records", "Ledger records in the journal the store has not kept yet.")
});

static JOURNAL_WRITTEN: Lazy<prometheus::IntCounter> = Lazy::new(|| {
    let name = "tollgate_journal_records_total";
    let c = prometheus::IntCounter::new(name, "Ledger records written to the journal.")
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = REGISTRY.register(Box::new(c.clone()));
    c
});

static HOT_FAILED_OPEN: Lazy<prometheus::IntCounter> = Lazy::new(|| {
    let name = "tollgate_hot_state_failed_open_seconds_total";
    let c =
        prometheus::IntCounter::new(name, "Seconds the rate limits ran on this node's memory, Redis down.")
            .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = REGISTRY.register(Box::new(c.clone()));
    c
});

/// Redis was unreachable for `seconds` with `on_failure: open`.
pub fn hot_failed_open(seconds: u64) {
    HOT_FAILED_OPEN.inc_by(seconds);
}

fn gauge(name: &str, help: &str) -> prometheus::IntGauge {
    let g = prometheus::IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = REGISTRY.register(Box::new(g.clone()));
    g
}

static RATE_LIMITS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_rate_limit_decisions_total",
        "Rate-limit decisions, by limit (rpm, rph, daily_messages, input_tpm, concurrent) and outcome.",
        &["limit", "outcome"],
    )
});

/// A limit let a call through, or refused it.
pub fn rate_limit(limit: &'static str, outcome: &'static str) {
    match allowed(limit).filter(|_| outcome == "allowed") {
        Some(counter) => counter.inc(),
        None => RATE_LIMITS.with_label_values(&[limit, outcome]).inc(),
    }
}

/// The `allowed` series of each limit, looked up once (at its first use,
/// so a scrape lists only limits that counted): every admitted call counts
/// one per limit in force, and a lookup by labels hashes both each time.
fn allowed(limit: &str) -> Option<&'static prometheus::IntCounter> {
    const LIMITS: [&str; 6] = ["rpm", "rpm_by_class", "rph", "daily_messages", "input_tpm", "concurrent"];
    static ALLOWED: [std::sync::OnceLock<prometheus::IntCounter>; 6] =
        [const { std::sync::OnceLock::new() }; 6];
    let i = LIMITS.iter().position(|known| *known == limit)?;
    Some(ALLOWED[i].get_or_init(|| RATE_LIMITS.with_label_values(&[limit, "allowed"])))
}

static CONFIG_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "tollgate_config_reloads_total",
        "Configuration reloads (SIGHUP, POST /admin/v1/reload), by result (ok, refused).",
        &["result"],
    )
});

/// A configuration reload was put in force (`ok`) or `refused`.
pub fn config_reload(result: &'static str) {
    CONFIG_RELOADS.with_label_values(&[result]).inc();
}

/// A call refused with `code` before anything went upstream.
pub fn refused(code: &str) {
    REFUSED.with_label_values(&[code]).inc();
}

pub fn journal_written() {
    JOURNAL_WRITTEN.inc();
}

/// Holds open and journal records not yet in the store.
pub fn billing_state(holds_open: usize, journal_lag: u64) {
    HOLDS_OPEN.set(i64::try_from(holds_open).unwrap_or(i64::MAX));
    JOURNAL_LAG.set(i64::try_from(journal_lag).unwrap_or(i64::MAX));
    journal_depth(journal_lag);
}

/// A successful model call the provider reported no usage for.
pub fn unmetered(provider: &str, model: &str) {
    UNMETERED.with_label_values(&[provider, model]).inc();
}

/// One finished request, as the metrics see it.
pub struct RequestRecord<'a> {
    pub route: &'a str,
    pub format: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub upstream_ttfb: Option<Duration>,
    pub usage: Option<Usage>,
    /// The gateway's error code, when it refused or failed the call.
    pub error_code: Option<&'a str>,
}

pub fn record(r: &RequestRecord<'_>) {
    if r.status >= 400 {
        let code = r.error_code.unwrap_or(if r.provider == "none" { "internal" } else { "upstream" });
        ERRORS.with_label_values(&[code, itoa::Buffer::new().format(r.status)]).inc();
    }
    series::count_request(r);
}

/// Forces every metric into the registry so a scrape lists them from the start.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&DURATION);
    Lazy::force(&UPSTREAM_TTFB);
    Lazy::force(&TOKENS);
    Lazy::force(&UNMETERED);
    Lazy::force(&ACCEPT_ERRORS);
    Lazy::force(&CONNECT_ERRORS);
    Lazy::force(&CONNECTIONS_REFUSED);
    Lazy::force(&SPEND);
    Lazy::force(&UNPAID);
    Lazy::force(&REFUSED);
    Lazy::force(&ERRORS);
    Lazy::force(&RATE_LIMITS);
    Lazy::force(&HOLDS_OPEN);
    Lazy::force(&JOURNAL_LAG);
    Lazy::force(&JOURNAL_WRITTEN);
    Lazy::force(&HOT_FAILED_OPEN);
    fleet::init();
    Lazy::force(&CONFIG_RELOADS);
}

/// This node's counters as the operator console shows them.
pub struct Summary {
    pub requests_total: u64,
    pub server_errors_total: u64,
    pub in_flight: i64,
    /// (code, status, count), most first.
    pub errors: Vec<(String, u16, u64)>,
}

/// Reads the counters of this node's registry (what a scrape would show).
pub fn summary() -> Summary {
    let mut out = Summary {
        requests_total: 0,
        server_errors_total: 0,
        in_flight: HOLDS_OPEN.get(),
        errors: Vec::new(),
    };
    for family in REGISTRY.gather() {
        for m in family.get_metric() {
            let label =
                |name: &str| m.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_string());
            let count = m.get_counter().value() as u64;
            match family.name() {
                "tollgate_requests_total" => {
                    out.requests_total += count;
                    if label("status").is_some_and(|s| s.starts_with('5')) {
                        out.server_errors_total += count;
                    }
                }
                "tollgate_errors_total" => {
                    let status = label("status").and_then(|s| s.parse().ok()).unwrap_or(0);
                    out.errors.push((label("code").unwrap_or_default(), status, count));
                }
                _ => {}
            }
        }
    }
    out.errors.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        init();
        record(&RequestRecord {
            route: "chat_completions",
            format: "openai",
            provider: "p",
            model: "m",
            status: 200,
            duration: Duration::from_millis(3),
            upstream_ttfb: Some(Duration::from_millis(1)),
            usage: Some(Usage { input_tokens: 5, output_tokens: 7, ..Usage::default() }),
            error_code: None,
        });
        let text = String::from_utf8(render()).unwrap();
        assert!(text.contains("tollgate_requests_total{format=\"openai\",model=\"m\",provider=\"p\",route=\"chat_completions\",status=\"200\"}"), "{text}");
        assert!(text.contains("tollgate_tokens_total{kind=\"output\",model=\"m\"} 7"));
        assert!(text.contains("tollgate_upstream_ttfb_seconds_bucket"));
    }

    /// The series a thread keeps are the registry's own: a second request
    /// of a kind counts in the first one's, another status in its own,
    /// and a token kind or a provider's first byte time is listed only
    /// once it counted.
    #[test]
    fn kept_series_count_where_the_labels_say() {
        let call = |status, ttfb, usage| RequestRecord {
            route: "messages",
            format: "anthropic",
            provider: "series-p",
            model: "series-m",
            status,
            duration: Duration::from_millis(2),
            upstream_ttfb: ttfb,
            usage,
            error_code: None,
        };
        let count = |status: &str| {
            REQUESTS.with_label_values(&["messages", "anthropic", "series-p", "series-m", status]).get()
        };
        let tokens = |kind: &str| TOKENS.with_label_values(&["series-m", kind]).get();
        record(&call(200, None, Some(Usage { input_tokens: 3, ..Usage::default() })));
        let text = String::from_utf8(render()).unwrap();
        assert!(!text.contains("kind=\"output\",model=\"series-m\""), "no output counted yet: {text}");
        assert!(!text.contains("provider=\"series-p\"} "), "no first byte time yet");
        record(&call(
            200,
            Some(Duration::from_millis(1)),
            Some(Usage { input_tokens: 4, output_tokens: 9, ..Usage::default() }),
        ));
        record(&call(429, None, None));
        assert_eq!((count("200"), count("429")), (2, 1));
        assert_eq!((tokens("input"), tokens("output")), (7, 9));
        assert_eq!(UPSTREAM_TTFB.with_label_values(&["series-p"]).get_sample_count(), 1);
        // Another thread keeps its own, counting in the same series.
        std::thread::spawn(move || record(&call(200, None, None))).join().unwrap();
        assert_eq!(count("200"), 3);
        spend("series-m", "series-plan", 5);
        spend("series-m", "series-plan", 6);
        spend("series-m", "other-plan", 1);
        assert_eq!(SPEND.with_label_values(&["series-m", "series-plan"]).get(), 11);
        assert_eq!(SPEND.with_label_values(&["series-m", "other-plan"]).get(), 1);
    }
}
