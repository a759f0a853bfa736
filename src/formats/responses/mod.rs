//! OpenAI Responses: requests to and from the canonical model.
//! Responses are in `response.rs`, streams in `stream.rs`.

pub mod items;
pub mod response;
pub mod stored;
pub mod stream;

use super::canonical::*;
use super::codec::{custom_arguments, custom_input};
use super::json::{self, bad, unsupported, Result};
use super::json_ref::{obj, owned, raw, s, JsonRef};
use super::ClientFormat;
use serde_json::{json, Map, Value};

/// `{"role":"assistant","content":""},` (a message of one text part is a
/// string) and `{"type":"output_text","text":""},`.
const FRAMING: Framing = Framing { message: 36, part: 36 };

const ME: ClientFormat = ClientFormat::Responses;

/// Reasoning signatures this gateway minted for a Responses caller are
/// marked, so a signature from OpenAI itself is never sent to Anthropic.
pub const SIGNATURE_MARK: &str = "tollgate.anthropic:";

/// The top-level fields a translation reads (the others are kept as text
/// when large: see [`JsonRef::parse_object_deferring`]).
const READ: [&str; 15] = [
    "model",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "user",
    "safety_identifier",
    "previous_response_id",
    "reasoning",
    "text",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "include",
];

pub fn parse_request(body: &[u8]) -> Result<Request> {
    let (top, input) = JsonRef::parse_object_deferring(body, "input", &READ).map_err(bad)?;
    if json::opt_str(&top, "previous_response_id", "")?.is_some() {
        return Err(bad(
            "'previous_response_id' needs a response stored by the provider; this model is served \
             through translation, so send the whole conversation in 'input' (store: false)",
        ));
    }
    let mut req = Request {
        model: json::req_str(&top, "model", "")?.to_string(),
        max_tokens: json::opt_u64(&top, "max_output_tokens")?,
        temperature: json::opt_f64(&top, "temperature")?,
        top_p: json::opt_f64(&top, "top_p")?,
        stream: json::opt_bool(&top, "stream")?.unwrap_or(false),
        parallel_tool_calls: json::opt_bool(&top, "parallel_tool_calls")?,
        user: json::opt_str(&top, "safety_identifier", "")?
            .or(json::opt_str(&top, "user", "")?)
            .map(str::to_string),
        ..Request::default()
    };
    if let Some(instructions) = json::opt_str(&top, "instructions", "")? {
        req.system.push(instructions.to_string());
    }
    if let Some(r) = top.get("reasoning").filter(|r| !r.is_null()) {
        let effort = json::opt_str(r, "effort", "reasoning.")?;
        let enabled = effort != Some("none");
        req.reasoning = Some(Reasoning {
            enabled,
            effort: effort.and_then(Effort::parse).filter(|_| enabled),
            budget_tokens: None,
            include_thoughts: r.get("summary").is_some_and(|s| !s.is_null()),
        });
    }
    if let Some(format) = top.pointer("/text/format").filter(|f| !f.is_null()) {
        req.output = match json::opt_str(format, "type", "text.format.")? {
            Some("json_object") => Some(OutputFormat::JsonObject),
            Some("json_schema") => Some(OutputFormat::JsonSchema {
                name: json::opt_str(format, "name", "text.format.")?.unwrap_or("response").to_string(),
                schema: format.get("schema").map(JsonRef::to_value).unwrap_or_else(|| json!({})),
                strict: json::opt_bool(format, "strict")?,
            }),
            _ => None,
        };
    }
    for (i, tool) in json::array(&top, "tools", "")?.iter().enumerate() {
        if tool.get("type").and_then(JsonRef::as_str) == Some("namespace") {
            // Codex groups tools in namespaces; other formats get them flat.
            let ns = json::req_str(tool, "name", &format!("tools[{i}]."))?;
            for (j, inner) in json::array(tool, "tools", &format!("tools[{i}]."))?.iter().enumerate() {
                match parse_tool(inner, j)? {
                    Tool::Function { name, description, parameters, strict } => {
                        req.tools.push(Tool::Function {
                            name: namespaced(ns, &name),
                            description,
                            parameters,
                            strict,
                        })
                    }
                    other => req.tools.push(other),
                }
            }
            continue;
        }
        req.tools.push(parse_tool(tool, i)?);
    }
    req.tool_choice = match top.get("tool_choice") {
        None | Some(JsonRef::Null) => None,
        Some(JsonRef::String(s)) => Some(match s.as_ref() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(bad(format!("'tool_choice' {other:?} is not valid"))),
        }),
        Some(obj) => match obj.get("name").and_then(JsonRef::as_str) {
            Some(name) => Some(ToolChoice::Named(name.to_string())),
            None => return Err(bad("'tool_choice' must name a function or custom tool to be translated")),
        },
    };
    let not_input = || bad("'input' must be a string or a list of items");
    let input = input.ok_or_else(not_input)?;
    if input.get().starts_with('[') {
        req.messages.reserve_exact(json::deferred_len(Some(input)));
        json::each_deferred_item(Some(input), "input", |i, item| {
            parse_item(&json::item(item)?, i, &mut req)?;
            req.trim_last();
            Ok(())
        })?;
    } else {
        match json::item(input)? {
            JsonRef::String(s) => req
                .messages
                .push(Message { role: Role::User, parts: smallvec::smallvec![Part::Text(s.into_owned())] }),
            _ => return Err(not_input()),
        }
    }
    Ok(req)
}

/// The flat name of tool `name` in namespace `ns`.
pub fn namespaced(ns: &str, name: &str) -> String {
    format!("{ns}{NAMESPACE_SEPARATOR}{name}")
}

pub const NAMESPACE_SEPARATOR: &str = "__";

/// The namespaces a Responses request declares, so calls can be split
/// back; reads only the raw `tools` field, not the whole body again.
pub fn declared_namespaces(raw_tools: Option<&str>) -> Vec<String> {
    let Some(Ok(Value::Array(tools))) = raw_tools.map(serde_json::from_str::<Value>) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("namespace"))
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn parse_tool(tool: &JsonRef<'_>, i: usize) -> Result<Tool> {
    let at = format!("tools[{i}].");
    match json::req_str(tool, "type", &at)? {
        "function" => Ok(Tool::Function {
            name: json::req_str(tool, "name", &at)?.to_string(),
            description: json::opt_str(tool, "description", &at)?.map(str::to_string),
            parameters: tool.field("parameters").map_or_else(Schema::object, JsonRef::schema),
            strict: json::opt_bool(tool, "strict")?,
        }),
        "custom" => Ok(Tool::Custom {
            name: json::req_str(tool, "name", &at)?.to_string(),
            description: json::opt_str(tool, "description", &at)?.map(str::to_string),
        }),
        "web_search" | "web_search_preview" => Ok(Tool::WebSearch),
        other => Ok(Tool::Hosted { kind: other.to_string(), raw: tool.to_value() }),
    }
}

/// Appends `part` to the conversation as `role`, joining the last message
/// when it has the same role (a turn's calls arrive as separate items).
fn push_part(req: &mut Request, role: Role, part: Part) {
    match req.messages.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => req.messages.push(Message { role, parts: smallvec::smallvec![part] }),
    }
}

fn parse_item(item: &JsonRef<'_>, i: usize, req: &mut Request) -> Result<()> {
    let at = format!("input[{i}].");
    let kind = json::opt_str(item, "type", &at)?.unwrap_or("message");
    match kind {
        "message" => {
            let role = json::req_str(item, "role", &at)?;
            let parts = content_parts(item.get("content"), &at)?;
            match role {
                "system" | "developer" if req.messages.is_empty() => {
                    req.system.push(text_of(&parts));
                }
                "system" | "developer" => {
                    req.messages.push(Message { role: Role::System, parts: parts.into() })
                }
                "user" => req.messages.push(Message { role: Role::User, parts: parts.into() }),
                "assistant" => {
                    for p in parts {
                        push_part(req, Role::Assistant, p);
                    }
                }
                other => return Err(bad(format!("'{at}role' {other:?} is not valid"))),
            }
        }
        "function_call" | "custom_tool_call" => {
            let (id, signature) = super::ids::unwrap(json::req_str(item, "call_id", &at)?);
            let arguments = if kind == "function_call" {
                json::opt_str(item, "arguments", &at)?.unwrap_or("{}").to_string()
            } else {
                custom_arguments(json::opt_str(item, "input", &at)?.unwrap_or_default())
            };
            let name = json::req_str(item, "name", &at)?;
            let name = match json::opt_str(item, "namespace", &at)? {
                Some(ns) => namespaced(ns, name),
                None => name.to_string(),
            };
            let call = ToolCall { id: id.to_string(), name, arguments, signature };
            push_part(req, Role::Assistant, Part::tool_call(call));
        }
        "function_call_output" | "custom_tool_call_output" => {
            let (call_id, _) = super::ids::unwrap(json::req_str(item, "call_id", &at)?);
            let content = match item.get("output") {
                Some(JsonRef::String(s)) => vec![Part::Text(s.to_string())],
                other => content_parts(other, &at)?,
            };
            let result = ToolResult { call_id: call_id.to_string(), name: None, content, is_error: false };
            let joins = req.messages.last().is_some_and(|m| {
                m.role == Role::User && m.parts.iter().all(|p| matches!(p, Part::ToolResult(_)))
            });
            if joins {
                push_part(req, Role::User, Part::tool_result(result));
            } else {
                req.messages.push(Message {
                    role: Role::User,
                    parts: smallvec::smallvec![Part::tool_result(result)],
                });
            }
        }
        "reasoning" => {
            let text: Vec<&str> = json::array(item, "summary", &at)?
                .iter()
                .chain(json::array(item, "content", &at)?)
                .filter_map(|s| s.get("text").and_then(JsonRef::as_str))
                .collect();
            let signature = json::opt_str(item, "encrypted_content", &at)?
                .and_then(|s| s.strip_prefix(SIGNATURE_MARK))
                .map(str::to_string);
            push_part(req, Role::Assistant, Part::thinking(text.concat(), signature));
        }
        other => {
            return Err(bad(format!(
                "'{at}type' {other:?} cannot be translated for a model served through another format"
            )))
        }
    }
    Ok(())
}

fn text_of(parts: &[Part]) -> String {
    parts.iter().filter_map(|p| if let Part::Text(t) = p { Some(t.as_str()) } else { None }).collect()
}

fn content_parts(v: Option<&JsonRef<'_>>, at: &str) -> Result<Vec<Part>> {
    match v {
        None | Some(JsonRef::Null) => Ok(Vec::new()),
        Some(JsonRef::String(s)) => Ok(vec![Part::Text(s.to_string())]),
        Some(JsonRef::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let at = format!("{at}content[{j}].");
                match json::req_str(c, "type", &at)? {
                    "input_text" | "output_text" | "text" => {
                        Ok(Part::Text(json::req_str(c, "text", &at)?.to_string()))
                    }
                    "refusal" => Ok(Part::Text(json::req_str(c, "refusal", &at)?.to_string())),
                    "input_image" => {
                        let url = json::opt_str(c, "image_url", &at)?.ok_or_else(|| {
                            bad(format!("'{at}file_id' cannot be translated; send image_url"))
                        })?;
                        Ok(Part::media(Media::from_url(url)))
                    }
                    "input_file" => {
                        let data = json::opt_str(c, "file_data", &at)?
                            .or(json::opt_str(c, "file_url", &at)?)
                            .ok_or_else(|| {
                                bad(format!("'{at}file_id' cannot be translated; send file_data"))
                            })?;
                        Ok(Part::media(Media::from_url(data)))
                    }
                    other => Err(bad(format!("'{at}type' {other:?} cannot be translated"))),
                }
            })
            .collect(),
        Some(_) => Err(bad(format!("'{at}content' must be a string or a list"))),
    }
}

pub fn build_request(req: &Request, buffer: Vec<u8>) -> Result<Vec<u8>> {
    let mut top = Map::new();
    top.insert("model".into(), json!(req.model));
    if !req.system.is_empty() {
        top.insert("instructions".into(), json!(req.system.join("\n\n")));
    }
    let custom: Vec<&str> = req
        .tools
        .iter()
        .filter_map(|t| if let Tool::Custom { name, .. } = t { Some(name.as_str()) } else { None })
        .collect();
    let custom_calls: Vec<&str> = req
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolCall(c) if custom.contains(&c.name.as_str()) => Some(c.id.as_str()),
            _ => None,
        })
        .collect();
    let mut input = json::Items::new_in(buffer, "input", req.size_hint(FRAMING));
    for m in &req.messages {
        build_items(m, &custom, &custom_calls, &mut input);
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
                ToolChoice::Named(name) if custom.contains(&name.as_str()) => {
                    json!({"type": "custom", "name": name})
                }
                ToolChoice::Named(name) => json!({"type": "function", "name": name}),
            },
        );
    }
    if let Some(max) = req.max_tokens {
        top.insert("max_output_tokens".into(), json!(max));
    }
    for (key, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = v {
            top.insert(key.into(), json!(v));
        }
    }
    if !req.stop.is_empty() {
        return Err(unsupported("stop sequences", ME));
    }
    if let Some(r) = req.reasoning {
        let mut reasoning = json!({"effort": if r.enabled { r.effort_or_budget().as_str() } else { "none" }});
        if r.include_thoughts && r.enabled {
            reasoning["summary"] = json!("auto");
        }
        top.insert("reasoning".into(), reasoning);
    }
    match &req.output {
        None => {}
        Some(OutputFormat::JsonObject) => {
            top.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        Some(OutputFormat::JsonSchema { name, schema, strict }) => {
            let mut format = json!({"type": "json_schema", "name": name, "schema": schema});
            if let Some(s) = strict {
                format["strict"] = json!(s);
            }
            top.insert("text".into(), json!({"format": format}));
        }
    }
    if let Some(user) = &req.user {
        top.insert("safety_identifier".into(), json!(user));
    }
    top.insert("store".into(), json!(false));
    if req.stream {
        top.insert("stream".into(), json!(true));
    }
    Ok(input.finish_with(&top, &more))
}

fn build_items<'a>(m: &'a Message, custom: &[&str], custom_calls: &[&str], out: &mut json::Items<'a>) {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "developer",
    };
    let mut content = Vec::new();
    let flush = |content: &mut Vec<JsonRef<'a>>, out: &mut json::Items<'a>| match content.as_mut_slice() {
        [] => {}
        // One text part goes as a string (an "easy" input message): on a
        // history of short turns the parts' framing was most of the body.
        [only]
            if matches!(only.get("type").and_then(JsonRef::as_str), Some("input_text" | "output_text")) =>
        {
            let text = only.get_mut("text").map_or(JsonRef::Null, |t| std::mem::replace(t, JsonRef::Null));
            content.clear();
            out.push(obj([("role", s(role)), ("content", text)]));
        }
        _ => out.push(obj([
            ("type", s("message")),
            ("role", s(role)),
            ("content", JsonRef::Array(std::mem::take(content))),
        ])),
    };
    for part in &m.parts {
        match part {
            Part::Text(t) if m.role == Role::Assistant => {
                content.push(obj([("type", s("output_text")), ("text", s(t))]))
            }
            Part::Text(t) => content.push(obj([("type", s("input_text")), ("text", s(t))])),
            Part::Media(media) if media.media_type().is_some_and(|t| !t.starts_with("image/")) => content
                .push(obj([
                    ("type", s("input_file")),
                    ("file_data", JsonRef::url_of(media)),
                    ("filename", s("file")),
                ])),
            Part::Media(media) => {
                content.push(obj([("type", s("input_image")), ("image_url", JsonRef::url_of(media))]))
            }
            Part::ToolCall(c) => {
                flush(&mut content, out);
                if custom.contains(&c.name.as_str()) {
                    out.push(obj([
                        ("type", s("custom_tool_call")),
                        ("call_id", s(&c.id)),
                        ("name", s(&c.name)),
                        ("input", owned(custom_input(&c.arguments))),
                    ]));
                } else {
                    out.push(obj([
                        ("type", s("function_call")),
                        ("call_id", s(&c.id)),
                        ("name", s(&c.name)),
                        ("arguments", s(&c.arguments)),
                    ]));
                }
            }
            Part::ToolResult(r) => {
                flush(&mut content, out);
                let output = if r.is_error { format!("Error: {}", r.text()) } else { r.text() };
                let kind = if custom_calls.contains(&r.call_id.as_str()) {
                    "custom_tool_call_output"
                } else {
                    "function_call_output"
                };
                out.push(obj([("type", s(kind)), ("call_id", s(&r.call_id)), ("output", owned(output))]));
            }
            // Reasoning items need the provider's own ids; old reasoning is
            // dropped by providers anyway.
            Part::Thinking { .. } | Part::RedactedThinking(_) => {}
        }
    }
    flush(&mut content, out);
}

fn build_tool(tool: &Tool) -> Result<JsonRef<'_>> {
    match tool {
        Tool::Function { name, description, parameters, strict } => {
            let mut t =
                obj([("type", s("function")), ("name", s(name)), ("parameters", raw(parameters.raw()))]);
            if let JsonRef::Object(fields) = &mut t {
                if let Some(d) = description {
                    fields.push(("description".into(), s(d)));
                }
                fields.push(("strict".into(), strict.unwrap_or(false).into()));
            }
            Ok(t)
        }
        Tool::Custom { name, description } => Ok(obj([
            ("type", s("custom")),
            ("name", s(name)),
            ("description", s(description.as_deref().unwrap_or_default())),
        ])),
        Tool::WebSearch => Ok(obj([("type", s("web_search"))])),
        Tool::Hosted { kind, .. } => Err(unsupported(format!("the hosted tool type '{kind}'"), ME)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_one_text_part_is_an_easy_input_message() {
        let req = Request {
            model: "m".into(),
            messages: vec![
                Message { role: Role::User, parts: smallvec::smallvec![Part::Text("hi".into())] },
                Message { role: Role::Assistant, parts: smallvec::smallvec![Part::Text("hello".into())] },
                Message {
                    role: Role::User,
                    parts: smallvec::smallvec![Part::Text("a".into()), Part::Text("b".into())],
                },
            ],
            ..Request::default()
        };
        let out: Value = serde_json::from_slice(&build_request(&req, Vec::new()).unwrap()).unwrap();
        assert_eq!(out["input"][0], json!({"role": "user", "content": "hi"}));
        assert_eq!(out["input"][1], json!({"role": "assistant", "content": "hello"}));
        assert_eq!(out["input"][2]["type"], "message");
        assert_eq!(out["input"][2]["content"][1], json!({"type": "input_text", "text": "b"}));
        // Read back, each is the message it was.
        assert_eq!(parse_request(&serde_json::to_vec(&out).unwrap()).unwrap().messages, req.messages);
    }
}
