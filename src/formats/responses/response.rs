//! OpenAI Responses documents to and from the canonical model; the output
//! items built here are also the `output_item.done` items of a stream.

use super::SIGNATURE_MARK;
use crate::formats::canonical::*;
use crate::formats::codec::{custom_arguments, custom_input, ClientContext};
use crate::formats::json::{self, Result};
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{ids, ClientFormat};
use serde_json::{json, Value};

pub fn parse_response(body: &[u8]) -> Result<Response> {
    let top = Value::Object(json::parse_object(body)?);
    let mut content = Vec::new();
    let mut refused = false;
    for item in json::array(&top, "output", "")? {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for c in json::array(item, "content", "")? {
                    match c.get("type").and_then(Value::as_str) {
                        Some("output_text") => content.push(Part::Text(str_of(c, "text"))),
                        Some("refusal") => {
                            refused = true;
                            content.push(Part::Text(str_of(c, "refusal")));
                        }
                        _ => {}
                    }
                }
            }
            Some("reasoning") => {
                let text: String = json::array(item, "summary", "")?
                    .iter()
                    .filter_map(|s| s.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n");
                if !text.is_empty() {
                    content.push(Part::Thinking { text, signature: None });
                }
            }
            Some("function_call") => content.push(Part::ToolCall(ToolCall {
                id: str_of(item, "call_id"),
                name: str_of(item, "name"),
                arguments: str_of(item, "arguments"),
                signature: None,
            })),
            Some("custom_tool_call") => content.push(Part::ToolCall(ToolCall {
                id: str_of(item, "call_id"),
                name: str_of(item, "name"),
                arguments: custom_arguments(&str_of(item, "input")),
                signature: None,
            })),
            _ => {}
        }
    }
    let stop = if refused {
        StopReason::Refusal
    } else {
        stop_from_status(
            top.get("status").and_then(Value::as_str),
            top.pointer("/incomplete_details/reason").and_then(Value::as_str),
        )
    };
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(Response {
        id: str_of(&top, "id"),
        model: str_of(&top, "model"),
        content,
        stop: stop.with_tool_calls(has_calls),
        stop_sequence: None,
        usage: top.get("usage").map(|u| from_usage_object(ClientFormat::Responses, u)).unwrap_or_default(),
    })
}

pub fn stop_from_status(status: Option<&str>, reason: Option<&str>) -> StopReason {
    match (status, reason) {
        (Some("incomplete"), Some("content_filter")) => StopReason::ContentFilter,
        (Some("incomplete"), _) => StopReason::MaxTokens,
        _ => StopReason::EndTurn,
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

pub fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

pub fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_string()
    } else {
        format!("resp_{}", id.trim_start_matches("chatcmpl-").trim_start_matches("msg_"))
    }
}

/// Output items in their completed form. `n` numbers the item ids.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

pub fn reasoning_item(id: &str, text: &str, signature: Option<&str>) -> Value {
    let summary = if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) };
    json!({
        "id": id, "type": "reasoning", "summary": summary,
        "encrypted_content": signature.map(|s| format!("{SIGNATURE_MARK}{s}")),
    })
}

pub fn call_item(id: &str, call: &ToolCall, ctx: &ClientContext, status: &str) -> Value {
    let call_id = ids::wrap(&call.id, call.signature.as_deref());
    if ctx.is_custom_tool(&call.name) {
        json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id,
               "name": call.name, "input": custom_input(&call.arguments)})
    } else {
        let split = ctx.namespaces.iter().find_map(|ns| {
            let rest = call.name.strip_prefix(ns.as_str())?.strip_prefix(super::NAMESPACE_SEPARATOR)?;
            Some((ns, rest))
        });
        let mut item = json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
               "name": call.name, "arguments": call.arguments});
        if let Some((ns, name)) = split {
            item["name"] = json!(name);
            item["namespace"] = json!(ns);
        }
        item
    }
}

/// The response object, as a document or in `response.*` events.
pub fn response_object(
    id: &str,
    ctx: &ClientContext,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
    stop: Option<StopReason>,
) -> Value {
    let incomplete = match stop {
        Some(StopReason::MaxTokens) => json!({"reason": "max_output_tokens"}),
        Some(StopReason::ContentFilter) => json!({"reason": "content_filter"}),
        _ => Value::Null,
    };
    let mut object = json!({
        "id": response_id(id), "object": "response", "created_at": ctx.created, "status": status,
        "error": null, "incomplete_details": incomplete, "instructions": null, "max_output_tokens": null,
        "model": ctx.model, "output": [], "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "metadata": {},
        "usage": usage.map_or(Value::Null, usage_object),
    });
    // Moved in, not copied: `json!` would copy the whole output again.
    object["output"] = Value::Array(output);
    object
}

pub fn status_of(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContentFilter => "incomplete",
        _ => "completed",
    }
}

pub fn build_response(resp: &Response, ctx: &ClientContext) -> Vec<u8> {
    let mut output = Vec::new();
    for (n, part) in resp.content.iter().enumerate() {
        match part {
            Part::Text(t) => {
                output.push(message_item(&format!("msg_{n}_{}", ctx.request_id), t, "completed"))
            }
            Part::Thinking { text, signature } => {
                output.push(reasoning_item(&format!("rs_{n}_{}", ctx.request_id), text, signature.as_deref()))
            }
            Part::ToolCall(c) => {
                output.push(call_item(&format!("fc_{n}_{}", ctx.request_id), c, ctx, "completed"))
            }
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => {}
        }
    }
    let doc =
        response_object(&resp.id, ctx, status_of(resp.stop), output, Some(&resp.usage), Some(resp.stop));
    serde_json::to_vec(&doc).unwrap_or_default()
}
