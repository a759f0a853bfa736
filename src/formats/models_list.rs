//! `GET /models` and `GET /models/{id}` answered locally, in the shape each
//! SDK parses: OpenAI `{"object":"list"}`, Anthropic `{"data","has_more"}`,
//! Gemini `{"models":[{"name":"models/..."}]}`.

use super::ClientFormat;
use serde_json::{json, Value};

/// What a caller may learn about one model.
#[derive(Debug, Clone)]
pub struct ModelInfo<'a> {
    pub id: &'a str,
    /// The short name Gemini clients use (`models/{name}`).
    pub short_name: &'a str,
    pub display_name: &'a str,
    pub owned_by: &'a str,
    pub coming_soon: bool,
}

/// A fixed date: model lists carry a creation time, and a stable one keeps
/// responses cacheable and comparable.
const CREATED: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const CREATED_RFC3339: &str = "2026-01-01T00:00:00Z";

pub fn render_list(format: ClientFormat, models: &[ModelInfo<'_>]) -> Vec<u8> {
    let doc = match format {
        ClientFormat::Openai | ClientFormat::Responses => json!({
            "object": "list",
            "data": models.iter().map(openai_model).collect::<Vec<_>>(),
        }),
        ClientFormat::Anthropic => json!({
            "data": models.iter().map(anthropic_model).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first().map(|m| m.id),
            "last_id": models.last().map(|m| m.id),
        }),
        ClientFormat::Gemini => json!({
            "models": models.iter().map(gemini_model).collect::<Vec<_>>(),
        }),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

pub fn render_one(format: ClientFormat, model: &ModelInfo<'_>) -> Vec<u8> {
    let doc = match format {
        ClientFormat::Openai | ClientFormat::Responses => openai_model(model),
        ClientFormat::Anthropic => anthropic_model(model),
        ClientFormat::Gemini => gemini_model(model),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn status(m: &ModelInfo<'_>) -> &'static str {
    if m.coming_soon {
        "coming_soon"
    } else {
        "live"
    }
}

fn openai_model(m: &ModelInfo<'_>) -> Value {
    json!({ "id": m.id, "object": "model", "created": CREATED, "owned_by": m.owned_by, "status": status(m) })
}

fn anthropic_model(m: &ModelInfo<'_>) -> Value {
    json!({ "type": "model", "id": m.id, "display_name": m.display_name, "created_at": CREATED_RFC3339 })
}

fn gemini_model(m: &ModelInfo<'_>) -> Value {
    json!({
        "name": format!("models/{}", m.short_name),
        "displayName": m.display_name,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_each_shape() {
        let m = ModelInfo {
            id: "google/g",
            short_name: "g",
            display_name: "G",
            owned_by: "google",
            coming_soon: false,
        };
        let o: Value =
            serde_json::from_slice(&render_list(ClientFormat::Openai, std::slice::from_ref(&m))).unwrap();
        assert_eq!(o["object"], "list");
        assert_eq!(o["data"][0]["id"], "google/g");
        let a: Value =
            serde_json::from_slice(&render_list(ClientFormat::Anthropic, std::slice::from_ref(&m))).unwrap();
        assert_eq!(a["data"][0]["type"], "model");
        assert_eq!(a["has_more"], false);
        let g: Value = serde_json::from_slice(&render_one(ClientFormat::Gemini, &m)).unwrap();
        assert_eq!(g["name"], "models/g");
    }
}
