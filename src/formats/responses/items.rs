//! The objects a Responses caller gets back (output items, usage, the
//! response object), written straight into the output text rather than
//! built as `serde_json::Value` trees and serialised: a stream writes them
//! in its `output_item.*` and `response.*` events, where a tree per item
//! cost most of a tool-call stream's time. Keys come in the order
//! serde_json writes a map (sorted), so documents and streams read the
//! same as before; the tests hold each writer to the tree it replaced.

use super::{NAMESPACE_SEPARATOR, SIGNATURE_MARK};
use crate::formats::canonical::{StopReason, ToolCall};
use crate::formats::codec::{custom_input, ClientContext};
use crate::formats::ids;
use crate::formats::json::push_str;
use crate::formats::usage::Usage;
use std::fmt::Write;

/// A message item; its text part only once `completed`.
pub fn message_item(out: &mut String, id: &str, text: &str, status: &str) {
    out.push_str("{\"content\":[");
    if status == "completed" {
        out.push_str("{\"annotations\":[],\"logprobs\":[],\"text\":");
        push_str(out, text);
        out.push_str(",\"type\":\"output_text\"}");
    }
    out.push_str("],\"id\":");
    push_str(out, id);
    out.push_str(",\"role\":\"assistant\",\"status\":");
    push_str(out, status);
    out.push_str(",\"type\":\"message\"}");
}

/// A reasoning item: its summary, and a signature the gateway minted.
pub fn reasoning_item(out: &mut String, id: &str, text: &str, signature: Option<&str>) {
    out.push_str("{\"encrypted_content\":");
    match signature {
        Some(sig) => {
            let mut marked = String::with_capacity(SIGNATURE_MARK.len() + sig.len());
            marked.push_str(SIGNATURE_MARK);
            marked.push_str(sig);
            push_str(out, &marked);
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"id\":");
    push_str(out, id);
    out.push_str(",\"summary\":[");
    if !text.is_empty() {
        out.push_str("{\"text\":");
        push_str(out, text);
        out.push_str(",\"type\":\"summary_text\"}");
    }
    out.push_str("],\"type\":\"reasoning\"}");
}

/// A function call (its name split from a namespace the caller declared)
/// or, for a freeform tool, a custom tool call with its raw input.
pub fn call_item(out: &mut String, id: &str, call: &ToolCall, ctx: &ClientContext, status: &str) {
    let call_id = ids::wrap(&call.id, call.signature.as_deref());
    if ctx.is_custom_tool(&call.name) {
        out.push_str("{\"call_id\":");
        push_str(out, &call_id);
        out.push_str(",\"id\":");
        push_str(out, id);
        out.push_str(",\"input\":");
        push_str(out, &custom_input(&call.arguments));
        out.push_str(",\"name\":");
        push_str(out, &call.name);
        out.push_str(",\"status\":");
        push_str(out, status);
        out.push_str(",\"type\":\"custom_tool_call\"}");
        return;
    }
    out.push_str("{\"arguments\":");
    push_str(out, &call.arguments);
    out.push_str(",\"call_id\":");
    push_str(out, &call_id);
    out.push_str(",\"id\":");
    push_str(out, id);
    out.push_str(",\"name\":");
    match split_namespace(&call.name, ctx) {
        Some((namespace, name)) => {
            push_str(out, name);
            out.push_str(",\"namespace\":");
            push_str(out, namespace);
        }
        None => push_str(out, &call.name),
    }
    out.push_str(",\"status\":");
    push_str(out, status);
    out.push_str(",\"type\":\"function_call\"}");
}

/// `<namespace>__<name>` for a namespace the caller declared (Codex).
fn split_namespace<'a>(name: &'a str, ctx: &'a ClientContext) -> Option<(&'a str, &'a str)> {
    ctx.namespaces.iter().find_map(|ns| {
        let rest = name.strip_prefix(ns.as_str())?.strip_prefix(NAMESPACE_SEPARATOR)?;
        Some((ns.as_str(), rest))
    })
}

pub fn usage_object(out: &mut String, u: &Usage) {
    let _ = write!(
        out,
        "{{\"input_tokens\":{},\"input_tokens_details\":{{\"cached_tokens\":{}}},\"output_tokens\":{},\
         \"output_tokens_details\":{{\"reasoning_tokens\":{}}},\"total_tokens\":{}}}",
        u.input_tokens,
        u.cached_input_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.input_tokens.saturating_add(u.output_tokens),
    );
}

/// The id of a response translated for call `request_id`: unique per call
/// whatever the provider names its answer (the same mock or cached answer
/// twice, a provider that names none), so a stored response is found by
/// it; the provider's own id only when the call has none.
pub fn call_response_id(request_id: &str, provider_id: &str) -> String {
    if request_id.is_empty() {
        response_id(provider_id)
    } else {
        format!("resp_{}", request_id.trim_start_matches("req_"))
    }
}

/// The caller's response id for a provider's message or completion id.
pub fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_string()
    } else {
        format!("resp_{}", id.trim_start_matches("chatcmpl-").trim_start_matches("msg_"))
    }
}

/// The response object, as a document or in `response.*` events; `id` is
/// already the caller's [`response_id`], `output` the items already
/// written, comma-separated.
pub fn response_object(
    out: &mut String,
    id: &str,
    ctx: &ClientContext,
    status: &str,
    output: &str,
    usage: Option<&Usage>,
    stop: Option<StopReason>,
) {
    let _ = write!(out, "{{\"created_at\":{},\"error\":null,\"id\":", ctx.created);
    push_str(out, id);
    out.push_str(",\"incomplete_details\":");
    out.push_str(match stop {
        Some(StopReason::MaxTokens) => "{\"reason\":\"max_output_tokens\"}",
        Some(StopReason::ContentFilter) => "{\"reason\":\"content_filter\"}",
        _ => "null",
    });
    out.push_str(",\"instructions\":null,\"max_output_tokens\":null,\"metadata\":{},\"model\":");
    push_str(out, &ctx.model);
    out.push_str(",\"object\":\"response\",\"output\":[");
    out.push_str(output);
    out.push_str(
        "],\"parallel_tool_calls\":true,\"previous_response_id\":null,\
         \"reasoning\":{\"effort\":null,\"summary\":null},\"status\":",
    );
    push_str(out, status);
    out.push_str(
        ",\"store\":false,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},\
         \"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":",
    );
    match usage {
        Some(u) => usage_object(out, u),
        None => out.push_str("null"),
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    //! Each writer against the `serde_json::Value` tree it replaced.
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn tree_message(id: &str, text: &str, status: &str) -> Value {
        let content = if status == "completed" {
            json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
        } else {
            json!([])
        };
        json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    fn tree_reasoning(id: &str, text: &str, signature: Option<&str>) -> Value {
        let summary =
            if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) };
        json!({
            "id": id, "type": "reasoning", "summary": summary,
            "encrypted_content": signature.map(|s| format!("{SIGNATURE_MARK}{s}")),
        })
    }

    fn tree_call(id: &str, call: &ToolCall, ctx: &ClientContext, status: &str) -> Value {
        let call_id = ids::wrap(&call.id, call.signature.as_deref());
        if ctx.is_custom_tool(&call.name) {
            return json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id,
                   "name": call.name, "input": custom_input(&call.arguments)});
        }
        let mut item = json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
               "name": call.name, "arguments": call.arguments});
        if let Some((ns, name)) = split_namespace(&call.name, ctx) {
            item["name"] = json!(name);
            item["namespace"] = json!(ns);
        }
        item
    }

    fn tree_response(
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
        let usage = usage.map_or(Value::Null, |u| {
            json!({
                "input_tokens": u.input_tokens,
                "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
                "output_tokens": u.output_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.input_tokens + u.output_tokens,
            })
        });
        json!({
            "id": response_id(id), "object": "response", "created_at": ctx.created,
            "status": status, "error": null, "incomplete_details": incomplete, "instructions": null,
            "max_output_tokens": null, "model": ctx.model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": null, "reasoning": {"effort": null, "summary": null}, "store": false,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "metadata": {}, "usage": usage,
        })
    }

    fn written(write: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        write(&mut out);
        out
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), any::<String>(), Just("quote \" \\ \n\u{1} é 😀".to_string())]
    }

    proptest! {
        #[test]
        fn items_read_as_the_trees_they_replaced(
            id in text(), body in text(), name in text(), sig in proptest::option::of(text()),
            completed in any::<bool>(), custom in any::<bool>(), namespaced in any::<bool>(),
        ) {
            let status = if completed { "completed" } else { "in_progress" };
            prop_assert_eq!(written(|o| message_item(o, &id, &body, status)), tree_message(&id, &body, status).to_string());
            prop_assert_eq!(
                written(|o| reasoning_item(o, &id, &body, sig.as_deref())),
                tree_reasoning(&id, &body, sig.as_deref()).to_string()
            );
            let name = if namespaced { format!("mcp__{name}") } else { name };
            let ctx = ClientContext {
                custom_tools: if custom { vec![name.clone()] } else { Vec::new() },
                namespaces: vec!["mcp".into()],
                ..ClientContext::default()
            };
            let call = ToolCall { id: id.clone(), name, arguments: body.clone(), signature: sig.clone() };
            prop_assert_eq!(written(|o| call_item(o, &id, &call, &ctx, status)), tree_call(&id, &call, &ctx, status).to_string());
        }

        #[test]
        fn the_response_object_reads_as_its_tree(
            id in text(), model in text(), created in any::<u64>(), usage in proptest::option::of(any::<[u32; 4]>()),
            stop in prop_oneof![Just(None), Just(Some(StopReason::MaxTokens)), Just(Some(StopReason::ContentFilter)), Just(Some(StopReason::EndTurn))],
            items in 0usize..3,
        ) {
            let ctx = ClientContext { model, created, ..ClientContext::default() };
            let usage = usage.map(|[i, o, c, r]| Usage {
                input_tokens: i.into(), output_tokens: o.into(), cached_input_tokens: c.into(),
                reasoning_tokens: r.into(), ..Usage::default()
            });
            let trees: Vec<Value> = (0..items).map(|n| tree_message(&format!("msg_{n}"), "hi", "completed")).collect();
            let output = (0..items).map(|n| written(|o| message_item(o, &format!("msg_{n}"), "hi", "completed"))).collect::<Vec<_>>().join(",");
            prop_assert_eq!(
                written(|o| response_object(o, &response_id(&id), &ctx, "completed", &output, usage.as_ref(), stop)),
                tree_response(&id, &ctx, "completed", trees, usage.as_ref(), stop).to_string()
            );
        }
    }
}
