//! Which provider API a request to the mock is for (from its path), and
//! what each API expects of credentials, streaming and error documents.

use hyper::HeaderMap;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    OpenaiChat,
    OpenaiResponses,
    AnthropicMessages,
    AnthropicCountTokens,
    Gemini { model: String, stream: bool, sse: bool },
}

impl Api {
    pub fn from_path(method: &str, path: &str, query: &str) -> Option<Self> {
        if method != "POST" {
            return None;
        }
        match path {
            "/openai/v1/chat/completions" => return Some(Api::OpenaiChat),
            "/openai/v1/responses" => return Some(Api::OpenaiResponses),
            "/anthropic/v1/messages" => return Some(Api::AnthropicMessages),
            "/anthropic/v1/messages/count_tokens" => return Some(Api::AnthropicCountTokens),
            _ => {}
        }
        let rest = path
            .strip_prefix("/gemini/v1beta/models/")
            .or_else(|| path.strip_prefix("/gemini/v1/models/"))?;
        let (model, action) = rest.rsplit_once(':')?;
        let stream = match action {
            "generateContent" => false,
            "streamGenerateContent" => true,
            _ => return None,
        };
        let sse = query.split('&').any(|p| p == "alt=sse");
        Some(Api::Gemini { model: model.to_string(), stream, sse })
    }

    pub fn has_credentials(&self, headers: &HeaderMap) -> bool {
        let present = |name: &str| headers.get(name).is_some_and(|v| !v.is_empty());
        match self {
            Api::OpenaiChat | Api::OpenaiResponses => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7),
            Api::AnthropicMessages | Api::AnthropicCountTokens => {
                present("x-api-key") && present("anthropic-version")
            }
            Api::Gemini { .. } => present("x-goog-api-key"),
        }
    }

    pub fn is_stream(&self, request: &Value) -> bool {
        match self {
            Api::Gemini { stream, .. } => *stream,
            Api::AnthropicCountTokens => false,
            _ => request.get("stream").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    /// Gemini's `streamGenerateContent` without `alt=sse` is a JSON array.
    pub fn sse_framing(&self) -> bool {
        !matches!(self, Api::Gemini { sse: false, .. })
    }

    pub fn error_body(&self, status: u16, message: &str) -> Vec<u8> {
        let doc = match self {
            Api::OpenaiChat | Api::OpenaiResponses => json!({
                "error": { "message": message, "type": openai_error_type(status), "param": null, "code": null }
            }),
            Api::AnthropicMessages | Api::AnthropicCountTokens => json!({
                "type": "error",
                "error": { "type": anthropic_error_type(status), "message": message },
            }),
            Api::Gemini { .. } => json!({
                "error": { "code": status, "message": message, "status": crate::wire::gemini_status(status) }
            }),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}
