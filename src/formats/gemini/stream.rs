//! Gemini streams: provider chunks (each a partial generateContent
//! document) into canonical events, and canonical events into chunks for
//! Gemini callers, `alt=sse` framed or as Google's JSON array, the last
//! chunk carrying `finishReason` and `usageMetadata`.

use super::response::{call_part, document, finish_reason_from, part_from, thought_part};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, Part, StopReason, StreamEvent, ToolCall};
use crate::formats::translate::blocks::{Blocks, Slot};
use crate::formats::translate::{ClientContext, StreamEncoder, StreamParser};
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{errors, ClientFormat};
use crate::sse::SseEvent;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct GeminiParser {
    seed: String,
    started: bool,
    blocks: Blocks,
    calls: u64,
    stop: Option<StopReason>,
    usage: Usage,
    done: bool,
}

impl GeminiParser {
    pub fn new(ctx: &ClientContext) -> Self {
        Self {
            seed: ctx.request_id.clone(),
            started: false,
            blocks: Blocks::default(),
            calls: 0,
            stop: None,
            usage: Usage::default(),
            done: false,
        }
    }

    fn fail(&mut self, status: u16, message: String, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error { status, message });
    }
}

impl StreamParser for GeminiParser {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) {
        let Some(data) = event.data.as_deref() else { return };
        if self.done {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return self.fail(502, format!("unreadable provider stream chunk: {e}"), out),
        };
        if let Some(err) = v.get("error") {
            let status =
                err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            let message = err.get("message").and_then(Value::as_str).unwrap_or("provider error");
            return self.fail(status, message.to_string(), out);
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = from_usage_object(ClientFormat::Gemini, u);
        }
        if !self.started {
            self.started = true;
            let input = Usage {
                input_tokens: self.usage.input_tokens,
                cached_input_tokens: self.usage.cached_input_tokens,
                ..Usage::default()
            };
            out.push(StreamEvent::Start {
                id: v.get("responseId").and_then(Value::as_str).unwrap_or_default().to_string(),
                model: v.get("modelVersion").and_then(Value::as_str).unwrap_or_default().to_string(),
                usage: (input.input_tokens > 0).then_some(input),
            });
        }
        let candidate = v.pointer("/candidates/0").unwrap_or(&Value::Null);
        for p in candidate.pointer("/content/parts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
        {
            let n = usize::try_from(self.calls).unwrap_or(0);
            match part_from(p, &self.seed, n) {
                Some(Part::Text(text)) => {
                    let index = self.blocks.enter(Slot::Text, || BlockKind::Text, out);
                    out.push(StreamEvent::TextDelta { index, text });
                }
                Some(Part::Thinking { text, signature }) => {
                    let index = self.blocks.enter(Slot::Thinking, || BlockKind::Thinking, out);
                    if !text.is_empty() {
                        out.push(StreamEvent::ThinkingDelta { index, text });
                    }
                    if let Some(signature) = signature {
                        out.push(StreamEvent::Signature { index, signature });
                    }
                }
                Some(Part::ToolCall(ToolCall { id, name, arguments, signature })) => {
                    self.calls += 1;
                    let index = self.blocks.enter(
                        Slot::Tool(self.calls),
                        || BlockKind::ToolCall { id, name, signature },
                        out,
                    );
                    out.push(StreamEvent::ToolArguments { index, json: arguments });
                    self.blocks.close(out);
                }
                _ => {}
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.stop = Some(finish_reason_from(reason));
        }
        if v.pointer("/promptFeedback/blockReason").is_some() {
            self.stop = Some(StopReason::ContentFilter);
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        match self.stop {
            Some(stop) => {
                self.blocks.close(out);
                let stop = stop.with_tool_calls(self.blocks.saw_tool_calls);
                out.push(StreamEvent::Finish { stop, stop_sequence: None, usage: self.usage });
            }
            None => out.push(StreamEvent::Error {
                status: 502,
                message: "the provider's stream ended without a finish reason".into(),
            }),
        }
    }
}

#[derive(Debug)]
pub struct GeminiEncoder {
    ctx: ClientContext,
    sse: bool,
    chunks: usize,
    /// The tool call being assembled: Gemini sends a call whole.
    call: Option<ToolCall>,
    thought_signature: Option<String>,
    ended: bool,
}

impl GeminiEncoder {
    pub fn new(ctx: &ClientContext) -> Self {
        Self {
            ctx: ctx.clone(),
            sse: ctx.gemini_sse,
            chunks: 0,
            call: None,
            thought_signature: None,
            ended: false,
        }
    }

    fn chunk(&mut self, doc: &Value, out: &mut String) {
        if self.sse {
            out.push_str("data: ");
            out.push_str(&doc.to_string());
            out.push_str("\r\n\r\n");
        } else {
            out.push_str(if self.chunks == 0 { "[" } else { ",\r\n" });
            out.push_str(&doc.to_string());
        }
        self.chunks += 1;
    }

    fn parts(&mut self, parts: Vec<Value>, out: &mut String) {
        let doc = document(parts, None, None, &self.ctx);
        self.chunk(&doc, out);
    }
}

impl StreamEncoder for GeminiEncoder {
    fn encode(&mut self, ev: &StreamEvent, out: &mut String) {
        if self.ended {
            return;
        }
        match ev {
            StreamEvent::Start { .. }
            | StreamEvent::BlockStart { kind: BlockKind::Text | BlockKind::Thinking, .. } => {}
            StreamEvent::BlockStart { kind: BlockKind::ToolCall { id, name, signature }, .. } => {
                self.call = Some(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                });
            }
            StreamEvent::TextDelta { text, .. } => self.parts(vec![json!({"text": text})], out),
            StreamEvent::ThinkingDelta { text, .. } => self.parts(vec![thought_part(text, None)], out),
            StreamEvent::Signature { signature, .. } => {
                self.thought_signature.get_or_insert_with(String::new).push_str(signature)
            }
            StreamEvent::ToolArguments { json, .. } => {
                if let Some(call) = self.call.as_mut() {
                    call.arguments.push_str(json);
                }
            }
            StreamEvent::BlockStop { .. } => {
                if let Some(call) = self.call.take() {
                    self.parts(vec![call_part(&call)], out);
                } else if let Some(sig) = self.thought_signature.take() {
                    self.parts(vec![thought_part("", Some(&sig))], out);
                }
            }
            StreamEvent::Finish { stop, usage, .. } => {
                let doc = document(vec![json!({"text": ""})], Some(*stop), Some(usage), &self.ctx);
                self.chunk(&doc, out);
                self.ended = true;
            }
            StreamEvent::Error { status, message } => {
                let err = GatewayError::Upstream { status: *status, message: message.clone() };
                let body = errors::render(&err, ClientFormat::Gemini);
                let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                self.chunk(&doc, out);
                self.ended = true;
            }
        }
    }

    fn finish(&mut self, out: &mut String) {
        if !self.sse {
            out.push_str(if self.chunks == 0 { "[]" } else { "]" });
        }
    }
}
