//! An image call, planned: OpenAI-compatible providers get the caller's
//! body (its `model` made the provider's own), Gemini's image models the
//! translation to `generateContent` asking for images; the answer is read
//! whole (a queued job polled until done, see `proxy::images`). The hold
//! covers `n` images at the price of their size and quality.

use super::{
    document_plan, input_estimate, no_api, with_upstream_model, Document, DocumentCall, UpstreamPlan,
};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::formats::images::ImageRequest;
use crate::gateway::{Gateway, ModelEntry};
use bytes::Bytes;
use std::sync::Arc;

pub(super) fn plan(
    gateway: &Gateway,
    body: Bytes,
    model: Arc<ModelEntry>,
    client_headers: &http::HeaderMap,
) -> Result<UpstreamPlan, GatewayError> {
    let request = ImageRequest::parse(&body).map_err(GatewayError::BadRequest)?;
    let body = match model.provider.kind {
        ProviderKind::Gemini => Bytes::from(request.to_gemini()),
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            with_upstream_model(body, &request.model, &model)?
        }
        ProviderKind::Anthropic | ProviderKind::Rerank => return Err(no_api(&model)),
    };
    let price = model.price.map(|mut p| {
        if let Some(tier) = model.images.price_of(request.size.as_deref(), request.quality.as_deref()) {
            p.per_image = tier;
        }
        p
    });
    let call = DocumentCall {
        endpoint: crate::routing::Endpoint::Images,
        input_estimate: input_estimate(request.prompt.as_bytes(), 1),
        units: request.n,
        document: Some(Document::Images(Box::new(request))),
        body,
        price,
    };
    document_plan(gateway, model, client_headers, call)
}
