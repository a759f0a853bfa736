//! Image generation as OpenAI answers it (`/openai/v1/images/generations`:
//! `n` images as URLs or `b64_json`), or, with `x-mock-image-async-ms: T`,
//! as a queue answers it: a job `id` with `status: queued`, then
//! `GET /openai/v1/images/generations/{id}` says `in_progress` until T ms
//! have passed and the images after. Gemini's image models answer their
//! `generateContent` asked for images (see [`gemini`]).

use crate::api::Api;
use crate::Knobs;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// A tiny PNG's bytes, base64 (what every mock image is).
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Create,
    Poll(String),
}

impl Endpoint {
    pub fn from_path(method: &str, path: &str) -> Option<Self> {
        match (method, path) {
            ("POST", "/openai/v1/images/generations") => Some(Endpoint::Create),
            ("GET", p) => {
                p.strip_prefix("/openai/v1/images/generations/").map(|id| Endpoint::Poll(id.to_string()))
            }
            _ => None,
        }
    }
}

struct Job {
    ready_at: Instant,
    request: Value,
}

fn jobs() -> &'static Mutex<HashMap<String, Job>> {
    static JOBS: OnceLock<Mutex<HashMap<String, Job>>> = OnceLock::new();
    JOBS.get_or_init(Mutex::default)
}

fn images(request: &Value, id: &str) -> Value {
    let n = request.get("n").and_then(Value::as_u64).unwrap_or(1);
    let b64 = request.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                json!({ "b64_json": PNG_B64, "revised_prompt": request.get("prompt") })
            } else {
                json!({ "url": format!("https://images.mock.local/{id}-{i}.png"), "revised_prompt": request.get("prompt") })
            }
        })
        .collect();
    json!({ "created": 1_767_225_600, "data": data })
}

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
    let doc = match endpoint {
        Endpoint::Create => {
            let request: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return crate::json_response(
                        400,
                        api.error_body(400, &format!("mock: invalid JSON: {e}")),
                    )
                }
            };
            if request.get("prompt").and_then(Value::as_str).is_none_or(str::is_empty) {
                return crate::json_response(400, api.error_body(400, "mock: prompt is required"));
            }
            let id = format!("img_job_{}", jobs().lock().unwrap_or_else(PoisonError::into_inner).len() + 1);
            match headers.get("x-mock-image-async-ms").and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
                Some(ms) => {
                    let job = Job { ready_at: Instant::now() + Duration::from_millis(ms), request };
                    jobs().lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), job);
                    json!({ "id": id, "status": "queued" })
                }
                None => images(&request, &id),
            }
        }
        Endpoint::Poll(id) => {
            let jobs = jobs().lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.get(&id) {
                None => return crate::json_response(404, api.error_body(404, "mock: no such job")),
                Some(job) if Instant::now() < job.ready_at => json!({ "id": id, "status": "in_progress" }),
                Some(job) => images(&job.request, &id),
            }
        }
    };
    crate::json_response(200, serde_json::to_vec(&doc).unwrap_or_default())
}

/// Gemini's answer to a `generateContent` that asks for images
/// (`responseModalities` with `IMAGE`): one inline PNG per candidate.
pub fn gemini(request: &Value) -> Option<Value> {
    let modalities = request.pointer("/generationConfig/responseModalities")?.as_array()?;
    if !modalities.iter().any(|m| m.as_str() == Some("IMAGE")) {
        return None;
    }
    let n = request.pointer("/generationConfig/candidateCount").and_then(Value::as_u64).unwrap_or(1);
    let candidates: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "content": { "role": "model", "parts": [{ "inlineData": { "mimeType": "image/png", "data": PNG_B64 } }] },
                "finishReason": "STOP",
                "index": i,
            })
        })
        .collect();
    Some(
        json!({ "candidates": candidates, "usageMetadata": { "promptTokenCount": 8, "candidatesTokenCount": 1290 * n } }),
    )
}
