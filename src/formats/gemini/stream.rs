//! Gemini streams: provider chunks (each a partial generateContent
//! document) into canonical events, and canonical events into chunks for
//! Gemini callers, `alt=sse` framed or as Google's JSON array, the last
//! chunk carrying `finishReason` and `usageMetadata`.

use super::response::{call_part, document, finish_reason_from, thought_part, WireDocument};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, Part, StopReason, StreamEvent, Thinking, ToolCall};
use crate::formats::codec::blocks::{Blocks, Slot};
use crate::formats::codec::{ClientContext, StreamEncoder, StreamParser};
use crate::formats::json::push_str;
use crate::formats::usage::Usage;
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
        let mut chunk = match WireDocument::read(data.as_bytes()) {
            Ok(c) => c,
            Err(e) => return self.fail(502, format!("unreadable provider stream chunk: {e}"), out),
        };
        if chunk.error.is_some() && self.stop.is_some() {
            // An error after the chunk with `finishReason`: the answer was
            // whole; it ends as it would have with the body.
            return self.finish(out);
        }
        if let Some(err) = &chunk.error {
            let status =
                err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            let message = err.get("message").and_then(Value::as_str).unwrap_or("provider error");
            return self.fail(status, message.to_string(), out);
        }
        if chunk.usage_metadata.is_some() {
            // The last report decides: one that cannot be read leaves no count.
            self.usage = chunk.usage().unwrap_or_default();
        }
        if !self.started {
            self.started = true;
            let input = Usage {
                input_tokens: self.usage.input_tokens,
                cached_input_tokens: self.usage.cached_input_tokens,
                ..Usage::default()
            };
            out.push(StreamEvent::Start {
                id: chunk.response_id.take().unwrap_or_default(),
                model: chunk.model_version.take().unwrap_or_default(),
                usage: (input.input_tokens > 0).then_some(input),
            });
        }
        let blocked = chunk.blocked();
        let (parts, finish) = chunk.first_candidate();
        for p in parts {
            let n = usize::try_from(self.calls).unwrap_or(0);
            match p.into_part(&self.seed, n) {
                Some(Part::Text(text)) => {
                    let index = self.blocks.enter(Slot::Text, || BlockKind::Text, out);
                    out.push(StreamEvent::TextDelta { index, text });
                }
                Some(Part::Thinking(thinking)) => {
                    let Thinking { text, signature } = *thinking;
                    let index = self.blocks.enter(Slot::Thinking, || BlockKind::Thinking, out);
                    if !text.is_empty() {
                        out.push(StreamEvent::ThinkingDelta { index, text });
                    }
                    if let Some(signature) = signature {
                        out.push(StreamEvent::Signature { index, signature });
                    }
                }
                Some(Part::ToolCall(call)) => {
                    let ToolCall { id, name, arguments, signature } = *call;
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
        if let Some(reason) = finish {
            self.stop = Some(finish_reason_from(&reason));
        }
        if blocked {
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
    /// What follows the parts of a chunk with no finish and no usage:
    /// written once, since text deltas are most of a stream.
    delta_tail: String,
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
            delta_tail: delta_tail(ctx),
            call: None,
            thought_signature: None,
            ended: false,
        }
    }

    fn chunk(&mut self, doc: &Value, out: &mut String) {
        self.open_chunk(out);
        out.push_str(&doc.to_string());
        self.close_chunk(out);
    }

    fn open_chunk(&mut self, out: &mut String) {
        if self.sse {
            out.push_str("data: ");
        } else {
            out.push_str(if self.chunks == 0 { "[" } else { ",\r\n" });
        }
        self.chunks += 1;
    }

    fn close_chunk(&self, out: &mut String) {
        if self.sse {
            out.push_str("\r\n\r\n");
        }
    }

    /// The chunk `document(vec![{"text": text, ("thought": true)}])` makes,
    /// written straight into `out` (keys in serde_json's sorted order).
    fn text_chunk(&mut self, text: &str, thought: bool, out: &mut String) {
        self.open_chunk(out);
        out.push_str(DELTA_HEAD);
        push_str(out, text);
        if thought {
            out.push_str(",\"thought\":true");
        }
        out.push('}');
        out.push_str(&self.delta_tail);
        self.close_chunk(out);
    }

    fn parts(&mut self, parts: Vec<Value>, out: &mut String) {
        let doc = document(parts, None, None, &self.ctx);
        self.chunk(&doc, out);
    }
}

const DELTA_HEAD: &str = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":";

fn delta_tail(ctx: &ClientContext) -> String {
    let mut tail = String::from("],\"role\":\"model\"},\"index\":0}],\"modelVersion\":");
    push_str(&mut tail, &ctx.model);
    tail.push_str(",\"responseId\":");
    push_str(&mut tail, &ctx.request_id);
    tail.push('}');
    tail
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
            StreamEvent::TextDelta { text, .. } => self.text_chunk(text, false, out),
            StreamEvent::ThinkingDelta { text, .. } => self.text_chunk(text, true, out),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_deltas_are_written_as_document_writes_them() {
        let ctx = ClientContext {
            model: "m\"odel/é".into(),
            request_id: "req_<1>".into(),
            gemini_sse: true,
            ..ClientContext::default()
        };
        for text in ["", "Hello ", "quote \" back\\slash \n\t\u{1} é 😀 </script>"] {
            for thought in [false, true] {
                let mut fast = String::new();
                GeminiEncoder::new(&ctx).text_chunk(text, thought, &mut fast);
                let part = if thought { thought_part(text, None) } else { json!({"text": text}) };
                let mut slow = String::new();
                GeminiEncoder::new(&ctx).chunk(&document(vec![part], None, None, &ctx), &mut slow);
                assert_eq!(fast, slow);
            }
        }
    }
}
