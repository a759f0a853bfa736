//! Chat Completions response documents to and from the canonical model.

use crate::formats::canonical::*;
use crate::formats::codec::ClientContext;
use crate::formats::json::{self, bad, Result};
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{ids, ClientFormat};
use serde_json::{json, Value};

pub fn finish_reason_from(s: &str) -> StopReason {
    match s {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter | StopReason::Refusal => "content_filter",
    }
}

pub fn parse_response(body: &[u8]) -> Result<Response> {
    let top = Value::Object(json::parse_object(body)?);
    let choice = top.pointer("/choices/0").ok_or_else(|| bad("the upstream response has no choices"))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(thinking) = message.get("reasoning_content").and_then(Value::as_str) {
        if !thinking.is_empty() {
            content.push(Part::thinking(thinking.to_string(), None));
        }
    }
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            content.push(Part::Text(text.to_string()));
        }
    }
    let refused = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty());
    if let Some(refusal) = refused {
        content.push(Part::Text(refusal.to_string()));
    }
    for call in json::array(&message, "tool_calls", "message.")? {
        let f = call.get("function").unwrap_or(&Value::Null);
        content.push(Part::tool_call(ToolCall {
            id: call.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            arguments: f.get("arguments").and_then(Value::as_str).unwrap_or("{}").to_string(),
            signature: None,
        }));
    }
    let mut stop = finish_reason_from(choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop"));
    if refused.is_some() {
        stop = StopReason::Refusal;
    }
    let response = Response {
        id: top.get("id").and_then(Value::as_str).unwrap_or("chatcmpl").to_string(),
        model: top.get("model").and_then(Value::as_str).unwrap_or_default().to_string(),
        stop: stop.with_tool_calls(content.iter().any(|p| matches!(p, Part::ToolCall(_)))),
        content,
        stop_sequence: None,
        usage: top.get("usage").map(|u| from_usage_object(ClientFormat::Openai, u)).unwrap_or_default(),
    };
    Ok(response)
}

pub fn usage_object(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// A tool call as the caller declared the tool: `custom` tools get their
/// freeform input back, functions their arguments.
pub fn tool_call_value(call: &ToolCall, ctx: &ClientContext) -> Value {
    let id = ids::wrap(&call.id, call.signature.as_deref());
    if ctx.is_custom_tool(&call.name) {
        let input = crate::formats::codec::custom_input(&call.arguments);
        return json!({"id": id, "type": "custom", "custom": {"name": call.name, "input": input}});
    }
    json!({"id": id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
}

pub fn build_response(resp: &Response, ctx: &ClientContext) -> Vec<u8> {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text(t) => text.push_str(t),
            Part::Thinking(t) => thinking.push_str(&t.text),
            Part::ToolCall(c) => calls.push(tool_call_value(c, ctx)),
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
        "annotations": [],
    });
    if resp.stop == StopReason::Refusal {
        message["refusal"] = json!(text);
        message["content"] = Value::Null;
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = json!(thinking);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let doc = json!({
        "id": chat_id(&resp.id),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(resp.stop)}],
        "usage": usage_object(&resp.usage),
        "system_fingerprint": null,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

pub fn chat_id(id: &str) -> String {
    if id.starts_with("chatcmpl-") {
        id.to_string()
    } else {
        format!("chatcmpl-{id}")
    }
}
