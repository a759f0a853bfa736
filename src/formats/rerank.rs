//! Reranking (`POST /v1/rerank`, seed 000): the request Cohere's and
//! Jina's clients send (`model`, `query`, `documents` as strings or
//! objects, optional `top_n` and `return_documents`), and the answer they
//! read, whatever Cohere-compatible provider served it: `results` of
//! `index` and `relevance_score`, best first, at most `top_n`, each with
//! its `document` when asked, and the usage (tokens, and search units:
//! one per query over up to 100 documents, as Cohere bills).

use super::usage::Usage;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The most documents one call may rank (Cohere's limit).
pub const MAX_DOCUMENTS: usize = 10_000;
/// Documents one search unit covers.
const DOCUMENTS_PER_UNIT: u64 = 100;

/// A rerank request, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankRequest {
    pub model: String,
    pub query: String,
    /// As the caller sent them (a string, or an object with its `text`).
    pub documents: Vec<Value>,
    pub top_n: Option<usize>,
    pub return_documents: bool,
}

#[derive(Deserialize)]
struct Wire<'a> {
    model: Option<String>,
    #[serde(borrow)]
    query: Option<&'a RawValue>,
    documents: Option<Vec<Value>>,
    top_n: Option<&'a RawValue>,
    return_documents: Option<bool>,
}

impl RerankRequest {
    /// Reads a body; `Err` says what is wrong with it, for a 400.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let model = wire.model.ok_or("'model' is required")?;
        let query: String = wire
            .query
            .and_then(|q| serde_json::from_str(q.get()).ok())
            .filter(|q: &String| !q.is_empty())
            .ok_or("'query' must be a non-empty string")?;
        let documents = wire.documents.ok_or("'documents' is required")?;
        if documents.is_empty() {
            return Err("'documents' cannot be empty".into());
        }
        if documents.len() > MAX_DOCUMENTS {
            return Err(format!("'documents' can hold at most {MAX_DOCUMENTS} items"));
        }
        if let Some(i) = documents.iter().position(|d| text_of(d).is_none()) {
            return Err(format!("documents[{i}] must be a string or an object with a 'text' string"));
        }
        let top_n = match wire.top_n.map(|t| t.get()) {
            None | Some("null") => None,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err("'top_n' must be a positive integer".into()),
            },
        };
        Ok(Self { model, query, documents, top_n, return_documents: wire.return_documents.unwrap_or(false) })
    }

    /// Search units, as Cohere counts them: one per 100 documents.
    pub fn search_units(&self) -> u64 {
        (self.documents.len() as u64).div_ceil(DOCUMENTS_PER_UNIT).max(1)
    }

    /// Input tokens: a token for every four bytes of the query and of
    /// each document, the query counted once per document (as providers
    /// score each pair).
    pub fn input_tokens(&self) -> u64 {
        let query = (self.query.len() as u64).div_ceil(4);
        self.documents
            .iter()
            .filter_map(text_of)
            .map(|t| query + (t.len() as u64).div_ceil(4))
            .sum::<u64>()
            .max(1)
    }

    /// The body for a Cohere-compatible provider: its own model name, the
    /// documents as text (every provider takes strings), every result.
    pub fn upstream_body(&self, upstream_model: &str) -> Vec<u8> {
        let documents: Vec<&str> = self.documents.iter().filter_map(text_of).collect();
        serde_json::to_vec(&json!({
            "model": upstream_model,
            "query": self.query,
            "documents": documents,
            "top_n": self.documents.len(),
        }))
        .unwrap_or_default()
    }
}

/// A document's text: the string, or an object's `text`.
fn text_of(document: &Value) -> Option<&str> {
    match document {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("text").and_then(Value::as_str),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<Scored>,
    #[serde(default)]
    usage: Option<AnswerUsage>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Scored {
    index: usize,
    relevance_score: f64,
}

#[derive(Deserialize)]
struct AnswerUsage {
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    billed_units: Option<BilledUnits>,
}

#[derive(Deserialize)]
struct BilledUnits {
    #[serde(default)]
    search_units: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
}

/// What is billed for an answer: tokens (when the provider counted them,
/// else the gateway's own count, flagged) and search units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Billed {
    pub usage: Usage,
    pub estimated: bool,
    pub search_units: u64,
}

/// The provider's answer (`status`, `body`) as the caller reads it:
/// `(status, body, billed)`; an error keeps its status, in OpenAI's error
/// shape; an answer that cannot be read is a 502.
pub fn answer(status: u16, body: &[u8], asked: &RerankRequest, id: &str) -> (u16, Vec<u8>, Option<Billed>) {
    use super::errors::render;
    use super::ClientFormat;
    use crate::error::GatewayError;
    if !(200..300).contains(&status) {
        let err = super::translate::parse_error_document(status, body);
        return (err.status(), render(&err, ClientFormat::Openai), None);
    }
    match from_provider(body, asked, id) {
        Ok((out, billed)) => (200, out, Some(billed)),
        Err(why) => {
            let err = GatewayError::UpstreamProtocol(why);
            (err.status(), render(&err, ClientFormat::Openai), None)
        }
    }
}

fn from_provider(body: &[u8], asked: &RerankRequest, id: &str) -> Result<(Vec<u8>, Billed), String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("the provider's rerank answer is unreadable: {e}"))?;
    let mut results = answer.results;
    if let Some(bad) =
        results.iter().find(|r| r.index >= asked.documents.len() || !r.relevance_score.is_finite())
    {
        return Err(format!("the provider ranked a document that is not there ({})", bad.index));
    }
    results.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score).then(a.index.cmp(&b.index)));
    results.dedup_by_key(|r| r.index);
    results.truncate(asked.top_n.unwrap_or(usize::MAX));
    let shown: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut item = json!({ "index": r.index, "relevance_score": r.relevance_score });
            if asked.return_documents {
                let document = match &asked.documents[r.index] {
                    Value::String(s) => json!({ "text": s }),
                    other => other.clone(),
                };
                item["document"] = document;
            }
            item
        })
        .collect();
    let billed_units = answer.meta.and_then(|m| m.billed_units);
    let reported_units = billed_units.as_ref().and_then(|b| b.search_units);
    let counted = answer
        .usage
        .and_then(|u| u.total_tokens.or(u.prompt_tokens))
        .or_else(|| billed_units.as_ref().and_then(|b| b.input_tokens));
    let search_units = reported_units.unwrap_or_else(|| asked.search_units());
    let tokens = counted.unwrap_or_else(|| asked.input_tokens());
    let doc = json!({
        "id": id,
        "object": "list",
        "model": asked.model,
        "results": shown,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        "meta": { "billed_units": { "search_units": search_units } },
    });
    let billed = Billed {
        usage: Usage { input_tokens: tokens, ..Usage::default() },
        // Billed by the provider's own count of one or the other.
        estimated: counted.is_none() && reported_units.is_none(),
        search_units,
    };
    serde_json::to_vec(&doc).map(|out| (out, billed)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> RerankRequest {
        RerankRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn documents_as_strings_or_objects_and_bad_requests_said() {
        let r = request(r#"{"model":"m","query":"q","documents":["a",{"text":"b","id":7}],"top_n":1}"#);
        assert_eq!((r.documents.len(), r.top_n, r.return_documents), (2, Some(1), false));
        assert_eq!(r.search_units(), 1);
        let sent: Value = serde_json::from_slice(&r.upstream_body("up")).unwrap();
        assert_eq!(sent["documents"], json!(["a", "b"]));
        assert_eq!(sent["model"], "up");
        for (body, says) in [
            (r#"{"query":"q","documents":["a"]}"#, "'model'"),
            (r#"{"model":"m","documents":["a"]}"#, "'query'"),
            (r#"{"model":"m","query":"","documents":["a"]}"#, "'query'"),
            (r#"{"model":"m","query":"q"}"#, "'documents' is required"),
            (r#"{"model":"m","query":"q","documents":[]}"#, "empty"),
            (r#"{"model":"m","query":"q","documents":[1]}"#, "documents[0]"),
            (r#"{"model":"m","query":"q","documents":["a"],"top_n":0}"#, "'top_n'"),
        ] {
            let e = RerankRequest::parse(body.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn results_are_sorted_cut_to_top_n_and_carry_documents_when_asked() {
        let r = request(
            r#"{"model":"m","query":"q","documents":["a",{"text":"b"},"c"],"top_n":2,"return_documents":true}"#,
        );
        let provider = br#"{"results":[{"index":0,"relevance_score":0.1},{"index":2,"relevance_score":0.9},{"index":1,"relevance_score":0.5}],"usage":{"total_tokens":12}}"#;
        let (status, body, billed) = answer(200, provider, &r, "rr-1");
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["results"].as_array().unwrap().len(), 2);
        assert_eq!(
            (doc["results"][0]["index"].as_u64(), doc["results"][1]["index"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(doc["results"][0]["document"], json!({"text": "c"}));
        assert_eq!(doc["results"][1]["document"], json!({"text": "b"}));
        let billed = billed.unwrap();
        assert_eq!((billed.usage.input_tokens, billed.estimated, billed.search_units), (12, false, 1));
        // Cohere's shape: units, no tokens; documents left out unless asked.
        let r = request(r#"{"model":"m","query":"q","documents":["a","b"]}"#);
        let cohere = br#"{"id":"x","results":[{"index":1,"relevance_score":0.7}],"meta":{"billed_units":{"search_units":3}}}"#;
        let (_, body, billed) = answer(200, cohere, &r, "rr-2");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert!(doc["results"][0].get("document").is_none());
        assert_eq!(billed.map(|b| (b.search_units, b.estimated)), Some((3, false)));
        // A document that is not there is the provider's fault: 502.
        let (status, _, billed) = answer(200, br#"{"results":[{"index":5,"relevance_score":1}]}"#, &r, "x");
        assert_eq!((status, billed), (502, None));
    }
}
