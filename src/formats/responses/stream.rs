//! OpenAI Responses streams: named provider events into canonical events,
//! and canonical events into the sequence the OpenAI SDK's
//! `responses.stream()` and Codex check: `response.created` →
//! `output_item.added` → (`content_part.added`) → deltas → `*.done` →
//! `output_item.done` → `response.completed`, each with a sequence number.

use super::response::{
    call_item, message_item, reasoning_item, response_object, status_of, stop_from_status,
};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, StreamEvent, ToolCall};
use crate::formats::codec::blocks::{Blocks, Slot};
use crate::formats::codec::{ClientContext, StreamEncoder, StreamParser};
use crate::formats::json::{push_str, quote};
use crate::formats::usage::from_usage_object;
use crate::formats::ClientFormat;
use crate::sse::SseEvent;
use serde_json::{json, Value};
use std::fmt::Write;

#[derive(Debug, Default)]
pub struct ResponsesParser {
    blocks: Blocks,
    /// Output index of the open freeform call, whose raw input is wrapped
    /// into canonical JSON arguments as it streams.
    custom_open: Option<u64>,
    args_seen: bool,
    done: bool,
}

impl StreamParser for ResponsesParser {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) {
        let Some(data) = event.data.as_deref() else { return };
        if self.done {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return self.fail(502, format!("unreadable provider stream event: {e}"), out),
        };
        let kind = v.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("");
        let output_index = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let delta = || v.get("delta").and_then(Value::as_str).unwrap_or_default().to_string();
        match kind {
            "response.created" => out.push(StreamEvent::Start {
                id: v.pointer("/response/id").and_then(Value::as_str).unwrap_or_default().to_string(),
                model: v.pointer("/response/model").and_then(Value::as_str).unwrap_or_default().to_string(),
                usage: None,
            }),
            "response.output_item.added" => {
                let item = &v["item"];
                let kind = item["type"].as_str().unwrap_or_default();
                if kind == "function_call" || kind == "custom_tool_call" {
                    let id = item["call_id"].as_str().unwrap_or_default().to_string();
                    let name = item["name"].as_str().unwrap_or_default().to_string();
                    let index = self.blocks.enter(
                        Slot::Tool(output_index),
                        || BlockKind::ToolCall { id, name, signature: None },
                        out,
                    );
                    self.args_seen = false;
                    if kind == "custom_tool_call" {
                        self.custom_open = Some(output_index);
                        out.push(StreamEvent::ToolArguments { index, json: "{\"input\":\"".into() });
                    }
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let index = self.blocks.enter(Slot::Text, || BlockKind::Text, out);
                out.push(StreamEvent::TextDelta { index, text: delta() });
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let index = self.blocks.enter(Slot::Thinking, || BlockKind::Thinking, out);
                out.push(StreamEvent::ThinkingDelta { index, text: delta() });
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                if let Some(index) = self.blocks.current(Slot::Tool(output_index)) {
                    self.args_seen = true;
                    let json = if self.custom_open == Some(output_index) {
                        let quoted = quote(&delta());
                        quoted[1..quoted.len() - 1].to_string()
                    } else {
                        delta()
                    };
                    out.push(StreamEvent::ToolArguments { index, json });
                }
            }
            "response.output_item.done" => self.item_done(&v["item"], output_index, out),
            "response.completed" | "response.incomplete" => {
                let r = &v["response"];
                let usage =
                    r.get("usage").map(|u| from_usage_object(ClientFormat::Responses, u)).unwrap_or_default();
                let stop = stop_from_status(
                    r.get("status").and_then(Value::as_str),
                    r.pointer("/incomplete_details/reason").and_then(Value::as_str),
                );
                self.blocks.close(out);
                self.done = true;
                let stop = stop.with_tool_calls(self.blocks.saw_tool_calls);
                out.push(StreamEvent::Finish { stop, stop_sequence: None, usage });
            }
            "response.failed" => {
                let message = v
                    .pointer("/response/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider failed");
                self.fail(500, message.to_string(), out);
            }
            "error" => {
                let message = v.get("message").and_then(Value::as_str).unwrap_or("provider error");
                self.fail(500, message.to_string(), out);
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.done {
            self.fail(502, "the provider's stream ended before response.completed".into(), out);
        }
    }
}

impl ResponsesParser {
    fn item_done(&mut self, item: &Value, output_index: u64, out: &mut Vec<StreamEvent>) {
        let Some(index) = self.blocks.current(Slot::Tool(output_index)) else {
            return;
        };
        if self.custom_open == Some(output_index) {
            if !self.args_seen {
                let quoted = quote(item["input"].as_str().unwrap_or_default());
                out.push(StreamEvent::ToolArguments { index, json: quoted[1..quoted.len() - 1].to_string() });
            }
            out.push(StreamEvent::ToolArguments { index, json: "\"}".into() });
            self.custom_open = None;
        } else if !self.args_seen {
            let json = item["arguments"].as_str().unwrap_or("{}").to_string();
            out.push(StreamEvent::ToolArguments { index, json });
        }
        self.blocks.close(out);
    }

    fn fail(&mut self, status: u16, message: String, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error { status, message });
    }
}

/// The item being streamed to the caller.
#[derive(Debug)]
struct OpenItem {
    id: String,
    kind: BlockKind,
    text: String,
    signature: Option<String>,
}

/// `"item_id":…,"output_index":…`, the fields every item event starts with.
fn push_item_head(item_id: &str, index: usize, out: &mut String) {
    out.push_str(",\"item_id\":");
    push_str(out, item_id);
    let _ = write!(out, ",\"output_index\":{index}");
}

/// `{"output_index": index, "item": item}`, the item moved in rather than
/// copied (as `json!` would).
fn with_item(index: usize, item: Value) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("output_index".into(), json!(index));
    fields.insert("item".into(), item);
    Value::Object(fields)
}

#[derive(Debug)]
pub struct ResponsesEncoder {
    ctx: ClientContext,
    id: String,
    seq: u64,
    open: Option<OpenItem>,
    output: Vec<Value>,
    started: bool,
    ended: bool,
}

impl ResponsesEncoder {
    pub fn new(ctx: &ClientContext) -> Self {
        Self {
            ctx: ctx.clone(),
            id: String::new(),
            seq: 0,
            open: None,
            output: Vec::new(),
            started: false,
            ended: false,
        }
    }

    /// Opens one event: its name, `type` and `sequence_number`; the
    /// caller writes the other fields (each starting with `,`) and `}\n\n`.
    fn open_event(&mut self, name: &str, out: &mut String) {
        out.push_str("event: ");
        out.push_str(name);
        out.push_str("\ndata: {\"type\":\"");
        out.push_str(name);
        out.push_str("\",\"sequence_number\":");
        let _ = write!(out, "{}", self.seq);
        self.seq += 1;
    }

    /// Writes one event; `body` is the JSON object's fields after `type`.
    fn emit(&mut self, name: &str, body: &str, out: &mut String) {
        self.open_event(name, out);
        if !body.is_empty() {
            out.push(',');
            out.push_str(body);
        }
        out.push_str("}\n\n");
    }

    fn emit_json(&mut self, name: &str, fields: Value, out: &mut String) {
        let text = fields.to_string();
        // `{...}` without its braces, to follow `type` and `sequence_number`.
        self.emit(name, text.get(1..text.len().saturating_sub(1)).unwrap_or_default(), out);
    }

    fn start(&mut self, id: &str, out: &mut String) {
        self.started = true;
        self.id = super::response::response_id(if id.is_empty() { &self.ctx.request_id } else { id });
        let obj = response_object(&self.id, &self.ctx, "in_progress", Vec::new(), None, None);
        let text = obj.to_string();
        self.emit("response.created", &format!("\"response\":{text}"), out);
        self.emit("response.in_progress", &format!("\"response\":{text}"), out);
    }

    fn block_start(&mut self, index: usize, kind: &BlockKind, out: &mut String) {
        let rid = &self.ctx.request_id;
        let (id, item) = match kind {
            BlockKind::Text => {
                let id = format!("msg_{index}_{rid}");
                let item = message_item(&id, "", "in_progress");
                (id, item)
            }
            BlockKind::Thinking => {
                let id = format!("rs_{index}_{rid}");
                let item = reasoning_item(&id, "", None);
                (id, item)
            }
            BlockKind::ToolCall { id: call_id, name, signature } => {
                let id = format!("fc_{index}_{rid}");
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                };
                let item = call_item(&id, &call, &self.ctx, "in_progress");
                (id, item)
            }
        };
        self.emit_json("response.output_item.added", with_item(index, item), out);
        match kind {
            BlockKind::Text => self.emit_json(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
                out,
            ),
            BlockKind::Thinking => self.emit_json(
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
                out,
            ),
            BlockKind::ToolCall { .. } => {}
        }
        self.open = Some(OpenItem { id, kind: kind.clone(), text: String::new(), signature: None });
    }

    fn block_stop(&mut self, index: usize, out: &mut String) {
        let Some(item) = self.open.take() else { return };
        let done = match &item.kind {
            BlockKind::Text => {
                self.emit_json(
                    "response.output_text.done",
                    json!({"item_id": item.id, "output_index": index, "content_index": 0, "text": item.text, "logprobs": []}),
                    out,
                );
                self.emit_json(
                    "response.content_part.done",
                    json!({"item_id": item.id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": item.text, "annotations": []}}),
                    out,
                );
                message_item(&item.id, &item.text, "completed")
            }
            BlockKind::Thinking => {
                self.emit_json(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": item.id, "output_index": index, "summary_index": 0, "text": item.text}),
                    out,
                );
                self.emit_json(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": item.id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": item.text}}),
                    out,
                );
                reasoning_item(&item.id, &item.text, item.signature.as_deref())
            }
            BlockKind::ToolCall { id, name, signature } => {
                if !self.ctx.is_custom_tool(name) {
                    // Fields in the order serde_json writes them (sorted).
                    self.open_event("response.function_call_arguments.done", out);
                    out.push_str(",\"arguments\":");
                    push_str(out, &item.text);
                    out.push_str(",\"item_id\":");
                    push_str(out, &item.id);
                    out.push_str(",\"name\":");
                    push_str(out, name);
                    let _ = write!(out, ",\"output_index\":{index}}}\n\n");
                }
                let call = ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: item.text,
                    signature: signature.clone(),
                };
                let done = call_item(&item.id, &call, &self.ctx, "completed");
                if self.ctx.is_custom_tool(name) {
                    let input = done["input"].clone();
                    self.emit_json(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": item.id, "output_index": index, "delta": input}),
                        out,
                    );
                    self.emit_json(
                        "response.custom_tool_call_input.done",
                        json!({"item_id": item.id, "output_index": index, "input": input}),
                        out,
                    );
                }
                done
            }
        };
        let text = done.to_string();
        self.open_event("response.output_item.done", out);
        out.push_str(",\"item\":");
        out.push_str(&text);
        let _ = write!(out, ",\"output_index\":{index}}}\n\n");
        self.output.push(done);
    }

    /// A delta event, written straight into `out`.
    fn text_delta(&mut self, index: usize, name: &str, extra: &str, text: &str, out: &mut String) {
        let Some(mut item) = self.open.take() else { return };
        item.text.push_str(text);
        self.open_event(name, out);
        push_item_head(&item.id, index, out);
        out.push_str(extra);
        out.push_str(",\"delta\":");
        push_str(out, text);
        out.push_str("}\n\n");
        self.open = Some(item);
    }
}

impl StreamEncoder for ResponsesEncoder {
    fn has_keepalive(&self) -> bool {
        true
    }

    /// A comment line during provider silences, so proxies in between
    /// (Cloudflare cuts idle connections at 100 s) keep the stream.
    fn keepalive(&mut self, out: &mut String) {
        if !self.ended {
            out.push_str(crate::formats::codec::SSE_COMMENT_KEEPALIVE);
        }
    }

    fn encode(&mut self, ev: &StreamEvent, out: &mut String) {
        if self.ended {
            return;
        }
        if !self.started && !matches!(ev, StreamEvent::Error { .. }) {
            let id = if let StreamEvent::Start { id, .. } = ev { id.clone() } else { String::new() };
            self.start(&id, out);
        }
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::BlockStart { index, kind } => self.block_start(*index, kind, out),
            StreamEvent::TextDelta { index, text } => self.text_delta(
                *index,
                "response.output_text.delta",
                ",\"content_index\":0,\"logprobs\":[]",
                text,
                out,
            ),
            StreamEvent::ThinkingDelta { index, text } => self.text_delta(
                *index,
                "response.reasoning_summary_text.delta",
                ",\"summary_index\":0",
                text,
                out,
            ),
            StreamEvent::Signature { signature, .. } => {
                if let Some(item) = self.open.as_mut() {
                    item.signature.get_or_insert_with(String::new).push_str(signature);
                }
            }
            StreamEvent::ToolArguments { index, json } => {
                let custom = matches!(&self.open, Some(OpenItem { kind: BlockKind::ToolCall { name, .. }, .. }) if self.ctx.is_custom_tool(name));
                if custom {
                    // Freeform input is sent whole when the call completes.
                    if let Some(item) = self.open.as_mut() {
                        item.text.push_str(json);
                    }
                } else {
                    self.text_delta(*index, "response.function_call_arguments.delta", "", json, out);
                }
            }
            StreamEvent::BlockStop { index } => self.block_stop(*index, out),
            StreamEvent::Finish { stop, usage, .. } => {
                let status = status_of(*stop);
                let output = std::mem::take(&mut self.output);
                let obj = response_object(&self.id, &self.ctx, status, output, Some(usage), Some(*stop));
                let name = if status == "completed" { "response.completed" } else { "response.incomplete" };
                self.open_event(name, out);
                out.push_str(",\"response\":");
                out.push_str(&obj.to_string());
                out.push_str("}\n\n");
                self.ended = true;
            }
            StreamEvent::Error { status, message } => {
                let err = GatewayError::Upstream { status: *status, message: message.clone() };
                let fields = json!({"code": err.code(), "message": message, "param": null});
                self.emit_json("error", fields, out);
                self.ended = true;
            }
        }
    }
}
