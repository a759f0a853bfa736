//! The admin API's request and response bodies. Money goes in as decimal
//! dollar strings (`"10.00"`) and comes out as integer nano-USD (and
//! credits, micro-USD), never through floating point.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// `Some(None)` for an explicit `null` (clear it), `None` when absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A time: RFC 3339 (`2026-12-31T00:00:00Z`) or Unix seconds.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TimeInput {
    Text(String),
    Seconds(i64),
}

impl TimeInput {
    pub fn millis(&self) -> Result<i64, String> {
        match self {
            TimeInput::Text(t) => crate::calendar::parse_time(t),
            TimeInput::Seconds(s) => s.checked_mul(1000).ok_or_else(|| "the time is out of range".into()),
        }
    }
}

/// Dollars: a decimal string (`"10.00"`) or a whole number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UsdInput {
    Text(String),
    Whole(i64),
}

impl UsdInput {
    pub fn nano(&self) -> Result<crate::billing::NanoUsd, String> {
        match self {
            UsdInput::Text(t) => crate::billing::NanoUsd::parse_usd(t),
            UsdInput::Whole(n) => crate::billing::NanoUsd::parse_usd(&n.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    pub plan: String,
    #[serde(default)]
    pub trial_ends_at: Option<TimeInput>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAccount {
    #[serde(default)]
    pub plan: Option<String>,
    /// `active` or `suspended`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub trial_ends_at: Option<Option<TimeInput>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub trial_ends_at: Option<String>,
    /// 1,000,000 credits are $1 of list price.
    pub balance_credits: i64,
    pub balance_nano_usd: i64,
    /// Held for requests in flight.
    pub held_nano_usd: i64,
    pub spent_nano_usd: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Topup {
    /// What was paid, in dollars.
    pub amount_usd: UsdInput,
    /// Credits bought per dollar of list price (1, 4, 6...).
    #[serde(default = "one")]
    pub multiplier: u32,
    /// A retried top-up with the same key changes nothing.
    pub idempotency_key: String,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopupView {
    pub balance_credits: i64,
    pub balance_nano_usd: i64,
    /// List value added (0 for a retry).
    pub credited_nano_usd: i64,
    /// Whether this idempotency key had been used already.
    pub duplicate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Dollars of list value, negative to take away.
    pub amount_usd: UsdInput,
    pub idempotency_key: String,
}

/// Overrides of the plan's rate limits: a number replaces the plan's value
/// (up or down), `null` removes the override, an absent field is left.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub rph: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub daily_messages: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>)]
    pub input_tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub concurrent: Option<Option<u32>>,
}

impl LimitsInput {
    pub fn apply(&self, mut o: crate::limits::Overrides) -> crate::limits::Overrides {
        if let Some(v) = self.rpm {
            o.rpm = v;
        }
        if let Some(v) = self.rph {
            o.rph = v;
        }
        if let Some(v) = self.daily_messages {
            o.daily_messages = v;
        }
        if let Some(v) = self.input_tpm {
            o.input_tpm = v;
        }
        if let Some(v) = self.concurrent {
            o.concurrent = v;
        }
        o
    }
}

/// The limits in force for a key: its plan's with its overrides.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    /// Requests per minute, for models without a class of their own below.
    pub rpm: Option<u32>,
    pub rpm_by_class: std::collections::HashMap<String, u32>,
    /// Requests per hour of the account, by endpoint group.
    pub rph: std::collections::HashMap<String, u32>,
    pub daily_messages: Option<u32>,
    pub input_tpm: Option<u64>,
    pub concurrent: Option<u32>,
    /// The key's own overrides.
    #[schema(value_type = Object)]
    pub overrides: crate::limits::Overrides,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(default)]
    pub spend_cap_usd: Option<UsdInput>,
    /// Model ids or `prefix/*` globs; absent: what the plan allows.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub fallback_model: Option<String>,
    #[serde(default)]
    pub expires_at: Option<TimeInput>,
    #[serde(default)]
    pub limits: Option<LimitsInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub id: i64,
    /// Shown this once; only its hash is kept.
    pub key: String,
    pub prefix: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    #[serde(default)]
    pub name: Option<String>,
    /// `active` or `revoked`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub spend_cap_usd: Option<Option<UsdInput>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub fallback_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<TimeInput>>,
    #[serde(default)]
    pub limits: Option<LimitsInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub expires_at: Option<String>,
    pub spend_cap_nano_usd: Option<i64>,
    pub spend_cap_micro_usd: Option<i64>,
    pub spend_nano_usd: i64,
    pub spend_micro_usd: i64,
    pub models: Option<Vec<String>>,
    pub fallback_model: Option<String>,
    pub limits: LimitsView,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct AccountQuery {
    pub account: i64,
}

/// A page of an account's ledger: oldest first after the posting id
/// `after` (the default: every entry, up to `limit`), or newest first
/// (`order=newest`) before the posting id `before`.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct LedgerQuery {
    pub account: i64,
    /// At most this many entries (1 to 10,000; every one when absent).
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub before: Option<i64>,
    /// `oldest` (the default) or `newest`.
    #[serde(default)]
    pub order: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct UsageQuery {
    /// Absent: every account's usage.
    #[serde(default)]
    pub account: Option<i64>,
    /// Only the last this many days (UTC, today included).
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub key: Option<i64>,
    #[serde(default)]
    pub model: Option<String>,
    /// `YYYY-MM-DD`, UTC.
    #[serde(default)]
    pub day: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntryView {
    /// The posting's id: the cursor of the pages.
    pub id: i64,
    /// `topup`, `charge`, `refund` or `adjustment`.
    pub kind: String,
    /// What the wallet gained (positive) or paid (negative).
    pub amount_nano_usd: i64,
    /// Paid dollars behind it.
    pub paid_nano_usd: i64,
    /// A charge's cost that the hold, the wallet and the key's cap could
    /// not pay: recorded, not taken.
    pub unpaid_nano_usd: i64,
    pub key_id: Option<i64>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub estimated: bool,
    pub request_id: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerView {
    pub entries: Vec<LedgerEntryView>,
    /// The next page's cursor, when there may be more: `after=` for the
    /// oldest-first order, `before=` for the newest-first.
    pub next_after: Option<i64>,
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct AccountsQuery {
    /// A part of the name, any case.
    #[serde(default)]
    pub search: Option<String>,
    /// The account id to list after (the previous page's `next_after`).
    #[serde(default)]
    pub after: Option<i64>,
    /// 1 to 500; 50 when absent.
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountListItem {
    pub id: i64,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub trial_ends_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountsView {
    pub data: Vec<AccountListItem>,
    /// The cursor of the next page (`after=`), when there may be more.
    pub next_after: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysView {
    pub data: Vec<KeyView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub name: String,
    /// Model ids and globs the plan allows.
    pub models: Vec<String>,
    pub api_access: bool,
    pub trial_days: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlansView {
    pub data: Vec<PlanView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorCount {
    pub code: String,
    pub status: u16,
    pub count: u64,
}

/// This node's own counters (what its Prometheus metrics say), for the
/// console's live page: it derives rates from two readings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub requests_total: u64,
    /// Answers with a 5xx status.
    pub server_errors_total: u64,
    /// Calls holding money right now.
    pub in_flight: i64,
    /// Refusals and errors by code, most first.
    pub errors: Vec<ErrorCount>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub account: Option<i64>,
    pub usage: Vec<crate::store::UsageRow>,
    pub total: crate::store::UsageRow,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    /// Nano-USD per token, exact decimals (`1.25` is $1.25 per million).
    #[schema(value_type = f64)]
    pub input: Box<serde_json::value::RawValue>,
    #[schema(value_type = f64)]
    pub output: Box<serde_json::value::RawValue>,
    #[schema(value_type = f64)]
    pub cache_read: Box<serde_json::value::RawValue>,
    #[schema(value_type = f64)]
    pub cache_write: Box<serde_json::value::RawValue>,
    /// Nano-USD per image, per search unit (rerank) and per request.
    pub per_image: i64,
    pub per_search_unit: i64,
    pub per_request: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPriceView {
    pub id: String,
    pub status: String,
    /// What the model does: `chat` or `embedding`.
    pub kind: String,
    pub price_nano_usd: Option<PriceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsView {
    pub models: Vec<ModelPriceView>,
}
