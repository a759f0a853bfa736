//! An embeddings call, planned: OpenAI-compatible providers get the
//! caller's body (its `model` made the provider's own); Gemini gets the
//! translation to `batchEmbedContents`, and its answer is turned back into
//! OpenAI's shape when it arrives (see [`Document`]). The hold covers the
//! input only: embeddings have no output.

use super::{
    document_plan, input_estimate, no_api, with_upstream_model, Document, DocumentCall, UpstreamPlan,
};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::formats::embeddings::{Answering, EmbeddingsRequest};
use crate::gateway::{Gateway, ModelEntry};
use bytes::Bytes;
use std::sync::Arc;

/// Plans an embeddings call to `model`, which the caller named `asked`.
pub(super) fn plan(
    gateway: &Gateway,
    body: Bytes,
    model: Arc<ModelEntry>,
    client_headers: &http::HeaderMap,
) -> Result<UpstreamPlan, GatewayError> {
    let request = EmbeddingsRequest::parse(&body).map_err(GatewayError::BadRequest)?;
    let (body, document) = match model.provider.kind {
        ProviderKind::Gemini => {
            let translated = request.to_gemini(&model.upstream_model).map_err(GatewayError::BadRequest)?;
            let answering = Answering {
                model: request.model.clone(),
                base64: request.base64,
                count: request.count(),
                input_tokens: request.input_tokens(),
            };
            (Bytes::from(translated), Some(Document::GeminiEmbeddings(answering)))
        }
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            (with_upstream_model(body, &request.model, &model)?, None)
        }
        ProviderKind::Anthropic | ProviderKind::Rerank => return Err(no_api(&model)),
    };
    // The body's bytes over-count the text (its framing), so the hold
    // covers what the provider counts.
    let held_input = input_estimate(&body, request.input_tokens());
    let call = DocumentCall {
        endpoint: crate::routing::Endpoint::Embeddings,
        body,
        document,
        input_estimate: held_input,
        units: 0,
        price: None,
    };
    document_plan(gateway, model, client_headers, call)
}
