//! What every codec (one module per wire format) shares, and nothing that
//! names a codec: the caller's context for the response side, the stream
//! parser and encoder traits, the provider flavour a request is built for,
//! freeform-tool helpers and block bookkeeping. The registry that joins
//! codecs into translators (`translate`) sits above them, so imports run
//! one way: translate -> codecs -> codec.

pub mod blocks;

/// An SSE comment: the keep-alive for callers whose format has no ping
/// event. The OpenAI SDKs and Codex skip comment lines (google-genai does
/// not, so Gemini callers get none).
pub const SSE_COMMENT_KEEPALIVE: &str = ": keep-alive\n\n";

use super::canonical::StreamEvent;
use crate::sse::SseEvent;

/// What the response side needs to know about the caller's request.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// The model id as the caller named it, echoed in responses.
    pub model: String,
    /// Unix seconds for the `created` fields.
    pub created: u64,
    /// Tools the caller declared as freeform (`custom`).
    pub custom_tools: Vec<String>,
    /// Chat Completions callers get a usage chunk only when they ask.
    pub include_usage: bool,
    /// A local estimate of the input tokens, for formats that announce
    /// input usage before the provider has reported it.
    pub input_estimate: u64,
    /// Gemini callers that did not ask for `alt=sse` get a JSON array.
    pub gemini_sse: bool,
    /// Tool namespaces a Responses caller declared (Codex): calls to
    /// `<namespace>__<name>` go back split.
    pub namespaces: Vec<String>,
    /// Seeds the ids the gateway makes up (tool calls Gemini does not name).
    pub request_id: String,
}

impl ClientContext {
    pub fn is_custom_tool(&self, name: &str) -> bool {
        self.custom_tools.iter().any(|t| t == name)
    }
}

/// Turns a provider's stream events into canonical events.
pub trait StreamParser: Send + std::fmt::Debug {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>);
    /// The upstream stream ended; a stream that never finished properly
    /// ends with an `Error` event.
    fn finish(&mut self, out: &mut Vec<StreamEvent>);
}

/// Writes canonical events as the caller's stream, SSE-framed.
pub trait StreamEncoder: Send + std::fmt::Debug {
    fn encode(&mut self, event: &StreamEvent, out: &mut String);
    /// The stream is over, after its `Finish` or `Error`: whatever framing
    /// the format still needs.
    fn finish(&mut self, _out: &mut String) {}
    /// Whether the format has a keep-alive event its SDKs accept.
    fn has_keepalive(&self) -> bool {
        false
    }
    /// The provider has been silent for a while: whatever the format sends
    /// so that clients and intermediaries do not take the quiet stream for
    /// a dead one (only called when [`Self::has_keepalive`]).
    fn keepalive(&mut self, _out: &mut String) {}
}

/// How the provider spells what differs between servers of one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The format's own vendor.
    Native,
    /// An OpenAI-compatible server (vLLM, DeepSeek, Groq...).
    Compatible,
}

/// The input schema a freeform (`custom`) tool gets on providers that
/// only have JSON-schema functions.
pub fn custom_tool_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The raw text input of this freeform tool."}},
        "required": ["input"],
        "additionalProperties": false,
    })
}

static CUSTOM_TOOL_SCHEMA: once_cell::sync::Lazy<super::canonical::Schema> =
    once_cell::sync::Lazy::new(|| super::canonical::Schema::from_value(&custom_tool_schema()));

/// [`custom_tool_schema`] as the text a request is written with.
pub fn custom_tool_schema_raw() -> &'static serde_json::value::RawValue {
    CUSTOM_TOOL_SCHEMA.raw()
}

/// A freeform tool's input as canonical (JSON) arguments.
pub fn custom_arguments(input: &str) -> String {
    serde_json::json!({ "input": input }).to_string()
}

/// A freeform tool's input back out of canonical arguments.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(v) => match v.get("input") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => arguments.to_string(),
        },
        Err(_) => arguments.to_string(),
    }
}
