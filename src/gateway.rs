//! The validated runtime form of a configuration: router, key ring, model
//! catalog and providers, built at start and again by each configuration
//! reload (`crate::reload`), with the money and counters of the node,
//! which a reload hands from one gateway to the next.

use crate::auth::KeyRing;
use crate::billing::{Billing, ModelPrice, NanoUsd, Plan};
use crate::config::{Config, ModelStatus, ProviderKind};
use crate::formats::models_list::ModelInfo;
use crate::formats::ClientFormat;
use crate::providers::Provider;
use crate::routing::Router;
use crate::store::boot::{BootAccount, BootKey, Money};
use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Gateway {
    pub router: Router,
    pub keys: KeyRing,
    pub catalog: Catalog,
    pub providers: Vec<Arc<Provider>>,
    pub max_request_body_bytes: usize,
    /// Silence after which translated streams get a keep-alive, if ever.
    pub stream_ping: Option<Duration>,
    pub max_stream_event_bytes: usize,
    /// Set when accounts are configured: every call is then billed.
    pub billing: Option<Arc<Billing>>,
    /// The plans' rate limits, on this node.
    pub limiter: Arc<crate::limits::Limiter>,
    /// The rate limits on Redis (`hot_state`), when a fleet shares them;
    /// `limiter` then serves only while Redis is down (`on_failure: open`).
    pub hot: Option<Arc<crate::hot::Hot>>,
    /// Invalid keys per client address.
    pub bad_keys: Arc<crate::auth::abuse::BadKeys>,
    /// Calls per key to the customer endpoints.
    pub customer_calls: Arc<crate::customer::rate::PerKey>,
    /// `count_tokens`, which is no message: its own allowance per key.
    pub count_tokens_calls: Arc<crate::customer::rate::PerKey>,
    /// The store and journal behind `billing`.
    pub money: Option<Arc<Money>>,
    /// Customers' own provider keys, when `byok` is configured.
    pub byok: Option<Arc<crate::byok::Byok>>,
    /// How translated Responses calls are kept.
    pub stored_responses: crate::config::StoredResponsesSection,
    /// Read from the configuration; taken by [`Gateway::start_billing`].
    boot: Option<BillingBoot>,
}

/// What a request may ask for at most when it sets no output limit.
const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 32_768;

#[derive(Debug)]
pub struct ModelEntry {
    pub id: Arc<str>,
    pub aliases: Vec<String>,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub status: ModelStatus,
    pub display_name: String,
    /// The format requests to this model are sent in.
    pub upstream_format: ClientFormat,
    pub price: Option<ModelPrice>,
    pub max_output_tokens: u64,
    /// What plans (and the next issue's limits) may name it by.
    pub class: Option<String>,
    /// Which endpoint serves it.
    pub kind: crate::config::ModelKind,
    /// Where this entry's calls go (its provider and upstream model), and
    /// what keeps calls off it while it fails.
    pub deployment: Arc<crate::providers::deployment::Deployment>,
    /// The model's other deployments, in order (on the catalog's entry,
    /// which is the first deployment).
    pub alternates: Vec<Arc<ModelEntry>>,
    pub failover: crate::config::FailoverConfig,
    pub images: ImageRules,
}

/// An image model's prices by tier and how long its calls may take.
#[derive(Debug, Clone, Default)]
pub struct ImageRules {
    /// `size` or `size/quality` -> the price of one image.
    pub prices: Vec<(String, crate::billing::NanoUsd)>,
    pub timeout_ms: u64,
    pub poll_ms: u64,
}

impl ImageRules {
    /// The price of one image of `size` and `quality`, when a tier names it.
    pub fn price_of(&self, size: Option<&str>, quality: Option<&str>) -> Option<crate::billing::NanoUsd> {
        let size = size?;
        let exact = quality.map(|q| format!("{size}/{q}"));
        let find = |tier: &str| self.prices.iter().find(|(t, _)| t == tier).map(|(_, p)| *p);
        exact.as_deref().and_then(find).or_else(|| find(size))
    }
}

impl ModelEntry {
    /// Whether a caller in `format` can be passed through untranslated.
    pub fn speaks(&self, format: ClientFormat) -> bool {
        format == self.upstream_format
            || (self.upstream_format == ClientFormat::Openai && self.provider.speaks(format))
    }
}

impl ModelEntry {
    pub fn info(&self) -> ModelInfo<'_> {
        ModelInfo {
            id: &self.id,
            short_name: self.aliases.first().map_or_else(|| short_name(&self.id), String::as_str),
            display_name: &self.display_name,
            owned_by: self.id.split_once('/').map_or(self.provider.name.as_str(), |(owner, _)| owner),
            coming_soon: self.status == ModelStatus::ComingSoon,
        }
    }
}

/// A model's deployments: its `deployments`, or its one `provider`.
fn deployments_of(
    i: usize,
    m: &crate::config::ModelConfig,
) -> Result<Vec<crate::config::DeploymentConfig>, String> {
    match (m.provider.is_empty(), m.deployments.is_empty()) {
        (false, true) => Ok(vec![crate::config::DeploymentConfig {
            provider: m.provider.clone(),
            upstream_model: m.upstream_model.clone(),
            api: m.api,
            weight: None,
            max_in_flight: None,
        }]),
        (true, false) if m.upstream_model.is_none() && m.api.is_none() => Ok(m.deployments.clone()),
        (true, false) => {
            Err(format!("models[{i}] ({}): upstream_model and api go on each of its deployments", m.id))
        }
        (false, false) => Err(format!("models[{i}] ({}): give 'provider' or 'deployments', not both", m.id)),
        (true, true) => Err(format!("models[{i}] ({}): needs a 'provider' or 'deployments'", m.id)),
    }
}

/// The catalog entry for model `m` served by deployment `d`.
fn model_entry(
    i: usize,
    m: &crate::config::ModelConfig,
    d: &crate::config::DeploymentConfig,
    providers: &[Arc<Provider>],
) -> Result<ModelEntry, String> {
    use crate::config::ModelKind;
    let provider = providers
        .iter()
        .find(|p| p.name == d.provider)
        .cloned()
        .ok_or_else(|| format!("models[{i}] ({}): no provider named '{}'", m.id, d.provider))?;
    let serves = match m.kind {
        ModelKind::Chat => provider.kind != ProviderKind::Rerank,
        ModelKind::Embedding => !matches!(provider.kind, ProviderKind::Anthropic | ProviderKind::Rerank),
        ModelKind::Rerank => provider.kind == ProviderKind::Rerank,
        ModelKind::Image => matches!(
            provider.kind,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Gemini
        ),
    };
    if !serves {
        return Err(format!(
            "models[{i}] ({}): provider '{}' ({:?}) has no {} API",
            m.id,
            provider.name,
            provider.kind,
            m.kind.as_str()
        ));
    }
    let upstream_format = match d.api {
        None => provider.format(),
        Some(api) if api == provider.format() => api,
        Some(ClientFormat::Responses) if provider.kind == ProviderKind::Openai => ClientFormat::Responses,
        Some(api) => {
            return Err(format!(
                "models[{i}] ({}): provider '{}' cannot be called with api '{api}'",
                m.id, provider.name
            ))
        }
    };
    let upstream_model = d.upstream_model.clone().unwrap_or_else(|| short_name(&m.id).to_string());
    let label = format!("{}/{upstream_model}", provider.name);
    Ok(ModelEntry {
        upstream_format,
        id: Arc::from(m.id.as_str()),
        aliases: m.aliases.clone(),
        upstream_model,
        provider,
        status: m.status,
        display_name: m.display_name.clone().unwrap_or_else(|| m.id.clone()),
        price: m
            .price
            .as_ref()
            .map(ModelPrice::from_config)
            .transpose()
            .map_err(|e| format!("models[{i}] ({}): price.{}", m.id, e.0))?,
        max_output_tokens: m.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
        class: m.class.clone(),
        kind: m.kind,
        deployment: Arc::new(crate::providers::deployment::Deployment::new(label, d.weight, d.max_in_flight)),
        alternates: Vec::new(),
        failover: m.failover,
        images: ImageRules {
            prices: m
                .image_prices
                .iter()
                .map(|(tier, usd)| {
                    crate::billing::NanoUsd::parse_usd(usd)
                        .map(|p| (tier.clone(), p))
                        .map_err(|e| format!("models[{i}] ({}): image_prices.{tier}: {e}", m.id))
                })
                .collect::<Result<_, _>>()?,
            timeout_ms: m.image_timeout_ms.unwrap_or(120_000),
            poll_ms: m.image_poll_ms.unwrap_or(1_000).max(10),
        },
    })
}

fn short_name(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(_, name)| name)
}

#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Arc<ModelEntry>>,
    by_name: HashMap<String, Arc<ModelEntry>>,
    /// Whether a model has more than one deployment (set as it is built).
    fails_over: bool,
}

impl Catalog {
    /// Finds a model by public id or alias. Gemini clients may prefix `models/`.
    pub fn resolve(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.by_name.get(name).or_else(|| name.strip_prefix("models/").and_then(|n| self.by_name.get(n)))
    }

    /// Whether a model has more than one deployment to fail over to.
    pub fn fails_over(&self) -> bool {
        self.fails_over
    }

    pub fn entries(&self) -> &[Arc<ModelEntry>] {
        &self.entries
    }
}

impl Gateway {
    /// Opens the store and loads the money side, when accounts are
    /// configured (the validation alone, `from_config`, opens nothing).
    pub fn start_billing(&mut self, config: &Config) -> Result<(), String> {
        let Some(boot) = self.boot.take() else { return Ok(()) };
        let money = crate::store::boot::start(config, boot.plans, boot.accounts, boot.keys)?;
        self.billing = Some(money.billing.clone());
        if let Some(section) = &config.hot_state {
            // The limits and holds live in Redis: nothing to rebuild from
            // the ledger; the wallets are seeded from it on first use.
            let runtime = money.store.runtime_ref();
            let hot = crate::hot::Hot::connect(runtime, section)?;
            crate::hot::changes::follow(hot.redis.clone(), money.billing.clone(), money.store.clone());
            let deployments = self
                .catalog
                .entries()
                .iter()
                .flat_map(|m| std::iter::once(m).chain(&m.alternates))
                .map(|m| m.deployment.clone())
                .collect();
            crate::hot::changes::follow_circuits(hot.redis.clone(), runtime, deployments);
            crate::hot::sidecar::unpend_on_delivery(
                hot.redis.clone(),
                runtime.handle().clone(),
                &money.journal,
            )?;
            let every = std::time::Duration::from_millis(section.reconcile_ms);
            crate::hot::sidecar::start(
                hot.redis.clone(),
                money.store.clone(),
                money.billing.clone(),
                hot.node.clone(),
                every,
            );
            self.hot = Some(std::sync::Arc::new(hot));
        }
        self.money = Some(Arc::new(money));
        Ok(())
    }

    /// Takes over the state of `old`, the gateway in force, for a reload:
    /// money, limiters and counters are kept as they are, and only what
    /// the configuration builds is this gateway's own. Its plans are
    /// returned, for billing to put in force. Every field is named, so a
    /// new one must be sorted into one kind or the other.
    pub fn keep_state_of(&mut self, old: &Gateway) -> Option<Vec<Arc<Plan>>> {
        let Gateway {
            billing,
            limiter,
            hot,
            bad_keys,
            customer_calls,
            count_tokens_calls,
            money,
            // The configuration: this gateway's, from the new file.
            router: _,
            keys: _,
            catalog: _,
            providers: _,
            max_request_body_bytes: _,
            stream_ping: _,
            max_stream_event_bytes: _,
            byok: _,
            stored_responses: _,
            boot: _,
        } = old;
        self.billing.clone_from(billing);
        self.limiter.clone_from(limiter);
        self.hot.clone_from(hot);
        self.bad_keys.clone_from(bad_keys);
        self.customer_calls.clone_from(customer_calls);
        self.count_tokens_calls.clone_from(count_tokens_calls);
        self.money.clone_from(money);
        self.boot.take().map(|boot| boot.plans)
    }

    pub fn from_config(config: &Config) -> Result<Self, String> {
        if config.listeners.is_empty() {
            return Err("listeners: at least one listener is needed".into());
        }
        if config.mounts.is_empty() {
            return Err("mounts: at least one mount is needed".into());
        }
        for (i, m) in config.mounts.iter().enumerate() {
            if !m.prefix.starts_with('/') {
                return Err(format!("mounts[{i}].prefix: must start with '/' (got {:?})", m.prefix));
            }
            if m.formats.is_empty() {
                return Err(format!("mounts[{i}].formats: list at least one format"));
            }
        }
        if let Some(admin) = &config.admin {
            admin.validate()?;
        }
        config.store.validate()?;
        config.tracing.validate()?;
        if let Some(hot) = &config.hot_state {
            hot.validate()?;
        }
        if config.server.max_request_body_bytes == 0 {
            return Err("server.max_request_body_bytes: must be more than 0".into());
        }
        if config.server.downstream_write_timeout_ms == 0 {
            // Not "never": a caller that stops reading would hold its call forever.
            return Err("server.downstream_write_timeout_ms: must be more than 0".into());
        }

        let mut providers: Vec<Arc<Provider>> = Vec::new();
        for p in &config.providers {
            if providers.iter().any(|q| q.name == p.name) {
                return Err(format!("providers: the name '{}' is used twice", p.name));
            }
            providers.push(Arc::new(Provider::from_config(p)?));
        }

        let mut catalog = Catalog::default();
        for (i, m) in config.models.iter().enumerate() {
            let deployments = deployments_of(i, m)?;
            let mut served = deployments
                .iter()
                .map(|d| model_entry(i, m, d, &providers))
                .collect::<Result<Vec<ModelEntry>, String>>()?;
            let mut entry = served.remove(0);
            entry.alternates = served.into_iter().map(Arc::new).collect();
            let entry = Arc::new(entry);
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                if name.is_empty() {
                    return Err(format!("models[{i}]: ids and aliases cannot be empty"));
                }
                if catalog.by_name.insert(name.clone(), entry.clone()).is_some() {
                    return Err(format!("models[{i}]: the name '{name}' is already used by another model"));
                }
            }
            catalog.fails_over |= !entry.alternates.is_empty();
            catalog.entries.push(entry);
        }

        let boot = billing_of(config, &catalog)?;
        Ok(Self {
            billing: None,
            limiter: Arc::default(),
            hot: None,
            bad_keys: Arc::new(crate::auth::abuse::BadKeys::new(
                config.server.invalid_keys_per_minute_per_address,
                config.server.invalid_key_addresses_kept,
            )),
            customer_calls: Arc::new(crate::customer::rate::PerKey::new(
                config.server.customer_endpoint_rpm,
                "whoami, usage and generation",
            )),
            count_tokens_calls: Arc::new(crate::customer::rate::PerKey::new(
                config.server.count_tokens_rpm,
                "count_tokens",
            )),
            money: None,
            byok: config.byok.as_ref().map(crate::byok::Byok::from_config).transpose()?.map(Arc::new),
            stored_responses: config.stored_responses,
            boot,
            router: Router::new(&config.mounts),
            keys: KeyRing::from_config(&config.keys)?,
            catalog,
            providers,
            max_request_body_bytes: config.server.max_request_body_bytes,
            stream_ping: (config.server.stream_ping_ms > 0)
                .then(|| Duration::from_millis(config.server.stream_ping_ms)),
            max_stream_event_bytes: config.server.max_stream_event_bytes.max(1024),
        })
    }
}

/// What billing starts from, read from a configuration with accounts:
/// plans, the accounts with their opening balances, and their keys.
pub struct BillingBoot {
    pub plans: Vec<Arc<Plan>>,
    pub accounts: Vec<BootAccount>,
    pub keys: Vec<BootKey>,
}

fn billing_of(config: &Config, catalog: &Catalog) -> Result<Option<BillingBoot>, String> {
    if config.accounts.is_empty() {
        if let Some(k) = config.keys.iter().find(|k| k.account.is_some()) {
            return Err(format!("keys '{}': names an account, but no accounts are configured", k.name));
        }
        if config.admin.is_some() {
            return Err("admin: the admin API needs billing: configure plans and accounts".into());
        }
        return Ok(None);
    }
    let mut plans: Vec<Arc<Plan>> = Vec::new();
    for p in &config.plans {
        if plans.iter().any(|q| q.name == p.name) {
            return Err(format!("plans: the name '{}' is used twice", p.name));
        }
        let l = &p.limits;
        let zone = match &l.timezone {
            None => crate::limits::daily::Zone::Utc,
            Some(tz) => crate::limits::daily::Zone::parse(tz)
                .map_err(|e| format!("plans '{}': limits.timezone: {e}", p.name))?,
        };
        for group in l.rph.keys() {
            // A limit nothing counts would be a promise the gateway does not keep.
            if !crate::routing::LIMIT_GROUPS.contains(&group.as_str()) {
                return Err(format!(
                    "plans '{}': limits.rph: '{group}' is not an endpoint group this gateway counts ({})",
                    p.name,
                    crate::routing::LIMIT_GROUPS.join(", ")
                ));
            }
        }
        plans.push(Arc::new(Plan {
            name: p.name.clone(),
            models: p.models.clone(),
            api_access: p.api_access,
            trial_days: p.trial_days,
            limits: crate::limits::PlanLimits {
                rpm: l.rpm,
                rpm_by_class: l.rpm_by_class.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                rph: l.rph.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                daily_messages: l.daily_messages,
                input_tpm: l.input_tpm,
                concurrent: l.concurrent,
                zone,
            },
            default_model: match &p.default_model {
                None => None,
                Some(name) => match catalog.resolve(name) {
                    Some(m) if m.kind == crate::config::ModelKind::Chat => Some(m.id.to_string()),
                    _ => {
                        return Err(format!("plans '{}': default_model '{name}' is not a chat model", p.name))
                    }
                },
            },
        }));
    }
    let mut accounts: Vec<BootAccount> = Vec::new();
    for a in &config.accounts {
        if !plans.iter().any(|p| p.name == a.plan) {
            return Err(format!("accounts '{}': no plan named '{}'", a.name, a.plan));
        }
        if accounts.iter().any(|b| b.name == a.name) {
            return Err(format!("accounts: the name '{}' is used twice", a.name));
        }
        let opening = match &a.balance_usd {
            None => NanoUsd::ZERO,
            Some(usd) => {
                NanoUsd::parse_usd(&usd.0).map_err(|e| format!("accounts '{}': balance_usd: {e}", a.name))?
            }
        };
        accounts.push(BootAccount { name: a.name.clone(), plan: a.plan.clone(), opening });
    }
    let mut keys = Vec::new();
    for (i, k) in config.keys.iter().enumerate() {
        let account = match &k.account {
            None => {
                return Err(format!(
                    "keys '{}': with accounts configured, every key names its account",
                    k.name
                ))
            }
            Some(name) if !config.accounts.iter().any(|a| &a.name == name) => {
                return Err(format!("keys '{}': no account named '{name}'", k.name))
            }
            Some(name) => name.clone(),
        };
        let (digest, prefix) = match (&k.key, &k.key_sha256) {
            (Some(key), None) if !key.expose().is_empty() => {
                let key = key.expose();
                (crate::auth::digest(key), key.get(..key.len().min(8)).unwrap_or_default().to_string())
            }
            (None, Some(hex_digest)) => (
                crate::auth::parse_digest(hex_digest)
                    .ok_or_else(|| format!("keys[{i}].key_sha256: expected 64 hex digits"))?,
                String::new(),
            ),
            (Some(_), None) => return Err(format!("keys[{i}].key: the key is empty")),
            _ => return Err(format!("keys[{i}]: give exactly one of 'key' and 'key_sha256'")),
        };
        if keys.iter().any(|b: &BootKey| b.digest == digest) {
            return Err(format!("keys[{i}] ({}): the same key is configured twice", k.name));
        }
        keys.push(BootKey { digest, name: k.name.clone(), account, prefix });
    }
    if let Some(m) = catalog.entries.iter().find(|m| m.price.is_none() && m.status == ModelStatus::Live) {
        return Err(format!("models '{}': with accounts configured, every live model needs a price", m.id));
    }
    Ok(Some(BillingBoot { plans, accounts, keys }))
}
