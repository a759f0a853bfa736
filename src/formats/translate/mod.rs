//! The translation registry: a codec per wire format (request, response
//! and stream, each to and from the canonical model) and, for a (client
//! format, provider format) pair, the translator that joins two codecs.
//! Same-format pairs have no translator: they stay zero-copy pass-through.

pub mod relay;

use super::canonical::{Request, Response};
use super::json::Result;
use super::{anthropic, chat, gemini, responses, ClientFormat};
use crate::error::GatewayError;

pub use super::codec::{
    custom_arguments, custom_input, custom_tool_schema, ClientContext, StreamEncoder, StreamParser, Target,
};

/// One wire format's mappings to and from the canonical model.
pub struct Codec {
    pub format: ClientFormat,
    pub parse_request: fn(&[u8]) -> Result<Request>,
    /// Writes the request into the buffer given (emptied first).
    pub build_request: fn(&Request, Target, Vec<u8>) -> Result<Vec<u8>>,
    pub parse_response: fn(&[u8]) -> Result<Response>,
    pub build_response: fn(&Response, &ClientContext) -> Vec<u8>,
    pub stream_parser: fn(&ClientContext) -> Box<dyn StreamParser>,
    pub stream_encoder: fn(&ClientContext) -> Box<dyn StreamEncoder>,
    /// Reads the provider's error document.
    pub parse_error: fn(u16, &[u8]) -> GatewayError,
}

static CHAT: Codec = Codec {
    format: ClientFormat::Openai,
    parse_request: chat::parse_request,
    build_request: |r, t, buffer| {
        chat::build_request(
            r,
            if t == Target::Native { chat::Flavor::Openai } else { chat::Flavor::Compatible },
            buffer,
        )
    },
    parse_response: chat::response::parse_response,
    build_response: chat::response::build_response,
    stream_parser: |_| Box::new(chat::stream::ChatParser::default()),
    stream_encoder: |ctx| Box::new(chat::stream::ChatEncoder::new(ctx)),
    parse_error: parse_error_document,
};

static RESPONSES: Codec = Codec {
    format: ClientFormat::Responses,
    parse_request: responses::parse_request,
    build_request: |r, _, buffer| responses::build_request(r, buffer),
    parse_response: responses::response::parse_response,
    build_response: responses::response::build_response,
    stream_parser: |_| Box::new(responses::stream::ResponsesParser::default()),
    stream_encoder: |ctx| Box::new(responses::stream::ResponsesEncoder::new(ctx)),
    parse_error: parse_error_document,
};

static ANTHROPIC: Codec = Codec {
    format: ClientFormat::Anthropic,
    parse_request: anthropic::parse_request,
    build_request: |r, _, buffer| anthropic::build_request(r, buffer),
    parse_response: anthropic::response::parse_response,
    build_response: anthropic::response::build_response,
    stream_parser: |_| Box::new(anthropic::stream::AnthropicParser::default()),
    stream_encoder: |ctx| Box::new(anthropic::stream::AnthropicEncoder::new(ctx)),
    parse_error: parse_error_document,
};

static GEMINI: Codec = Codec {
    format: ClientFormat::Gemini,
    parse_request: gemini::parse_request,
    build_request: |r, _, buffer| gemini::build_request(r, buffer),
    parse_response: gemini::response::parse_response,
    build_response: gemini::response::build_response,
    stream_parser: |ctx| Box::new(gemini::stream::GeminiParser::new(ctx)),
    stream_encoder: |ctx| Box::new(gemini::stream::GeminiEncoder::new(ctx)),
    parse_error: parse_error_document,
};

pub fn codec(format: ClientFormat) -> &'static Codec {
    match format {
        ClientFormat::Openai => &CHAT,
        ClientFormat::Responses => &RESPONSES,
        ClientFormat::Anthropic => &ANTHROPIC,
        ClientFormat::Gemini => &GEMINI,
    }
}

/// A caller's request body in the provider's format, and its canonical
/// form. The body is let go as soon as it is parsed (its buffer reused for
/// the output), so a request of many megabytes is not held twice while its
/// translation is written.
pub fn translate_request(
    translator: Translator,
    body: bytes::Bytes,
    flavor: Target,
    prepare: impl FnOnce(&mut Request),
) -> Result<(Request, Vec<u8>)> {
    let mut request = (translator.client.parse_request)(&body)?;
    // The body's own buffer, when nothing else holds it, takes the
    // translation (it was read with room to spare): one large block, not two.
    let buffer = body.try_into_mut().map(Vec::from).unwrap_or_default();
    prepare(&mut request);
    let out = (translator.provider.build_request)(&request, flavor, buffer)?;
    Ok((request, out))
}

/// The two codecs a translated request goes through.
#[derive(Clone, Copy)]
pub struct Translator {
    pub client: &'static Codec,
    pub provider: &'static Codec,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Translator({} -> {})", self.client.format, self.provider.format)
    }
}

/// The registry: `None` for a same-format pair (pass-through), the
/// translator otherwise. Every pair of the four formats is served.
pub fn translator(client: ClientFormat, provider: ClientFormat) -> Option<Translator> {
    (client != provider).then(|| Translator { client: codec(client), provider: codec(provider) })
}

/// Sampling hints in `req` that `target` has no parameter for and that
/// were left out; the caller is told in the `x-tollgate-ignored-params`
/// response header. Anything that changes what the caller gets back is
/// refused instead.
pub fn ignored_parameters(req: &Request, target: ClientFormat, native: Target) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    let no_top_k =
        target == ClientFormat::Responses || (target == ClientFormat::Openai && native == Target::Native);
    if req.top_k.is_some() && no_top_k {
        ignored.push("top_k");
    }
    ignored
}

/// Reads any provider's error document: all four put a message at
/// `error.message` (Anthropic one level down, under `error`).
pub fn parse_error_document(status: u16, body: &[u8]) -> GatewayError {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = doc
        .pointer("/error/message")
        .or_else(|| doc.pointer("/message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("the provider answered HTTP {status}")
            } else {
                text.chars().take(500).collect()
            }
        });
    GatewayError::Upstream { status, message }
}

/// A rough local token count (about four bytes a token for text, a fixed
/// cost per image), for `count_tokens` on providers that have no such
/// endpoint and for input usage announced before the provider reports it.
pub fn estimate_tokens(req: &Request) -> u64 {
    use super::canonical::{Part, Tool};
    fn part_bytes(p: &Part) -> u64 {
        match p {
            Part::Text(t) | Part::RedactedThinking(t) => t.len() as u64,
            Part::Thinking(t) => t.text.len() as u64,
            Part::Media(_) => 6000,
            Part::ToolCall(c) => (c.name.len() + c.arguments.len() + 12) as u64,
            Part::ToolResult(r) => r.content.iter().map(part_bytes).sum::<u64>() + 12,
        }
    }
    let mut bytes: u64 = req.system.iter().map(|s| s.len() as u64).sum();
    for m in &req.messages {
        bytes += 12 + m.parts.iter().map(part_bytes).sum::<u64>();
    }
    for t in &req.tools {
        bytes += match t {
            Tool::Function { name, description, parameters, .. } => {
                (name.len() + description.as_ref().map_or(0, String::len) + parameters.len()) as u64
            }
            Tool::Custom { name, description } => {
                (name.len() + description.as_ref().map_or(0, String::len)) as u64
            }
            Tool::WebSearch | Tool::Hosted { .. } => 200,
        };
    }
    bytes.div_ceil(4).max(1)
}

#[cfg(test)]
mod tests;
