//! The series a finished request counts in, found once per kind of
//! request (route, format, provider, model, status) on each thread and
//! kept there: a lookup by labels hashes every label and takes the
//! vector's lock each time (~250 instructions), and a call counts in five
//! or six series (and one more for its spend, by model and plan). A
//! series is made at its first count, as before, so a scrape lists only
//! what counted.

use super::{RequestRecord, DURATION, REQUESTS, SPEND, TOKENS, UPSTREAM_TTFB};
use prometheus::{Histogram, IntCounter};
use std::cell::{OnceCell, RefCell};
use std::hash::BuildHasher;

/// Past this many kinds of request a thread starts its cache again. The
/// labels are bounded (the catalog's models, the statuses); this bounds
/// a catalog reloaded with new models many times over.
const MAX_KINDS_PER_THREAD: usize = 4096;

/// The token kinds, in the order [`RequestSeries::count_tokens`] reads a usage.
const TOKEN_KINDS: [&str; 5] = ["input", "output", "cached_input", "cache_write", "reasoning"];

/// One kind of request's series.
struct RequestSeries {
    requests: IntCounter,
    duration: Histogram,
    ttfb: OnceCell<Histogram>,
    tokens: [OnceCell<IntCounter>; 5],
    labels: Labels,
}

/// The labels a kind of request is known by.
struct Labels {
    route: Box<str>,
    format: Box<str>,
    provider: Box<str>,
    model: Box<str>,
    status: u16,
}

impl Labels {
    fn matches(&self, r: &RequestRecord<'_>) -> bool {
        self.status == r.status
            && *self.model == *r.model
            && *self.route == *r.route
            && *self.format == *r.format
            && *self.provider == *r.provider
    }
}

impl RequestSeries {
    fn new(r: &RequestRecord<'_>) -> Self {
        let status = itoa::Buffer::new().format(r.status).to_string();
        Self {
            requests: REQUESTS.with_label_values(&[r.route, r.format, r.provider, r.model, &status]),
            duration: DURATION.with_label_values(&[r.route, r.format, r.provider]),
            ttfb: OnceCell::new(),
            tokens: Default::default(),
            labels: Labels {
                route: r.route.into(),
                format: r.format.into(),
                provider: r.provider.into(),
                model: r.model.into(),
                status: r.status,
            },
        }
    }

    fn count(&self, r: &RequestRecord<'_>) {
        self.requests.inc();
        self.duration.observe(r.duration.as_secs_f64());
        if let Some(ttfb) = r.upstream_ttfb {
            let series = self.ttfb.get_or_init(|| UPSTREAM_TTFB.with_label_values(&[&*self.labels.provider]));
            series.observe(ttfb.as_secs_f64());
        }
        self.count_tokens(r);
    }

    /// Each kind of token the usage counted; a kind's series is made (and
    /// listed) only once it counts.
    fn count_tokens(&self, r: &RequestRecord<'_>) {
        let Some(u) = r.usage else { return };
        let counts = [
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        ];
        for ((n, kind), series) in counts.into_iter().zip(TOKEN_KINDS).zip(&self.tokens) {
            if n > 0 {
                series.get_or_init(|| TOKENS.with_label_values(&[&*self.labels.model, kind])).inc_by(n);
            }
        }
    }
}

/// What a thread keeps, by the hash of its labels (a list: two kinds may
/// share a hash).
type Kept<T> = foldhash::HashMap<u64, Vec<T>>;

/// Runs `count` on what `cache` keeps under `hash` that `is` finds, or on
/// what `make` makes, which is then kept.
fn count_in<T>(
    cache: &mut Kept<T>,
    hash: u64,
    is: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
    count: impl FnOnce(&T),
) {
    if let Some(kept) = cache.get(&hash).and_then(|same_hash| same_hash.iter().find(|t| is(t))) {
        return count(kept);
    }
    if cache.len() >= MAX_KINDS_PER_THREAD {
        cache.clear();
    }
    let made = make();
    count(&made);
    cache.entry(hash).or_default().push(made);
}

thread_local! {
    static REQUEST_SERIES: RefCell<Kept<RequestSeries>> = RefCell::default();
}

/// Counts `r` in its kind's series: requests, duration, the provider's
/// first byte time and the tokens.
pub(super) fn count_request(r: &RequestRecord<'_>) {
    REQUEST_SERIES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let hash = cache.hasher().hash_one((r.route, r.format, r.provider, r.model, r.status));
        count_in(&mut cache, hash, |s| s.labels.matches(r), || RequestSeries::new(r), |s| s.count(r));
    });
}

/// The spend counter of one model and plan, kept as a request's series are.
struct SpendCounter {
    model: Box<str>,
    plan: Box<str>,
    counter: IntCounter,
}

thread_local! {
    static SPEND_COUNTERS: RefCell<Kept<SpendCounter>> = RefCell::default();
}

/// Adds `nanos` to the spend of `model` on `plan`.
pub(super) fn add_spend(model: &str, plan: &str, nanos: u64) {
    SPEND_COUNTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let hash = cache.hasher().hash_one((model, plan));
        count_in(
            &mut cache,
            hash,
            |c| *c.model == *model && *c.plan == *plan,
            || SpendCounter {
                model: model.into(),
                plan: plan.into(),
                counter: SPEND.with_label_values(&[model, plan]),
            },
            |c| c.counter.inc_by(nanos),
        );
    });
}
