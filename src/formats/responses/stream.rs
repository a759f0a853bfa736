//! OpenAI Responses streams: named provider events into canonical events,
//! and canonical events into the sequence the OpenAI SDK's
//! `responses.stream()` and Codex check: `response.created` →
//! `output_item.added` → (`content_part.added`) → deltas → `*.done` →
//! `output_item.done` → `response.completed`, each with a sequence number.

use super::items;
use super::response::{status_of, stop_from_status};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, StreamEvent, ToolCall};
use crate::formats::codec::blocks::{Blocks, Slot};
use crate::formats::codec::{custom_input, ClientContext, StreamEncoder, StreamParser};
use crate::formats::json::{push_str, push_u64, quote};
use crate::formats::usage::from_usage_object;
use crate::formats::ClientFormat;
use crate::sse::SseEvent;
use serde_json::Value;
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

#[derive(Debug)]
pub struct ResponsesEncoder {
    ctx: ClientContext,
    id: String,
    seq: u64,
    open: Option<OpenItem>,
    /// The finished items as written, comma-separated: the output of
    /// `response.completed`.
    output: String,
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
            output: String::new(),
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
        push_u64(out, self.seq);
        self.seq += 1;
    }

    fn start(&mut self, id: &str, out: &mut String) {
        self.started = true;
        self.id = items::call_response_id(&self.ctx.request_id, id);
        let mut object = String::with_capacity(640);
        items::response_object(&mut object, &self.id, &self.ctx, "in_progress", "", None, None);
        for name in ["response.created", "response.in_progress"] {
            self.open_event(name, out);
            out.push_str(",\"response\":");
            out.push_str(&object);
            out.push_str("}\n\n");
        }
    }

    fn block_start(&mut self, index: usize, kind: &BlockKind, out: &mut String) {
        let rid = &self.ctx.request_id;
        let id = match kind {
            BlockKind::Text => format!("msg_{index}_{rid}"),
            BlockKind::Thinking => format!("rs_{index}_{rid}"),
            BlockKind::ToolCall { .. } => format!("fc_{index}_{rid}"),
        };
        self.open_event("response.output_item.added", out);
        out.push_str(",\"item\":");
        match kind {
            BlockKind::Text => items::message_item(out, &id, "", "in_progress"),
            BlockKind::Thinking => items::reasoning_item(out, &id, "", None),
            BlockKind::ToolCall { id: call_id, name, signature } => {
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                };
                items::call_item(out, &id, &call, &self.ctx, "in_progress");
            }
        }
        let _ = write!(out, ",\"output_index\":{index}}}\n\n");
        match kind {
            BlockKind::Text => {
                self.open_event("response.content_part.added", out);
                out.push_str(",\"content_index\":0,\"item_id\":");
                push_str(out, &id);
                let _ = write!(
                    out,
                    ",\"output_index\":{index},\"part\":{{\"annotations\":[],\"text\":\"\",\"type\":\"output_text\"}}}}\n\n"
                );
            }
            BlockKind::Thinking => {
                self.open_event("response.reasoning_summary_part.added", out);
                push_item_head(&id, index, out);
                out.push_str(",\"part\":{\"text\":\"\",\"type\":\"summary_text\"},\"summary_index\":0}\n\n");
            }
            BlockKind::ToolCall { .. } => {}
        }
        self.open = Some(OpenItem { id, kind: kind.clone(), text: String::new(), signature: None });
    }

    fn block_stop(&mut self, index: usize, out: &mut String) {
        let Some(item) = self.open.take() else { return };
        match &item.kind {
            BlockKind::Text => {
                self.open_event("response.output_text.done", out);
                out.push_str(",\"content_index\":0,\"item_id\":");
                push_str(out, &item.id);
                let _ = write!(out, ",\"logprobs\":[],\"output_index\":{index},\"text\":");
                push_str(out, &item.text);
                out.push_str("}\n\n");
                self.open_event("response.content_part.done", out);
                out.push_str(",\"content_index\":0,\"item_id\":");
                push_str(out, &item.id);
                let _ = write!(out, ",\"output_index\":{index},\"part\":{{\"annotations\":[],\"text\":");
                push_str(out, &item.text);
                out.push_str(",\"type\":\"output_text\"}}\n\n");
            }
            BlockKind::Thinking => {
                self.open_event("response.reasoning_summary_text.done", out);
                push_item_head(&item.id, index, out);
                out.push_str(",\"summary_index\":0,\"text\":");
                push_str(out, &item.text);
                out.push_str("}\n\n");
                self.open_event("response.reasoning_summary_part.done", out);
                push_item_head(&item.id, index, out);
                out.push_str(",\"part\":{\"text\":");
                push_str(out, &item.text);
                out.push_str(",\"type\":\"summary_text\"},\"summary_index\":0}\n\n");
            }
            BlockKind::ToolCall { name, .. } if self.ctx.is_custom_tool(name) => {
                let input = custom_input(&item.text);
                self.open_event("response.custom_tool_call_input.delta", out);
                out.push_str(",\"delta\":");
                push_str(out, &input);
                push_item_tail(&item.id, index, out);
                self.open_event("response.custom_tool_call_input.done", out);
                out.push_str(",\"input\":");
                push_str(out, &input);
                push_item_tail(&item.id, index, out);
            }
            BlockKind::ToolCall { name, .. } => {
                self.open_event("response.function_call_arguments.done", out);
                out.push_str(",\"arguments\":");
                push_str(out, &item.text);
                out.push_str(",\"item_id\":");
                push_str(out, &item.id);
                out.push_str(",\"name\":");
                push_str(out, name);
                let _ = write!(out, ",\"output_index\":{index}}}\n\n");
            }
        }
        self.open_event("response.output_item.done", out);
        out.push_str(",\"item\":");
        let start = out.len();
        match item.kind {
            BlockKind::Text => items::message_item(out, &item.id, &item.text, "completed"),
            BlockKind::Thinking => {
                items::reasoning_item(out, &item.id, &item.text, item.signature.as_deref())
            }
            BlockKind::ToolCall { id, name, signature } => {
                let call = ToolCall { id, name, arguments: item.text, signature };
                items::call_item(out, &item.id, &call, &self.ctx, "completed");
            }
        }
        if !self.output.is_empty() {
            self.output.push(',');
        }
        self.output.push_str(&out[start..]);
        let _ = write!(out, ",\"output_index\":{index}}}\n\n");
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

/// `"item_id":…,"output_index":…`, the fields most item events start with.
fn push_item_head(item_id: &str, index: usize, out: &mut String) {
    out.push_str(",\"item_id\":");
    push_str(out, item_id);
    out.push_str(",\"output_index\":");
    push_u64(out, index as u64);
}

/// The same two fields closing an event whose other fields sort before them.
fn push_item_tail(item_id: &str, index: usize, out: &mut String) {
    push_item_head(item_id, index, out);
    out.push_str("}\n\n");
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
                let name = if status == "completed" { "response.completed" } else { "response.incomplete" };
                self.open_event(name, out);
                out.push_str(",\"response\":");
                let output = std::mem::take(&mut self.output);
                items::response_object(out, &self.id, &self.ctx, status, &output, Some(usage), Some(*stop));
                out.push_str("}\n\n");
                self.ended = true;
            }
            StreamEvent::Error { status, message } => {
                let err = GatewayError::Upstream { status: *status, message: message.clone() };
                self.open_event("error", out);
                out.push_str(",\"code\":");
                push_str(out, err.code());
                out.push_str(",\"message\":");
                push_str(out, message);
                out.push_str(",\"param\":null}\n\n");
                self.ended = true;
            }
        }
    }
}
