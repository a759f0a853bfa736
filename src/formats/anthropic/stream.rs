//! Anthropic Messages streams: provider events into canonical events, and
//! canonical events into the sequence the Anthropic SDK and Claude Code
//! expect: `message_start` (with input usage), `ping`,
//! `content_block_start/delta/stop` by index, `message_delta` with the
//! stop reason and final usage, `message_stop`.

use super::response::{message_id, stop_reason, stop_reason_from};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, StopReason, StreamEvent};
use crate::formats::codec::{ClientContext, StreamEncoder, StreamParser};
use crate::formats::ids;
use crate::formats::json::{push_str, push_u64};
use crate::formats::usage::{from_usage_object, merge_anthropic_object, Usage};
use crate::formats::{errors, ClientFormat};
use crate::sse::SseEvent;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct AnthropicParser {
    usage: Usage,
    stop: Option<StopReason>,
    stop_sequence: Option<String>,
    /// Anthropic block index → canonical index, for the blocks relayed.
    blocks: HashMap<u64, usize>,
    next: usize,
    saw_tool_calls: bool,
    done: bool,
}

fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        "timeout_error" => 504,
        _ => 500,
    }
}

impl StreamParser for AnthropicParser {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) {
        let Some(data) = event.data.as_deref() else { return };
        if self.done {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return self.fail(502, format!("unreadable provider stream event: {e}"), out),
        };
        let kind = event.event.as_deref().or_else(|| v.get("type").and_then(Value::as_str)).unwrap_or("");
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let m = &v["message"];
                self.usage = from_usage_object(ClientFormat::Anthropic, &m["usage"]);
                out.push(StreamEvent::Start {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    model: m["model"].as_str().unwrap_or_default().to_string(),
                    usage: Some(Usage { output_tokens: 0, ..self.usage }),
                });
            }
            "content_block_start" => {
                let b = &v["content_block"];
                let kind = match b["type"].as_str() {
                    Some("text") => BlockKind::Text,
                    Some("thinking") => BlockKind::Thinking,
                    Some("tool_use") => {
                        self.saw_tool_calls = true;
                        BlockKind::ToolCall {
                            id: b["id"].as_str().unwrap_or_default().to_string(),
                            name: b["name"].as_str().unwrap_or_default().to_string(),
                            signature: None,
                        }
                    }
                    // Redacted reasoning and server-side tool blocks have no
                    // form in other formats.
                    _ => return,
                };
                let ours = self.next;
                self.next += 1;
                self.blocks.insert(index, ours);
                out.push(StreamEvent::BlockStart { index: ours, kind });
                if let Some(text) = b["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { index: ours, text: text.to_string() });
                }
            }
            "content_block_delta" => {
                let Some(&ours) = self.blocks.get(&index) else { return };
                let d = &v["delta"];
                let text = |key: &str| d[key].as_str().unwrap_or_default().to_string();
                out.push(match d["type"].as_str() {
                    Some("text_delta") => StreamEvent::TextDelta { index: ours, text: text("text") },
                    Some("thinking_delta") => {
                        StreamEvent::ThinkingDelta { index: ours, text: text("thinking") }
                    }
                    Some("signature_delta") => {
                        StreamEvent::Signature { index: ours, signature: text("signature") }
                    }
                    Some("input_json_delta") => {
                        StreamEvent::ToolArguments { index: ours, json: text("partial_json") }
                    }
                    _ => return,
                });
            }
            "content_block_stop" => {
                if let Some(ours) = self.blocks.remove(&index) {
                    out.push(StreamEvent::BlockStop { index: ours });
                }
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(stop_reason_from(reason));
                }
                self.stop_sequence =
                    v.pointer("/delta/stop_sequence").and_then(Value::as_str).map(str::to_string);
                merge_anthropic_object(&mut self.usage, v.get("usage"));
            }
            "message_stop" => self.end(out),
            "error" => {
                let status = status_of(v.pointer("/error/type").and_then(Value::as_str).unwrap_or(""));
                let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("provider error");
                self.fail(status, message.to_string(), out);
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.done {
            self.fail(502, "the provider's stream ended before message_stop".into(), out);
        }
    }
}

impl AnthropicParser {
    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        self.done = true;
        let mut open: Vec<usize> = self.blocks.drain().map(|(_, i)| i).collect();
        open.sort_unstable();
        out.extend(open.into_iter().map(|index| StreamEvent::BlockStop { index }));
        let stop = self.stop.unwrap_or(StopReason::EndTurn).with_tool_calls(self.saw_tool_calls);
        out.push(StreamEvent::Finish { stop, stop_sequence: self.stop_sequence.take(), usage: self.usage });
    }

    fn fail(&mut self, status: u16, message: String, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error { status, message });
    }
}

#[derive(Debug)]
pub struct AnthropicEncoder {
    model: String,
    input_estimate: u64,
    started: bool,
    ended: bool,
}

impl AnthropicEncoder {
    pub fn new(ctx: &ClientContext) -> Self {
        Self { model: ctx.model.clone(), input_estimate: ctx.input_estimate, started: false, ended: false }
    }

    fn start(&mut self, id: &str, usage: Option<&Usage>, out: &mut String) {
        self.started = true;
        // A provider that reports input usage only at the end (Chat
        // Completions) gets the local estimate here; `message_delta`
        // carries the real count.
        let usage = usage.copied().unwrap_or(Usage { input_tokens: self.input_estimate, ..Usage::default() });
        // As serde_json wrote the tree it replaces: keys in order.
        out.push_str("event: message_start\ndata: {\"message\":{\"content\":[],\"id\":");
        push_str(out, &message_id(if id.is_empty() { "gateway" } else { id }));
        out.push_str(",\"model\":");
        push_str(out, &self.model);
        out.push_str(
            ",\"role\":\"assistant\",\"stop_reason\":null,\"stop_sequence\":null,\"type\":\"message\",\"usage\":",
        );
        push_usage(out, &usage, 1);
        out.push_str("},\"type\":\"message_start\"}\n\n");
        event(out, "ping", "{\"type\":\"ping\"}");
    }
}

fn event(out: &mut String, name: &str, data: &str) {
    out.push_str("event: ");
    out.push_str(name);
    out.push_str("\ndata: ");
    out.push_str(data);
    out.push_str("\n\n");
}

/// `response::usage_object` written out (keys in order), with `output` tokens.
fn push_usage(out: &mut String, u: &Usage, output: u64) {
    out.push_str("{\"cache_creation_input_tokens\":");
    push_u64(out, u.cache_write_tokens);
    out.push_str(",\"cache_read_input_tokens\":");
    push_u64(out, u.cached_input_tokens);
    out.push_str(",\"input_tokens\":");
    push_u64(out, u.input_tokens.saturating_sub(u.cached_input_tokens + u.cache_write_tokens));
    out.push_str(",\"output_tokens\":");
    push_u64(out, output);
    out.push('}');
}

/// `content_block_start`, written as serde_json wrote its tree (keys in
/// order) without building one: a tool-call stream starts a block per call.
fn block_start(out: &mut String, index: usize, kind: &BlockKind) {
    out.push_str("event: content_block_start\ndata: {\"content_block\":");
    match kind {
        BlockKind::Text => out.push_str("{\"text\":\"\",\"type\":\"text\"}"),
        BlockKind::Thinking => out.push_str("{\"signature\":\"\",\"thinking\":\"\",\"type\":\"thinking\"}"),
        BlockKind::ToolCall { id, name, signature } => {
            out.push_str("{\"id\":");
            push_str(out, &super::tool_id(&ids::wrap(id, signature.as_deref())));
            out.push_str(",\"input\":{},\"name\":");
            push_str(out, name);
            out.push_str(",\"type\":\"tool_use\"}");
        }
    }
    out.push_str(",\"index\":");
    push_u64(out, index as u64);
    out.push_str(",\"type\":\"content_block_start\"}\n\n");
}

fn delta(out: &mut String, index: usize, kind: &str, key: &str, value: &str) {
    out.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
    push_u64(out, index as u64);
    out.push_str(",\"delta\":{\"type\":\"");
    out.push_str(kind);
    out.push_str("\",\"");
    out.push_str(key);
    out.push_str("\":");
    push_str(out, value);
    out.push_str("}}\n\n");
}

impl StreamEncoder for AnthropicEncoder {
    fn encode(&mut self, ev: &StreamEvent, out: &mut String) {
        if self.ended {
            return;
        }
        if !self.started && !matches!(ev, StreamEvent::Error { .. }) {
            match ev {
                StreamEvent::Start { id, usage, .. } => return self.start(id, usage.as_ref(), out),
                _ => self.start("", None, out),
            }
        }
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::BlockStart { index, kind } => block_start(out, *index, kind),
            StreamEvent::TextDelta { index, text } => delta(out, *index, "text_delta", "text", text),
            StreamEvent::ThinkingDelta { index, text } => {
                delta(out, *index, "thinking_delta", "thinking", text)
            }
            StreamEvent::Signature { index, signature } => {
                delta(out, *index, "signature_delta", "signature", signature)
            }
            StreamEvent::ToolArguments { index, json } => {
                delta(out, *index, "input_json_delta", "partial_json", json)
            }
            StreamEvent::BlockStop { index } => {
                out.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":");
                push_u64(out, *index as u64);
                out.push_str("}\n\n");
            }
            StreamEvent::Finish { stop, stop_sequence, usage } => {
                out.push_str("event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"");
                out.push_str(stop_reason(*stop));
                out.push_str("\",\"stop_sequence\":");
                match stop_sequence {
                    Some(sequence) => push_str(out, sequence),
                    None => out.push_str("null"),
                }
                out.push_str("},\"type\":\"message_delta\",\"usage\":");
                push_usage(out, usage, usage.output_tokens);
                out.push_str("}\n\n");
                event(out, "message_stop", "{\"type\":\"message_stop\"}");
                self.ended = true;
            }
            StreamEvent::Error { status, message } => {
                let err = GatewayError::Upstream { status: *status, message: message.clone() };
                errors::push_stream_error(ClientFormat::Anthropic, &err, out);
                self.ended = true;
            }
        }
    }

    fn has_keepalive(&self) -> bool {
        true
    }

    /// A `ping`, as Anthropic sends during long silences. Before the
    /// provider has said anything the stream opens first (with the local
    /// input estimate; `message_delta` carries the real count), because
    /// SDKs expect `message_start` to be the first event.
    fn keepalive(&mut self, out: &mut String) {
        if self.ended {
            return;
        }
        if self.started {
            event(out, "ping", "{\"type\":\"ping\"}");
        } else {
            self.start("", None, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::canonical::{BlockKind, StopReason, StreamEvent};
    use serde_json::json;

    /// The events written by hand read as the trees they replaced.
    #[test]
    fn hand_written_events_are_the_json_they_replaced() {
        let ctx = ClientContext {
            model: "m \"quoted\" \u{1F600}\n".into(),
            created: 0,
            custom_tools: Vec::new(),
            include_usage: true,
            input_estimate: 7,
            gemini_sse: true,
            namespaces: Vec::new(),
            request_id: "r".into(),
        };
        let mut enc = AnthropicEncoder::new(&ctx);
        let usage = Usage {
            input_tokens: 10,
            cached_input_tokens: 3,
            cache_write_tokens: 2,
            output_tokens: 5,
            ..Usage::default()
        };
        let mut out = String::new();
        for ev in [
            StreamEvent::Start { id: "chatcmpl-x".into(), model: String::new(), usage: Some(usage) },
            StreamEvent::BlockStart { index: 0, kind: BlockKind::Text },
            StreamEvent::BlockStart { index: 1, kind: BlockKind::Thinking },
            StreamEvent::BlockStart {
                index: 12,
                kind: BlockKind::ToolCall { id: "call/1".into(), name: "na\"me\t".into(), signature: None },
            },
            StreamEvent::BlockStop { index: 12 },
            StreamEvent::Finish {
                stop: StopReason::StopSequence,
                stop_sequence: Some("</\"end\">".into()),
                usage,
            },
        ] {
            enc.encode(&ev, &mut out);
        }
        let data: Vec<Value> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect();
        let usage_doc =
            json!({"input_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3});
        assert_eq!(
            data[0],
            json!({"type": "message_start", "message": {
                "id": "msg_x", "type": "message", "role": "assistant", "model": ctx.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3, "output_tokens": 1},
            }})
        );
        assert_eq!(
            data[2],
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(data[3]["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
        assert_eq!(
            data[4],
            json!({"type": "content_block_start", "index": 12, "content_block":
                {"type": "tool_use", "id": "call_1", "name": "na\"me\t", "input": {}}})
        );
        assert_eq!(data[5], json!({"type": "content_block_stop", "index": 12}));
        let mut finish_usage = usage_doc;
        finish_usage["output_tokens"] = json!(5);
        assert_eq!(
            data[6],
            json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "</\"end\">"}, "usage": finish_usage})
        );
    }
}
