//! Which endpoint a request is for: the longest mount prefix that matches
//! the path, then the endpoint under it. Pure: paths in, [`Route`] out.
//!
//! Under a mount, a leading `/v1` is optional for the OpenAI and Anthropic
//! endpoints, because clients disagree on whether the base URL includes it
//! (the OpenAI SDK's base URL does, the Anthropic SDK appends `/v1/messages`
//! to a bare host). Gemini paths carry their API version (`/v1beta` or `/v1`).

use crate::config::MountConfig;
use crate::error::GatewayError;
use crate::formats::errors::ErrorStyle;
use crate::formats::ClientFormat;

/// The endpoint groups hourly limits count in ([`Endpoint::limit_group`]
/// gives each call's): what a plan may limit, and what a restart reads a
/// kept charge's group back as.
pub const LIMIT_GROUPS: [&str; 5] = ["messages", "responses", "embeddings", "rerank", "images"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Messages,
    CountTokens,
    /// OpenAI's `/v1/embeddings`.
    Embeddings,
    /// `/v1/rerank` (Cohere's and Jina's shape; `/v2/rerank` too).
    Rerank,
    /// Seed 002's `POST /chat`: Chat Completions with `model` optional
    /// (the agent's, else the plan's default).
    AgentChat,
    /// The caller's saved agents.
    Agents,
    /// `POST /v1/images/generations` (seed 001).
    Images,
    /// A stored response: `GET` or `DELETE /v1/responses/{id}`, or
    /// `GET /v1/responses/{id}/input_items` (`items`).
    StoredResponse {
        id: String,
        items: bool,
    },
    /// `GET /v1/images/generations`: the image models.
    ImageModels,
    GenerateContent {
        model: String,
        stream: bool,
    },
    ListModels,
    GetModel {
        id: String,
    },
    /// The caller's key, account, balance and spend.
    Whoami,
    /// The caller's usage today and this month.
    Usage,
    /// One request's bill, by its `x-request-id` (`?id=`).
    Generation,
    /// The account's billed requests, newest first, a page at a time.
    Requests,
    /// The account's spend and tokens per UTC day (`?days=`, 30 at most 366).
    DailyUsage,
    /// The customer page and its files (`/dashboard...`), keyless.
    Dashboard,
    /// `/dashboard/setup.json`: the mounts the set-up snippets are filled with.
    DashboardSetup,
    /// `/health`, `/healthz`, `/readyz`: the node and its backends.
    Health,
    /// `/livez`: the process serves, whatever the backends.
    Live,
}

impl Endpoint {
    /// A low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Rerank => "rerank",
            Endpoint::AgentChat => "chat",
            Endpoint::Agents => "agents",
            Endpoint::Images => "images",
            Endpoint::ImageModels => "image_models",
            Endpoint::StoredResponse { .. } => "stored_response",
            Endpoint::GenerateContent { stream: false, .. } => "generate_content",
            Endpoint::GenerateContent { stream: true, .. } => "stream_generate_content",
            Endpoint::ListModels => "list_models",
            Endpoint::GetModel { .. } => "get_model",
            Endpoint::Whoami => "whoami",
            Endpoint::Usage => "usage",
            Endpoint::Generation => "generation",
            Endpoint::Requests => "requests",
            Endpoint::DailyUsage => "daily_usage",
            Endpoint::Dashboard | Endpoint::DashboardSetup => "dashboard",
            Endpoint::Health => "health",
            Endpoint::Live => "live",
        }
    }

    /// The group whose hourly limit a call counts against (one of
    /// [`LIMIT_GROUPS`]; seed 001:
    /// messages, chat and Gemini share one; Responses has its own).
    pub fn limit_group(&self) -> &'static str {
        match self {
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Rerank => "rerank",
            Endpoint::Images => "images",
            _ => "messages",
        }
    }

    /// The group a charge was kept with (its ledger text), as the static
    /// of [`LIMIT_GROUPS`] it is; a text that is none of them (none, or a
    /// release's that had other groups) counts as `messages`.
    pub fn limit_group_named(name: Option<&str>) -> &'static str {
        LIMIT_GROUPS.into_iter().find(|group| Some(*group) == name).unwrap_or("messages")
    }

    /// The kind of model a call to this endpoint names.
    pub fn model_kind(&self) -> crate::config::ModelKind {
        use crate::config::ModelKind;
        match self {
            Endpoint::Embeddings => ModelKind::Embedding,
            Endpoint::Rerank => ModelKind::Rerank,
            Endpoint::Images => ModelKind::Image,
            _ => ModelKind::Chat,
        }
    }

    /// Whether the endpoint is a model call that goes upstream.
    pub fn is_upstream_call(&self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Responses
                | Endpoint::Messages
                | Endpoint::CountTokens
                | Endpoint::Embeddings
                | Endpoint::Rerank
                | Endpoint::AgentChat
                | Endpoint::Images
                | Endpoint::GenerateContent { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub format: ClientFormat,
    pub endpoint: Endpoint,
    /// The mount's error shape.
    pub style: ErrorStyle,
}

#[derive(Debug, Clone)]
pub struct Mount {
    prefix: String,
    formats: Vec<ClientFormat>,
    style: ErrorStyle,
}

/// The mounts of a configuration, longest prefix first.
#[derive(Debug, Clone)]
pub struct Router {
    mounts: Vec<Mount>,
}

/// Hints from the request headers for endpoints every format has (model lists).
#[derive(Debug, Clone, Copy, Default)]
pub struct FormatHints {
    pub anthropic: bool,
    pub gemini: bool,
}

impl Router {
    pub fn new(configs: &[MountConfig]) -> Self {
        let mut mounts: Vec<Mount> = configs
            .iter()
            .map(|m| Mount {
                prefix: m.prefix.trim_end_matches('/').to_string(),
                formats: m.formats.clone(),
                style: m.error_style,
            })
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Self { mounts }
    }

    pub fn route(&self, method: &str, path: &str, hints: FormatHints) -> Result<Route, GatewayError> {
        if matches!(path, "/health" | "/healthz" | "/readyz") {
            return Ok(Route {
                format: ClientFormat::Openai,
                endpoint: Endpoint::Health,
                style: ErrorStyle::Native,
            });
        }
        if crate::dashboard::is_customer_path(path) {
            if method != "GET" {
                return Err(GatewayError::MethodNotAllowed);
            }
            let endpoint =
                if path == "/dashboard/setup.json" { Endpoint::DashboardSetup } else { Endpoint::Dashboard };
            return Ok(Route { format: ClientFormat::Openai, endpoint, style: ErrorStyle::Native });
        }
        if path == "/livez" {
            return Ok(Route {
                format: ClientFormat::Openai,
                endpoint: Endpoint::Live,
                style: ErrorStyle::Native,
            });
        }
        let mut method_mismatch = false;
        for mount in &self.mounts {
            let Some(rest) = strip_mount(path, &mount.prefix) else {
                continue;
            };
            match match_endpoint(method, rest, &mount.formats, hints) {
                Match::Found(route) => return Ok(Route { style: mount.style, ..route }),
                Match::WrongMethod => method_mismatch = true,
                Match::None => {}
            }
        }
        if method_mismatch {
            Err(GatewayError::MethodNotAllowed)
        } else {
            Err(GatewayError::RouteNotFound(path.to_string()))
        }
    }

    /// Each mount's prefix (`/` for the root) and the formats it serves,
    /// in the configuration's terms (for the dashboard's set-up snippets).
    pub fn mounts(&self) -> Vec<(String, Vec<&'static str>)> {
        let mut out: Vec<_> = self
            .mounts
            .iter()
            .map(|m| {
                let prefix = if m.prefix.is_empty() { "/".to_string() } else { m.prefix.clone() };
                (prefix, m.formats.iter().map(|f| f.as_str()).collect())
            })
            .collect();
        // The shortest prefix first: the root, when there is one.
        out.sort_by_key(|(prefix, _)| prefix.len());
        out
    }

    /// The error shape of the mount the path falls under.
    pub fn error_style(&self, path: &str) -> ErrorStyle {
        self.mounts
            .iter()
            .find(|m| strip_mount(path, &m.prefix).is_some())
            .map_or(ErrorStyle::Native, |m| m.style)
    }

    /// The format to answer in when routing itself failed: the first format
    /// of the mount the path falls under, guessed from its shape.
    pub fn error_format(&self, path: &str, hints: FormatHints) -> ClientFormat {
        let formats = self
            .mounts
            .iter()
            .find(|m| strip_mount(path, &m.prefix).is_some())
            .map(|m| m.formats.as_slice())
            .unwrap_or(&[]);
        if path.contains("/v1beta/") || (hints.gemini && formats.contains(&ClientFormat::Gemini)) {
            ClientFormat::Gemini
        } else if path.ends_with("/messages")
            || (hints.anthropic && formats.contains(&ClientFormat::Anthropic))
        {
            ClientFormat::Anthropic
        } else {
            formats.first().copied().unwrap_or(ClientFormat::Openai)
        }
    }
}

fn strip_mount<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

enum Match {
    Found(Route),
    WrongMethod,
    None,
}

fn match_endpoint(method: &str, rest: &str, formats: &[ClientFormat], hints: FormatHints) -> Match {
    let has = |f: ClientFormat| formats.contains(&f);
    let found = |format, endpoint| Match::Found(Route { format, endpoint, style: ErrorStyle::Native });
    let post_only = |format, endpoint| {
        if method == "POST" {
            found(format, endpoint)
        } else {
            Match::WrongMethod
        }
    };

    if let Some(gemini) = rest
        .strip_prefix("/v1beta/models/")
        .or_else(|| rest.strip_prefix("/v1/models/").filter(|r| r.contains(':')))
    {
        if has(ClientFormat::Gemini) {
            if let Some((model, action)) = gemini.rsplit_once(':') {
                let stream = match action {
                    "generateContent" => false,
                    "streamGenerateContent" => true,
                    _ => return Match::None,
                };
                let endpoint = Endpoint::GenerateContent { model: model.to_string(), stream };
                return post_only(ClientFormat::Gemini, endpoint);
            }
            if method == "GET" {
                let id = gemini.to_string();
                return found(ClientFormat::Gemini, Endpoint::GetModel { id });
            }
        }
    }
    if rest == "/v1beta/models" && has(ClientFormat::Gemini) {
        return get_only(method, ClientFormat::Gemini, Endpoint::ListModels);
    }

    let rest = rest.strip_prefix("/v1").filter(|r| r.is_empty() || r.starts_with('/')).unwrap_or(rest);
    match rest {
        "/chat/completions" if has(ClientFormat::Openai) => {
            post_only(ClientFormat::Openai, Endpoint::ChatCompletions)
        }
        "/responses" if has(ClientFormat::Responses) => {
            post_only(ClientFormat::Responses, Endpoint::Responses)
        }
        "/messages" if has(ClientFormat::Anthropic) => post_only(ClientFormat::Anthropic, Endpoint::Messages),
        "/embeddings" if has(ClientFormat::Openai) => post_only(ClientFormat::Openai, Endpoint::Embeddings),
        "/rerank" | "/v2/rerank" if has(ClientFormat::Openai) => {
            post_only(ClientFormat::Openai, Endpoint::Rerank)
        }
        "/chat" if has(ClientFormat::Openai) => post_only(ClientFormat::Openai, Endpoint::AgentChat),
        "/agents" if has(ClientFormat::Openai) => get_only(method, ClientFormat::Openai, Endpoint::Agents),
        "/images/generations" if has(ClientFormat::Openai) => match method {
            "POST" => found(ClientFormat::Openai, Endpoint::Images),
            "GET" => found(ClientFormat::Openai, Endpoint::ImageModels),
            _ => Match::WrongMethod,
        },
        "/messages/count_tokens" if has(ClientFormat::Anthropic) => {
            post_only(ClientFormat::Anthropic, Endpoint::CountTokens)
        }
        "/models" => match list_format(formats, hints) {
            Some(f) => get_only(method, f, Endpoint::ListModels),
            None => Match::None,
        },
        "/whoami" | "/usage" | "/generation" | "/requests" | "/usage/daily" => {
            match list_format(formats, hints) {
                Some(f) => get_only(
                    method,
                    f,
                    match rest {
                        "/whoami" => Endpoint::Whoami,
                        "/usage" => Endpoint::Usage,
                        "/requests" => Endpoint::Requests,
                        "/usage/daily" => Endpoint::DailyUsage,
                        _ => Endpoint::Generation,
                    },
                ),
                None => Match::None,
            }
        }
        _ if has(ClientFormat::Responses) && rest.starts_with("/responses/") => {
            let tail = rest.trim_start_matches("/responses/");
            match tail.split_once('/') {
                None if !tail.is_empty() && matches!(method, "GET" | "DELETE") => found(
                    ClientFormat::Responses,
                    Endpoint::StoredResponse { id: tail.to_string(), items: false },
                ),
                Some((id, "input_items")) if !id.is_empty() => get_only(
                    method,
                    ClientFormat::Responses,
                    Endpoint::StoredResponse { id: id.to_string(), items: true },
                ),
                None if !tail.is_empty() => Match::WrongMethod,
                _ => Match::None,
            }
        }
        _ => match rest.strip_prefix("/models/") {
            Some(id) if !id.is_empty() => match list_format(formats, hints) {
                Some(f) => get_only(method, f, Endpoint::GetModel { id: id.to_string() }),
                None => Match::None,
            },
            _ => Match::None,
        },
    }
}

fn get_only(method: &str, format: ClientFormat, endpoint: Endpoint) -> Match {
    if method == "GET" {
        Match::Found(Route { format, endpoint, style: ErrorStyle::Native })
    } else {
        Match::WrongMethod
    }
}

/// Model lists exist in every format; the caller's headers say which one it reads.
fn list_format(formats: &[ClientFormat], hints: FormatHints) -> Option<ClientFormat> {
    let has = |f| formats.contains(&f);
    if hints.anthropic && has(ClientFormat::Anthropic) {
        Some(ClientFormat::Anthropic)
    } else if hints.gemini && has(ClientFormat::Gemini) {
        Some(ClientFormat::Gemini)
    } else if has(ClientFormat::Openai) || has(ClientFormat::Responses) {
        Some(ClientFormat::Openai)
    } else {
        formats.first().copied()
    }
}

#[cfg(test)]
mod tests;
