//! One model call, decided before any I/O: which provider and path, which
//! headers go upstream (the customer's key never does), and the body as the
//! provider must receive it. The proxy layer only carries out the plan.

mod admit;
pub mod agents;
pub mod byok;
mod embeddings;
pub mod headers;
pub mod idempotency;
mod images;
mod rerank;
pub mod restore;
pub mod stored;

pub use admit::{admit, authenticate, cap_output, model_access, refusal_error, Admitted};

use crate::config::ModelStatus;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
use crate::formats::canonical::Tool;
use crate::formats::translate::{self, ClientContext, Target, Translator};
use crate::formats::ClientFormat;
use crate::gateway::{Gateway, ModelEntry};
use crate::providers::Provider;
use crate::routing::{Endpoint, Route};
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug)]
pub struct UpstreamPlan {
    pub model: Arc<ModelEntry>,
    pub provider: Arc<Provider>,
    /// Path and query on the provider.
    pub path: String,
    /// Headers to send, already filtered and with the provider's credentials.
    pub headers: headers::UpstreamHeaders,
    pub body: Bytes,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// The gateway asked the upstream for usage the caller did not ask for,
    /// and must take it out of the stream again.
    pub hide_usage: bool,
    /// Set when the provider speaks another format than the caller.
    pub translation: Option<Translation>,
    /// Set when the provider's whole answer is turned into another shape
    /// (an endpoint other than chat, translated).
    pub document: Option<Document>,
    /// Largest event the provider's stream may send.
    pub max_event_bytes: usize,
    /// Provider silence after which a pass-through stream gets the
    /// caller's keep-alive (Chat and Responses callers).
    pub ping_after: Option<std::time::Duration>,
    /// Input tokens estimated from the body as it goes upstream, for the
    /// hold (see [`input_estimate`]).
    pub input_estimate: u64,
    /// The output limit the caller set, if it set one: per answer.
    pub max_output: Option<u64>,
    /// Answers asked for (Chat's `n`, Gemini's `candidateCount`): each may
    /// use the whole output limit.
    pub choices: u64,
    /// The model the caller asked for, when its key's fallback serves it.
    pub fallback_from: Option<Arc<str>>,
    /// Priced units besides tokens the call can use, held with it (see
    /// `ModelPrice::cost`).
    pub units: u64,
    /// The model's prices for this call when they differ from its list
    /// (an image's size and quality tier).
    pub price: Option<crate::billing::ModelPrice>,
}

impl UpstreamPlan {
    /// Whether the provider is OpenAI itself (its Chat field names differ
    /// from the servers that copy its API).
    pub fn provider_is_openai(&self) -> bool {
        self.provider.kind == ProviderKind::Openai
    }

    /// The headers that say a key's fallback model served the call.
    pub fn served_by(&self) -> Vec<(&'static str, &str)> {
        match &self.fallback_from {
            Some(asked) => {
                vec![("x-tollgate-model", &*self.model.id), ("x-tollgate-fallback-from", &**asked)]
            }
            None => Vec::new(),
        }
    }

    /// Frees what only the request needed, once the provider has answered:
    /// a stream can run for minutes, and an agent's body is often 100 KB+.
    pub fn request_sent(&mut self) {
        self.body = Bytes::new();
        self.headers = Vec::new();
        self.path = String::new();
    }
}

/// A whole answer of another endpoint than chat, turned into the shape
/// the caller reads.
#[derive(Debug)]
pub enum Document {
    /// Gemini's `batchEmbedContents` as OpenAI's embeddings list.
    GeminiEmbeddings(crate::formats::embeddings::Answering),
    /// A rerank provider's results, sorted and cut as the caller asked
    /// (the request, and the answer's id).
    Rerank(Box<crate::formats::rerank::RerankRequest>, String),
    /// Images: OpenAI's answer (a queued job polled until done), or
    /// Gemini's translated.
    Images(Box<crate::formats::images::ImageRequest>),
}

/// How a translated response is turned back into the caller's format.
#[derive(Debug)]
pub struct Translation {
    pub translator: Translator,
    pub ctx: ClientContext,
    /// Parameters left out because the provider has none (see
    /// [`translate::ignored_parameters`]), comma-separated.
    pub ignored: String,
    /// Provider silence after which the caller's stream gets a keep-alive.
    pub ping_after: Option<std::time::Duration>,
}

/// Whether the caller may call a model: `Ok(Some(other))` routes the call
/// to another model (a key's fallback) instead.
pub type ModelAccess<'a> = &'a dyn Fn(&Arc<ModelEntry>) -> Result<Option<Arc<ModelEntry>>, GatewayError>;

/// Plans the upstream call for a request anyone may make.
pub fn plan(
    gateway: &Gateway,
    route: &Route,
    body: Bytes,
    query: Option<&str>,
    client_headers: &http::HeaderMap,
    request_id: &str,
) -> Result<UpstreamPlan, GatewayError> {
    plan_with_access(gateway, route, body, query, client_headers, request_id, &|_| Ok(None))
}

/// Plans the same call on another of its model's deployments (`like` is
/// the plan it replaces: the caller's view of it stays).
#[allow(clippy::too_many_arguments)]
pub fn plan_on(
    gateway: &Gateway,
    route: &Route,
    body: Bytes,
    query: Option<&str>,
    client_headers: &http::HeaderMap,
    request_id: &str,
    deployment: &Arc<ModelEntry>,
    like: &UpstreamPlan,
) -> Result<UpstreamPlan, GatewayError> {
    let mut plan = plan_with_access(gateway, route, body, query, client_headers, request_id, &|_| {
        Ok(Some(deployment.clone()))
    })?;
    plan.fallback_from.clone_from(&like.fallback_from);
    Ok(plan)
}

/// Plans the upstream call, once `access` has allowed (or rerouted) the model.
pub fn plan_with_access(
    gateway: &Gateway,
    route: &Route,
    body: Bytes,
    query: Option<&str>,
    client_headers: &http::HeaderMap,
    request_id: &str,
    access: ModelAccess<'_>,
) -> Result<UpstreamPlan, GatewayError> {
    let top = TopLevel::parse(&body).map_err(GatewayError::BadRequest)?;
    let (model_name, stream) = match &route.endpoint {
        Endpoint::GenerateContent { model, stream } => (model.clone(), *stream),
        _ => {
            let model = top
                .str_field("model")
                .map_err(GatewayError::BadRequest)?
                .ok_or_else(|| GatewayError::BadRequest("'model' is required".into()))?;
            let stream = top.bool_field("stream").map_err(GatewayError::BadRequest)?.unwrap_or(false);
            (model, stream)
        }
    };
    let model = gateway
        .catalog
        .resolve(&model_name)
        .cloned()
        .ok_or_else(|| GatewayError::ModelNotFound(model_name.clone()))?;
    if model.status == ModelStatus::ComingSoon {
        return Err(GatewayError::ModelComingSoon(model.id.to_string()));
    }
    let (model, fallback_from) = match access(&model)? {
        Some(fallback) => (fallback, Some(model.id.clone())),
        None => (model, None),
    };
    let wanted = route.endpoint.model_kind();
    if model.kind != wanted {
        return Err(GatewayError::BadRequest(format!(
            "'{}' is a {} model; this endpoint serves {} models",
            model.id,
            model.kind.as_str(),
            wanted.as_str()
        )));
    }
    if wanted != crate::config::ModelKind::Chat {
        drop(top);
        let mut plan = match route.endpoint {
            Endpoint::Rerank => rerank::plan(gateway, body, model, client_headers, request_id)?,
            Endpoint::Images => images::plan(gateway, body, model, client_headers)?,
            _ => embeddings::plan(gateway, body, model, client_headers)?,
        };
        plan.fallback_from = fallback_from;
        return Ok(plan);
    }
    let provider = model.provider.clone();
    if !model.speaks(route.format) {
        let hints = CallerHints::read(route.format, &top);
        // The body's top level borrows it; the translation takes it over.
        drop(top);
        let asked = Asked { model_name, stream, hints };
        let mut plan =
            plan_translated(gateway, route, body, model, asked, query, client_headers, request_id)?;
        plan.fallback_from = fallback_from;
        return Ok(plan);
    }

    let max_output = output_limit(route.format, &top);
    let choices = choices(route.format, &top);
    let mut edits: Vec<(&str, Option<String>)> = Vec::new();
    let mut hide_usage = false;
    if route.format != ClientFormat::Gemini
        && top.str_field("model").ok().flatten().as_deref() != Some(model.upstream_model.as_str())
    {
        edits.push(("model", Some(json_string(&model.upstream_model))));
    }
    if route.format == ClientFormat::Openai && stream {
        let (options, asked) = stream_options_with_usage(&top)?;
        if !asked {
            edits.push(("stream_options", Some(options)));
            hide_usage = true;
        }
    }
    let body = if edits.is_empty() { body } else { Bytes::from(top.rewrite(&edits)) };
    let input_estimate = input_estimate(&body, 0);

    let query = headers::upstream_query(query, provider.kind);
    let path = provider.upstream_path(&route.endpoint, &model.upstream_model, query.as_deref());
    let headers = headers::upstream_headers(client_headers, &provider)?;
    Ok(UpstreamPlan {
        model,
        provider,
        path,
        headers,
        body,
        stream,
        hide_usage,
        translation: None,
        document: None,
        max_event_bytes: gateway.max_stream_event_bytes,
        ping_after: gateway.stream_ping,
        input_estimate,
        max_output,
        choices,
        fallback_from,
        units: 0,
        price: None,
    })
}

/// What a call to an endpoint other than chat is: one whole answer, read
/// and billed when it is there (no stream, no output tokens).
pub(crate) struct DocumentCall {
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub document: Option<Document>,
    pub input_estimate: u64,
    pub units: u64,
    pub price: Option<crate::billing::ModelPrice>,
}

/// The plan of a [`DocumentCall`] to `model`'s provider.
pub(crate) fn document_plan(
    gateway: &Gateway,
    model: Arc<ModelEntry>,
    client_headers: &http::HeaderMap,
    call: DocumentCall,
) -> Result<UpstreamPlan, GatewayError> {
    let provider = model.provider.clone();
    let path = provider.upstream_path(&call.endpoint, &model.upstream_model, None);
    let headers = headers::upstream_headers(client_headers, &provider)?;
    Ok(UpstreamPlan {
        model,
        provider,
        path,
        headers,
        body: call.body,
        stream: false,
        hide_usage: false,
        translation: None,
        document: call.document,
        max_event_bytes: gateway.max_stream_event_bytes,
        ping_after: None,
        input_estimate: call.input_estimate,
        max_output: Some(0),
        choices: 1,
        fallback_from: None,
        units: call.units,
        price: call.price,
    })
}

/// `body` naming `model` by its provider's own name (a passed-through
/// call of an endpoint besides chat).
fn with_upstream_model(body: Bytes, asked: &str, model: &ModelEntry) -> Result<Bytes, GatewayError> {
    if asked == model.upstream_model {
        return Ok(body);
    }
    let top = TopLevel::parse(&body).map_err(GatewayError::BadRequest)?;
    Ok(Bytes::from(top.rewrite(&[("model", Some(json_string(&model.upstream_model)))])))
}

/// A provider kind `model`'s endpoint has no API at: the catalog refuses
/// such a model at load, so this is a bug if ever seen.
fn no_api(model: &ModelEntry) -> GatewayError {
    GatewayError::Internal(format!(
        "'{}': its provider has no API for a {} model",
        model.id,
        model.kind.as_str()
    ))
}

/// Input tokens held for a body as it goes upstream: a token for every
/// four bytes of it, JSON framing included (field names, quotes, each
/// message's braces), rounded up, and never less than `floor`. The
/// framing is what makes this an over-estimate for prose and code (about
/// 1.3x what the providers count, and a message of one letter costs
/// several tokens of framing, as it does upstream); text of more than one
/// token per four bytes (CJK, emoji, random strings) can still cost more,
/// and the excess is charged past the hold (see `Billing::settle`).
pub fn input_estimate(upstream_body: &[u8], floor: u64) -> u64 {
    (upstream_body.len() as u64).div_ceil(4).max(floor).max(1)
}

/// What the caller's own format says about the answer it wants, read from
/// the top level before the body is translated (and let go).
struct CallerHints {
    include_usage: bool,
    namespaces: Vec<String>,
}

impl CallerHints {
    fn read(format: ClientFormat, top: &TopLevel<'_>) -> Self {
        Self {
            include_usage: format == ClientFormat::Openai
                && top
                    .raw("stream_options")
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
                    .and_then(|v| v.get("include_usage").and_then(serde_json::Value::as_bool))
                    == Some(true),
            namespaces: if format == ClientFormat::Responses {
                crate::formats::responses::declared_namespaces(top.raw("tools").map(|r| r.get()))
            } else {
                Vec::new()
            },
        }
    }
}

/// The call as the caller asked for it.
struct Asked {
    model_name: String,
    stream: bool,
    hints: CallerHints,
}

/// Plans a request whose provider speaks another format: the body goes
/// through the canonical model into the provider's format.
#[allow(clippy::too_many_arguments)]
fn plan_translated(
    gateway: &Gateway,
    route: &Route,
    body: Bytes,
    model: Arc<ModelEntry>,
    asked: Asked,
    query: Option<&str>,
    client_headers: &http::HeaderMap,
    request_id: &str,
) -> Result<UpstreamPlan, GatewayError> {
    let Asked { model_name, stream, hints } = asked;
    let provider = model.provider.clone();
    let target = model.upstream_format;
    let translator = translate::translator(route.format, target)
        .ok_or(GatewayError::TranslationUnsupported { from: route.format.as_str(), to: target.as_str() })?;
    if route.endpoint == Endpoint::CountTokens {
        return Err(GatewayError::Internal("count_tokens is answered locally for this provider".into()));
    }
    let flavor =
        if provider.kind == ProviderKind::OpenaiCompatible { Target::Compatible } else { Target::Native };
    let (request, body) = translate::translate_request(translator, body, flavor, |request| {
        request.model.clone_from(&model.upstream_model);
        request.stream = stream;
    })?;
    let body = Bytes::from(body);
    let ignored = translate::ignored_parameters(&request, target, flavor).join(", ");

    let gemini_sse = query.is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    let ctx = ClientContext {
        model: model_name,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        custom_tools: request
            .tools
            .iter()
            .filter_map(|t| if let Tool::Custom { name, .. } = t { Some(name.clone()) } else { None })
            .collect(),
        include_usage: hints.include_usage,
        input_estimate: translate::estimate_tokens(&request),
        gemini_sse,
        namespaces: hints.namespaces,
        request_id: request_id.to_string(),
    };
    let endpoint = match target {
        ClientFormat::Openai => Endpoint::ChatCompletions,
        ClientFormat::Responses => Endpoint::Responses,
        ClientFormat::Anthropic => Endpoint::Messages,
        ClientFormat::Gemini => Endpoint::GenerateContent { model: model.upstream_model.clone(), stream },
    };
    // The body as it goes upstream, with its framing: the canonical
    // estimate counts only the text, and misses one-letter messages.
    let held_input = input_estimate(&body, ctx.input_estimate);
    let max_output = held_output_limit(request.max_tokens, &body, target, model.max_output_tokens);
    let upstream_query = (target == ClientFormat::Gemini && stream).then_some("alt=sse");
    let path = provider.upstream_path(&endpoint, &model.upstream_model, upstream_query);
    let headers = headers::upstream_headers(client_headers, &provider)?;
    Ok(UpstreamPlan {
        model,
        provider,
        path,
        headers,
        body,
        stream,
        hide_usage: false,
        input_estimate: held_input,
        max_output,
        choices: 1,
        translation: Some(Translation { translator, ctx, ignored, ping_after: gateway.stream_ping }),
        document: None,
        max_event_bytes: gateway.max_stream_event_bytes,
        ping_after: gateway.stream_ping,
        fallback_from: None,
        units: 0,
        price: None,
    })
}

/// Typed: the rest of Gemini's config (a response schema, say) is
/// skipped rather than built into a tree.
#[derive(serde::Deserialize)]
struct GenerationConfig {
    #[serde(rename = "maxOutputTokens")]
    max_output_tokens: Option<u64>,
    #[serde(rename = "candidateCount")]
    candidate_count: Option<u64>,
}

fn generation_config(top: &TopLevel<'_>) -> Option<GenerationConfig> {
    serde_json::from_str(top.raw("generationConfig")?.get()).ok()
}

/// The output limit a request body sets, in the fields its own format's
/// provider honours. Chat has two (`max_completion_tokens` and the older
/// `max_tokens`): when both are there, the larger is held, whichever the
/// provider reads. A limit of 0 holds one token: a provider that takes it
/// still answers with one.
fn output_limit(format: ClientFormat, top: &TopLevel<'_>) -> Option<u64> {
    let number = |name: &str| top.raw(name).and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok());
    let limit = match format {
        ClientFormat::Openai => number("max_completion_tokens").max(number("max_tokens")),
        ClientFormat::Anthropic => number("max_tokens"),
        ClientFormat::Responses => number("max_output_tokens"),
        ClientFormat::Gemini => generation_config(top)?.max_output_tokens,
    };
    limit.map(|n| n.max(1))
}

/// The output limit held for a translated call: the caller's, or the one
/// the body as it goes upstream sets when that is more (Anthropic's
/// thinking needs `max_tokens` above its budget, so the translation raises
/// a caller's small limit, and the provider may bill up to it). `None`,
/// as when the caller set none, holds the model's limit.
fn held_output_limit(
    asked: Option<u64>,
    upstream_body: &[u8],
    target: ClientFormat,
    model_max: u64,
) -> Option<u64> {
    let sent = TopLevel::parse(upstream_body).ok().and_then(|top| output_limit(target, &top));
    match (asked, sent) {
        (Some(asked), sent) => Some(asked.max(sent.unwrap_or(0)).max(1)),
        (None, Some(sent)) if sent > model_max => Some(sent),
        (None, _) => None,
    }
}

/// How many answers a body asks for: each may use the whole output limit.
fn choices(format: ClientFormat, top: &TopLevel<'_>) -> u64 {
    let asked = match format {
        ClientFormat::Openai => top.raw("n").and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok()),
        ClientFormat::Gemini => generation_config(top).and_then(|c| c.candidate_count),
        ClientFormat::Anthropic | ClientFormat::Responses => None,
    };
    asked.unwrap_or(1).clamp(1, 128)
}

/// `count_tokens` for a model whose provider has no such endpoint: a
/// local estimate from the canonical request, in Anthropic's shape.
pub fn count_tokens_locally(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let request = crate::formats::anthropic::parse_request(body)?;
    let tokens = translate::estimate_tokens(&request);
    Ok(serde_json::json!({ "input_tokens": tokens }).to_string().into_bytes())
}

/// Whether this call is answered by the gateway itself rather than sent upstream.
pub fn answers_locally(gateway: &Gateway, route: &Route, body: &[u8]) -> Option<bool> {
    if route.endpoint != Endpoint::CountTokens {
        return Some(false);
    }
    let top = TopLevel::parse(body).ok()?;
    let name = top.str_field("model").ok().flatten()?;
    let model = gateway.catalog.resolve(&name)?;
    Some(!model.speaks(ClientFormat::Anthropic))
}

/// The caller's `stream_options` with `include_usage: true`, and whether
/// the caller had asked for usage already.
fn stream_options_with_usage(top: &TopLevel<'_>) -> Result<(String, bool), GatewayError> {
    let mut options = match top.raw("stream_options") {
        None => serde_json::Map::new(),
        Some(raw) if raw.get() == "null" => serde_json::Map::new(),
        Some(raw) => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
            .map_err(|_| GatewayError::BadRequest("'stream_options' must be an object".into()))?,
    };
    let asked = options.get("include_usage").and_then(serde_json::Value::as_bool) == Some(true);
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    Ok((serde_json::Value::Object(options).to_string(), asked))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests;
