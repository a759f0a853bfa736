//! The canonical model every translation goes through: one request, one
//! response and one stream-event vocabulary rich enough for all four wire
//! formats. Each format parses into it and builds from it, so N formats
//! need 2N mappings rather than N².

use super::usage::Usage;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub model: String,
    /// The system prompt, in order (`system`, `instructions`,
    /// `systemInstruction`, leading system/developer messages).
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub reasoning: Option<Reasoning>,
    pub output: Option<OutputFormat>,
    /// An end-user id for the provider's abuse tracking.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// A system or developer message in the middle of the conversation.
    System,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Parts,
}

/// A message's parts; most messages have one, kept inline.
pub type Parts = smallvec::SmallVec<[Part; 1]>;

/// One part of a message. The rarer, larger parts are boxed so a part is
/// the size of a `String`: a long history of short turns is mostly parts
/// (a part of 96 bytes made half a million small messages cost several
/// times their text).
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Media(Box<Media>),
    ToolCall(Box<ToolCall>),
    ToolResult(Box<ToolResult>),
    /// Visible reasoning, with the provider's signature when it has one.
    Thinking(Box<Thinking>),
    /// Reasoning the provider returned encrypted (Anthropic `redacted_thinking`).
    RedactedThinking(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thinking {
    pub text: String,
    pub signature: Option<String>,
}

impl Part {
    pub fn media(media: Media) -> Self {
        Part::Media(Box::new(media))
    }

    pub fn tool_call(call: ToolCall) -> Self {
        Part::ToolCall(Box::new(call))
    }

    pub fn tool_result(result: ToolResult) -> Self {
        Part::ToolResult(Box::new(result))
    }

    pub fn thinking(text: String, signature: Option<String>) -> Self {
        Part::Thinking(Box::new(Thinking { text, signature }))
    }
}

/// An image or document, by URL or inline.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Url { url: String, media_type: Option<String> },
    Inline { media_type: String, data: String },
}

impl Request {
    /// Trims the spare capacity of the last message's parts: a part is
    /// about a hundred bytes and a vector of them starts with room for
    /// four, which on a long history of short turns outweighs the text.
    pub fn trim_last(&mut self) {
        if let Some(m) = self.messages.last_mut() {
            m.parts.shrink_to_fit();
        }
    }

    /// About how many bytes the request takes in a wire format whose
    /// messages and parts are framed as `framing` says, rounded up:
    /// writers size their buffer with it, so a large request is written
    /// without its buffer doubling (and briefly existing twice), nor sized
    /// far past what it needs (a fixed 96 bytes a part doubled a history
    /// of short turns).
    pub fn size_hint(&self, framing: Framing) -> usize {
        fn part(p: &Part, framing: Framing) -> usize {
            framing.part
                + match p {
                    Part::Text(t) | Part::RedactedThinking(t) => t.len(),
                    Part::Thinking(t) => 64 + t.text.len() + t.signature.as_ref().map_or(0, String::len),
                    Part::Media(m) => match m.as_ref() {
                        Media::Url { url, .. } => 64 + url.len(),
                        Media::Inline { data, media_type } => 64 + data.len() + media_type.len(),
                    },
                    Part::ToolCall(c) => {
                        96 + c.id.len()
                            + c.name.len()
                            + c.arguments.len()
                            + c.signature.as_ref().map_or(0, String::len)
                    }
                    Part::ToolResult(r) => {
                        96 + r.call_id.len() + r.content.iter().map(|p| part(p, framing)).sum::<usize>()
                    }
                }
        }
        let message = |m: &Message| {
            // The message's framing holds its first part's.
            let first = if m.parts.is_empty() { 0 } else { framing.part };
            framing.message + m.parts.iter().map(|p| part(p, framing)).sum::<usize>() - first
        };
        let text: usize = self.system.iter().map(String::len).sum::<usize>()
            + self.messages.iter().map(message).sum::<usize>();
        // Escapes can grow text; schemas are written as they came.
        let tools: usize = self
            .tools
            .iter()
            .map(|t| match t {
                Tool::Function { parameters, .. } => 1024 + parameters.len(),
                _ => 1024,
            })
            .sum();
        text + text / 8 + tools + 4096
    }
}

/// The bytes a wire format spends around a message holding one text part
/// (`message`), and around each further part (`part`).
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub message: usize,
    pub part: usize,
}

impl Media {
    /// Reads a `data:` URL into inline data; other URLs stay URLs.
    pub fn from_url(url: &str) -> Media {
        if let Some(rest) = url.strip_prefix("data:") {
            if let Some((meta, data)) = rest.split_once(',') {
                if let Some(media_type) = meta.strip_suffix(";base64") {
                    return Media::Inline { media_type: media_type.to_string(), data: data.to_string() };
                }
            }
        }
        Media::Url { url: url.to_string(), media_type: None }
    }

    /// The media as a URL (inline data becomes a `data:` URL).
    pub fn to_url(&self) -> String {
        match self {
            Media::Url { url, .. } => url.clone(),
            Media::Inline { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }

    pub fn media_type(&self) -> Option<&str> {
        match self {
            Media::Url { media_type, .. } => media_type.as_deref(),
            Media::Inline { media_type, .. } => Some(media_type),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (a freeform tool's input is wrapped as
    /// `{"input": "..."}`).
    pub arguments: String,
    /// Gemini's `thoughtSignature` for this call, replayed on the next turn.
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    /// The called function's name when the format carries it (Gemini needs it).
    pub name: Option<String>,
    /// Text and media parts.
    pub content: Vec<Part>,
    pub is_error: bool,
}

impl ToolResult {
    /// The result's text parts joined, for formats whose results are strings.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(t) = part {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(t);
            }
        }
        out
    }
}

/// A tool's JSON schema as its text: passed on as it came (a schema of
/// megabytes never becomes a tree of several times its size), parsed only
/// where a format must change it.
#[derive(Debug, Clone)]
pub struct Schema(Box<serde_json::value::RawValue>);

impl Schema {
    /// `{"type":"object"}`: a tool that declared no parameters.
    pub fn object() -> Self {
        Self::from_value(&serde_json::json!({"type": "object"}))
    }

    pub fn from_value(v: &Value) -> Self {
        Self::from_text(v.to_string())
    }

    /// JSON text (not checked again beyond its syntax).
    pub fn from_text(text: String) -> Self {
        match serde_json::value::RawValue::from_string(text) {
            Ok(raw) => Self(raw),
            // Text read from a request or written by serde_json is JSON.
            Err(_) => Self::object(),
        }
    }

    pub fn raw(&self) -> &serde_json::value::RawValue {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function {
        name: String,
        description: Option<String>,
        parameters: Schema,
        strict: Option<bool>,
    },
    /// A freeform tool whose input is plain text (Responses `custom`).
    Custom {
        name: String,
        description: Option<String>,
    },
    /// Hosted web search (Responses `web_search`, Anthropic
    /// `web_search_*`, Gemini `googleSearch`).
    WebSearch,
    /// A hosted tool only its own provider family runs, kept by its type
    /// name so a translation can refuse it by name.
    Hosted {
        kind: String,
        raw: Value,
    },
}

impl Tool {
    pub fn name(&self) -> Option<&str> {
        match self {
            Tool::Function { name, .. } | Tool::Custom { name, .. } => Some(name),
            Tool::WebSearch | Tool::Hosted { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Effort> {
        match s {
            "none" | "minimal" => Some(Effort::Minimal),
            "low" => Some(Effort::Low),
            "medium" => Some(Effort::Medium),
            "high" | "xhigh" | "max" => Some(Effort::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }

    /// A thinking budget for providers that take tokens, not levels.
    pub fn budget(self) -> u64 {
        match self {
            Effort::Minimal => 1024,
            Effort::Low => 4096,
            Effort::Medium => 12_000,
            Effort::High => 24_000,
        }
    }

    pub fn from_budget(tokens: u64) -> Effort {
        match tokens {
            0..=2047 => Effort::Minimal,
            2048..=8191 => Effort::Low,
            8192..=19_999 => Effort::Medium,
            _ => Effort::High,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reasoning {
    /// `false` when the caller switched reasoning off explicitly.
    pub enabled: bool,
    pub effort: Option<Effort>,
    pub budget_tokens: Option<u64>,
    /// Whether the caller wants the reasoning text (summaries, thoughts).
    pub include_thoughts: bool,
}

impl Reasoning {
    pub fn effort_or_budget(&self) -> Effort {
        self.effort.or(self.budget_tokens.map(Effort::from_budget)).unwrap_or(Effort::Medium)
    }

    pub fn budget_or_effort(&self) -> u64 {
        self.budget_tokens.unwrap_or_else(|| self.effort_or_budget().budget())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    JsonObject,
    JsonSchema { name: String, schema: Value, strict: Option<bool> },
}

/// Why the model stopped, in the union of every format's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
    Refusal,
}

impl StopReason {
    /// A turn that produced tool calls stopped to use them, whatever the
    /// provider said (Gemini says `STOP`); anything else makes an agent
    /// think the turn is over and never run the tool.
    pub fn with_tool_calls(self, has_tool_calls: bool) -> StopReason {
        match self {
            StopReason::EndTurn | StopReason::StopSequence if has_tool_calls => StopReason::ToolUse,
            other => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: String,
    pub model: String,
    /// Text, thinking and tool calls in output order.
    pub content: Vec<Part>,
    pub stop: StopReason,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

impl Response {
    pub fn has_tool_calls(&self) -> bool {
        self.content.iter().any(|p| matches!(p, Part::ToolCall(_)))
    }
}

/// The kind of a content block opened in a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockKind {
    Text,
    Thinking,
    /// `signature` is Gemini's `thoughtSignature`, known when the call opens.
    ToolCall {
        id: String,
        name: String,
        signature: Option<String>,
    },
}

/// One step of a streamed response. Blocks are numbered from 0 in the
/// order they open; at most one is open at a time.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The response began. `usage` holds the input tokens when the
    /// provider reports them up front.
    Start {
        id: String,
        model: String,
        usage: Option<Usage>,
    },
    BlockStart {
        index: usize,
        kind: BlockKind,
    },
    TextDelta {
        index: usize,
        text: String,
    },
    ThinkingDelta {
        index: usize,
        text: String,
    },
    /// The reasoning block's signature.
    Signature {
        index: usize,
        signature: String,
    },
    ToolArguments {
        index: usize,
        json: String,
    },
    BlockStop {
        index: usize,
    },
    /// The last event of a good stream; `usage` is the final total.
    Finish {
        stop: StopReason,
        stop_sequence: Option<String>,
        usage: Usage,
    },
    /// The provider failed mid-stream; nothing follows.
    Error {
        status: u16,
        message: String,
    },
}
