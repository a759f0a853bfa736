//! What the mock answers, in each provider's exact wire format: whole
//! documents, SSE event sequences in the order each API emits them, and
//! error documents. Text is deterministic; usage counts what was sent.

pub use super::api::Api;
use super::conversation::{Conversation, MockCall};
use super::Knobs;
use crate::wire::sse as encode;
use bytes::Bytes;
use serde_json::{json, Value};

pub struct Reply {
    api: Api,
    model: String,
    /// The reply text, one piece per delta.
    pieces: Vec<String>,
    calls: Vec<MockCall>,
    thinking: Option<&'static str>,
    input_tokens: u64,
    /// Of the input, read from the provider's prompt cache (`x-mock-cached-tokens`).
    cached_tokens: u64,
    include_usage: bool,
    /// The caller's output limit cut the reply short (one token a piece).
    truncated: bool,
    /// The caller's output limit: a provider never reports more output.
    limit: Option<u64>,
    /// `x-mock-report-output-tokens`: a provider that reports this many
    /// output tokens whatever it sent (one that counts more than it was
    /// allowed, to test what the gateway does with a bill past its hold).
    reported_output: Option<u64>,
}

/// Deterministic words the mock says, cycled to the number of chunks asked.
const WORDS: [&str; 8] =
    ["Hello", "from", "the", "Tollgate", "mock", "upstream,", "deterministically", "yours."];

const THOUGHT: &str = "The user wants a short answer.";
const ANTHROPIC_SIGNATURE: &str = "EqQBCkYIBxgCKkBtb2NrLXNpZ25hdHVyZQ==";
const GEMINI_SIGNATURE: &str = "Q2lRQmNtOWpheTF6YVdkdVlYUjFjbVU9";

impl Reply {
    pub fn new(api: &Api, request: &Value, body_len: usize, knobs: &Knobs, convo: &Conversation) -> Self {
        let model = match api {
            Api::Gemini { model, .. } => model.clone(),
            _ => request.get("model").and_then(Value::as_str).unwrap_or("mock-model").to_string(),
        };
        let calls = convo.requested_calls();
        let pieces: Vec<String> = if let Some(result) = &convo.tool_result {
            let quoted: String = result.chars().take(200).collect();
            vec!["Tool ".into(), "said: ".into(), quoted]
        } else if !calls.is_empty() {
            vec!["Calling ".into(), "tools.".into()]
        } else {
            (0..knobs.chunks)
                .map(|i| {
                    let word = WORDS[i % WORDS.len()];
                    if i + 1 == knobs.chunks {
                        word.to_string()
                    } else {
                        format!("{word} ")
                    }
                })
                .collect()
        };
        let mut pieces = pieces;
        if knobs.pad_bytes > 0 {
            pieces.push("x".repeat(knobs.pad_bytes));
        }
        let limit = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .iter()
            .find_map(|f| request.get(*f).and_then(Value::as_u64))
            .or_else(|| request.pointer("/generationConfig/maxOutputTokens").and_then(Value::as_u64));
        let truncated = calls.is_empty() && limit.is_some_and(|l| (l as usize) < pieces.len());
        if truncated {
            pieces.truncate(limit.unwrap_or(0).max(1) as usize);
        }
        let include_usage =
            request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        Self {
            api: api.clone(),
            model,
            pieces,
            calls,
            thinking: convo.thinking.then_some(THOUGHT),
            // Roughly four bytes a token, and never zero.
            input_tokens: (body_len as u64).div_ceil(4).max(1),
            cached_tokens: knobs.cached_tokens.min((body_len as u64).div_ceil(4).max(1)),
            include_usage,
            truncated,
            limit,
            reported_output: knobs.report_output_tokens,
        }
    }

    /// Why the reply stopped, in each API's words.
    fn finish(&self, stop: &'static str, tools: &'static str, limit: &'static str) -> &'static str {
        if !self.calls.is_empty() {
            tools
        } else if self.truncated {
            limit
        } else {
            stop
        }
    }

    fn text(&self) -> String {
        self.pieces.concat()
    }

    fn output_tokens(&self) -> u64 {
        if let Some(reported) = self.reported_output {
            return reported;
        }
        let produced = self.pieces.len() as u64 + 5 * self.calls.len() as u64 + self.reasoning_tokens();
        self.limit.map_or(produced, |limit| produced.min(limit.max(1)))
    }

    fn reasoning_tokens(&self) -> u64 {
        if self.thinking.is_some() {
            7
        } else {
            0
        }
    }

    /// The arguments split in two, to exercise streamed arguments.
    fn halves(args: &str) -> (&str, &str) {
        let mut mid = args.len() / 2;
        while !args.is_char_boundary(mid) {
            mid += 1;
        }
        args.split_at(mid)
    }

    pub fn whole_body(&self) -> Vec<u8> {
        let text = self.text();
        let (input, output) = (self.input_tokens, self.output_tokens());
        let doc = match &self.api {
            Api::OpenaiChat => {
                let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
                if !self.calls.is_empty() {
                    message["tool_calls"] = self.calls.iter().map(chat_call).collect();
                }
                json!({
                    "id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED, "model": self.model,
                    "system_fingerprint": "fp_mock",
                    "choices": [{ "index": 0, "message": message,
                                  "logprobs": null, "finish_reason": self.finish("stop", "tool_calls", "length") }],
                    "usage": openai_usage(input, output, self.reasoning_tokens(), self.cached_tokens),
                })
            }
            Api::OpenaiResponses => {
                self.response_object(self.finish("completed", "completed", "incomplete"), true)
            }
            Api::AnthropicMessages => {
                let mut content = Vec::new();
                if let Some(t) = self.thinking {
                    content
                        .push(json!({ "type": "thinking", "thinking": t, "signature": ANTHROPIC_SIGNATURE }));
                }
                content.push(json!({ "type": "text", "text": text }));
                for c in &self.calls {
                    let input: Value = serde_json::from_str(&c.args).unwrap_or_else(|_| json!({}));
                    content.push(
                        json!({ "type": "tool_use", "id": anthropic_id(c), "name": c.name, "input": input }),
                    );
                }
                json!({
                    "id": "msg_mock", "type": "message", "role": "assistant", "model": self.model,
                    "content": content,
                    "stop_reason": self.finish("end_turn", "tool_use", "max_tokens"), "stop_sequence": null,
                    "usage": anthropic_usage(input, output, self.cached_tokens),
                })
            }
            Api::AnthropicCountTokens => json!({ "input_tokens": input }),
            Api::Gemini { .. } => {
                let mut parts = Vec::new();
                if let Some(t) = self.thinking {
                    parts.push(json!({ "text": t, "thought": true }));
                }
                parts.push(json!({ "text": text }));
                parts.extend(self.gemini_call_parts());
                self.gemini_chunk(parts, true, output)
            }
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    fn gemini_call_parts(&self) -> Vec<Value> {
        self.calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let args: Value = serde_json::from_str(&c.args).unwrap_or_else(|_| json!({}));
                let mut part = json!({ "functionCall": { "name": c.name, "args": args } });
                if i == 0 {
                    // Gemini 3 signs the first call of a step.
                    part["thoughtSignature"] = json!(GEMINI_SIGNATURE);
                }
                part
            })
            .collect()
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
        for (i, c) in self.calls.iter().enumerate() {
            let (a, b) = Self::halves(&c.args);
            let head = json!({ "tool_calls": [{ "index": i, "id": c.id, "type": "function",
                "function": { "name": c.name, "arguments": "" } }] });
            events.push((chunk(head, Value::Null), false));
            for part in [a, b] {
                let d = json!({ "tool_calls": [{ "index": i, "function": { "arguments": part } }] });
                events.push((chunk(d, Value::Null), false));
            }
        }
        let finish = self.finish("stop", "tool_calls", "length");
        events.push((chunk(json!({}), json!(finish)), false));
        if self.include_usage {
            let usage = json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": self.model,
                "system_fingerprint": "fp_mock", "choices": [],
                "usage": openai_usage(self.input_tokens, self.output_tokens(), self.reasoning_tokens(), self.cached_tokens),
            });
            events.push((encode(None, &usage.to_string()), false));
        }
        events.push((encode(None, "[DONE]"), false));
        events
    }

    /// The output items in order: reasoning, message, calls.
    fn responses_items(&self, completed: bool) -> Vec<Value> {
        let mut items = Vec::new();
        if let Some(t) = self.thinking {
            items.push(json!({ "id": "rs_mock", "type": "reasoning",
                "summary": if completed { json!([{ "type": "summary_text", "text": t }]) } else { json!([]) } }));
        }
        items.push(message_item(
            if completed { "completed" } else { "in_progress" },
            completed.then(|| self.text()).as_deref(),
        ));
        for (i, c) in self.calls.iter().enumerate() {
            items.push(responses_call(i, c, completed));
        }
        items
    }

    fn response_object(&self, status: &str, completed: bool) -> Value {
        let output = if completed { json!(self.responses_items(true)) } else { json!([]) };
        json!({
            "id": "resp_mock", "object": "response", "created_at": CREATED, "status": status,
            "error": null,
            "incomplete_details": if status == "incomplete" { json!({ "reason": "max_output_tokens" }) } else { Value::Null }, "instructions": null, "max_output_tokens": null,
            "model": self.model, "output": output, "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": { "effort": null, "summary": null }, "store": false, "temperature": 1.0,
            "text": { "format": { "type": "text" } }, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "metadata": {},
            "usage": if completed {
                json!({
                    "input_tokens": self.input_tokens, "input_tokens_details": { "cached_tokens": self.cached_tokens },
                    "output_tokens": self.output_tokens(),
                    "output_tokens_details": { "reasoning_tokens": self.reasoning_tokens() },
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
            ev("response.created", json!({ "response": self.response_object("in_progress", false) }), false),
            ev(
                "response.in_progress",
                json!({ "response": self.response_object("in_progress", false) }),
                false,
            ),
        ];
        let mut index = 0;
        if let Some(t) = self.thinking {
            events.push(ev(
                "response.output_item.added",
                json!({ "output_index": index,
                "item": { "id": "rs_mock", "type": "reasoning", "summary": [] } }),
                false,
            ));
            events.push(ev(
                "response.reasoning_summary_part.added",
                json!({ "item_id": "rs_mock", "output_index": index,
                "summary_index": 0, "part": { "type": "summary_text", "text": "" } }),
                false,
            ));
            events.push(ev(
                "response.reasoning_summary_text.delta",
                json!({ "item_id": "rs_mock", "output_index": index,
                "summary_index": 0, "delta": t }),
                false,
            ));
            events.push(ev(
                "response.reasoning_summary_text.done",
                json!({ "item_id": "rs_mock", "output_index": index,
                "summary_index": 0, "text": t }),
                false,
            ));
            events.push(ev(
                "response.reasoning_summary_part.done",
                json!({ "item_id": "rs_mock", "output_index": index,
                "summary_index": 0, "part": { "type": "summary_text", "text": t } }),
                false,
            ));
            events.push(ev("response.output_item.done", json!({ "output_index": index,
                "item": { "id": "rs_mock", "type": "reasoning", "summary": [{ "type": "summary_text", "text": t }] } }), false));
            index += 1;
        }
        events.push(ev(
            "response.output_item.added",
            json!({ "output_index": index, "item": message_item("in_progress", None) }),
            false,
        ));
        events.push(ev(
            "response.content_part.added",
            json!({ "item_id": "msg_mock", "output_index": index, "content_index": 0,
            "part": { "type": "output_text", "text": "", "annotations": [] } }),
            false,
        ));
        for piece in &self.pieces {
            events.push(ev(
                "response.output_text.delta",
                json!({ "item_id": "msg_mock", "output_index": index,
                "content_index": 0, "delta": piece, "logprobs": [] }),
                true,
            ));
        }
        events.push(ev(
            "response.output_text.done",
            json!({ "item_id": "msg_mock", "output_index": index,
            "content_index": 0, "text": text, "logprobs": [] }),
            false,
        ));
        events.push(ev(
            "response.content_part.done",
            json!({ "item_id": "msg_mock", "output_index": index,
            "content_index": 0, "part": { "type": "output_text", "text": text, "annotations": [] } }),
            false,
        ));
        events.push(ev(
            "response.output_item.done",
            json!({ "output_index": index,
            "item": message_item("completed", Some(&text)) }),
            false,
        ));
        for (i, c) in self.calls.iter().enumerate() {
            index += 1;
            let item_id = format!("fc_mock_{i}");
            events.push(ev(
                "response.output_item.added",
                json!({ "output_index": index, "item": responses_call(i, c, false) }),
                false,
            ));
            let (a, b) = Self::halves(&c.args);
            let (delta_name, done_name, done_key) = if c.custom {
                ("response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "input")
            } else {
                (
                    "response.function_call_arguments.delta",
                    "response.function_call_arguments.done",
                    "arguments",
                )
            };
            for part in [a, b] {
                events.push(ev(
                    delta_name,
                    json!({ "item_id": item_id, "output_index": index, "delta": part }),
                    false,
                ));
            }
            events.push(ev(
                done_name,
                json!({ "item_id": item_id, "output_index": index, done_key: c.args }),
                false,
            ));
            events.push(ev(
                "response.output_item.done",
                json!({ "output_index": index, "item": responses_call(i, c, true) }),
                false,
            ));
        }
        events.push(ev(
            self.finish("response.completed", "response.completed", "response.incomplete"),
            json!({ "response": self.response_object(self.finish("completed", "completed", "incomplete"), true) }),
            false,
        ));
        events
    }

    fn anthropic_events(&self) -> Vec<(Bytes, bool)> {
        let ev = |name: &str, data: Value, delta: bool| (encode(Some(name), &data.to_string()), delta);
        let mut start_usage = anthropic_usage(self.input_tokens, 1, self.cached_tokens);
        start_usage["output_tokens"] = json!(1);
        let mut events = vec![ev(
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage } }),
            false,
        )];
        let mut index = 0;
        if let Some(t) = self.thinking {
            events.push(ev(
                "content_block_start",
                json!({ "type": "content_block_start", "index": index,
                "content_block": { "type": "thinking", "thinking": "", "signature": "" } }),
                false,
            ));
            events.push(ev(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "thinking_delta", "thinking": t } }),
                false,
            ));
            events.push(ev(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "signature_delta", "signature": ANTHROPIC_SIGNATURE } }),
                false,
            ));
            events.push(ev(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }),
                false,
            ));
            index += 1;
        }
        events.push(ev(
            "content_block_start",
            json!({ "type": "content_block_start", "index": index,
            "content_block": { "type": "text", "text": "" } }),
            false,
        ));
        events.push(ev("ping", json!({ "type": "ping" }), false));
        for piece in &self.pieces {
            events.push(ev(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "text_delta", "text": piece } }),
                true,
            ));
        }
        events.push(ev("content_block_stop", json!({ "type": "content_block_stop", "index": index }), false));
        for c in &self.calls {
            index += 1;
            events.push(ev("content_block_start", json!({ "type": "content_block_start", "index": index,
                "content_block": { "type": "tool_use", "id": anthropic_id(c), "name": c.name, "input": {} } }), false));
            let (a, b) = Self::halves(&c.args);
            for part in [a, b] {
                events.push(ev(
                    "content_block_delta",
                    json!({ "type": "content_block_delta", "index": index,
                    "delta": { "type": "input_json_delta", "partial_json": part } }),
                    false,
                ));
            }
            events.push(ev(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }),
                false,
            ));
        }
        let stop = self.finish("end_turn", "tool_use", "max_tokens");
        events.push(ev(
            "message_delta",
            json!({ "type": "message_delta",
            "delta": { "stop_reason": stop, "stop_sequence": null },
            "usage": { "output_tokens": self.output_tokens() } }),
            false,
        ));
        events.push(ev("message_stop", json!({ "type": "message_stop" }), false));
        events
    }

    fn gemini_chunk(&self, parts: Vec<Value>, last: bool, output_so_far: u64) -> Value {
        let mut candidate = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
        if last {
            candidate["finishReason"] = json!(self.finish("STOP", "STOP", "MAX_TOKENS"));
        }
        // Thoughts count against the output limit as the answer does: no
        // count says more than the whole answer's (the last chunk's).
        let whole = self.output_tokens();
        let output_so_far = if last { whole } else { output_so_far.min(whole) };
        let thoughts = self.reasoning_tokens().min(output_so_far);
        let mut usage = json!({
            "promptTokenCount": self.input_tokens, "cachedContentTokenCount": self.cached_tokens, "candidatesTokenCount": output_so_far - thoughts,
            "totalTokenCount": self.input_tokens + output_so_far,
        });
        if self.thinking.is_some() {
            usage["thoughtsTokenCount"] = json!(thoughts);
        }
        json!({ "candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model, "responseId": "mock-response" })
    }

    fn gemini_events(&self, sse: bool) -> Vec<(Bytes, bool)> {
        let mut chunks: Vec<(Value, bool)> = Vec::new();
        let reasoning = self.reasoning_tokens();
        if let Some(t) = self.thinking {
            chunks.push((
                self.gemini_chunk(vec![json!({ "text": t, "thought": true })], false, reasoning),
                false,
            ));
        }
        let n = self.pieces.len();
        for (i, piece) in self.pieces.iter().enumerate() {
            let last = i + 1 == n && self.calls.is_empty();
            chunks.push((
                self.gemini_chunk(vec![json!({ "text": piece })], last, reasoning + i as u64 + 1),
                true,
            ));
        }
        if !self.calls.is_empty() {
            chunks.push((self.gemini_chunk(self.gemini_call_parts(), true, self.output_tokens()), false));
        }
        let total = chunks.len();
        if sse {
            return chunks.into_iter().map(|(c, d)| (encode(None, &c.to_string()), d)).collect();
        }
        // The JSON-array framing Google uses without alt=sse.
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, (c, d))| {
                let lead = if i == 0 { "[" } else { ",\r\n" };
                let tail = if i + 1 == total { "]" } else { "" };
                (Bytes::from(format!("{lead}{c}{tail}")), d)
            })
            .collect()
    }
}

fn chat_call(c: &MockCall) -> Value {
    json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.args } })
}

fn anthropic_id(c: &MockCall) -> String {
    c.id.replace("call_", "toolu_")
}

fn responses_call(i: usize, c: &MockCall, completed: bool) -> Value {
    let status = if completed { "completed" } else { "in_progress" };
    if c.custom {
        json!({ "id": format!("ctc_mock_{i}"), "type": "custom_tool_call", "status": status, "call_id": c.id,
                "name": c.name, "input": if completed { c.args.as_str() } else { "" } })
    } else {
        json!({ "id": format!("fc_mock_{i}"), "type": "function_call", "status": status, "call_id": c.id,
                "name": c.name, "arguments": if completed { c.args.as_str() } else { "" } })
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

fn openai_usage(input: u64, output: u64, reasoning: u64, cached: u64) -> Value {
    json!({
        "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": { "cached_tokens": cached, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 },
    })
}

/// Anthropic counts cache reads apart from `input_tokens`.
fn anthropic_usage(input: u64, output: u64, cached: u64) -> Value {
    json!({ "input_tokens": input - cached, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
            "output_tokens": output, "service_tier": "standard" })
}
