//! OpenAI Responses documents to and from the canonical model (the items
//! and the response object are written by `items.rs`).

use super::items;
use crate::formats::canonical::*;
use crate::formats::codec::{custom_arguments, ClientContext};
use crate::formats::json::{self, Result};
use crate::formats::usage::from_usage_object;
use crate::formats::ClientFormat;
use serde_json::Value;

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
                    content.push(Part::thinking(text, None));
                }
            }
            Some("function_call") => content.push(Part::tool_call(ToolCall {
                id: str_of(item, "call_id"),
                name: str_of(item, "name"),
                arguments: str_of(item, "arguments"),
                signature: None,
            })),
            Some("custom_tool_call") => content.push(Part::tool_call(ToolCall {
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

pub fn status_of(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContentFilter => "incomplete",
        _ => "completed",
    }
}

pub fn build_response(resp: &Response, ctx: &ClientContext) -> Vec<u8> {
    let mut output = String::new();
    for (n, part) in resp.content.iter().enumerate() {
        let before = output.len();
        if before > 0 {
            output.push(',');
        }
        match part {
            Part::Text(t) => {
                items::message_item(&mut output, &format!("msg_{n}_{}", ctx.request_id), t, "completed")
            }
            Part::Thinking(t) => items::reasoning_item(
                &mut output,
                &format!("rs_{n}_{}", ctx.request_id),
                &t.text,
                t.signature.as_deref(),
            ),
            Part::ToolCall(c) => {
                items::call_item(&mut output, &format!("fc_{n}_{}", ctx.request_id), c, ctx, "completed")
            }
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => output.truncate(before),
        }
    }
    let mut doc = String::with_capacity(output.len() + 640);
    let status = status_of(resp.stop);
    items::response_object(
        &mut doc,
        &items::call_response_id(&ctx.request_id, &resp.id),
        ctx,
        status,
        &output,
        Some(&resp.usage),
        Some(resp.stop),
    );
    doc.into_bytes()
}
