//! The configuration file: its types (unknown keys are errors), loading
//! with `${VAR}` interpolation, and error messages that name the bad key.
//! Semantic validation and the runtime form live in [`crate::gateway`].

pub mod fixed;
mod hot;
mod interpolate;
mod load;
mod log;
mod store;
mod tracing;

pub use hot::{HotStateSection, OnFailure};
pub use interpolate::interpolate;
pub use load::{load_file, parse_str, ConfigError};
pub use log::{LogFormat, LogSection};
pub use store::{StoreSection, DEFAULT_POOL_SIZE};
pub use tracing::TracingSection;

use crate::formats::ClientFormat;
use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub mounts: Vec<MountConfig>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Plans accounts are on; with `accounts`, every call is billed.
    #[serde(default)]
    pub plans: Vec<PlanConfig>,
    /// Accounts bootstrapped from the file, with their opening balances.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Where accounts, keys and the ledger are kept (default: in memory).
    #[serde(default)]
    pub store: StoreSection,
    /// Redis, where a fleet shares its rate limits (default: none, the
    /// limits live in this node's memory).
    #[serde(default)]
    pub hot_state: Option<HotStateSection>,
    #[serde(default)]
    pub billing: BillingSection,
    /// The admin API's own listener.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// How log lines are written (text or JSON).
    #[serde(default)]
    pub log: LogSection,
    /// Optional traces over OTLP.
    #[serde(default)]
    pub tracing: TracingSection,
    /// Customers' own provider keys (off unless set).
    #[serde(default)]
    pub byok: Option<ByokSection>,
    /// How translated Responses calls are kept (`store`).
    #[serde(default)]
    pub stored_responses: StoredResponsesSection,
}

/// Responses kept for `previous_response_id`, `item_reference` and
/// `GET /v1/responses/{id}` (models served through translation).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoredResponsesSection {
    /// How long a response is kept.
    pub keep_hours: u64,
    /// A response larger than this (its input and output) is answered
    /// but not kept.
    pub max_bytes: usize,
}

impl Default for StoredResponsesSection {
    fn default() -> Self {
        Self { keep_hours: 720, max_bytes: 8 * 1024 * 1024 }
    }
}

/// Customers' own provider keys (seed 004): an account registers its key
/// for a provider; its calls to that provider use it and are billed this
/// platform fee instead of the list price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByokSection {
    /// The environment variable holding the key that seals customers' keys
    /// at rest: 32 bytes, as 64 hex digits (AES-256-GCM).
    #[serde(default = "default_byok_env")]
    pub key_env: String,
    /// The fee, as a percentage of the list price (`"5"`: 5 %).
    #[serde(default)]
    pub fee_percent: String,
    /// And a fee per call, in dollars.
    #[serde(default)]
    pub fee_per_request: String,
}

fn default_byok_env() -> String {
    "TOLLGATE_BYOK_KEY".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSection {
    /// What every customer key issued here starts with (`sk-zenith-`, `zk_live_`).
    pub key_prefix: String,
    /// Route a call for a model a key may not use to the key's
    /// `fallback_model` instead of answering 403.
    pub fallback_models: bool,
    /// The longest a hold may stay open before it is released unbilled.
    pub hold_lease_seconds: u64,
    /// What the answers of idempotent calls being captured may take in
    /// memory, all calls together; an answer past it is not kept.
    pub idempotency_memory_bytes: usize,
}

impl Default for BillingSection {
    fn default() -> Self {
        Self {
            key_prefix: "sk-tollgate-".into(),
            fallback_models: false,
            hold_lease_seconds: 3600,
            idempotency_memory_bytes: crate::billing::replay::DEFAULT_MEMORY_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub listen: String,
    /// `Authorization: Bearer <token>` on every admin call; at least
    /// [`ADMIN_TOKEN_MIN_CHARS`] characters.
    pub token: Secret,
}

/// The shortest admin token accepted: the admin API moves money.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 16;

impl AdminSection {
    /// Refuses a token anyone could guess: empty (an unset variable) or short.
    pub fn validate(&self) -> Result<(), String> {
        let chars = self.token.expose().chars().count();
        if chars < ADMIN_TOKEN_MIN_CHARS {
            return Err(format!(
                "admin.token: must be at least {ADMIN_TOKEN_MIN_CHARS} characters (got {chars}){}",
                if chars == 0 { "; is its variable set?" } else { "" }
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    /// Model ids, `prefix/*` globs or `*`.
    #[serde(default = "every_model")]
    pub models: Vec<String>,
    #[serde(default = "yes")]
    pub api_access: bool,
    /// Accounts created on this plan get a trial this many days long.
    #[serde(default)]
    pub trial_days: Option<u32>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The model a call without one gets on seed 002's `/chat` route (and
    /// an agent's calls when the agent names none).
    #[serde(default)]
    pub default_model: Option<String>,
}

/// A plan's rate limits; an absent one is no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per minute per key (a sliding window).
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Requests per minute per key for models of a class (`models[].class`).
    #[serde(default)]
    pub rpm_by_class: std::collections::HashMap<String, u32>,
    /// Requests per hour per account by endpoint group: `messages` (Chat,
    /// Messages, Gemini), `responses`.
    #[serde(default)]
    pub rph: std::collections::HashMap<String, u32>,
    /// Messages per day per account, reset at midnight in `timezone`.
    #[serde(default)]
    pub daily_messages: Option<u32>,
    /// Input tokens per minute per key (a token bucket: bursts up to it).
    #[serde(default)]
    pub input_tpm: Option<u64>,
    /// Requests in flight per key.
    #[serde(default)]
    pub concurrent: Option<u32>,
    /// The daily cap's day: `UTC` (default) or an offset, `+09:00`.
    #[serde(default)]
    pub timezone: Option<String>,
}

fn every_model() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub plan: String,
    /// Opening balance in US dollars, e.g. `"1000"` or `1000`.
    #[serde(default)]
    pub balance_usd: Option<Dollars>,
}

/// A dollar amount as written: a string, or a whole number (a `${VAR}`
/// may expand to one). A YAML float is refused: money is never read
/// through floating point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dollars(pub String);

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dollars;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a dollar amount, as a string such as \"12.50\" or a whole number")
            }
            fn visit_str<E>(self, v: &str) -> Result<Dollars, E> {
                Ok(Dollars(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Dollars, E> {
                Ok(Dollars(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Dollars, E> {
                Ok(Dollars(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Dollars, E> {
                Err(E::custom("write dollar amounts with decimals in quotes, e.g. \"12.50\""))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Largest request body accepted; larger ones get 413.
    pub max_request_body_bytes: usize,
    /// Seconds requests in flight (streams) get to finish after SIGTERM or
    /// SIGQUIT; the process leaves earlier once none is left (`drain`).
    /// Pingora's default when unset: 300.
    pub grace_period_seconds: Option<u64>,
    /// Seconds the runtimes' own shutdown may then take (blocking work
    /// only: async tasks, streams among them, are dropped at once).
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub pid_file: Option<String>,
    /// Socket over which a new process takes the listeners (zero-downtime upgrade).
    pub upgrade_sock: Option<String>,
    pub log_level: Option<String>,
    /// Milliseconds of provider silence after which a translated Anthropic
    /// stream gets a `ping` event, as Anthropic's own API sends during long
    /// reasoning (0: never).
    pub stream_ping_ms: u64,
    /// Largest single event a provider's stream may send; past it the
    /// stream ends with the caller's error event (a provider that never
    /// ends an event must not grow memory without bound). Image models
    /// that stream 4K images in one event may need more.
    pub max_stream_event_bytes: usize,
    /// Seconds an idle keep-alive connection (HTTP/1.1 or HTTP/2) waits
    /// for its next request before the gateway closes it.
    pub keepalive_timeout_seconds: u64,
    /// Milliseconds a request head may take from its first byte (HTTP/1):
    /// a head trickled a byte at a time is cut.
    pub request_head_timeout_ms: u64,
    /// Milliseconds one write to a caller may wait (a caller that stops
    /// reading): past it the call ends as a caller that left, billed for
    /// what it received, and its connection, hold and limits are freed.
    pub downstream_write_timeout_ms: u64,
    /// Connections one client address may hold open at once (0: no limit).
    pub max_connections_per_address: usize,
    /// Invalid keys one client address may send per minute before its
    /// further invalid keys get 429 instead of 401 (0: no limit).
    pub invalid_keys_per_minute_per_address: u32,
    /// Client addresses whose invalid keys are remembered; past it, the
    /// address whose last invalid key is oldest is forgotten.
    pub invalid_key_addresses_kept: usize,
    /// Calls one key may make to `whoami`, `usage` and `generation`
    /// together in any minute (0: no limit).
    pub customer_endpoint_rpm: u32,
    /// Calls one key may make to `count_tokens` in any minute (0: no
    /// limit); they count against none of the plan's limits.
    pub count_tokens_rpm: u32,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            threads: 2,
            max_request_body_bytes: 32 * 1024 * 1024,
            grace_period_seconds: None,
            graceful_shutdown_timeout_seconds: None,
            pid_file: None,
            upgrade_sock: None,
            log_level: None,
            stream_ping_ms: 10_000,
            max_stream_event_bytes: crate::sse::DEFAULT_MAX_EVENT_BYTES,
            keepalive_timeout_seconds: 60,
            request_head_timeout_ms: 10_000,
            downstream_write_timeout_ms: 60_000,
            max_connections_per_address: 512,
            invalid_keys_per_minute_per_address: 60,
            invalid_key_addresses_kept: 100_000,
            customer_endpoint_rpm: 60,
            count_tokens_rpm: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
    /// Offer HTTP/2 by ALPN (default true).
    #[serde(default = "yes")]
    pub h2: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    OpenaiCompatible,
    Anthropic,
    Gemini,
    /// A Cohere-compatible `/rerank` API (Cohere v2, Jina, Voyage, vLLM,
    /// TEI): rerank models only.
    Rerank,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_keys: Vec<Secret>,
    /// Each key's share of the calls, in `api_keys`' order (all equal when
    /// absent); a key answered 429 rests whatever its weight.
    #[serde(default)]
    pub key_weights: Vec<u32>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// PEM file of the CAs that may sign this provider's certificate, for
    /// private endpoints; the system's roots otherwise.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Request headers forwarded besides the provider kind's allow-list
    /// (names, or prefixes ending in `*`), for an operator whose endpoint
    /// needs more.
    #[serde(default)]
    pub forward_headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect_ms: u64,
    /// Until the response header, and between two body reads: a silent
    /// upstream for longer than this is a 504 (before the header) or a cut stream.
    pub read_ms: u64,
    /// Writing the request to the upstream.
    pub write_ms: u64,
    /// How long a pooled upstream connection may sit idle.
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect_ms: 10_000, read_ms: 600_000, write_ms: 60_000, idle_ms: 60_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    #[default]
    Live,
    ComingSoon,
}

/// What a model does, and so which endpoint serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Chat Completions, Responses, Messages and Gemini's generateContent.
    #[default]
    Chat,
    /// `/v1/embeddings`.
    Embedding,
    /// `/v1/rerank`.
    Rerank,
    /// `/v1/images/generations`.
    Image,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
            ModelKind::Rerank => "rerank",
            ModelKind::Image => "image",
        }
    }
}

/// One place a model is served: a provider and its name for the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub provider: String,
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub api: Option<ClientFormat>,
    /// First calls are shared among the deployments with a weight in
    /// proportion to it; the rest are tried in the order listed.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Calls in flight on this deployment at most; a call past it goes to
    /// the next one.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

/// How a call moves to the next deployment before its first byte reaches
/// the caller (a connection error, a timeout, a 429 or a 5xx).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Attempts at most, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// No new attempt starts this long after the call came in.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// Failures in a row that open a deployment's circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit is skipped before one call probes it.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
}

fn default_attempts() -> u32 {
    3
}
fn default_budget_ms() -> u64 {
    30_000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    30_000
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            budget_ms: default_budget_ms(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Public id, e.g. `openai/gpt-5.5`.
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The one provider serving it (or `deployments`, for several).
    #[serde(default)]
    pub provider: String,
    /// Where it is served, in order (instead of `provider`): a call that
    /// fails before its first byte moves to the next (see `failover`).
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    #[serde(default)]
    pub failover: FailoverConfig,
    /// The provider's own name for it; defaults to the part of `id` after the last `/`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub status: ModelStatus,
    #[serde(default)]
    pub display_name: Option<String>,
    /// The API the model is called through, when the provider speaks more
    /// than one: `responses` for OpenAI models that only have the Responses API.
    #[serde(default)]
    pub api: Option<crate::formats::ClientFormat>,
    /// List prices, in US dollars per million tokens (required when
    /// accounts are billed).
    #[serde(default)]
    pub price: Option<crate::billing::PriceConfig>,
    /// The most output tokens one call can ask for: what a request without
    /// its own limit holds.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// What the model does: `chat` (the default), `embedding`, `rerank`
    /// or `image`.
    #[serde(default)]
    pub kind: ModelKind,
    /// An image model's price per image by size, or size and quality
    /// (`"1024x1536"`, `"1024x1536/high"`), in dollars; `price.per_image`
    /// for the rest.
    #[serde(default)]
    pub image_prices: std::collections::BTreeMap<String, String>,
    /// How long an image call may take, its provider's queue included:
    /// past it the caller gets 504 and nothing is billed (default 120 s).
    #[serde(default)]
    pub image_timeout_ms: Option<u64>,
    /// How often a queued image job is asked again (default 1 s).
    #[serde(default)]
    pub image_poll_ms: Option<u64>,
    /// A model class (`opus`, `sonnet`, `flash`): plans may allow
    /// `class:NAME`, and the rate limits of the next issue differ by class.
    #[serde(default)]
    pub class: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Path prefix, e.g. `/` or `/api/v1/codex`.
    pub prefix: String,
    pub formats: Vec<ClientFormat>,
    /// The shape of errors on its OpenAI-format routes: `native` (OpenAI's
    /// `{"error": {...}}`, the default) or `detail` (`{"detail": "..."}`).
    #[serde(default)]
    pub error_style: crate::formats::errors::ErrorStyle,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Shown in logs instead of the key.
    pub name: String,
    /// The key itself, typically `${ENV}`.
    #[serde(default)]
    pub key: Option<Secret>,
    /// Hex SHA-256 of the key, so the file holds no live secret.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// The account the key bills (one of `accounts`).
    #[serde(default)]
    pub account: Option<String>,
}
