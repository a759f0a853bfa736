//! Wire formats: which API dialect a caller or provider speaks, and the
//! pure (no I/O) handling of their bodies: error documents, the few
//! top-level fields the gateway reads or rewrites, usage extraction, and
//! translation between any two formats through the canonical model.

pub mod anthropic;
pub mod body;
mod body_scan;
pub mod canonical;
pub mod chat;
pub mod codec;
pub mod embeddings;
pub mod errors;
pub mod escape;
pub mod estimate;
pub mod field_scan;
pub mod framing;
pub mod gemini;
pub mod ids;
pub mod images;
pub mod json;
pub mod json_ref;
pub mod models_list;
pub mod passthrough;
pub mod rerank;
pub mod responses;
pub mod translate;
pub mod usage;

use std::fmt;

/// The API dialect of a request as the caller sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFormat {
    /// OpenAI Chat Completions.
    Openai,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini generateContent.
    Gemini,
}

impl ClientFormat {
    pub const ALL: [ClientFormat; 4] =
        [ClientFormat::Openai, ClientFormat::Responses, ClientFormat::Anthropic, ClientFormat::Gemini];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientFormat::Openai => "openai",
            ClientFormat::Responses => "responses",
            ClientFormat::Anthropic => "anthropic",
            ClientFormat::Gemini => "gemini",
        }
    }
}

impl fmt::Display for ClientFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
