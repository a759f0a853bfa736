//! Image generation in OpenAI's format (`POST /v1/images/generations`,
//! seed 001): the request (`model`, `prompt`, `n`, `size`, `quality`,
//! `response_format` `url` or `b64_json`), the images an answer carries
//! (what is billed: per image), a provider's asynchronous answer (a job to
//! poll, as queue-based image APIs answer) and its translation to and from
//! Gemini's image models (`generateContent` asked for images).

use serde::Deserialize;
use serde_json::{json, Value};

/// The most images one call may ask for (OpenAI's limit).
pub const MAX_IMAGES: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    pub model: String,
    pub prompt: String,
    pub n: u64,
    pub size: Option<String>,
    pub quality: Option<String>,
    pub b64_json: bool,
}

#[derive(Deserialize)]
struct Wire {
    model: Option<String>,
    prompt: Option<Value>,
    n: Option<Value>,
    size: Option<String>,
    quality: Option<String>,
    response_format: Option<String>,
}

impl ImageRequest {
    /// Reads a body; `Err` says what is wrong with it, for a 400.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let model = wire.model.ok_or("'model' is required")?;
        let prompt = match wire.prompt {
            Some(Value::String(p)) if !p.trim().is_empty() => p,
            _ => return Err("'prompt' must be a non-empty string".into()),
        };
        let n = match wire.n {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_IMAGES).contains(&n) => n,
                _ => return Err(format!("'n' must be a whole number from 1 to {MAX_IMAGES}")),
            },
        };
        let b64_json = match wire.response_format.as_deref() {
            None | Some("url") => false,
            Some("b64_json") => true,
            Some(other) => return Err(format!("'response_format' must be url or b64_json, not '{other}'")),
        };
        Ok(Self { model, prompt, n, size: wire.size, quality: wire.quality, b64_json })
    }

    /// Gemini's `generateContent` body asking for `n` images of the prompt.
    pub fn to_gemini(&self) -> Vec<u8> {
        let mut config = json!({ "responseModalities": ["IMAGE"], "candidateCount": self.n });
        if let Some(size) = &self.size {
            config["imageConfig"] = json!({ "aspectRatio": aspect_ratio(size) });
        }
        serde_json::to_vec(&json!({
            "contents": [{ "role": "user", "parts": [{ "text": self.prompt }] }],
            "generationConfig": config,
        }))
        .unwrap_or_default()
    }
}

/// OpenAI's `WxH` as Gemini's aspect ratio (`1024x1536` is `2:3`).
fn aspect_ratio(size: &str) -> String {
    let Some((w, h)) =
        size.split_once('x').and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?)))
    else {
        return "1:1".into();
    };
    let (mut a, mut b) = (w.max(1), h.max(1));
    while b != 0 {
        (a, b) = (b, a % b);
    }
    format!("{}:{}", w.max(1) / a, h.max(1) / a)
}

/// What a provider's answer to an image request is.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The images (OpenAI's `data`), how many.
    Done { body: Value, images: u64 },
    /// A job still running: poll `id` again.
    Pending { id: String },
    /// The job failed: its message.
    Failed(String),
}

/// Reads an OpenAI-format answer: `data` is done; a `status` of `queued`
/// / `in_progress` / `processing` is a job to poll, `failed` a failure.
pub fn read_openai(body: &[u8]) -> Result<Answer, String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the provider's image answer is unreadable: {e}"))?;
    if let Some(data) = doc.get("data").and_then(Value::as_array) {
        let images = data.len() as u64;
        return Ok(Answer::Done { body: doc, images });
    }
    match (doc.get("status").and_then(Value::as_str), doc.get("id").and_then(Value::as_str)) {
        (Some("queued" | "in_progress" | "processing" | "pending"), Some(id)) => {
            Ok(Answer::Pending { id: id.into() })
        }
        (Some("failed" | "error" | "cancelled"), _) => Ok(Answer::Failed(
            doc.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("the image job failed")
                .to_string(),
        )),
        _ => Err("the provider's image answer has neither images nor a job".into()),
    }
}

/// Gemini's answer as OpenAI's (`b64_json`, or a `data:` URL for `url`:
/// Gemini keeps no image to link to), and how many images it carries.
pub fn from_gemini(body: &[u8], asked: &ImageRequest, created: u64) -> Result<(Value, u64), String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the provider's image answer is unreadable: {e}"))?;
    let mut data = Vec::new();
    for candidate in doc.get("candidates").and_then(Value::as_array).into_iter().flatten() {
        for part in candidate.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
            let Some(inline) = part.get("inlineData").or_else(|| part.get("inline_data")) else { continue };
            let mime = inline
                .get("mimeType")
                .or_else(|| inline.get("mime_type"))
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let Some(b64) = inline.get("data").and_then(Value::as_str) else { continue };
            data.push(if asked.b64_json {
                json!({ "b64_json": b64 })
            } else {
                json!({ "url": format!("data:{mime};base64,{b64}") })
            });
        }
    }
    if data.is_empty() {
        return Err("the provider answered no image".into());
    }
    let images = data.len() as u64;
    Ok((json!({ "created": created, "data": data }), images))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_bad_ones_said() {
        let r = ImageRequest::parse(
            br#"{"model":"m","prompt":"an apple","n":2,"size":"1024x1536","response_format":"b64_json"}"#,
        )
        .unwrap();
        assert_eq!((r.n, r.b64_json, r.size.as_deref()), (2, true, Some("1024x1536")));
        let sent: Value = serde_json::from_slice(&r.to_gemini()).unwrap();
        assert_eq!(sent["generationConfig"]["imageConfig"]["aspectRatio"], "2:3");
        assert_eq!(sent["generationConfig"]["candidateCount"], 2);
        for (body, says) in [
            (&br#"{"prompt":"x"}"#[..], "'model'"),
            (br#"{"model":"m"}"#, "'prompt'"),
            (br#"{"model":"m","prompt":" "}"#, "'prompt'"),
            (br#"{"model":"m","prompt":"x","n":0}"#, "'n'"),
            (br#"{"model":"m","prompt":"x","n":11}"#, "'n'"),
            (br#"{"model":"m","prompt":"x","response_format":"png"}"#, "'response_format'"),
        ] {
            let e = ImageRequest::parse(body).unwrap_err();
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn answers_done_pending_or_failed() {
        assert_eq!(
            read_openai(br#"{"created":1,"data":[{"url":"u"},{"url":"v"}]}"#).map(|a| match a {
                Answer::Done { images, .. } => images,
                _ => 0,
            }),
            Ok(2)
        );
        assert_eq!(
            read_openai(br#"{"id":"job1","status":"queued"}"#),
            Ok(Answer::Pending { id: "job1".into() })
        );
        assert!(matches!(read_openai(br#"{"id":"j","status":"failed"}"#), Ok(Answer::Failed(_))));
        assert!(read_openai(br#"{"x":1}"#).is_err());
        let asked = ImageRequest::parse(br#"{"model":"m","prompt":"x"}"#).unwrap();
        let gemini = br#"{"candidates":[{"content":{"parts":[{"text":"here"},{"inlineData":{"mimeType":"image/png","data":"AAAA"}}]}}]}"#;
        let (doc, images) = from_gemini(gemini, &asked, 7).unwrap();
        assert_eq!((images, doc["data"][0]["url"].as_str()), (1, Some("data:image/png;base64,AAAA")));
        assert!(from_gemini(br#"{"candidates":[]}"#, &asked, 7).is_err());
    }
}
