//! The rate-limit headers clients back off on: `x-ratelimit-*` of the
//! request-rate limit nearest to refusing (seed 001) on every response
//! (requests per minute, per class, per hour, per day: never the
//! concurrency, which has `x-ratelimit-{limit,remaining}-concurrent` of
//! its own), OpenAI's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` to OpenAI-format
//! callers, Anthropic's `anthropic-ratelimit-{requests,input-tokens}-*` to
//! Anthropic-format callers, and on a 429 `retry-after` (whole seconds)
//! and `retry-after-ms`, which the SDKs read before their own backoff.
//!
//! They are made as the header map takes them (`http`'s types, no I/O):
//! names built at compile time, and every value a slice of one text.

use super::{tightest, Kind, Refused, Standing};
use http::{HeaderName, HeaderValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    OpenAi,
    Anthropic,
    Plain,
}

pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// The names, made at compile time (`from_static` is `const` and refuses
/// an invalid or uppercase name while building): a clone is a static
/// slice's, with no parse, lookup or counter. A response carries up to
/// eleven of them, and looking each up by its text cost ~100 instructions.
macro_rules! names {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(pub static $name: HeaderName = HeaderName::from_static($text);)*
    };
}

names! {
    RETRY_AFTER = "retry-after",
    RETRY_AFTER_MS = "retry-after-ms",
    LIMIT = "x-ratelimit-limit",
    REMAINING = "x-ratelimit-remaining",
    RESET = "x-ratelimit-reset",
    LIMIT_CONCURRENT = "x-ratelimit-limit-concurrent",
    REMAINING_CONCURRENT = "x-ratelimit-remaining-concurrent",
    OPENAI_LIMIT_REQUESTS = "x-ratelimit-limit-requests",
    OPENAI_REMAINING_REQUESTS = "x-ratelimit-remaining-requests",
    OPENAI_RESET_REQUESTS = "x-ratelimit-reset-requests",
    OPENAI_LIMIT_TOKENS = "x-ratelimit-limit-tokens",
    OPENAI_REMAINING_TOKENS = "x-ratelimit-remaining-tokens",
    OPENAI_RESET_TOKENS = "x-ratelimit-reset-tokens",
    ANTHROPIC_REQUESTS_LIMIT = "anthropic-ratelimit-requests-limit",
    ANTHROPIC_REQUESTS_REMAINING = "anthropic-ratelimit-requests-remaining",
    ANTHROPIC_REQUESTS_RESET = "anthropic-ratelimit-requests-reset",
    ANTHROPIC_TOKENS_LIMIT = "anthropic-ratelimit-input-tokens-limit",
    ANTHROPIC_TOKENS_REMAINING = "anthropic-ratelimit-input-tokens-remaining",
    ANTHROPIC_TOKENS_RESET = "anthropic-ratelimit-input-tokens-reset",
}

/// The most headers a response gets: `retry-after`'s two on a refusal,
/// then three, the concurrency's two and six of the caller's format.
const MOST: usize = 13;

/// A response's values, written into one text and then each made a slice
/// of it (the slices share it): two allocations in all, where each value
/// had its own.
struct Values {
    text: Vec<u8>,
    /// Each header's name and where its value ends in `text`.
    ends: [(Option<&'static HeaderName>, usize); MOST],
    count: usize,
}

impl Values {
    fn new() -> Self {
        Self { text: Vec::with_capacity(256), ends: [(None, 0); MOST], count: 0 }
    }

    /// Appends `name: text`.
    fn push(&mut self, name: &'static HeaderName, text: &str) {
        if let Some(slot) = self.ends.get_mut(self.count) {
            self.text.extend_from_slice(text.as_bytes());
            *slot = (Some(name), self.text.len());
            self.count += 1;
        }
    }

    fn push_number(&mut self, name: &'static HeaderName, n: impl itoa::Integer) {
        self.push(name, itoa::Buffer::new().format(n));
    }

    /// The headers. Every text here is digits, a duration or a date, which
    /// are valid values; one that were not would be left out rather than
    /// fail the call.
    fn finish(self) -> Headers {
        let text = bytes::Bytes::from(self.text);
        let mut h = Headers::with_capacity(self.count);
        let mut start = 0;
        for &(name, end) in self.ends.iter().take(self.count) {
            let value = HeaderValue::from_maybe_shared(text.slice(start..end));
            if let (Some(name), Ok(value)) = (name, value) {
                h.push((name.clone(), value));
            }
            start = end;
        }
        h
    }
}

fn seconds_up(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// A short text on the stack: a duration spelled without an allocation
/// of its own.
struct Spelled {
    bytes: [u8; 48],
    len: usize,
}

impl Spelled {
    fn new() -> Self {
        Self { bytes: [0; 48], len: 0 }
    }

    fn push(&mut self, text: &str) {
        let end = (self.len + text.len()).min(self.bytes.len());
        let room = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&text.as_bytes()[..room]);
        self.len = end;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// OpenAI's duration spelling: `1s`, `6m0s`, `20ms` (without `format!`,
/// whose machinery cost more than the rest of a header).
fn openai_duration(ms: u64) -> Spelled {
    let mut out = Spelled::new();
    let mut digits = itoa::Buffer::new();
    if ms < 1000 {
        out.push(digits.format(ms));
        out.push("ms");
        return out;
    }
    let s = seconds_up(ms);
    if s >= 60 {
        out.push(digits.format(s / 60));
        out.push("m");
    }
    out.push(digits.format(if s >= 60 { s % 60 } else { s }));
    out.push("s");
    out
}

/// The tightest of the limits that count requests over time.
fn request_limit(standing: &[Standing]) -> Option<&Standing> {
    tightest(standing.iter().filter(|s| s.kind.counts_requests()))
}

/// The headers of a call let through, with `standing` after it counted.
pub fn for_standing(standing: &[Standing], style: Style, now_ms: u64) -> Headers {
    let mut values = Values::new();
    push_standing(&mut values, standing, style, now_ms);
    values.finish()
}

fn push_standing(v: &mut Values, standing: &[Standing], style: Style, now_ms: u64) {
    let requests = request_limit(standing);
    let tokens = standing.iter().find(|s| s.kind == Kind::InputTpm);
    if let Some(tight) = requests.or(tokens) {
        v.push_number(&LIMIT, tight.limit);
        v.push_number(&REMAINING, tight.remaining);
        v.push_number(&RESET, seconds_up(tight.reset_ms));
    }
    if let Some(slots) = standing.iter().find(|s| s.kind == Kind::Concurrent) {
        v.push_number(&LIMIT_CONCURRENT, slots.limit);
        v.push_number(&REMAINING_CONCURRENT, slots.remaining);
    }
    match style {
        Style::OpenAi => {
            for (s, limit, remaining, reset) in [
                (requests, &OPENAI_LIMIT_REQUESTS, &OPENAI_REMAINING_REQUESTS, &OPENAI_RESET_REQUESTS),
                (tokens, &OPENAI_LIMIT_TOKENS, &OPENAI_REMAINING_TOKENS, &OPENAI_RESET_TOKENS),
            ] {
                if let Some(s) = s {
                    v.push_number(limit, s.limit);
                    v.push_number(remaining, s.remaining);
                    v.push(reset, openai_duration(s.reset_ms).as_str());
                }
            }
        }
        Style::Anthropic => {
            for (s, limit, remaining, reset) in [
                (
                    requests,
                    &ANTHROPIC_REQUESTS_LIMIT,
                    &ANTHROPIC_REQUESTS_REMAINING,
                    &ANTHROPIC_REQUESTS_RESET,
                ),
                (tokens, &ANTHROPIC_TOKENS_LIMIT, &ANTHROPIC_TOKENS_REMAINING, &ANTHROPIC_TOKENS_RESET),
            ] {
                if let Some(s) = s {
                    v.push_number(limit, s.limit);
                    v.push_number(remaining, s.remaining);
                    let at = now_ms.saturating_add(s.reset_ms) as i64;
                    v.push(reset, &crate::calendar::format_time(at + 999));
                }
            }
        }
        Style::Plain => {}
    }
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
pub fn retry_after(wait_ms: u64) -> Headers {
    let mut values = Values::new();
    push_retry_after(&mut values, wait_ms);
    values.finish()
}

fn push_retry_after(v: &mut Values, wait_ms: u64) {
    v.push_number(&RETRY_AFTER, seconds_up(wait_ms));
    v.push_number(&RETRY_AFTER_MS, wait_ms);
}

/// The headers of a call a limit refused: when to retry, exactly.
pub fn for_refusal(refused: &Refused, style: Style, now_ms: u64) -> Headers {
    let wait = refused.retry_after_ms.min(86_400_000);
    let standing = [Standing { kind: refused.kind, limit: refused.limit, remaining: 0, reset_ms: wait }];
    let mut values = Values::new();
    // A call that can never pass (larger than the whole bucket) is told no time to retry.
    if refused.retry_after_ms != u64::MAX {
        push_retry_after(&mut values, wait);
    }
    push_standing(&mut values, &standing, style, now_ms);
    values.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_headers() {
        let standing = [
            Standing { kind: Kind::Rpm, limit: 50, remaining: 49, reset_ms: 60_000 },
            Standing { kind: Kind::InputTpm, limit: 1_000_000, remaining: 999_000, reset_ms: 60 },
        ];
        let openai = for_standing(&standing, Style::OpenAi, 0);
        let get = |h: &Headers, name: &str| {
            h.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.to_str().ok()).map(str::to_owned)
        };
        assert_eq!(get(&openai, "x-ratelimit-remaining-requests").as_deref(), Some("49"));
        assert_eq!(get(&openai, "x-ratelimit-reset-requests").as_deref(), Some("1m0s"));
        assert_eq!(get(&openai, "x-ratelimit-reset-tokens").as_deref(), Some("60ms"));
        for (ms, spelled) in
            [(0, "0ms"), (999, "999ms"), (1000, "1s"), (59_001, "1m0s"), (3_725_000, "62m5s")]
        {
            assert_eq!(openai_duration(ms).as_str(), spelled);
        }
        assert_eq!(get(&openai, "x-ratelimit-limit").as_deref(), Some("50"), "the tightest");
        let anthropic = for_standing(&standing, Style::Anthropic, 1_796_119_746_000);
        assert_eq!(
            get(&anthropic, "anthropic-ratelimit-requests-reset").as_deref(),
            Some("2026-12-01T10:10:06Z")
        );
        assert_eq!(get(&anthropic, "anthropic-ratelimit-input-tokens-limit").as_deref(), Some("1000000"));
        let refused = Refused { kind: Kind::Rpm, limit: 50, retry_after_ms: 1_500 };
        let h = for_refusal(&refused, Style::Plain, 0);
        assert_eq!(get(&h, "retry-after").as_deref(), Some("2"), "whole seconds, rounded up");
        assert_eq!(get(&h, "retry-after-ms").as_deref(), Some("1500"));
        assert_eq!(get(&h, "x-ratelimit-remaining").as_deref(), Some("0"));
    }

    /// The most a response carries (a refusal to an OpenAI caller with a
    /// concurrency limit in force) all fit, each with its own value.
    #[test]
    fn the_most_headers_a_refusal_gets_are_all_kept() {
        let refused = Refused { kind: Kind::Concurrent, limit: 4, retry_after_ms: 1_000 };
        let h = for_refusal(&refused, Style::OpenAi, 0);
        let texts: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(
            texts,
            [
                ("retry-after", "1"),
                ("retry-after-ms", "1000"),
                ("x-ratelimit-limit-concurrent", "4"),
                ("x-ratelimit-remaining-concurrent", "0")
            ]
        );
        let standing = [
            Standing { kind: Kind::Concurrent, limit: 4, remaining: 3, reset_ms: 0 },
            Standing { kind: Kind::Rpm, limit: 50, remaining: 49, reset_ms: 60_000 },
            Standing { kind: Kind::InputTpm, limit: 1_000, remaining: 990, reset_ms: 600 },
        ];
        let mut values = Values::new();
        push_retry_after(&mut values, 2_500);
        push_standing(&mut values, &standing, Style::OpenAi, 0);
        let h = values.finish();
        assert_eq!(h.len(), MOST);
        let last = h.last().map(|(n, v)| (n.as_str(), v.to_str().unwrap()));
        assert_eq!(last, Some(("x-ratelimit-reset-tokens", "600ms")));
        assert_eq!(h[1].1, "2500");
    }

    #[test]
    fn request_headers_never_show_the_concurrency() {
        let standing = [
            Standing { kind: Kind::Concurrent, limit: 4, remaining: 3, reset_ms: 0 },
            Standing { kind: Kind::Rpm, limit: 50, remaining: 49, reset_ms: 60_000 },
        ];
        let get = |h: &Headers, name: &str| {
            h.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.to_str().ok()).map(str::to_owned)
        };
        for style in [Style::OpenAi, Style::Anthropic, Style::Plain] {
            let h = for_standing(&standing, style, 0);
            assert_eq!(get(&h, "x-ratelimit-limit").as_deref(), Some("50"), "{style:?}");
            assert_eq!(get(&h, "x-ratelimit-limit-concurrent").as_deref(), Some("4"));
            assert_eq!(get(&h, "x-ratelimit-remaining-concurrent").as_deref(), Some("3"));
        }
        let openai = for_standing(&standing, Style::OpenAi, 0);
        assert_eq!(get(&openai, "x-ratelimit-limit-requests").as_deref(), Some("50"));
        let anthropic = for_standing(&standing, Style::Anthropic, 0);
        assert_eq!(get(&anthropic, "anthropic-ratelimit-requests-limit").as_deref(), Some("50"));
    }
}
