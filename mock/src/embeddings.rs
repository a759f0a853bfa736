//! Embeddings as OpenAI (`/v1/embeddings`) and Gemini
//! (`:batchEmbedContents`, `:embedContent`) answer them: one vector per
//! input, in order, of `dimensions` / `outputDimensionality` (default 8),
//! the same text always the same vector. OpenAI counts input tokens (here
//! a token for every four bytes, as the gateway's own estimate does not:
//! its hold is over the body) and answers base64 when asked; Gemini
//! counts nothing and answers floats only.

use crate::api::Api;
use crate::Knobs;
use serde_json::{json, Value};

/// Which embeddings API a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Openai,
    /// `:batchEmbedContents` (`batch`) or `:embedContent`.
    Gemini {
        batch: bool,
    },
}

impl Endpoint {
    pub fn from_path(method: &str, path: &str) -> Option<Self> {
        if method != "POST" {
            return None;
        }
        if path == "/openai/v1/embeddings" {
            return Some(Endpoint::Openai);
        }
        let rest = path
            .strip_prefix("/gemini/v1beta/models/")
            .or_else(|| path.strip_prefix("/gemini/v1/models/"))?;
        match rest.rsplit_once(':')?.1 {
            "batchEmbedContents" => Some(Endpoint::Gemini { batch: true }),
            "embedContent" => Some(Endpoint::Gemini { batch: false }),
            _ => None,
        }
    }

    /// The chat API of the same provider: its credentials and error shape.
    fn api(self) -> Api {
        match self {
            Endpoint::Openai => Api::OpenaiChat,
            Endpoint::Gemini { .. } => Api::Gemini { model: String::new(), stream: false, sse: false },
        }
    }
}

/// The answer to an embeddings request (the latency and status knobs apply).
pub async fn serve(
    endpoint: Endpoint,
    headers: &hyper::HeaderMap,
    body: &[u8],
    knobs: &Knobs,
) -> hyper::Response<crate::MockBody> {
    let api = endpoint.api();
    if let Some(answer) = crate::preflight(&api, headers, knobs).await {
        return answer;
    }
    let answer = serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("mock: invalid JSON: {e}"))
        .and_then(|request| match endpoint {
            Endpoint::Openai => openai(&request),
            Endpoint::Gemini { batch } => gemini(&request, batch),
        });
    match answer {
        Ok(doc) => crate::json_response(200, serde_json::to_vec(&doc).unwrap_or_default()),
        Err(why) => crate::json_response(400, api.error_body(400, &why)),
    }
}

const DEFAULT_DIMENSIONS: u64 = 8;

/// A text's vector: deterministic, in [-1, 1).
fn vector(seed: &str, dimensions: u64) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..dimensions)
        .map(|i| {
            h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407 ^ i);
            ((h >> 40) % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// OpenAI's answer to an embeddings body, or the 400 it gives.
pub fn openai(request: &Value) -> Result<Value, String> {
    let model = request.get("model").and_then(Value::as_str).ok_or("'model' is required")?;
    let dimensions = request.get("dimensions").and_then(Value::as_u64).unwrap_or(DEFAULT_DIMENSIONS);
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let (seeds, tokens): (Vec<String>, u64) = match request.get("input") {
        Some(Value::String(s)) => (vec![s.clone()], text_tokens(s)),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            let texts: Vec<String> = items.iter().filter_map(Value::as_str).map(str::to_string).collect();
            let tokens = texts.iter().map(|t| text_tokens(t)).sum();
            (texts, tokens)
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => {
            (vec![Value::Array(items.clone()).to_string()], items.len() as u64)
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => {
            let tokens = items.iter().filter_map(Value::as_array).map(|a| a.len() as u64).sum();
            (items.iter().map(Value::to_string).collect(), tokens)
        }
        _ => return Err("'input' is invalid".into()),
    };
    let data: Vec<Value> = seeds
        .iter()
        .enumerate()
        .map(|(index, seed)| {
            let v = vector(seed, dimensions);
            let embedding = if base64 { Value::String(base64_f32(&v)) } else { json!(v) };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
}

/// Gemini's answer to `batchEmbedContents` (`batch`) or `embedContent`.
pub fn gemini(request: &Value, batch: bool) -> Result<Value, String> {
    let one = |r: &Value| -> Result<Value, String> {
        let text: String = r
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .ok_or("content.parts is required")?
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let dimensions = r.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(DEFAULT_DIMENSIONS);
        Ok(json!({ "values": vector(&text, dimensions) }))
    };
    if !batch {
        return Ok(json!({ "embedding": one(request)? }));
    }
    let requests = request.get("requests").and_then(Value::as_array).ok_or("requests is required")?;
    let embeddings = requests.iter().map(one).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "embeddings": embeddings }))
}

fn text_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }

    #[test]
    fn the_same_text_is_the_same_vector() {
        assert_eq!(vector("a", 4), vector("a", 4));
        assert_ne!(vector("a", 4), vector("b", 4));
    }
}
