//! Anthropic Messages response documents to and from the canonical model.

use crate::formats::canonical::*;
use crate::formats::codec::ClientContext;
use crate::formats::json::{self, Result};
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{ids, ClientFormat};
use serde_json::{json, Value};

pub fn stop_reason_from(s: &str) -> StopReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::Refusal,
        _ => StopReason::EndTurn,
    }
}

pub fn stop_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter | StopReason::Refusal => "refusal",
    }
}

pub fn parse_response(body: &[u8]) -> Result<Response> {
    let top = Value::Object(json::parse_object(body)?);
    let mut content = Vec::new();
    for block in json::array(&top, "content", "")? {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => content.push(Part::Text(str_of(block, "text"))),
            Some("thinking") => content.push(Part::thinking(
                str_of(block, "thinking"),
                block.get("signature").and_then(Value::as_str).map(str::to_string),
            )),
            Some("redacted_thinking") => content.push(Part::RedactedThinking(str_of(block, "data"))),
            Some("tool_use") => content.push(Part::tool_call(ToolCall {
                id: str_of(block, "id"),
                name: str_of(block, "name"),
                arguments: block.get("input").map_or_else(|| "{}".into(), Value::to_string),
                signature: None,
            })),
            // Server-side tool traffic (web search) is the provider's own
            // bookkeeping; its results reach the caller through the text.
            _ => {}
        }
    }
    let stop = stop_reason_from(top.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn"));
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(Response {
        id: str_of(&top, "id"),
        model: str_of(&top, "model"),
        content,
        stop: stop.with_tool_calls(has_calls),
        stop_sequence: top.get("stop_sequence").and_then(Value::as_str).map(str::to_string),
        usage: top.get("usage").map(|u| from_usage_object(ClientFormat::Anthropic, u)).unwrap_or_default(),
    })
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Anthropic's `input_tokens` excludes what was read from or written to
/// the cache; the canonical count includes both.
pub fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens + u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    })
}

pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-").trim_start_matches("resp_"))
    }
}

pub fn tool_use_block(call: &ToolCall, with_input: bool) -> Value {
    let input = if with_input { crate::formats::json::arguments_object(&call.arguments) } else { json!({}) };
    json!({
        "type": "tool_use",
        "id": super::tool_id(&ids::wrap(&call.id, call.signature.as_deref())),
        "name": call.name,
        "input": input,
    })
}

pub fn build_response(resp: &Response, ctx: &ClientContext) -> Vec<u8> {
    let content: Vec<Value> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Thinking(t) => Some(json!({
                "type": "thinking", "thinking": t.text, "signature": t.signature.clone().unwrap_or_default(),
            })),
            Part::RedactedThinking(d) => Some(json!({"type": "redacted_thinking", "data": d})),
            Part::ToolCall(c) => Some(tool_use_block(c, true)),
            Part::Media(_) | Part::ToolResult(_) => None,
        })
        .collect();
    let doc = json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(resp.stop),
        "stop_sequence": resp.stop_sequence,
        "usage": usage_object(&resp.usage),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}
