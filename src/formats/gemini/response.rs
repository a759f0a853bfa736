//! Gemini generateContent documents to and from the canonical model; a
//! stream chunk is the same document shape, so the part builders here
//! also serve `stream.rs`.

use crate::formats::canonical::*;
use crate::formats::codec::ClientContext;
use crate::formats::json::{self, Result};
use crate::formats::usage::{from_usage_value, Usage};
use crate::formats::{ids, ClientFormat};
use serde::Deserialize;
use serde_json::value::RawValue;
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

/// A generateContent document as read from the wire; a stream chunk has
/// the same shape. Typed, so that neither is read into a tree: the call
/// arguments and the usage are kept as their raw text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireDocument<'a> {
    pub candidates: Option<Vec<WireCandidate<'a>>>,
    #[serde(borrow)]
    pub usage_metadata: Option<&'a RawValue>,
    pub response_id: Option<String>,
    pub model_version: Option<String>,
    pub error: Option<Value>,
    pub prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCandidate<'a> {
    #[serde(borrow)]
    pub content: Option<WireContent<'a>>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub struct WireContent<'a> {
    #[serde(borrow)]
    pub parts: Option<Vec<WirePart<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    block_reason: Option<Value>,
}

impl<'a> WireDocument<'a> {
    pub fn read(body: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(body)
    }

    /// Usage, when the document reports it (a malformed report reads as
    /// none rather than failing the document).
    pub fn usage(&self) -> Option<Usage> {
        from_usage_value(ClientFormat::Gemini, self.usage_metadata?.get().as_bytes())
    }

    /// Whether the prompt itself was blocked.
    pub fn blocked(&self) -> bool {
        self.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.as_ref().is_some_and(|r| !r.is_null()))
    }

    /// The first candidate's parts and finish reason: only it is relayed.
    pub fn first_candidate(&mut self) -> (Vec<WirePart<'a>>, Option<String>) {
        match self.candidates.take().and_then(|c| c.into_iter().next()) {
            Some(c) => (c.content.and_then(|c| c.parts).unwrap_or_default(), c.finish_reason),
            None => (Vec::new(), None),
        }
    }
}

/// A part as read from the wire: only what has a canonical form is kept;
/// other kinds of part (code execution, inline data) read as empty and are
/// skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePart<'a> {
    text: Option<String>,
    thought: Option<bool>,
    thought_signature: Option<String>,
    #[serde(borrow)]
    function_call: Option<WireCall<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireCall<'a> {
    id: Option<String>,
    name: Option<String>,
    /// The arguments object as the provider wrote it.
    #[serde(borrow)]
    args: Option<&'a RawValue>,
}

impl WirePart<'_> {
    /// The canonical part; `n` numbers calls Gemini left unnamed.
    pub fn into_part(self, seed: &str, n: usize) -> Option<Part> {
        let signature = self.thought_signature;
        if let Some(call) = self.function_call {
            let id = call.id.unwrap_or_else(|| ids::new_call_id("call_", seed, n));
            let arguments = call.args.map_or_else(|| "{}".into(), |a| a.get().to_string());
            return Some(Part::tool_call(ToolCall {
                id,
                name: call.name.unwrap_or_default(),
                arguments,
                signature,
            }));
        }
        let text = self.text?;
        if self.thought == Some(true) {
            return Some(Part::thinking(text, signature));
        }
        (!text.is_empty()).then_some(Part::Text(text))
    }
}

pub fn parse_response(body: &[u8]) -> Result<Response> {
    let mut doc = WireDocument::read(body)
        .map_err(|e| json::bad(format!("the body is not a readable generateContent response: {e}")))?;
    let id = doc.response_id.take().unwrap_or_default();
    let usage = doc.usage().unwrap_or_default();
    let blocked = doc.blocked();
    let (parts, finish) = doc.first_candidate();
    let content: Vec<Part> = parts.into_iter().enumerate().filter_map(|(n, p)| p.into_part(&id, n)).collect();
    let mut stop = finish_reason_from(finish.as_deref().unwrap_or("STOP"));
    if blocked {
        stop = StopReason::ContentFilter;
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(Response {
        model: doc.model_version.take().unwrap_or_default(),
        id,
        content,
        stop: stop.with_tool_calls(has_calls),
        stop_sequence: None,
        usage,
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
            Part::Thinking(t) => Some(thought_part(&t.text, t.signature.as_deref())),
            Part::ToolCall(c) => Some(call_part(c)),
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => None,
        })
        .collect();
    serde_json::to_vec(&document(parts, Some(resp.stop), Some(&resp.usage), ctx)).unwrap_or_default()
}
