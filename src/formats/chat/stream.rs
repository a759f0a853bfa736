//! Chat Completions streams: chunks from a provider into canonical events,
//! and canonical events into the chunks the OpenAI SDK expects (role
//! first, content and tool-call deltas with their indices, the
//! `finish_reason` chunk, the usage chunk when asked, `[DONE]`).

use super::response::{chat_id, finish_reason, finish_reason_from, usage_object};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, StopReason, StreamEvent};
use crate::formats::codec::blocks::{Blocks, Slot};
use crate::formats::codec::{ClientContext, StreamEncoder, StreamParser};
use crate::formats::json::push_str;
use crate::formats::usage::{from_usage_object, Usage};
use crate::formats::{errors, ids, ClientFormat};
use crate::sse::SseEvent;
use serde::Deserialize;

#[derive(Deserialize)]
struct Chunk {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<serde_json::Value>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Default)]
pub struct ChatParser {
    started: bool,
    blocks: Blocks,
    stop: Option<StopReason>,
    usage: Usage,
    done: bool,
}

impl StreamParser for ChatParser {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) {
        let Some(data) = event.data.as_deref() else { return };
        if self.done {
            return;
        }
        if data.trim() == "[DONE]" {
            self.end(out);
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => return self.fail(502, format!("unreadable provider stream chunk: {e}"), out),
        };
        if let Some(err) = chunk.error {
            let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("provider error");
            return self.fail(502, message.to_string(), out);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.unwrap_or_default(),
                model: chunk.model.unwrap_or_default(),
                usage: None,
            });
        }
        if let Some(u) = &chunk.usage {
            if u.is_object() {
                self.usage = from_usage_object(ClientFormat::Openai, u);
            }
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                self.on_delta(delta, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.stop = Some(finish_reason_from(&reason));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        if self.stop.is_some() {
            // Some servers end without `[DONE]`; the finish reason is enough.
            self.end(out);
        } else {
            self.fail(502, "the provider's stream ended before it finished".into(), out);
        }
    }
}

impl ChatParser {
    fn on_delta(&mut self, delta: Delta, out: &mut Vec<StreamEvent>) {
        if let Some(text) = delta.reasoning_content.filter(|t| !t.is_empty()) {
            let index = self.blocks.enter(Slot::Thinking, || BlockKind::Thinking, out);
            out.push(StreamEvent::ThinkingDelta { index, text });
        }
        for text in [delta.content, delta.refusal].into_iter().flatten().filter(|t| !t.is_empty()) {
            let index = self.blocks.enter(Slot::Text, || BlockKind::Text, out);
            out.push(StreamEvent::TextDelta { index, text });
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let slot = Slot::Tool(call.index.unwrap_or(0));
            let function = call.function.unwrap_or(FunctionDelta { name: None, arguments: None });
            let index = match self.blocks.current(slot) {
                Some(index) => index,
                None => {
                    let id = call.id.clone().unwrap_or_default();
                    let name = function.name.clone().unwrap_or_default();
                    self.blocks.enter(slot, || BlockKind::ToolCall { id, name, signature: None }, out)
                }
            };
            if let Some(json) = function.arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ToolArguments { index, json });
            }
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        self.done = true;
        self.blocks.close(out);
        let stop = self.stop.unwrap_or(StopReason::EndTurn).with_tool_calls(self.blocks.saw_tool_calls);
        out.push(StreamEvent::Finish { stop, stop_sequence: None, usage: self.usage });
    }

    fn fail(&mut self, status: u16, message: String, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error { status, message });
    }
}

#[derive(Debug)]
pub struct ChatEncoder {
    /// `{"id":…,"choices":[{"index":0,"delta":` up to the delta.
    head: String,
    include_usage: bool,
    model: String,
    created: u64,
    id: String,
    ctx_custom: Vec<String>,
    /// Chat numbers tool calls 0.. apart from other content.
    tool_index: Option<u64>,
    tools_seen: u64,
    started: bool,
    ended: bool,
}

impl ChatEncoder {
    pub fn new(ctx: &ClientContext) -> Self {
        Self {
            head: String::new(),
            include_usage: ctx.include_usage,
            model: ctx.model.clone(),
            created: ctx.created,
            id: String::new(),
            ctx_custom: ctx.custom_tools.clone(),
            tool_index: None,
            tools_seen: 0,
            started: false,
            ended: false,
        }
    }

    fn start(&mut self, id: &str) {
        self.id = chat_id(if id.is_empty() { "gateway" } else { id });
        let mut head = String::from("{\"id\":");
        push_str(&mut head, &self.id);
        head.push_str(",\"object\":\"chat.completion.chunk\",\"created\":");
        head.push_str(&self.created.to_string());
        head.push_str(",\"model\":");
        push_str(&mut head, &self.model);
        head.push_str(",\"choices\":[{\"index\":0,\"delta\":");
        self.head = head;
        self.started = true;
    }

    fn chunk(&self, out: &mut String, delta: &str, finish: Option<&str>) {
        out.push_str("data: ");
        out.push_str(&self.head);
        out.push_str(delta);
        out.push_str(",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => push_str(out, f),
            None => out.push_str("null"),
        }
        out.push_str("}]}\n\n");
    }
}

impl StreamEncoder for ChatEncoder {
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

    fn encode(&mut self, event: &StreamEvent, out: &mut String) {
        if self.ended {
            return;
        }
        if !self.started {
            let id = if let StreamEvent::Start { id, .. } = event { id.as_str() } else { "" };
            self.start(id);
            if !matches!(event, StreamEvent::Error { .. }) {
                self.chunk(out, "{\"role\":\"assistant\",\"content\":\"\"}", None);
            }
        }
        match event {
            StreamEvent::Start { .. } | StreamEvent::Signature { .. } => {}
            StreamEvent::BlockStart { kind: BlockKind::ToolCall { id, name, signature }, .. } => {
                let n = self.tools_seen;
                self.tools_seen += 1;
                self.tool_index = Some(n);
                let mut delta = format!("{{\"tool_calls\":[{{\"index\":{n},\"id\":");
                push_str(&mut delta, &ids::wrap(id, signature.as_deref()));
                let kind = if self.ctx_custom.contains(name) { "custom" } else { "function" };
                delta.push_str(&format!(",\"type\":\"{kind}\",\"function\":{{\"name\":"));
                push_str(&mut delta, name);
                delta.push_str(",\"arguments\":\"\"}}]}");
                self.chunk(out, &delta, None);
            }
            StreamEvent::BlockStart { .. } | StreamEvent::BlockStop { .. } => {}
            StreamEvent::TextDelta { text, .. } => {
                let mut delta = String::from("{\"content\":");
                push_str(&mut delta, text);
                delta.push('}');
                self.chunk(out, &delta, None);
            }
            StreamEvent::ThinkingDelta { text, .. } => {
                let mut delta = String::from("{\"reasoning_content\":");
                push_str(&mut delta, text);
                delta.push('}');
                self.chunk(out, &delta, None);
            }
            StreamEvent::ToolArguments { json, .. } => {
                let n = self.tool_index.unwrap_or(0);
                let mut delta = format!("{{\"tool_calls\":[{{\"index\":{n},\"function\":{{\"arguments\":");
                push_str(&mut delta, json);
                delta.push_str("}}]}");
                self.chunk(out, &delta, None);
            }
            StreamEvent::Finish { stop, usage, .. } => {
                self.chunk(out, "{}", Some(finish_reason(*stop)));
                if self.include_usage {
                    let doc = serde_json::json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage_object(usage),
                    });
                    out.push_str("data: ");
                    out.push_str(&doc.to_string());
                    out.push_str("\n\n");
                }
                out.push_str("data: [DONE]\n\n");
                self.ended = true;
            }
            StreamEvent::Error { status, message } => {
                let err = GatewayError::Upstream { status: *status, message: message.clone() };
                errors::push_stream_error(ClientFormat::Openai, &err, out);
                self.ended = true;
            }
        }
    }
}
