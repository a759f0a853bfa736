//! One model call, decided before any I/O: which provider and path, which
//! headers go upstream (the customer's key never does), and the body as the
//! provider must receive it. The proxy layer only carries out the plan.

pub mod headers;

use crate::config::ModelStatus;
use crate::error::GatewayError;
use crate::formats::body::TopLevel;
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
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// The gateway asked the upstream for usage the caller did not ask for,
    /// and must take it out of the stream again.
    pub hide_usage: bool,
}

/// Plans the upstream call for a same-format request.
pub fn plan(
    gateway: &Gateway,
    route: &Route,
    body: Bytes,
    query: Option<&str>,
    client_headers: &[(String, String)],
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
    let model =
        gateway.catalog.resolve(&model_name).cloned().ok_or(GatewayError::ModelNotFound(model_name))?;
    if model.status == ModelStatus::ComingSoon {
        return Err(GatewayError::ModelComingSoon(model.id.to_string()));
    }
    let provider = model.provider.clone();
    if !provider.speaks(route.format) {
        return Err(GatewayError::TranslationUnsupported {
            from: route.format.as_str(),
            to: provider.format().as_str(),
        });
    }

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

    let query = headers::upstream_query(query);
    let path = provider.upstream_path(&route.endpoint, &model.upstream_model, query.as_deref());
    let headers = headers::upstream_headers(client_headers, &provider);
    Ok(UpstreamPlan { model, provider, path, headers, body, stream, hide_usage })
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
