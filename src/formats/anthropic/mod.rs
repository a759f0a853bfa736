//! Anthropic Messages: requests to and from the canonical model.
//! Responses are in `response.rs`, streams in `stream.rs`.

pub mod response;
pub mod stream;

use super::canonical::*;
use super::json::{self, bad, unsupported, Result};
use super::json_ref::{obj, owned, raw, s, JsonRef};
use super::ClientFormat;
use serde_json::{json, Map, Value};

/// `{"role":"assistant","content":""},` (a turn of one text block is a
/// string) and `{"type":"text","text":""},`.
const FRAMING: Framing = Framing { message: 36, part: 28 };

const ME: ClientFormat = ClientFormat::Anthropic;

/// Anthropic requires `max_tokens`; callers of other formats may omit it.
pub const DEFAULT_MAX_TOKENS: u64 = 8192;

/// The top-level fields a translation reads (the others are kept as text
/// when large: see [`JsonRef::parse_object_deferring`]).
const READ: [&str; 14] = [
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "system",
    "thinking",
    "output_config",
    "output_format",
    "tools",
    "tool_choice",
];

pub fn parse_request(body: &[u8]) -> Result<Request> {
    let (top, messages) = JsonRef::parse_object_deferring(body, "messages", &READ).map_err(bad)?;
    let mut req = Request {
        model: json::req_str(&top, "model", "")?.to_string(),
        max_tokens: json::opt_u64(&top, "max_tokens")?,
        temperature: json::opt_f64(&top, "temperature")?,
        top_p: json::opt_f64(&top, "top_p")?,
        top_k: json::opt_u64(&top, "top_k")?,
        stop: json::string_or_list(top.get("stop_sequences"), "stop_sequences")?,
        stream: json::opt_bool(&top, "stream")?.unwrap_or(false),
        user: top.pointer("/metadata/user_id").and_then(JsonRef::as_str).map(str::to_string),
        ..Request::default()
    };
    match top.get("system") {
        None | Some(JsonRef::Null) => {}
        Some(JsonRef::String(s)) => req.system.push(s.to_string()),
        Some(JsonRef::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                req.system.push(json::req_str(b, "text", &format!("system[{i}]."))?.to_string());
            }
        }
        Some(_) => return Err(bad("'system' must be a string or a list of text blocks")),
    }
    req.reasoning = parse_thinking(&top)?;
    let format = top.pointer("/output_config/format").or_else(|| top.get("output_format"));
    if let Some(format) = format.filter(|f| !f.is_null()) {
        if json::opt_str(format, "type", "output_config.format.")? == Some("json_schema") {
            req.output = Some(OutputFormat::JsonSchema {
                name: "response".into(),
                schema: format.get("schema").map(JsonRef::to_value).unwrap_or_else(|| json!({})),
                strict: Some(true),
            });
        }
    }
    for (i, tool) in json::array(&top, "tools", "")?.iter().enumerate() {
        req.tools.push(parse_tool(tool, i)?);
    }
    if let Some(choice) = top.get("tool_choice").filter(|c| !c.is_null()) {
        req.tool_choice = Some(match json::req_str(choice, "type", "tool_choice.")? {
            "auto" => ToolChoice::Auto,
            "any" => ToolChoice::Required,
            "none" => ToolChoice::None,
            "tool" => ToolChoice::Named(json::req_str(choice, "name", "tool_choice.")?.to_string()),
            other => return Err(bad(format!("'tool_choice.type' {other:?} is not valid"))),
        });
        if json::opt_bool(choice, "disable_parallel_tool_use")? == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.messages.reserve_exact(json::deferred_len(messages));
    let count = json::each_deferred_item(messages, "messages", |i, m| {
        let m = &json::item(m)?;
        let at = format!("messages[{i}].");
        let role = match json::req_str(m, "role", &at)? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Claude Code puts system reminders mid-conversation.
            "system" => Role::System,
            other => return Err(bad(format!("'{at}role' {other:?} is not valid"))),
        };
        let parts = parse_content(m.get("content"), &at)?;
        req.messages.push(Message { role, parts: parts.into() });
        req.trim_last();
        Ok(())
    })?;
    if count == 0 {
        return Err(bad("'messages' must be a non-empty array"));
    }
    Ok(req)
}

fn parse_thinking(top: &JsonRef<'_>) -> Result<Option<Reasoning>> {
    let effort = match top.pointer("/output_config/effort").and_then(JsonRef::as_str) {
        Some(e) => {
            Some(Effort::parse(e).ok_or_else(|| bad(format!("'output_config.effort' {e:?} is not valid")))?)
        }
        None => None,
    };
    let Some(thinking) = top.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(effort.map(|e| Reasoning {
            enabled: true,
            effort: Some(e),
            budget_tokens: None,
            include_thoughts: false,
        }));
    };
    Ok(Some(match json::req_str(thinking, "type", "thinking.")? {
        "enabled" => Reasoning {
            enabled: true,
            effort,
            budget_tokens: json::opt_u64(thinking, "budget_tokens")?,
            include_thoughts: true,
        },
        "adaptive" => Reasoning { enabled: true, effort, budget_tokens: None, include_thoughts: true },
        "disabled" => Reasoning::default(),
        other => return Err(bad(format!("'thinking.type' {other:?} is not valid"))),
    }))
}

fn parse_tool(tool: &JsonRef<'_>, i: usize) -> Result<Tool> {
    let at = format!("tools[{i}].");
    match json::opt_str(tool, "type", &at)? {
        None | Some("custom") => Ok(Tool::Function {
            name: json::req_str(tool, "name", &at)?.to_string(),
            description: json::opt_str(tool, "description", &at)?.map(str::to_string),
            parameters: tool.field("input_schema").map_or_else(Schema::object, JsonRef::schema),
            strict: json::opt_bool(tool, "strict")?,
        }),
        Some(kind) if kind.starts_with("web_search_") => Ok(Tool::WebSearch),
        Some(kind) => Ok(Tool::Hosted { kind: kind.to_string(), raw: tool.to_value() }),
    }
}

fn parse_content(v: Option<&JsonRef<'_>>, at: &str) -> Result<Vec<Part>> {
    let blocks = match v {
        Some(JsonRef::String(s)) => return Ok(vec![Part::Text(s.to_string())]),
        Some(JsonRef::Array(blocks)) => blocks,
        _ => return Err(bad(format!("'{at}content' must be a string or a list of blocks"))),
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}content[{j}].");
        parts.push(match json::req_str(b, "type", &at)? {
            "text" => Part::Text(json::req_str(b, "text", &at)?.to_string()),
            "image" | "document" => Part::media(parse_source(b, &at)?),
            "tool_use" => {
                let (id, signature) = super::ids::unwrap(json::req_str(b, "id", &at)?);
                Part::tool_call(ToolCall {
                    id: id.to_string(),
                    name: json::req_str(b, "name", &at)?.to_string(),
                    arguments: b.get("input").map_or_else(|| "{}".to_string(), JsonRef::to_string),
                    signature,
                })
            }
            "tool_result" => {
                let (call_id, _) = super::ids::unwrap(json::req_str(b, "tool_use_id", &at)?);
                let content = match b.get("content") {
                    None | Some(JsonRef::Null) => Vec::new(),
                    content => parse_content(content, &at)?,
                };
                Part::tool_result(ToolResult {
                    call_id: call_id.to_string(),
                    name: None,
                    content,
                    is_error: json::opt_bool(b, "is_error")?.unwrap_or(false),
                })
            }
            "thinking" => Part::thinking(
                json::opt_str(b, "thinking", &at)?.unwrap_or_default().to_string(),
                json::opt_str(b, "signature", &at)?.map(str::to_string),
            ),
            "redacted_thinking" => Part::RedactedThinking(json::req_str(b, "data", &at)?.to_string()),
            other => return Err(bad(format!("'{at}type' {other:?} cannot be translated to another format"))),
        });
    }
    Ok(parts)
}

fn parse_source(b: &JsonRef<'_>, at: &str) -> Result<Media> {
    let source = b.get("source").ok_or_else(|| bad(format!("'{at}source' is required")))?;
    let at = format!("{at}source.");
    match json::req_str(source, "type", &at)? {
        "base64" => Ok(Media::Inline {
            media_type: json::req_str(source, "media_type", &at)?.to_string(),
            data: json::req_str(source, "data", &at)?.to_string(),
        }),
        "url" => Ok(Media::Url { url: json::req_str(source, "url", &at)?.to_string(), media_type: None }),
        other => Err(bad(format!("'{at}type' {other:?} cannot be translated"))),
    }
}

pub fn build_request(req: &Request, buffer: Vec<u8>) -> Result<Vec<u8>> {
    let mut top = Map::new();
    top.insert("model".into(), json!(req.model));
    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !req.system.is_empty() {
        let blocks: Vec<Value> = req.system.iter().map(|s| json!({"type": "text", "text": s})).collect();
        top.insert("system".into(), Value::Array(blocks));
    }
    let mut messages = json::Items::new_in(buffer, "messages", req.size_hint(FRAMING));
    build_messages(&req.messages, &mut messages)?;
    if let Some(r) = req.reasoning.filter(|r| r.enabled) {
        // With thinking on, Anthropic rejects a tool-use turn whose
        // thinking block was not replayed; a caller whose format cannot
        // carry signed thinking gets the turn without thinking instead.
        if replays_thinking(&req.messages) {
            let budget = r.budget_or_effort().max(1024);
            max_tokens = max_tokens.max(budget + 1024);
            top.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        }
    }
    top.insert("max_tokens".into(), json!(max_tokens));
    let mut more = Vec::new();
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(build_tool).collect::<Result<Vec<_>>>()?;
        more.push(("tools", JsonRef::Array(tools)));
    }
    let mut choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Named(name)) => Some(json!({"type": "tool", "name": name})),
    };
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = json!(true);
    }
    if let Some(c) = choice {
        top.insert("tool_choice".into(), c);
    }
    for (key, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = v {
            top.insert(key.into(), json!(v));
        }
    }
    if let Some(k) = req.top_k {
        top.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        top.insert("stop_sequences".into(), json!(req.stop));
    }
    match &req.output {
        None => {}
        Some(OutputFormat::JsonObject) => {
            top.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}),
            );
        }
        Some(OutputFormat::JsonSchema { schema, .. }) => {
            top.insert("output_config".into(), json!({"format": {"type": "json_schema", "schema": schema}}));
        }
    }
    if let Some(user) = &req.user {
        top.insert("metadata".into(), json!({"user_id": user}));
    }
    if req.stream {
        top.insert("stream".into(), json!(true));
    }
    Ok(messages.finish_with(&top, &more))
}

/// Whether the last assistant turn that called tools kept its signed
/// thinking (or there is none), so thinking can stay on.
fn replays_thinking(messages: &[Message]) -> bool {
    let last_tool_turn = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && m.parts.iter().any(|p| matches!(p, Part::ToolCall(_))));
    last_tool_turn.is_none_or(|m| {
        m.parts.iter().any(|p| {
            matches!(p, Part::Thinking(t) if t.signature.is_some()) || matches!(p, Part::RedactedThinking(_))
        })
    })
}

/// Anthropic tool ids must match `[A-Za-z0-9_-]+`.
pub fn tool_id(id: &str) -> String {
    let clean: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() {
        "toolu_empty".into()
    } else {
        clean
    }
}

fn build_messages<'a>(messages: &'a [Message], out: &mut json::Items<'a>) -> Result<()> {
    for m in messages {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        let mut blocks: Vec<JsonRef<'a>> = m.parts.iter().filter_map(build_block).collect();
        if blocks.is_empty() {
            continue;
        }
        // Consecutive user turns (tool results, then text) merge into one,
        // tool results first as Anthropic requires.
        if let Some(last) = out.last_mut() {
            if last["role"] == role && role == "user" {
                if let Some(content) = last.get_mut("content") {
                    if let JsonRef::String(_) = content {
                        let text = std::mem::replace(content, JsonRef::Null);
                        *content = JsonRef::Array(vec![obj([("type", s("text")), ("text", text)])]);
                    }
                    if let JsonRef::Array(prev) = content {
                        prev.append(&mut blocks);
                        prev.sort_by_key(|b| b["type"] != "tool_result");
                        continue;
                    }
                }
            }
        }
        if m.role == Role::User {
            blocks.sort_by_key(|b| b["type"] != "tool_result");
        }
        // A turn of one text block goes as a string: on a history of short
        // turns the block's framing was most of the body.
        let content = match blocks.as_mut_slice() {
            [only] if only["type"] == "text" => {
                only.get_mut("text").map(|t| std::mem::replace(t, JsonRef::Null))
            }
            _ => None,
        };
        let content = content.unwrap_or(JsonRef::Array(blocks));
        out.push(obj([("role", s(role)), ("content", content)]));
    }
    Ok(())
}

fn build_block(part: &Part) -> Option<JsonRef<'_>> {
    Some(match part {
        Part::Text(t) if t.is_empty() => return None,
        Part::Text(t) => obj([("type", s("text")), ("text", s(t))]),
        Part::Media(m) => media_block(m),
        Part::ToolCall(c) => obj([
            ("type", s("tool_use")),
            ("id", owned(tool_id(&c.id))),
            ("name", s(&c.name)),
            ("input", json::arguments_ref(&c.arguments)),
        ]),
        Part::ToolResult(r) => {
            let content: Vec<JsonRef<'_>> = r
                .content
                .iter()
                .filter_map(|p| match p {
                    Part::Text(t) => Some(obj([("type", s("text")), ("text", s(t))])),
                    Part::Media(m) => Some(media_block(m)),
                    _ => None,
                })
                .collect();
            let mut block = obj([
                ("type", s("tool_result")),
                ("tool_use_id", owned(tool_id(&r.call_id))),
                ("content", JsonRef::Array(content)),
            ]);
            if r.is_error {
                if let JsonRef::Object(fields) = &mut block {
                    fields.push(("is_error".into(), true.into()));
                }
            }
            block
        }
        // Unsigned reasoning (from formats without signatures) cannot be
        // replayed to Anthropic; providers discard old reasoning anyway.
        Part::Thinking(t) => {
            let sig = t.signature.as_ref()?;
            obj([("type", s("thinking")), ("thinking", s(&t.text)), ("signature", s(sig))])
        }
        Part::RedactedThinking(data) => obj([("type", s("redacted_thinking")), ("data", s(data))]),
    })
}

fn media_block(m: &Media) -> JsonRef<'_> {
    let kind = if m.media_type().is_some_and(|t| t == "application/pdf") { "document" } else { "image" };
    match m {
        Media::Url { url, .. } => {
            obj([("type", s(kind)), ("source", obj([("type", s("url")), ("url", s(url))]))])
        }
        Media::Inline { media_type, data } => obj([
            ("type", s(kind)),
            ("source", obj([("type", s("base64")), ("media_type", s(media_type)), ("data", s(data))])),
        ]),
    }
}

fn build_tool(tool: &Tool) -> Result<JsonRef<'_>> {
    match tool {
        Tool::Function { name, description, parameters, .. } => {
            let mut t = obj([("name", s(name)), ("input_schema", raw(parameters.raw()))]);
            if let (Some(d), JsonRef::Object(fields)) = (description, &mut t) {
                fields.push(("description".into(), s(d)));
            }
            Ok(t)
        }
        Tool::Custom { name, description } => Ok(obj([
            ("name", s(name)),
            ("description", s(description.as_deref().unwrap_or_default())),
            ("input_schema", raw(super::codec::custom_tool_schema_raw())),
        ])),
        Tool::WebSearch => Ok(obj([("type", s("web_search_20250305")), ("name", s("web_search"))])),
        Tool::Hosted { kind, .. } => Err(unsupported(format!("the hosted tool type '{kind}'"), ME)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(role: Role, t: &str) -> Message {
        Message { role, parts: smallvec::smallvec![Part::Text(t.into())] }
    }

    #[test]
    fn a_turn_of_one_text_is_a_string_and_a_later_user_turn_merges_into_blocks() {
        let result = ToolResult {
            call_id: "toolu_1".into(),
            name: None,
            content: vec![Part::Text("42".into())],
            is_error: false,
        };
        let req = Request {
            model: "m".into(),
            messages: vec![
                text(Role::User, "first"),
                Message { role: Role::User, parts: smallvec::smallvec![Part::tool_result(result)] },
                text(Role::Assistant, "ok"),
                text(Role::User, "two"),
                Message {
                    role: Role::User,
                    parts: smallvec::smallvec![Part::Text("a".into()), Part::Text("b".into())],
                },
            ],
            ..Request::default()
        };
        let out: Value = serde_json::from_slice(&build_request(&req, Vec::new()).unwrap()).unwrap();
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{out}");
        // Tool results first, as Anthropic requires; the string became a block.
        assert_eq!(m[0]["content"][0]["type"], "tool_result");
        assert_eq!(m[0]["content"][1], json!({"type": "text", "text": "first"}));
        assert_eq!(m[1], json!({"role": "assistant", "content": "ok"}));
        let texts: Vec<&Value> = m[2]["content"].as_array().unwrap().iter().map(|b| &b["text"]).collect();
        assert_eq!(texts, [&json!("two"), &json!("a"), &json!("b")]);
    }
}
