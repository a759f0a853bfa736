//! The series a finished request counts in, found once per kind of
//! request (route, format, provider, model, status) on each thread and
//! kept there: a lookup by labels hashes every label and takes the
//! vector's lock each time (~250 instructions), and a call counts in five
//! or six series (and one more for its spend, by model and plan). A
//! series is made at its first count, as before, so a scrape lists only
//! what counted.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use std::cell::{OnceCell, RefCell};
use std::hash::BuildHasher;

/// Past this many kinds of request a thread starts its cache again. The
/// labels are bounded (the catalog's models, the statuses); this bounds
/// a catalog reloaded with new models many times over.
const MOST: usize = 4096;

/// The token kinds, in the order of [`Series::tokens`].
pub(super) const TOKEN_KINDS: [&str; 5] = ["input", "output", "cached_input", "cache_write", "reasoning"];

/// One kind of request's series.
pub(super) struct Series {
    pub requests: IntCounter,
    pub duration: Histogram,
    ttfb: OnceCell<Histogram>,
    tokens: [OnceCell<IntCounter>; 5],
    labels: Labels,
}

/// The labels a kind of request is known by.
#[derive(PartialEq, Eq)]
struct Labels {
    route: Box<str>,
    format: Box<str>,
    provider: Box<str>,
    model: Box<str>,
    status: u16,
}

impl Labels {
    fn are(&self, route: &str, format: &str, provider: &str, model: &str, status: u16) -> bool {
        self.status == status
            && *self.model == *model
            && *self.route == *route
            && *self.format == *format
            && *self.provider == *provider
    }
}

impl Series {
    pub fn ttfb(&self, vec: &HistogramVec) -> &Histogram {
        self.ttfb.get_or_init(|| vec.with_label_values(&[&*self.labels.provider]))
    }

    /// The counter of token kind `i` (of [`TOKEN_KINDS`]).
    pub fn tokens(&self, vec: &IntCounterVec, i: usize) -> Option<&IntCounter> {
        let kind = TOKEN_KINDS.get(i)?;
        Some(self.tokens.get(i)?.get_or_init(|| vec.with_label_values(&[&*self.labels.model, kind])))
    }
}

type Cache = foldhash::HashMap<u64, Vec<Series>>;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Runs `count` on the series of a request with these labels.
pub(super) fn with(
    (route, format, provider, model, status): (&str, &str, &str, &str, u16),
    requests: &IntCounterVec,
    duration: &HistogramVec,
    count: impl FnOnce(&Series),
) {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let hash = cache.hasher().hash_one((route, format, provider, model, status));
        let known = cache.get(&hash).and_then(|same_hash| {
            same_hash.iter().find(|s| s.labels.are(route, format, provider, model, status))
        });
        if let Some(series) = known {
            return count(series);
        }
        if cache.len() >= MOST {
            cache.clear();
        }
        let mut digits = itoa::Buffer::new();
        let series = Series {
            requests: requests.with_label_values(&[route, format, provider, model, digits.format(status)]),
            duration: duration.with_label_values(&[route, format, provider]),
            ttfb: OnceCell::new(),
            tokens: Default::default(),
            labels: Labels {
                route: route.into(),
                format: format.into(),
                provider: provider.into(),
                model: model.into(),
                status,
            },
        };
        count(&series);
        cache.entry(hash).or_default().push(series);
    });
}

/// A counter of a two-label vector (spend by model and plan), kept as a
/// request's series are: by the vector's address and its labels.
struct Pair {
    vec: usize,
    labels: [Box<str>; 2],
    counter: IntCounter,
}

thread_local! {
    static PAIRS: RefCell<foldhash::HashMap<u64, Vec<Pair>>> = RefCell::new(Default::default());
}

/// Adds `n` to `vec`'s counter of `labels`.
pub(super) fn add_to_pair(vec: &IntCounterVec, [a, b]: [&str; 2], n: u64) {
    let address = std::ptr::from_ref(vec) as usize;
    PAIRS.with(|pairs| {
        let mut pairs = pairs.borrow_mut();
        let hash = pairs.hasher().hash_one((address, a, b));
        let known = pairs.get(&hash).and_then(|same_hash| {
            same_hash.iter().find(|p| p.vec == address && *p.labels[0] == *a && *p.labels[1] == *b)
        });
        if let Some(pair) = known {
            return pair.counter.inc_by(n);
        }
        if pairs.len() >= MOST {
            pairs.clear();
        }
        let counter = vec.with_label_values(&[a, b]);
        counter.inc_by(n);
        pairs.entry(hash).or_default().push(Pair { vec: address, labels: [a.into(), b.into()], counter });
    });
}
