//! Prices per model, as the YAML states them (US dollars per million
//! tokens, per image, per search unit, per request), and what a call's
//! usage costs at them.
//! Cached input is billed at the cache-read price and never also at the
//! input price; cache writes at the cache-write price.

use super::money::NanoUsd;
use crate::formats::usage::Usage;
use serde::Deserialize;

/// A model's list prices, in nano-USD per million tokens (so a price of
/// $0.000001 per million is still exact) and per image or request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: NanoUsd,
    pub output: NanoUsd,
    pub cache_read: NanoUsd,
    pub cache_write: NanoUsd,
    pub per_image: NanoUsd,
    /// A rerank model's price per search unit (a query over up to 100
    /// documents, as Cohere counts).
    pub per_search_unit: NanoUsd,
    pub per_request: NanoUsd,
}

/// The YAML form: decimal strings of dollars (`input: "2.50"` is $2.50
/// per million input tokens). Cache prices default to the input price.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cache_read: Option<String>,
    #[serde(default)]
    pub cache_write: Option<String>,
    #[serde(default)]
    pub per_image: Option<String>,
    #[serde(default)]
    pub per_search_unit: Option<String>,
    #[serde(default)]
    pub per_request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceError(pub String);

impl ModelPrice {
    pub fn from_config(c: &PriceConfig) -> Result<Self, PriceError> {
        let read = |name: &str, v: &str| {
            let n = NanoUsd::parse_usd(v).map_err(|e| PriceError(format!("{name}: {e}")))?;
            if n.0 < 0 {
                return Err(PriceError(format!("{name}: a price cannot be negative")));
            }
            Ok(n)
        };
        let opt = |name: &str, v: &Option<String>, default: NanoUsd| {
            v.as_deref().map_or(Ok(default), |v| read(name, v))
        };
        let input = read("input", &c.input)?;
        Ok(Self {
            input,
            output: read("output", &c.output)?,
            cache_read: opt("cache_read", &c.cache_read, input)?,
            cache_write: opt("cache_write", &c.cache_write, input)?,
            per_image: opt("per_image", &c.per_image, NanoUsd::ZERO)?,
            per_search_unit: opt("per_search_unit", &c.per_search_unit, NanoUsd::ZERO)?,
            per_request: opt("per_request", &c.per_request, NanoUsd::ZERO)?,
        })
    }

    /// What `usage` costs, to the nano-dollar: every class's tokens times
    /// its per-million price, summed exactly, rounded once (half up).
    /// `usage.input_tokens` includes cached and cache-write tokens (as the
    /// gateway normalises every format), so they are taken out of it.
    /// `units` are what the model prices besides tokens: images for an
    /// image model, search units for a rerank model (a model prices one
    /// or the other).
    pub fn cost(&self, usage: &Usage, units: u64) -> NanoUsd {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let fresh = usage.input_tokens - cached - written;
        let per_million = |tokens: u64, price: NanoUsd| u128::from(tokens) * price.0.max(0) as u128;
        let tokens = per_million(fresh, self.input)
            + per_million(cached, self.cache_read)
            + per_million(written, self.cache_write)
            + per_million(usage.output_tokens, self.output);
        let nanos = (tokens + 500_000) / 1_000_000
            + u128::from(units) * (self.per_image.0.max(0) as u128 + self.per_search_unit.0.max(0) as u128)
            + self.per_request.0.max(0) as u128;
        NanoUsd(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// The most a call can cost: `input_tokens` fresh (none cached) and
    /// `max_output` output tokens (and `units`, see [`Self::cost`]); what a
    /// request holds before it goes.
    pub fn worst_case(&self, input_tokens: u64, max_output: u64, units: u64) -> NanoUsd {
        let usage = Usage { input_tokens, output_tokens: max_output, ..Usage::default() };
        let cache_write = Usage { cache_write_tokens: input_tokens, ..usage };
        self.cost(&usage, units).max(self.cost(&cache_write, units))
    }

    /// How many output tokens `budget` pays for after `input_tokens` of
    /// input: the cap a request without `max_tokens` is sent with.
    pub fn affordable_output(&self, budget: NanoUsd, input_tokens: u64) -> u64 {
        let input_cost = self.worst_case(input_tokens, 0, 0);
        let Some(left) = budget.checked_sub(input_cost).filter(|l| l.0 > 0) else { return 0 };
        if self.output.0 <= 0 {
            return u64::MAX;
        }
        // Whole tokens whose cost, rounded, stays within what is left.
        let tokens = (left.0 as u128 * 1_000_000) / self.output.0 as u128;
        u64::try_from(tokens).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price(input: &str, output: &str, cache_read: &str) -> ModelPrice {
        ModelPrice::from_config(&PriceConfig {
            input: input.into(),
            output: output.into(),
            cache_read: Some(cache_read.into()),
            cache_write: Some("3.75".into()),
            ..PriceConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn cached_input_is_billed_at_the_cache_price_only() {
        let p = price("3", "15", "0.30");
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 400_000,
            output_tokens: 2_000,
            ..Usage::default()
        };
        // 600k fresh at $3/M + 400k cached at $0.30/M + 2k out at $15/M.
        assert_eq!(p.cost(&usage, 0), NanoUsd(1_800_000_000 + 120_000_000 + 30_000_000));
        let written = Usage { input_tokens: 1_000, cache_write_tokens: 1_000, ..Usage::default() };
        assert_eq!(p.cost(&written, 0), NanoUsd(3_750_000));
    }

    #[test]
    fn a_fraction_of_a_nano_dollar_rounds_once() {
        // One nano-dollar per million tokens.
        let p = price("0.000000001", "0.000000001", "0");
        assert_eq!(p.cost(&Usage { input_tokens: 1, ..Usage::default() }, 0), NanoUsd(0));
        assert_eq!(p.cost(&Usage { input_tokens: 500_000, ..Usage::default() }, 0), NanoUsd(1));
        assert!(ModelPrice::from_config(&PriceConfig {
            input: "-1".into(),
            output: "1".into(),
            ..PriceConfig::default()
        })
        .is_err());
    }

    #[test]
    fn the_affordable_output_is_what_the_budget_pays_for() {
        let p = price("1", "10", "0.1");
        // $0.01 of budget; 1,000 input tokens cost at most $0.00375 (if the
        // provider writes them to its cache at $3.75/M): $0.00625 of output
        // at $10/M is 625 tokens.
        assert_eq!(p.affordable_output(NanoUsd(10_000_000), 1_000), 625);
        assert_eq!(p.affordable_output(NanoUsd(500_000), 1_000), 0, "not even the input");
    }

    proptest! {
        #[test]
        fn the_worst_case_covers_any_actual_use(input in 0u64..2_000_000, out in 0u64..200_000, cached in 0u64..2_000_000, used in 0u64..200_000) {
            let p = price("3", "15", "0.30");
            let actual = Usage { input_tokens: input, cached_input_tokens: cached.min(input), output_tokens: used.min(out), ..Usage::default() };
            prop_assert!(p.cost(&actual, 0) <= p.worst_case(input, out, 0));
            let budget = NanoUsd(123_456_789);
            let affordable = p.affordable_output(budget, input);
            if affordable > 0 && affordable < u64::MAX {
                prop_assert!(p.worst_case(input, affordable, 0) <= budget);
            }
        }
    }
}
