//! Reranking as Cohere (`/cohere/v2/rerank`: search units in `meta`, no
//! tokens) and Jina (`/jina/v1/rerank`: `usage.total_tokens`) answer it:
//! every document scored (the share of the query's words it contains, so
//! tests know the order), best first, `top_n` of them.

use crate::api::Api;
use crate::Knobs;
use serde_json::{json, Value};

/// Which provider's rerank a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Cohere,
    Jina,
}

impl Endpoint {
    pub fn from_path(method: &str, path: &str) -> Option<Self> {
        match (method, path) {
            ("POST", "/cohere/v2/rerank") => Some(Endpoint::Cohere),
            ("POST", "/jina/v1/rerank") => Some(Endpoint::Jina),
            _ => None,
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The document's score for `query`: the share of the query's words in it.
fn score(query: &str, document: &str) -> f64 {
    let (q, d) = (words(query), words(document));
    if q.is_empty() {
        return 0.0;
    }
    let hits = q.iter().filter(|w| d.contains(w)).count();
    // A little of the document's length breaks ties, always below one hit.
    hits as f64 / q.len() as f64 * 0.9 + 0.05 / (1.0 + d.len() as f64)
}

fn answer(endpoint: Endpoint, request: &Value) -> Result<Value, String> {
    let query = request.get("query").and_then(Value::as_str).ok_or("query is required")?;
    let documents = request.get("documents").and_then(Value::as_array).ok_or("documents is required")?;
    let texts: Vec<&str> = documents
        .iter()
        .map(|d| d.as_str().or_else(|| d.get("text").and_then(Value::as_str)))
        .collect::<Option<_>>()
        .ok_or("documents must be strings")?;
    let mut results: Vec<(usize, f64)> =
        texts.iter().enumerate().map(|(i, t)| (i, score(query, t))).collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_n = request.get("top_n").and_then(Value::as_u64).map_or(results.len(), |n| n as usize);
    results.truncate(top_n);
    let results: Vec<Value> =
        results.iter().map(|(index, score)| json!({ "index": index, "relevance_score": score })).collect();
    let tokens: u64 = texts.iter().map(|t| ((query.len() + t.len()) as u64).div_ceil(4)).sum();
    Ok(match endpoint {
        Endpoint::Cohere => json!({
            "id": "rerank-mock",
            "results": results,
            "meta": { "api_version": { "version": "2" }, "billed_units": { "search_units": (texts.len() as u64).div_ceil(100) } },
        }),
        Endpoint::Jina => json!({
            "model": request.get("model").cloned().unwrap_or(Value::Null),
            "results": results,
            "usage": { "total_tokens": tokens },
        }),
    })
}

/// The answer to a rerank request (the latency and status knobs apply).
pub async fn serve(
    endpoint: Endpoint,
    headers: &hyper::HeaderMap,
    body: &[u8],
    knobs: &Knobs,
) -> hyper::Response<crate::MockBody> {
    let api = Api::OpenaiChat;
    if let Some(answer) = crate::preflight(&api, headers, knobs).await {
        return answer;
    }
    match serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()).and_then(|r| answer(endpoint, &r))
    {
        Ok(doc) => crate::json_response(200, serde_json::to_vec(&doc).unwrap_or_default()),
        Err(why) => crate::json_response(400, api.error_body(400, &why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_with_the_querys_words_ranks_first() {
        let r = answer(
            Endpoint::Jina,
            &json!({"query": "red apple", "documents": ["a car", "a red apple", "red"]}),
        )
        .unwrap();
        assert_eq!(r["results"][0]["index"], 1);
        assert_eq!(r["results"][1]["index"], 2);
    }
}
