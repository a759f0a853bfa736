//! What the mock answers, in each provider's exact wire format: whole
//! documents, SSE event sequences in the order each API emits them, and
//! error documents. Text is deterministic; usage counts what was sent.

use super::Knobs;
use crate::sse::encode;
use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    OpenaiChat,
    OpenaiResponses,
    AnthropicMessages,
    AnthropicCountTokens,
    Gemini { model: String, stream: bool, sse: bool },
}

impl Api {
    pub fn from_path(method: &str, path: &str, query: &str) -> Option<Self> {
        if method != "POST" {
            return None;
        }
        match path {
            "/openai/v1/chat/completions" => return Some(Api::OpenaiChat),
            "/openai/v1/responses" => return Some(Api::OpenaiResponses),
            "/anthropic/v1/messages" => return Some(Api::AnthropicMessages),
            "/anthropic/v1/messages/count_tokens" => return Some(Api::AnthropicCountTokens),
            _ => {}
        }
        let rest = path
            .strip_prefix("/gemini/v1beta/models/")
            .or_else(|| path.strip_prefix("/gemini/v1/models/"))?;
        let (model, action) = rest.rsplit_once(':')?;
        let stream = match action {
            "generateContent" => false,
            "streamGenerateContent" => true,
            _ => return None,
        };
        let sse = query.split('&').any(|p| p == "alt=sse");
        Some(Api::Gemini { model: model.to_string(), stream, sse })
    }

    pub fn has_credentials(&self, headers: &HeaderMap) -> bool {
        let present = |name: &str| headers.get(name).is_some_and(|v| !v.is_empty());
        match self {
            Api::OpenaiChat | Api::OpenaiResponses => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7),
            Api::AnthropicMessages | Api::AnthropicCountTokens => {
                present("x-api-key") && present("anthropic-version")
            }
            Api::Gemini { .. } => present("x-goog-api-key"),
        }
    }

    pub fn is_stream(&self, request: &Value) -> bool {
        match self {
            Api::Gemini { stream, .. } => *stream,
            Api::AnthropicCountTokens => false,
            _ => request.get("stream").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    /// Gemini's `streamGenerateContent` without `alt=sse` is a JSON array.
    pub fn sse_framing(&self) -> bool {
        !matches!(self, Api::Gemini { sse: false, .. })
    }

    pub fn error_body(&self, status: u16, message: &str) -> Vec<u8> {
        let doc = match self {
            Api::OpenaiChat | Api::OpenaiResponses => json!({
                "error": { "message": message, "type": openai_error_type(status), "param": null, "code": null }
            }),
            Api::AnthropicMessages | Api::AnthropicCountTokens => json!({
                "type": "error",
                "error": { "type": anthropic_error_type(status), "message": message },
            }),
            Api::Gemini { .. } => json!({
                "error": { "code": status, "message": message, "status": crate::formats::errors::gemini_status(status) }
            }),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

pub struct Reply {
    api: Api,
    model: String,
    /// The reply text, one piece per delta.
    pieces: Vec<String>,
    input_tokens: u64,
    include_usage: bool,
}

/// Deterministic words the mock says, cycled to the number of chunks asked.
const WORDS: [&str; 8] =
    ["Hello", "from", "the", "Tollgate", "mock", "upstream,", "deterministically", "yours."];

impl Reply {
    pub fn new(api: &Api, request: &Value, body_len: usize, knobs: &Knobs) -> Self {
        let model = match api {
            Api::Gemini { model, .. } => model.clone(),
            _ => request.get("model").and_then(Value::as_str).unwrap_or("mock-model").to_string(),
        };
        let pieces = (0..knobs.chunks)
            .map(|i| {
                let word = WORDS[i % WORDS.len()];
                if i + 1 == knobs.chunks {
                    word.to_string()
                } else {
                    format!("{word} ")
                }
            })
            .collect();
        let include_usage =
            request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        Self {
            api: api.clone(),
            model,
            pieces,
            // Roughly four bytes a token, and never zero.
            input_tokens: (body_len as u64).div_ceil(4).max(1),
            include_usage,
        }
    }

    fn text(&self) -> String {
        self.pieces.concat()
    }

    fn output_tokens(&self) -> u64 {
        self.pieces.len() as u64
    }

    pub fn whole_body(&self) -> Vec<u8> {
        let text = self.text();
        let (input, output) = (self.input_tokens, self.output_tokens());
        let doc = match &self.api {
            Api::OpenaiChat => json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED, "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": text, "refusal": null },
                              "logprobs": null, "finish_reason": "stop" }],
                "usage": openai_usage(input, output),
            }),
            Api::OpenaiResponses => self.response_object("completed", Some(text)),
            Api::AnthropicMessages => json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": self.model,
                "content": [{ "type": "text", "text": text }],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": anthropic_usage(input, output),
            }),
            Api::AnthropicCountTokens => json!({ "input_tokens": input }),
            Api::Gemini { .. } => self.gemini_chunk(&text, true, output),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Every event of the stream, flagged `true` for the text deltas.
    pub fn stream_events(&self) -> Vec<(Bytes, bool)> {
        match &self.api {
            Api::OpenaiChat => self.openai_chat_events(),
            Api::OpenaiResponses => self.responses_events(),
            Api::AnthropicMessages | Api::AnthropicCountTokens => self.anthropic_events(),
            Api::Gemini { sse, .. } => self.gemini_events(*sse),
        }
    }

    fn openai_chat_events(&self) -> Vec<(Bytes, bool)> {
        let chunk = |delta: Value, finish: Value| {
            let mut c = json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
            });
            if self.include_usage {
                c["usage"] = Value::Null;
            }
            encode(None, &c.to_string())
        };
        let mut events =
            vec![(chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null), false)];
        for piece in &self.pieces {
            events.push((chunk(json!({ "content": piece }), Value::Null), true));
        }
        events.push((chunk(json!({}), json!("stop")), false));
        if self.include_usage {
            let usage = json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": self.model,
                "system_fingerprint": "fp_mock", "choices": [],
                "usage": openai_usage(self.input_tokens, self.output_tokens()),
            });
            events.push((encode(None, &usage.to_string()), false));
        }
        events.push((encode(None, "[DONE]"), false));
        events
    }

    fn response_object(&self, status: &str, text: Option<String>) -> Value {
        let completed = text.is_some();
        let output = match text {
            Some(text) => json!([message_item("completed", Some(&text))]),
            None => json!([]),
        };
        json!({
            "id": "resp_mock", "object": "response", "created_at": CREATED, "status": status,
            "error": null, "incomplete_details": null, "instructions": null, "max_output_tokens": null,
            "model": self.model, "output": output, "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": { "effort": null, "summary": null }, "store": false, "temperature": 1.0,
            "text": { "format": { "type": "text" } }, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "metadata": {},
            "usage": if completed {
                json!({
                    "input_tokens": self.input_tokens, "input_tokens_details": { "cached_tokens": 0 },
                    "output_tokens": self.output_tokens(), "output_tokens_details": { "reasoning_tokens": 0 },
                    "total_tokens": self.input_tokens + self.output_tokens(),
                })
            } else { Value::Null },
        })
    }

    fn responses_events(&self) -> Vec<(Bytes, bool)> {
        let mut seq = 0u64;
        let mut ev = |name: &str, mut data: Value, delta: bool| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(seq);
            seq += 1;
            (encode(Some(name), &data.to_string()), delta)
        };
        let text = self.text();
        let mut events = vec![
            ev("response.created", json!({ "response": self.response_object("in_progress", None) }), false),
            ev(
                "response.in_progress",
                json!({ "response": self.response_object("in_progress", None) }),
                false,
            ),
            ev(
                "response.output_item.added",
                json!({ "output_index": 0, "item": message_item("in_progress", None) }),
                false,
            ),
            ev(
                "response.content_part.added",
                json!({ "item_id": "msg_mock", "output_index": 0, "content_index": 0,
                "part": { "type": "output_text", "text": "", "annotations": [] } }),
                false,
            ),
        ];
        for piece in &self.pieces {
            events.push(ev(
                "response.output_text.delta",
                json!({ "item_id": "msg_mock", "output_index": 0,
                "content_index": 0, "delta": piece, "logprobs": [] }),
                true,
            ));
        }
        events.push(ev(
            "response.output_text.done",
            json!({ "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "text": text, "logprobs": [] }),
            false,
        ));
        events.push(ev(
            "response.content_part.done",
            json!({ "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "part": { "type": "output_text", "text": text, "annotations": [] } }),
            false,
        ));
        events.push(ev(
            "response.output_item.done",
            json!({ "output_index": 0,
            "item": message_item("completed", Some(&text)) }),
            false,
        ));
        events.push(ev(
            "response.completed",
            json!({ "response": self.response_object("completed", Some(text.clone())) }),
            false,
        ));
        events
    }

    fn anthropic_events(&self) -> Vec<(Bytes, bool)> {
        let ev = |name: &str, data: Value, delta: bool| (encode(Some(name), &data.to_string()), delta);
        let mut start_usage = anthropic_usage(self.input_tokens, 1);
        start_usage["output_tokens"] = json!(1);
        let mut events = vec![
            ev(
                "message_start",
                json!({ "type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage } }),
                false,
            ),
            ev(
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" } }),
                false,
            ),
            ev("ping", json!({ "type": "ping" }), false),
        ];
        for piece in &self.pieces {
            events.push(ev(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": piece } }),
                true,
            ));
        }
        events.push(ev("content_block_stop", json!({ "type": "content_block_stop", "index": 0 }), false));
        events.push(ev(
            "message_delta",
            json!({ "type": "message_delta",
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "output_tokens": self.output_tokens() } }),
            false,
        ));
        events.push(ev("message_stop", json!({ "type": "message_stop" }), false));
        events
    }

    fn gemini_chunk(&self, text: &str, last: bool, output_so_far: u64) -> Value {
        let mut candidate =
            json!({ "content": { "parts": [{ "text": text }], "role": "model" }, "index": 0 });
        if last {
            candidate["finishReason"] = json!("STOP");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": self.input_tokens, "candidatesTokenCount": output_so_far,
                "totalTokenCount": self.input_tokens + output_so_far,
            },
            "modelVersion": self.model, "responseId": "mock-response",
        })
    }

    fn gemini_events(&self, sse: bool) -> Vec<(Bytes, bool)> {
        let n = self.pieces.len();
        let chunks: Vec<Value> = self
            .pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| self.gemini_chunk(piece, i + 1 == n, i as u64 + 1))
            .collect();
        if sse {
            return chunks.iter().map(|c| (encode(None, &c.to_string()), true)).collect();
        }
        // The JSON-array framing Google uses without alt=sse.
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lead = if i == 0 { "[" } else { ",\r\n" };
                let tail = if i + 1 == n { "]" } else { "" };
                (Bytes::from(format!("{lead}{c}{tail}")), true)
            })
            .collect()
    }
}

const CREATED: u64 = 1_767_225_600;

fn message_item(status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{ "type": "output_text", "text": t, "annotations": [], "logprobs": [] }]),
        None => json!([]),
    };
    json!({ "id": "msg_mock", "type": "message", "status": status, "role": "assistant", "content": content })
}

fn openai_usage(input: u64, output: u64) -> Value {
    json!({
        "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 },
    })
}

fn anthropic_usage(input: u64, output: u64) -> Value {
    json!({ "input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output, "service_tier": "standard" })
}
