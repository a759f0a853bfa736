//! The rate-limit headers clients back off on: `x-ratelimit-*` of the
//! request-rate limit nearest to refusing (seed 001) on every response
//! (requests per minute, per class, per hour, per day: never the
//! concurrency, which has `x-ratelimit-{limit,remaining}-concurrent` of
//! its own), OpenAI's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` to OpenAI-format
//! callers, Anthropic's `anthropic-ratelimit-{requests,input-tokens}-*` to
//! Anthropic-format callers, and on a 429 `retry-after` (whole seconds)
//! and `retry-after-ms`, which the SDKs read before their own backoff.

use super::{tightest, Kind, Refused, Standing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    OpenAi,
    Anthropic,
    Plain,
}

pub type Headers = Vec<(&'static str, String)>;

/// A header value's digits: a `String` exactly as long as they are, so
/// the header takes its buffer as it is (a longer one costs a second
/// allocation when it becomes the value's bytes).
fn number(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

fn seconds_up(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// OpenAI's duration spelling: `1s`, `6m0s`, `20ms` (without `format!`,
/// whose machinery cost more than the rest of a header).
fn openai_duration(ms: u64) -> String {
    let mut out = String::with_capacity(12);
    let mut digits = itoa::Buffer::new();
    if ms < 1000 {
        out.push_str(digits.format(ms));
        out.push_str("ms");
        return out;
    }
    let s = seconds_up(ms);
    if s >= 60 {
        out.push_str(digits.format(s / 60));
        out.push('m');
    }
    out.push_str(digits.format(if s >= 60 { s % 60 } else { s }));
    out.push('s');
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
        h.push(("x-ratelimit-limit", number(tight.limit)));
        h.push(("x-ratelimit-remaining", number(tight.remaining)));
        h.push(("x-ratelimit-reset", number(seconds_up(tight.reset_ms))));
    }
    if let Some(slots) = standing.iter().find(|s| s.kind == Kind::Concurrent) {
        h.push(("x-ratelimit-limit-concurrent", number(slots.limit)));
        h.push(("x-ratelimit-remaining-concurrent", number(slots.remaining)));
    }
    match style {
        Style::OpenAi => {
            for (s, limit, remaining, reset) in [
                (
                    requests,
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ),
                (
                    tokens,
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ),
            ] {
                if let Some(s) = s {
                    h.push((limit, number(s.limit)));
                    h.push((remaining, number(s.remaining)));
                    h.push((reset, openai_duration(s.reset_ms)));
                }
            }
        }
        Style::Anthropic => {
            for (s, limit, remaining, reset) in [
                (
                    requests,
                    "anthropic-ratelimit-requests-limit",
                    "anthropic-ratelimit-requests-remaining",
                    "anthropic-ratelimit-requests-reset",
                ),
                (
                    tokens,
                    "anthropic-ratelimit-input-tokens-limit",
                    "anthropic-ratelimit-input-tokens-remaining",
                    "anthropic-ratelimit-input-tokens-reset",
                ),
            ] {
                if let Some(s) = s {
                    h.push((limit, number(s.limit)));
                    h.push((remaining, number(s.remaining)));
                    let at = now_ms.saturating_add(s.reset_ms) as i64;
                    h.push((reset, crate::calendar::format_time(at + 999)));
                }
            }
        }
        Style::Plain => {}
    }
    h
}

/// The headers of a call a limit refused: when to retry, exactly.
pub fn for_refusal(refused: &Refused, style: Style, now_ms: u64) -> Headers {
    let wait = refused.retry_after_ms.min(86_400_000);
    let standing = [Standing { kind: refused.kind, limit: refused.limit, remaining: 0, reset_ms: wait }];
    // A call that can never pass (larger than the whole bucket) is told no time to retry.
    let mut h = if refused.retry_after_ms == u64::MAX {
        Headers::new()
    } else {
        vec![("retry-after", number(seconds_up(wait))), ("retry-after-ms", number(wait))]
    };
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
        let get = |h: &Headers, name: &str| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(get(&openai, "x-ratelimit-remaining-requests").as_deref(), Some("49"));
        assert_eq!(get(&openai, "x-ratelimit-reset-requests").as_deref(), Some("1m0s"));
        assert_eq!(get(&openai, "x-ratelimit-reset-tokens").as_deref(), Some("60ms"));
        for (ms, spelled) in
            [(0, "0ms"), (999, "999ms"), (1000, "1s"), (59_001, "1m0s"), (3_725_000, "62m5s")]
        {
            assert_eq!(openai_duration(ms), spelled);
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
        let get = |h: &Headers, name: &str| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
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
