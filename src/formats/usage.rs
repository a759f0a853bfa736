//! Token usage as each format reports it, read into one shape.
//!
//! Conventions (they differ between providers, so they are fixed here):
//! `input_tokens` counts every prompt token, cached or not;
//! `cached_input_tokens` and `cache_write_tokens` are the parts of it read
//! from and written to the prompt cache; `output_tokens` counts every
//! generated token and `reasoning_tokens` is the part spent thinking.

mod fast;

use super::ClientFormat;
use crate::sse::SseEvent;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

#[derive(Deserialize, Default)]
struct OpenaiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl From<OpenaiUsage> for Usage {
    fn from(u: OpenaiUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.input_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u.output_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

impl From<GeminiUsage> for Usage {
    fn from(u: GeminiUsage) -> Self {
        Usage {
            input_tokens: u.prompt_token_count,
            // Gemini bills thoughts as output but counts them apart.
            output_tokens: u.candidates_token_count.saturating_add(u.thoughts_token_count),
            cached_input_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: u.thoughts_token_count,
        }
    }
}

impl Usage {
    /// Whether this reads as a count: a call the provider served used
    /// tokens, so a usage of all zeros is a report read wrong (another
    /// shape, a value out of range), not a count.
    pub fn is_count(&self) -> bool {
        self.input_tokens > 0 || self.output_tokens > 0
    }

    /// Folds Anthropic's usage in: fields it reports replace ours. Its
    /// `input_tokens` excludes cache reads and writes, so they are added.
    fn merge_anthropic(&mut self, u: AnthropicUsage) {
        let read = u.cache_read_input_tokens.unwrap_or(self.cached_input_tokens);
        let write = u.cache_creation_input_tokens.unwrap_or(self.cache_write_tokens);
        if let Some(input) = u.input_tokens {
            self.input_tokens = input.saturating_add(read).saturating_add(write);
        }
        self.cached_input_tokens = read;
        self.cache_write_tokens = write;
        if let Some(output) = u.output_tokens {
            self.output_tokens = output;
        }
    }
}

/// Usage from a complete (non-streaming) response body, if it reports any:
/// its top-level usage field, read from the document's end where the
/// usage is among its last fields, as providers send it, and otherwise
/// as a document of any size is.
pub fn from_response(format: ClientFormat, body: &[u8]) -> Option<Usage> {
    if let Some(usage) = from_document_end(format, body) {
        return Some(usage);
    }
    let mut scan = super::field_scan::FieldScan::new(usage_field(format));
    scan.feed(body);
    from_usage_value(format, scan.value()?)
}

/// How much of a document's end its usage is looked for in: a usage and
/// the fields providers put after it take a few hundred bytes. A document
/// that came in chunks keeps this much of its end (see
/// `passthrough::WholeBody`), so its usage is read from the same bytes
/// however it was cut.
pub const END_WINDOW: usize = 16 * 1024;

/// The usage of a whole document read from the last [`END_WINDOW`] bytes
/// of `doc`, when its usage is among its last fields; `None` otherwise
/// (see [`fast::from_document_end`]).
pub fn from_document_end(format: ClientFormat, doc: &[u8]) -> Option<Usage> {
    let window = doc.get(doc.len().saturating_sub(END_WINDOW)..)?;
    fast::from_document_end(format, window)
}

/// The name of the top-level field that carries a document's usage.
pub fn usage_field(format: ClientFormat) -> &'static str {
    match format {
        ClientFormat::Gemini => "usageMetadata",
        _ => "usage",
    }
}

/// Usage from the raw value of a document's [`usage_field`].
pub fn from_usage_value(format: ClientFormat, value: &[u8]) -> Option<Usage> {
    fast::read(format, value).or_else(|| from_usage_value_by_serde(format, value))
}

/// What [`from_usage_value`] reads where the fast reader cannot be sure.
pub(super) fn from_usage_value_by_serde(format: ClientFormat, value: &[u8]) -> Option<Usage> {
    match format {
        ClientFormat::Openai => serde_json::from_slice::<Option<OpenaiUsage>>(value).ok()?.map(Usage::from),
        ClientFormat::Responses => {
            serde_json::from_slice::<Option<ResponsesUsage>>(value).ok()?.map(Usage::from)
        }
        ClientFormat::Anthropic => {
            let u = serde_json::from_slice::<Option<AnthropicUsage>>(value).ok()??;
            let mut usage = Usage::default();
            usage.merge_anthropic(u);
            Some(usage)
        }
        ClientFormat::Gemini => serde_json::from_slice::<Option<GeminiUsage>>(value).ok()?.map(Usage::from),
    }
}

/// Follows a stream of one format and keeps the usage it reports. The
/// last report decides: one that cannot be read (a negative or fractional
/// count, a usage of another shape, an Anthropic `message_delta` without
/// one) leaves the stream without a count, to be billed from what was
/// relayed rather than from an earlier, smaller count.
#[derive(Debug)]
pub struct StreamUsage {
    format: ClientFormat,
    usage: Option<Usage>,
    /// The stream's closing event went by: what follows is only the end.
    ended: bool,
    /// Gemini's last chunk (with `finishReason`, or an error) went by.
    closing: bool,
    /// The provider reported an error in the stream.
    failed: bool,
}

impl StreamUsage {
    pub fn new(format: ClientFormat) -> Self {
        Self { format, usage: None, ended: false, closing: false, failed: false }
    }

    /// Whether the format's closing event (`[DONE]`, `message_stop`,
    /// `response.completed`, an error event) has been seen. Never for
    /// Gemini, which has no closing event: a usage chunk may follow the
    /// one with `finishReason`, so its stream ends with its body.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a Gemini stream's last chunk (`finishReason`, or an error)
    /// has gone by: what follows is the end of the answer.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Whether the provider reported an error inside the stream.
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn report(&mut self, read: Option<Usage>) {
        self.usage = read.filter(Usage::is_count);
    }

    fn fail(&mut self) {
        if self.ended || self.closing {
            // An error after the closing event (or Gemini's last chunk):
            // the caller had the whole answer, so the call completed.
            return;
        }
        self.failed = true;
        self.ended = self.format != ClientFormat::Gemini;
        self.closing = true;
    }

    pub fn observe(&mut self, event: &SseEvent) {
        let Some(data) = event.data.as_deref() else { return };
        let bytes = data.as_bytes();
        let name = event.event.as_deref().unwrap_or("");
        match self.format {
            ClientFormat::Openai if data.trim() == "[DONE]" => self.ended = true,
            ClientFormat::Anthropic if name == "message_stop" => self.ended = true,
            ClientFormat::Anthropic if name == "error" => self.fail(),
            ClientFormat::Gemini if memchr::memmem::find(bytes, b"\"finishReason\"").is_some() => {
                self.closing = true
            }
            ClientFormat::Openai | ClientFormat::Gemini if name == "error" || top_level_error(bytes) => {
                self.fail()
            }
            _ => {}
        }
        match self.format {
            ClientFormat::Openai => {
                if has_usage_object(bytes) {
                    #[derive(Deserialize)]
                    struct C {
                        usage: Option<OpenaiUsage>,
                    }
                    match serde_json::from_slice::<C>(bytes) {
                        Ok(C { usage: None }) => {}
                        Ok(C { usage: Some(u) }) => self.report(Some(u.into())),
                        Err(_) => self.report(None),
                    }
                }
            }
            ClientFormat::Responses => {
                let kind = if name.is_empty() { event_type(bytes) } else { Some(name) };
                match kind {
                    Some("response.completed" | "response.incomplete") => self.ended = true,
                    Some("response.failed" | "error") => self.fail(),
                    _ => return,
                }
                #[derive(Deserialize)]
                struct Inner {
                    usage: Option<ResponsesUsage>,
                }
                #[derive(Deserialize)]
                struct E {
                    response: Inner,
                }
                let read = serde_json::from_slice::<E>(bytes).ok().and_then(|e| e.response.usage);
                if kind != Some("error") {
                    self.report(read.map(Usage::from));
                }
            }
            ClientFormat::Anthropic => match name {
                "message_start" => {
                    #[derive(Deserialize)]
                    struct Msg {
                        usage: Option<AnthropicUsage>,
                    }
                    #[derive(Deserialize)]
                    struct E {
                        message: Msg,
                    }
                    match serde_json::from_slice::<E>(bytes) {
                        Ok(E { message: Msg { usage: Some(u) } }) => {
                            let mut usage = Usage::default();
                            usage.merge_anthropic(u);
                            self.report(Some(usage));
                        }
                        _ => self.report(None),
                    }
                }
                "message_delta" => {
                    #[derive(Deserialize)]
                    struct E {
                        usage: Option<AnthropicUsage>,
                    }
                    match (self.usage, serde_json::from_slice::<E>(bytes)) {
                        (Some(mut usage), Ok(E { usage: Some(u) })) if u.output_tokens.is_some() => {
                            usage.merge_anthropic(u);
                            self.report(Some(usage));
                        }
                        _ => self.report(None),
                    }
                }
                _ => {}
            },
            ClientFormat::Gemini => {
                if memchr::memmem::find(bytes, b"\"usageMetadata\"").is_some() {
                    let mut scan = super::field_scan::FieldScan::new("usageMetadata");
                    scan.feed(bytes);
                    if let Some(value) = scan.value() {
                        self.report(from_usage_value(ClientFormat::Gemini, value));
                    }
                }
            }
        }
    }
}

/// Whether a chunk is an error object (`{"error": {...}}`), as Chat and
/// Gemini report a failure inside a stream.
fn top_level_error(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"\"error\"").is_some()
        && super::body::TopLevel::parse(data)
            .is_ok_and(|top| top.raw("error").is_some_and(|e| e.get().starts_with('{')))
}

/// The `type` of a Responses event sent without an `event:` line.
fn event_type(data: &[u8]) -> Option<&'static str> {
    ["response.completed", "response.incomplete", "response.failed", "error"].into_iter().find(|t| {
        let quoted = format!("\"type\":\"{t}\"");
        memchr::memmem::find(data, quoted.as_bytes()).is_some()
    })
}

/// `"usage":{` with or without a space: a usage object rather than `null`.
pub fn has_usage_object(data: &[u8]) -> bool {
    let mut rest = data;
    while let Some(i) = memchr::memmem::find(rest, b"\"usage\"") {
        let after = &rest[i + 7..];
        let mut significant = after.iter().filter(|b| !b.is_ascii_whitespace());
        if significant.next() == Some(&b':') && significant.next() == Some(&b'{') {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests;

/// Usage from a format's own usage object (`usage`, or Gemini's
/// `usageMetadata`), as translation reads it from a parsed document.
pub fn from_usage_object(format: ClientFormat, value: &serde_json::Value) -> Usage {
    fn read<T: serde::de::DeserializeOwned + Default>(value: &serde_json::Value) -> T {
        T::deserialize(value).unwrap_or_default()
    }
    match format {
        ClientFormat::Openai => read::<OpenaiUsage>(value).into(),
        ClientFormat::Responses => read::<ResponsesUsage>(value).into(),
        ClientFormat::Anthropic => {
            let mut usage = Usage::default();
            usage.merge_anthropic(read::<AnthropicUsage>(value));
            usage
        }
        ClientFormat::Gemini => read::<GeminiUsage>(value).into(),
    }
}

/// Folds a later Anthropic usage report (`message_delta`) into one from
/// `message_start`: fields it reports replace earlier ones. A report
/// without an output count, or that cannot be read, leaves no count
/// (zeros), so the answer is billed from what was relayed.
pub fn merge_anthropic_object(usage: &mut Usage, value: Option<&serde_json::Value>) {
    match value.map(AnthropicUsage::deserialize) {
        Some(Ok(u)) if u.output_tokens.is_some() => usage.merge_anthropic(u),
        _ => *usage = Usage::default(),
    }
}
