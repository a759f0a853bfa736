//! Integer money: nano-USD (10⁻⁹ $), read from and shown as decimal
//! strings, never through floating point.

use std::fmt;

/// An amount of US dollars in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NanoUsd(pub i64);

pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Seed 001's unit: 1,000,000 credits buy $1 of list price.
pub const CREDITS_PER_USD: i64 = 1_000_000;

const NANOS_PER_CREDIT: i64 = NANOS_PER_USD / CREDITS_PER_USD;

impl NanoUsd {
    pub const ZERO: NanoUsd = NanoUsd(0);

    /// Reads `"12"`, `"2.50"`, `"0.000000001"` or `"-1.5"`; more than nine
    /// decimals, exponents and anything else are refused.
    pub fn parse_usd(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !plain(whole) || !plain(frac) {
            return Err(format!("{text:?} is not a decimal amount of dollars"));
        }
        if frac.len() > 9 {
            return Err(format!("{text:?} has more than nine decimals (a nano-dollar is the smallest unit)"));
        }
        let whole: i64 =
            if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{text:?} is too large"))? };
        let frac_nanos: i64 =
            format!("{frac:0<9}").parse().map_err(|_| format!("{text:?} is not a number"))?;
        let nanos = whole
            .checked_mul(NANOS_PER_USD)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(|| format!("{text:?} is too large"))?;
        Ok(NanoUsd(if negative { -nanos } else { nanos }))
    }

    /// Credits, rounded down (a credit is 1,000 nano-dollars).
    pub fn credits(self) -> i64 {
        self.0.div_euclid(NANOS_PER_CREDIT)
    }

    pub fn from_credits(credits: i64) -> Self {
        NanoUsd(credits.saturating_mul(NANOS_PER_CREDIT))
    }

    /// Micro-dollars, rounded down.
    pub fn micro_usd(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    pub fn checked_add(self, other: NanoUsd) -> Option<NanoUsd> {
        self.0.checked_add(other.0).map(NanoUsd)
    }

    pub fn checked_sub(self, other: NanoUsd) -> Option<NanoUsd> {
        self.0.checked_sub(other.0).map(NanoUsd)
    }
}

impl fmt::Display for NanoUsd {
    /// Dollars with every significant decimal: `2.5`, `0.000000001`, `-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = abs % NANOS_PER_USD as u64;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let frac = format!("{frac:09}");
        write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_and_shows_dollars_exactly() {
        for (text, nanos) in [
            ("12", 12 * NANOS_PER_USD),
            ("2.50", 2_500_000_000),
            ("0.000000001", 1),
            (".5", 500_000_000),
            ("-1.5", -1_500_000_000),
        ] {
            assert_eq!(NanoUsd::parse_usd(text), Ok(NanoUsd(nanos)), "{text}");
        }
        for bad in ["", ".", "1e3", "1.0000000001", "abc", "1,5", "--1", "99999999999999999999"] {
            assert!(NanoUsd::parse_usd(bad).is_err(), "{bad}");
        }
        assert_eq!(NanoUsd(2_500_000_000).to_string(), "2.5");
        assert_eq!(NanoUsd(1).to_string(), "0.000000001");
        assert_eq!(NanoUsd(-3 * NANOS_PER_USD).to_string(), "-3");
        assert_eq!(NanoUsd::parse_usd("1").unwrap().credits(), CREDITS_PER_USD);
        assert_eq!(NanoUsd(1_999).credits(), 1);
        assert_eq!(NanoUsd(1_999).micro_usd(), 1);
    }

    proptest! {
        #[test]
        fn what_is_shown_reads_back(nanos in -10i64.pow(15)..10i64.pow(15)) {
            let shown = NanoUsd(nanos).to_string();
            prop_assert_eq!(NanoUsd::parse_usd(&shown), Ok(NanoUsd(nanos)));
        }
    }
}
