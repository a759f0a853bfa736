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
//! names built at compile time, each value's bytes allocated once.

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

/// Appends `name: text`. Every text here is digits, a duration or a date,
/// which are valid values; one that were not would be left out rather
/// than fail the call.
fn push(h: &mut Headers, name: &HeaderName, text: &str) {
    // `from_str` copies into an allocation of exactly the text's length;
    // `HeaderValue::from(u64)` allocates 20 bytes and then a second block
    // to share them.
    if let Ok(value) = HeaderValue::from_str(text) {
        h.push((name.clone(), value));
    }
}

fn push_number(h: &mut Headers, name: &HeaderName, n: impl itoa::Integer) {
    push(h, name, itoa::Buffer::new().format(n));
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
    // Room for the most a call gets: three, the concurrency's two, six of its format's.
    let mut h = Headers::with_capacity(11);
    let requests = request_limit(standing);
    let tokens = standing.iter().find(|s| s.kind == Kind::InputTpm);
    if let Some(tight) = requests.or(tokens) {
        push_number(&mut h, &LIMIT, tight.limit);
        push_number(&mut h, &REMAINING, tight.remaining);
        push_number(&mut h, &RESET, seconds_up(tight.reset_ms));
    }
    if let Some(slots) = standing.iter().find(|s| s.kind == Kind::Concurrent) {
        push_number(&mut h, &LIMIT_CONCURRENT, slots.limit);
        push_number(&mut h, &REMAINING_CONCURRENT, slots.remaining);
    }
    match style {
        Style::OpenAi => {
            for (s, limit, remaining, reset) in [
                (requests, &OPENAI_LIMIT_REQUESTS, &OPENAI_REMAINING_REQUESTS, &OPENAI_RESET_REQUESTS),
                (tokens, &OPENAI_LIMIT_TOKENS, &OPENAI_REMAINING_TOKENS, &OPENAI_RESET_TOKENS),
            ] {
                if let Some(s) = s {
                    push_number(&mut h, limit, s.limit);
                    push_number(&mut h, remaining, s.remaining);
                    push(&mut h, reset, openai_duration(s.reset_ms).as_str());
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
                    push_number(&mut h, limit, s.limit);
                    push_number(&mut h, remaining, s.remaining);
                    let at = now_ms.saturating_add(s.reset_ms) as i64;
                    push(&mut h, reset, &crate::calendar::format_time(at + 999));
                }
            }
        }
        Style::Plain => {}
    }
    h
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
pub fn retry_after(wait_ms: u64) -> Headers {
    let mut h = Headers::with_capacity(2);
    push_number(&mut h, &RETRY_AFTER, seconds_up(wait_ms));
    push_number(&mut h, &RETRY_AFTER_MS, wait_ms);
    h
}

/// The headers of a call a limit refused: when to retry, exactly.
pub fn for_refusal(refused: &Refused, style: Style, now_ms: u64) -> Headers {
    let wait = refused.retry_after_ms.min(86_400_000);
    let standing = [Standing { kind: refused.kind, limit: refused.limit, remaining: 0, reset_ms: wait }];
    // A call that can never pass (larger than the whole bucket) is told no time to retry.
    let mut h = if refused.retry_after_ms == u64::MAX { Headers::new() } else { retry_after(wait) };
    h.extend(for_standing(&standing, style, now_ms));
    h
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
