//! Gemini generateContent documents to and from the canonical model; a
//! stream chunk is the same document shape, so the part builders here
//! also serve `stream.rs`.

use crate::formats::canonical::*;
use crate::formats::codec::ClientContext;
use crate::formats::json::{self, Result};
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{ids, ClientFormat};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn finish_reason_from(s: &str) -> StopReason {
    match s {
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        _ => StopReason::EndTurn,
    }
}

pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::ToolUse => "STOP",
        StopReason::MaxTokens => "MAX_TOKENS",
        StopReason::ContentFilter | StopReason::Refusal => "SAFETY",
    }
}

/// A part as read from the wire: only what has a canonical form is kept;
/// other kinds of part (code execution, inline data) read as empty and are
/// skipped. Typed, so a stream chunk is read without building a tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePart {
    text: Option<String>,
    thought: Option<bool>,
    thought_signature: Option<String>,
    function_call: Option<Value>,
}

impl WirePart {
    /// The canonical part; `n` numbers calls Gemini left unnamed.
    pub fn into_part(self, seed: &str, n: usize) -> Option<Part> {
        let signature = self.thought_signature;
        if let Some(call) = self.function_call {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let id = match call.get("id").and_then(Value::as_str) {
                Some(id) => id.to_string(),
                None => ids::new_call_id("call_", seed, n),
            };
            let arguments = call.get("args").map_or_else(|| "{}".into(), Value::to_string);
            return Some(Part::ToolCall(ToolCall { id, name, arguments, signature }));
        }
        let text = self.text?;
        if self.thought == Some(true) {
            return Some(Part::Thinking { text, signature });
        }
        (!text.is_empty()).then_some(Part::Text(text))
    }
}

/// One part of a document read into canonical form; a part of the wrong
/// shape is skipped.
pub fn part_from(p: &Value, seed: &str, n: usize) -> Option<Part> {
    WirePart::deserialize(p).ok()?.into_part(seed, n)
}

pub fn parse_response(body: &[u8]) -> Result<Response> {
    let top = Value::Object(json::parse_object(body)?);
    let id = top.get("responseId").and_then(Value::as_str).unwrap_or_default().to_string();
    let candidate = top.pointer("/candidates/0").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(parts) = candidate.pointer("/content/parts").and_then(Value::as_array) {
        for (n, p) in parts.iter().enumerate() {
            content.extend(part_from(p, &id, n));
        }
    }
    let mut stop =
        finish_reason_from(candidate.get("finishReason").and_then(Value::as_str).unwrap_or("STOP"));
    if top.pointer("/promptFeedback/blockReason").is_some() {
        stop = StopReason::ContentFilter;
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(Response {
        model: top.get("modelVersion").and_then(Value::as_str).unwrap_or_default().to_string(),
        id,
        content,
        stop: stop.with_tool_calls(has_calls),
        stop_sequence: None,
        usage: top
            .get("usageMetadata")
            .map(|u| from_usage_object(ClientFormat::Gemini, u))
            .unwrap_or_default(),
    })
}

pub fn usage_metadata(u: &Usage) -> Value {
    let mut doc = json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens.saturating_sub(u.reasoning_tokens),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    });
    if u.cached_input_tokens > 0 {
        doc["cachedContentTokenCount"] = json!(u.cached_input_tokens);
    }
    if u.reasoning_tokens > 0 {
        doc["thoughtsTokenCount"] = json!(u.reasoning_tokens);
    }
    doc
}

pub fn call_part(call: &ToolCall) -> Value {
    let mut part = json!({"functionCall": {
        "id": call.id, "name": call.name, "args": crate::formats::json::arguments_object(&call.arguments),
    }});
    if let Some(sig) = &call.signature {
        part["thoughtSignature"] = json!(sig);
    }
    part
}

pub fn thought_part(text: &str, signature: Option<&str>) -> Value {
    let mut part = json!({"text": text, "thought": true});
    if let Some(sig) = signature {
        part["thoughtSignature"] = json!(sig);
    }
    part
}

/// A response document (or stream chunk) holding `parts`.
pub fn document(
    parts: Vec<Value>,
    finish: Option<StopReason>,
    usage: Option<&Usage>,
    ctx: &ClientContext,
) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(stop) = finish {
        candidate["finishReason"] = json!(finish_reason(stop));
    }
    let mut doc = json!({"candidates": [candidate], "modelVersion": ctx.model, "responseId": ctx.request_id});
    if let Some(u) = usage {
        doc["usageMetadata"] = usage_metadata(u);
    }
    doc
}

pub fn build_response(resp: &Response, ctx: &ClientContext) -> Vec<u8> {
    let parts: Vec<Value> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"text": t})),
            Part::Thinking { text, signature } => Some(thought_part(text, signature.as_deref())),
            Part::ToolCall(c) => Some(call_part(c)),
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => None,
        })
        .collect();
    serde_json::to_vec(&document(parts, Some(resp.stop), Some(&resp.usage), ctx)).unwrap_or_default()
}
