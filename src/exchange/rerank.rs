//! A rerank call, planned: the caller's documents go to a Cohere-compatible
//! provider as text, and its results are sorted, cut to `top_n` and given
//! their documents when they arrive (see [`Document::Rerank`]). The hold
//! covers the input tokens and the search units the documents make.

use super::{document_plan, Document, DocumentCall, UpstreamPlan};
use crate::error::GatewayError;
use crate::formats::rerank::RerankRequest;
use crate::gateway::{Gateway, ModelEntry};
use bytes::Bytes;
use std::sync::Arc;

pub(super) fn plan(
    gateway: &Gateway,
    body: Bytes,
    model: Arc<ModelEntry>,
    client_headers: &http::HeaderMap,
    request_id: &str,
) -> Result<UpstreamPlan, GatewayError> {
    let request = RerankRequest::parse(&body).map_err(GatewayError::BadRequest)?;
    let body = Bytes::from(request.upstream_body(&model.upstream_model));
    let (input_estimate, units) = (request.input_tokens(), request.search_units());
    let document = Some(Document::Rerank(Box::new(request), format!("rerank-{request_id}")));
    let call = DocumentCall {
        endpoint: crate::routing::Endpoint::Rerank,
        body,
        document,
        input_estimate,
        units,
        price: None,
    };
    document_plan(gateway, model, client_headers, call)
}
