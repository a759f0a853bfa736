//! OpenAI Chat Completions: requests to and from the canonical model.
//! Responses are in `response.rs`, streams in `stream.rs`.

pub mod response;
pub mod stream;

use super::canonical::*;
use super::json::{self, bad, unsupported, Result};
use super::json_ref::{obj, owned, raw, s, JsonRef};
use super::ClientFormat;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// `{"role":"assistant","content":""},` and `{"type":"text","text":""},`.
const FRAMING: Framing = Framing { message: 36, part: 28 };

const ME: ClientFormat = ClientFormat::Openai;

/// The top-level fields a translation reads (the others are kept as text
/// when large: see [`JsonRef::parse_object_deferring`]); the last ones are
/// [`UNMAPPED`].
const READ: [&str; 24] = [
    "model",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stream",
    "user",
    "safety_identifier",
    "reasoning_effort",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "audio",
    "prediction",
    "frequency_penalty",
    "presence_penalty",
    "web_search_options",
];

/// Fields with no canonical equivalent: accepted at their default value,
/// refused by name otherwise when the request is translated.
const UNMAPPED: &[&str] = READ.split_at(15).1;

pub fn parse_request(body: &[u8]) -> Result<Request> {
    let (top, messages) = JsonRef::parse_object_deferring(body, "messages", &READ).map_err(bad)?;
    for &field in UNMAPPED {
        match top.get(field) {
            None | Some(JsonRef::Null) | Some(JsonRef::Bool(false)) => {}
            Some(v) if field == "n" && v.as_u64() == Some(1) => {}
            Some(v) if field.ends_with("_penalty") && v.as_f64() == Some(0.0) => {}
            Some(_) => {
                return Err(bad(format!("'{field}' cannot be translated to another provider's format")))
            }
        }
    }
    let mut req = Request {
        model: json::req_str(&top, "model", "")?.to_string(),
        max_tokens: json::opt_u64(&top, "max_completion_tokens")?.or(json::opt_u64(&top, "max_tokens")?),
        temperature: json::opt_f64(&top, "temperature")?,
        top_p: json::opt_f64(&top, "top_p")?,
        top_k: json::opt_u64(&top, "top_k")?,
        stop: json::string_or_list(top.get("stop"), "stop")?,
        stream: json::opt_bool(&top, "stream")?.unwrap_or(false),
        parallel_tool_calls: json::opt_bool(&top, "parallel_tool_calls")?,
        user: json::opt_str(&top, "user", "")?
            .or(json::opt_str(&top, "safety_identifier", "")?)
            .map(str::to_string),
        ..Request::default()
    };
    if let Some(effort) = json::opt_str(&top, "reasoning_effort", "")? {
        let effort = super::canonical::Effort::parse(effort)
            .ok_or_else(|| bad(format!("'reasoning_effort' {effort:?} is not a known effort")))?;
        req.reasoning = Some(Reasoning {
            enabled: true,
            effort: Some(effort),
            budget_tokens: None,
            include_thoughts: true,
        });
    }
    req.output = parse_response_format(top.get("response_format"))?;
    for (i, tool) in json::array(&top, "tools", "")?.iter().enumerate() {
        req.tools.push(parse_tool(tool, i)?);
    }
    req.tool_choice = parse_tool_choice(top.get("tool_choice"))?;
    req.messages.reserve_exact(json::deferred_len(messages));
    let count = json::each_deferred_item(messages, "messages", |i, m| {
        parse_message(&json::item(m)?, i, &mut req)?;
        req.trim_last();
        Ok(())
    })?;
    if count == 0 {
        return Err(bad("'messages' must be a non-empty array"));
    }
    Ok(req)
}

fn parse_response_format(v: Option<&JsonRef<'_>>) -> Result<Option<OutputFormat>> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    match json::opt_str(v, "type", "response_format.")? {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => {
            let spec =
                v.get("json_schema").ok_or_else(|| bad("'response_format.json_schema' is required"))?;
            Ok(Some(OutputFormat::JsonSchema {
                name: json::opt_str(spec, "name", "response_format.json_schema.")?
                    .unwrap_or("response")
                    .to_string(),
                schema: spec.get("schema").map(JsonRef::to_value).unwrap_or_else(|| json!({})),
                strict: json::opt_bool(spec, "strict")?,
            }))
        }
        Some(other) => Err(bad(format!("'response_format.type' {other:?} is not supported"))),
    }
}

fn parse_tool(tool: &JsonRef<'_>, i: usize) -> Result<Tool> {
    let at = format!("tools[{i}].");
    match json::opt_str(tool, "type", &at)?.unwrap_or("function") {
        "function" => {
            let f = tool.get("function").ok_or_else(|| bad(format!("'{at}function' is required")))?;
            Ok(Tool::Function {
                name: json::req_str(f, "name", &format!("{at}function."))?.to_string(),
                description: json::opt_str(f, "description", &at)?.map(str::to_string),
                parameters: f.field("parameters").map_or_else(Schema::object, JsonRef::schema),
                strict: json::opt_bool(f, "strict")?,
            })
        }
        "custom" => {
            let c = tool.get("custom").ok_or_else(|| bad(format!("'{at}custom' is required")))?;
            Ok(Tool::Custom {
                name: json::req_str(c, "name", &format!("{at}custom."))?.to_string(),
                description: json::opt_str(c, "description", &at)?.map(str::to_string),
            })
        }
        other => Ok(Tool::Hosted { kind: other.to_string(), raw: tool.to_value() }),
    }
}

fn parse_tool_choice(v: Option<&JsonRef<'_>>) -> Result<Option<ToolChoice>> {
    match v {
        None | Some(JsonRef::Null) => Ok(None),
        Some(JsonRef::String(s)) => match s.as_ref() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(bad(format!("'tool_choice' {other:?} is not valid"))),
        },
        Some(obj) => {
            let name = obj
                .pointer("/function/name")
                .or_else(|| obj.pointer("/custom/name"))
                .and_then(JsonRef::as_str)
                .ok_or_else(|| bad("'tool_choice.function.name' is required"))?;
            Ok(Some(ToolChoice::Named(name.to_string())))
        }
    }
}

fn parse_message(m: &JsonRef<'_>, i: usize, req: &mut Request) -> Result<()> {
    let at = format!("messages[{i}].");
    let role = json::req_str(m, "role", &at)?;
    match role {
        "system" | "developer" => {
            let text = content_text(m.get("content"), &at)?;
            if req.messages.is_empty() {
                req.system.push(text);
            } else {
                req.messages
                    .push(Message { role: Role::System, parts: smallvec::smallvec![Part::Text(text)] });
            }
        }
        "user" => {
            let parts = content_parts(m.get("content"), &at)?;
            req.messages.push(Message { role: Role::User, parts: parts.into() });
        }
        "assistant" => {
            let mut parts = Vec::new();
            if let Some(thinking) = json::opt_str(m, "reasoning_content", &at)? {
                if !thinking.is_empty() {
                    parts.push(Part::thinking(thinking.to_string(), None));
                }
            }
            match m.get("content") {
                None | Some(JsonRef::Null) => {}
                content => {
                    let text = content_text(content, &at)?;
                    if !text.is_empty() {
                        parts.push(Part::Text(text));
                    }
                }
            }
            for (j, call) in json::array(m, "tool_calls", &at)?.iter().enumerate() {
                let call_at = format!("{at}tool_calls[{j}].");
                let (id, signature) = super::ids::unwrap(json::req_str(call, "id", &call_at)?);
                let (name, arguments) = if let Some(f) = call.get("function") {
                    let arguments = json::opt_str(f, "arguments", &call_at)?.unwrap_or("");
                    (json::req_str(f, "name", &call_at)?, arguments.to_string())
                } else if let Some(c) = call.get("custom") {
                    let input = json::opt_str(c, "input", &call_at)?.unwrap_or("");
                    (json::req_str(c, "name", &call_at)?, super::codec::custom_arguments(input))
                } else {
                    return Err(bad(format!("'{call_at}function' is required")));
                };
                parts.push(Part::tool_call(ToolCall {
                    id: id.to_string(),
                    name: name.to_string(),
                    arguments,
                    signature,
                }));
            }
            req.messages.push(Message { role: Role::Assistant, parts: parts.into() });
        }
        "tool" => {
            let (call_id, _) = super::ids::unwrap(json::req_str(m, "tool_call_id", &at)?);
            let result = ToolResult {
                call_id: call_id.to_string(),
                name: None,
                content: content_parts(m.get("content"), &at)?,
                is_error: false,
            };
            match req.messages.last_mut() {
                Some(last) if last.role == Role::User && last.parts.iter().all(is_tool_result) => {
                    last.parts.push(Part::tool_result(result))
                }
                _ => req.messages.push(Message {
                    role: Role::User,
                    parts: smallvec::smallvec![Part::tool_result(result)],
                }),
            }
        }
        "function" => return Err(bad(format!("'{at}role' \"function\" is deprecated; use tool messages"))),
        other => return Err(bad(format!("'{at}role' {other:?} is not valid"))),
    }
    Ok(())
}

fn is_tool_result(p: &Part) -> bool {
    matches!(p, Part::ToolResult(_))
}

/// A content that must be text: a string or a list of text parts.
fn content_text(v: Option<&JsonRef<'_>>, at: &str) -> Result<String> {
    let mut out = String::new();
    for part in content_parts(v, at)? {
        match part {
            Part::Text(t) => out.push_str(&t),
            _ => return Err(bad(format!("'{at}content' may only hold text here"))),
        }
    }
    Ok(out)
}

fn content_parts(v: Option<&JsonRef<'_>>, at: &str) -> Result<Vec<Part>> {
    match v {
        None | Some(JsonRef::Null) => Ok(Vec::new()),
        Some(JsonRef::String(s)) => Ok(vec![Part::Text(s.to_string())]),
        Some(JsonRef::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                let part_at = format!("{at}content[{j}].");
                match json::req_str(item, "type", &part_at)? {
                    "text" | "input_text" | "output_text" => {
                        Ok(Part::Text(json::req_str(item, "text", &part_at)?.to_string()))
                    }
                    "refusal" => Ok(Part::Text(json::req_str(item, "refusal", &part_at)?.to_string())),
                    "image_url" => {
                        let url = match item.get("image_url") {
                            Some(JsonRef::String(s)) => s.as_ref(),
                            Some(obj) => json::req_str(obj, "url", &format!("{part_at}image_url."))?,
                            None => return Err(bad(format!("'{part_at}image_url' is required"))),
                        };
                        Ok(Part::media(Media::from_url(url)))
                    }
                    "file" => {
                        let file =
                            item.get("file").ok_or_else(|| bad(format!("'{part_at}file' is required")))?;
                        let data = json::opt_str(file, "file_data", &part_at)?.ok_or_else(|| {
                            bad(format!("'{part_at}file.file_id' cannot be translated; send file_data"))
                        })?;
                        Ok(Part::media(Media::from_url(data)))
                    }
                    other => Err(bad(format!("'{part_at}type' {other:?} cannot be translated"))),
                }
            })
            .collect(),
        Some(_) => Err(bad(format!("'{at}content' must be a string or an array"))),
    }
}

/// How a Chat Completions upstream spells what differs between OpenAI
/// itself and the servers that copy its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Openai,
    Compatible,
}

pub fn build_request(req: &Request, flavor: Flavor, buffer: Vec<u8>) -> Result<Vec<u8>> {
    let mut top = Map::new();
    top.insert("model".into(), json!(req.model));
    let mut messages = json::Items::new_in(buffer, "messages", req.size_hint(FRAMING));
    for text in &req.system {
        messages.push(obj([("role", s("system")), ("content", s(text))]));
    }
    for m in &req.messages {
        build_message(m, &mut messages)?;
    }
    let mut more = Vec::new();
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(build_tool).collect::<Result<Vec<_>>>()?;
        more.push(("tools", JsonRef::Array(tools)));
        if let Some(p) = req.parallel_tool_calls {
            top.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(choice) = &req.tool_choice {
        top.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
            },
        );
    }
    if let Some(max) = req.max_tokens {
        let key = if flavor == Flavor::Openai { "max_completion_tokens" } else { "max_tokens" };
        top.insert(key.into(), json!(max));
    }
    put_opt(&mut top, "temperature", req.temperature.map(Value::from));
    put_opt(&mut top, "top_p", req.top_p.map(Value::from));
    // OpenAI has no top_k; it is a sampling hint (Gemini CLI always sends
    // its default), so it is left out and reported in `ignored_parameters`.
    if let Some(k) = req.top_k.filter(|_| flavor == Flavor::Compatible) {
        top.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        top.insert("stop".into(), json!(req.stop));
    }
    if let Some(r) = req.reasoning.filter(|r| r.enabled) {
        top.insert("reasoning_effort".into(), json!(r.effort_or_budget().as_str()));
    }
    match &req.output {
        None => {}
        Some(OutputFormat::JsonObject) => {
            top.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(OutputFormat::JsonSchema { name, schema, strict }) => {
            let mut spec = json!({"name": name, "schema": schema});
            if let Some(s) = strict {
                spec["strict"] = json!(s);
            }
            top.insert("response_format".into(), json!({"type": "json_schema", "json_schema": spec}));
        }
    }
    put_opt(&mut top, "user", req.user.as_deref().map(Value::from));
    if req.stream {
        top.insert("stream".into(), json!(true));
        top.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(messages.finish_with(&top, &more))
}

fn put_opt(top: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        top.insert(key.into(), v);
    }
}

fn build_message<'a>(m: &'a Message, out: &mut json::Items<'a>) -> Result<()> {
    match m.role {
        Role::System => {
            out.push(obj([("role", s("system")), ("content", JsonRef::String(joined_text(&m.parts)))]))
        }
        Role::User => {
            let mut rest = Vec::new();
            for part in &m.parts {
                match part {
                    Part::ToolResult(r) => out.push(obj([
                        ("role", s("tool")),
                        ("tool_call_id", s(&r.call_id)),
                        ("content", tool_result_content(r)),
                    ])),
                    other => rest.push(other),
                }
            }
            if !rest.is_empty() {
                out.push(obj([("role", s("user")), ("content", user_content(&rest)?)]));
            }
        }
        Role::Assistant => {
            let text = joined_text(&m.parts);
            let content = if text.is_empty() { JsonRef::Null } else { JsonRef::String(text) };
            let mut msg = obj([("role", s("assistant")), ("content", content)]);
            let calls: Vec<JsonRef<'a>> = m
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::ToolCall(c) => Some(obj([
                        ("id", s(&c.id)),
                        ("type", s("function")),
                        ("function", obj([("name", s(&c.name)), ("arguments", s(&c.arguments))])),
                    ])),
                    _ => None,
                })
                .collect();
            if !calls.is_empty() {
                if let JsonRef::Object(fields) = &mut msg {
                    fields.push(("tool_calls".into(), JsonRef::Array(calls)));
                }
            }
            out.push(msg);
        }
    }
    Ok(())
}

/// The text parts joined; one part is borrowed, not copied.
fn joined_text(parts: &[Part]) -> Cow<'_, str> {
    let mut texts = parts.iter().filter_map(|p| match p {
        Part::Text(t) => Some(t.as_str()),
        _ => None,
    });
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(one), None) => Cow::Borrowed(one),
        (Some(a), Some(b)) => {
            let mut all = format!("{a}{b}");
            all.extend(texts);
            Cow::Owned(all)
        }
    }
}

fn tool_result_content(r: &ToolResult) -> JsonRef<'static> {
    let text = r.text();
    owned(if r.is_error { format!("Error: {text}") } else { text })
}

fn user_content<'a>(parts: &[&'a Part]) -> Result<JsonRef<'a>> {
    if let [Part::Text(t)] = parts {
        return Ok(s(t));
    }
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        out.push(match p {
            Part::Text(t) => obj([("type", s("text")), ("text", s(t))]),
            Part::Media(m) if m.media_type().is_some_and(|t| !t.starts_with("image/")) => {
                obj([("type", s("file")), ("file", obj([("file_data", JsonRef::url_of(m))]))])
            }
            Part::Media(m) => {
                obj([("type", s("image_url")), ("image_url", obj([("url", JsonRef::url_of(m))]))])
            }
            Part::Thinking { .. } | Part::RedactedThinking(_) => continue,
            Part::ToolCall(_) | Part::ToolResult(_) => return Err(bad("a tool part in a user message")),
        });
    }
    Ok(JsonRef::Array(out))
}

fn build_tool(tool: &Tool) -> Result<JsonRef<'_>> {
    match tool {
        Tool::Function { name, description, parameters, strict } => {
            let mut f = obj([("name", s(name)), ("parameters", raw(parameters.raw()))]);
            if let JsonRef::Object(fields) = &mut f {
                if let Some(d) = description {
                    fields.push(("description".into(), s(d)));
                }
                if let Some(strict) = strict {
                    fields.push(("strict".into(), (*strict).into()));
                }
            }
            Ok(obj([("type", s("function")), ("function", f)]))
        }
        Tool::Custom { name, description } => Ok(obj([
            ("type", s("function")),
            (
                "function",
                obj([
                    ("name", s(name)),
                    ("description", s(description.as_deref().unwrap_or_default())),
                    ("parameters", raw(super::codec::custom_tool_schema_raw())),
                ]),
            ),
        ])),
        Tool::WebSearch => Err(unsupported("the hosted web_search tool", ME)),
        Tool::Hosted { kind, .. } => Err(unsupported(format!("the hosted tool type '{kind}'"), ME)),
    }
}
