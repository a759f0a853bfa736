//! What the mock reads from a request, per API, to decide its reply the
//! way a model would: call a declared tool when the user asks for it
//! (`call NAME {json}`), answer a tool result by quoting it, think when
//! thinking is on. It also enforces the rules the real APIs enforce on
//! multi-turn tool use, so a translation that breaks them fails here too.

use super::api::Api;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Conversation {
    /// The text of the last tool result, when the conversation ends in one.
    pub tool_result: Option<String>,
    /// The last user text.
    pub user_text: String,
    /// Declared tools: (name, freeform).
    pub tools: Vec<(String, bool)>,
    pub thinking: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockCall {
    pub id: String,
    pub name: String,
    /// JSON arguments (for a freeform tool, its raw input).
    pub args: String,
    pub custom: bool,
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Text of a content that may be a string or a list of text parts.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        Value::Object(_) => {
            v.get("text").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_string)
        }
        _ => String::new(),
    }
}

impl Conversation {
    /// Reads the request, or returns the error a real provider would give.
    pub fn read(api: &Api, req: &Value) -> Result<Self, String> {
        let mut c = Conversation::default();
        match api {
            Api::OpenaiChat => {
                c.thinking = req.get("reasoning_effort").is_some();
                for t in arr(&req["tools"]) {
                    let custom = s(&t["type"]) == "custom";
                    let name = if custom { s(&t["custom"]["name"]) } else { s(&t["function"]["name"]) };
                    c.tools.push((name.to_string(), custom));
                }
                let mut open_calls: Vec<String> = Vec::new();
                for m in arr(&req["messages"]) {
                    match s(&m["role"]) {
                        "assistant" => {
                            open_calls =
                                arr(&m["tool_calls"]).iter().map(|t| s(&t["id"]).to_string()).collect();
                            c.tool_result = None;
                        }
                        "tool" => {
                            if !open_calls.iter().any(|id| id == s(&m["tool_call_id"])) {
                                return Err(format!(
                                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (tool_call_id {:?})",
                                    s(&m["tool_call_id"])
                                ));
                            }
                            c.tool_result = Some(text_of(&m["content"]));
                        }
                        "user" => {
                            c.user_text = text_of(&m["content"]);
                            c.tool_result = None;
                        }
                        _ => {}
                    }
                }
            }
            Api::OpenaiResponses => {
                c.thinking = req.pointer("/reasoning/summary").is_some_and(|v| !v.is_null());
                for t in arr(&req["tools"]) {
                    c.tools.push((s(&t["name"]).to_string(), s(&t["type"]) == "custom"));
                }
                let mut calls: Vec<String> = Vec::new();
                match &req["input"] {
                    Value::String(t) => c.user_text = t.clone(),
                    items => {
                        for item in arr(items) {
                            match s(&item["type"]) {
                                "function_call" | "custom_tool_call" => {
                                    calls.push(s(&item["call_id"]).to_string());
                                    c.tool_result = None;
                                }
                                "function_call_output" | "custom_tool_call_output" => {
                                    if !calls.iter().any(|id| id == s(&item["call_id"])) {
                                        return Err(format!(
                                            "No tool call found for function call output with call_id {}.",
                                            s(&item["call_id"])
                                        ));
                                    }
                                    c.tool_result = Some(text_of(&item["output"]));
                                }
                                _ if s(&item["role"]) == "user" => {
                                    c.user_text = text_of(&item["content"]);
                                    c.tool_result = None;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            Api::AnthropicMessages | Api::AnthropicCountTokens => {
                let thinking = s(&req["thinking"]["type"]);
                c.thinking = thinking == "enabled" || thinking == "adaptive";
                for t in arr(&req["tools"]) {
                    c.tools.push((s(&t["name"]).to_string(), false));
                }
                let mut open_calls: Vec<String> = Vec::new();
                let mut last_tool_turn_thought = true;
                for m in arr(&req["messages"]) {
                    let blocks = match &m["content"] {
                        Value::String(t) => vec![serde_json::json!({"type": "text", "text": t})],
                        other => arr(other).to_vec(),
                    };
                    if s(&m["role"]) == "assistant" {
                        open_calls = blocks
                            .iter()
                            .filter(|b| b["type"] == "tool_use")
                            .map(|b| s(&b["id"]).to_string())
                            .collect();
                        if !open_calls.is_empty() {
                            last_tool_turn_thought = blocks
                                .first()
                                .is_some_and(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking");
                        }
                        c.tool_result = None;
                        continue;
                    }
                    if s(&m["role"]) != "user" {
                        continue;
                    }
                    for b in &blocks {
                        match s(&b["type"]) {
                            "tool_result" => {
                                if !open_calls.iter().any(|id| id == s(&b["tool_use_id"])) {
                                    return Err(format!(
                                        "messages: unexpected `tool_use_id` found in `tool_result` blocks: {}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                                        s(&b["tool_use_id"])
                                    ));
                                }
                                c.tool_result = Some(text_of(&b["content"]));
                            }
                            "text" => {
                                c.user_text = s(&b["text"]).to_string();
                                if !blocks.iter().any(|b| b["type"] == "tool_result") {
                                    c.tool_result = None;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                if c.thinking && !last_tool_turn_thought {
                    return Err("messages: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.".into());
                }
            }
            Api::Gemini { .. } => {
                c.thinking = req.pointer("/generationConfig/thinkingConfig/includeThoughts")
                    == Some(&Value::Bool(true));
                for t in arr(&req["tools"]) {
                    for d in arr(&t["functionDeclarations"]) {
                        c.tools.push((s(&d["name"]).to_string(), false));
                    }
                }
                for content in arr(&req["contents"]) {
                    for p in arr(&content["parts"]) {
                        if p.get("functionCall").is_some() && p.get("thoughtSignature").is_none() {
                            return Err(format!(
                                "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `{}`",
                                s(&p["functionCall"]["name"])
                            ));
                        }
                        if let Some(r) = p.get("functionResponse") {
                            c.tool_result = Some(text_of(&r["response"]));
                        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                            if s(&content["role"]) == "user" {
                                c.user_text = t.to_string();
                                c.tool_result = None;
                            }
                        }
                    }
                }
            }
        }
        Ok(c)
    }

    /// The calls the user asked for: each `call NAME` naming a declared
    /// tool, with the JSON object that follows it (or `{}`).
    pub fn requested_calls(&self) -> Vec<MockCall> {
        if self.tool_result.is_some() {
            return Vec::new();
        }
        let mut calls = Vec::new();
        let text = &self.user_text;
        let mut rest = text.as_str();
        while let Some(i) = rest.find("call ") {
            rest = &rest[i + 5..];
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
            let Some((_, custom)) = self.tools.iter().find(|(t, _)| *t == name) else { continue };
            rest = &rest[name.len()..];
            let after = rest.trim_start();
            let args = if after.starts_with('{') {
                let mut de = serde_json::Deserializer::from_str(after).into_iter::<Value>();
                match de.next() {
                    Some(Ok(v)) => {
                        rest = &after[de.byte_offset()..];
                        v.to_string()
                    }
                    // Some CLIs quote the prompt, escaping its quotes.
                    _ => {
                        let unescaped = after.replace("\\\"", "\"");
                        let mut de = serde_json::Deserializer::from_str(&unescaped).into_iter::<Value>();
                        match de.next() {
                            Some(Ok(v)) => v.to_string(),
                            _ => "{}".to_string(),
                        }
                    }
                }
            } else {
                "{}".to_string()
            };
            let args = if *custom {
                serde_json::from_str::<Value>(&args)
                    .ok()
                    .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or(args)
            } else {
                args
            };
            calls.push(MockCall {
                id: format!("call_mock_{}", calls.len() + 1),
                name,
                args,
                custom: *custom,
            });
        }
        calls
    }
}
