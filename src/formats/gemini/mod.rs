//! Gemini generateContent: requests to and from the canonical model.
//! Responses are in `response.rs`, streams in `stream.rs`. The model is in
//! the URL path, not the body: callers set `Request::model` themselves.

pub mod response;
pub mod stream;

use super::canonical::*;
use super::json::{self, bad, unsupported, Result};
use super::json_ref::{obj, owned, raw, s, JsonRef};
use super::ClientFormat;
use serde_json::{json, Map, Value};

/// `{"role":"model","parts":[{"text":""}]},` and `{"text":""},`.
const FRAMING: Framing = Framing { message: 42, part: 14 };

const ME: ClientFormat = ClientFormat::Gemini;

/// Google's documented placeholder for a function call that has no
/// signature of its own (history made elsewhere), which Gemini 3 would
/// otherwise reject.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The top-level fields a translation reads (the others are kept as text
/// when large: see [`JsonRef::parse_object_deferring`]).
const READ: [&str; 6] =
    ["cachedContent", "generationConfig", "systemInstruction", "system_instruction", "toolConfig", "tools"];

pub fn parse_request(body: &[u8]) -> Result<Request> {
    let (top, contents) = JsonRef::parse_object_deferring(body, "contents", &READ).map_err(bad)?;
    if top.get("cachedContent").is_some_and(|c| !c.is_null()) {
        return Err(bad("'cachedContent' refers to a cache on Google's side and cannot be translated"));
    }
    let mut req = Request::default();
    if let Some(si) = top.get("systemInstruction").or_else(|| top.get("system_instruction")) {
        let text: String = json::array(si, "parts", "systemInstruction.")?
            .iter()
            .filter_map(|p| p.get("text").and_then(JsonRef::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            req.system.push(text);
        }
    }
    if let Some(gc) = top.get("generationConfig").filter(|g| !g.is_null()) {
        parse_generation_config(gc, &mut req)?;
    }
    for (i, t) in json::array(&top, "tools", "")?.iter().enumerate() {
        parse_tools(t, i, &mut req)?;
    }
    if let Some(fc) = top.pointer("/toolConfig/functionCallingConfig") {
        let names = json::array(fc, "allowedFunctionNames", "toolConfig.functionCallingConfig.")?;
        req.tool_choice = match json::opt_str(fc, "mode", "toolConfig.functionCallingConfig.")? {
            Some("NONE") => Some(ToolChoice::None),
            Some("ANY") | Some("VALIDATED") => match names {
                [one] => Some(ToolChoice::Named(one.as_str().unwrap_or_default().to_string())),
                _ => Some(ToolChoice::Required),
            },
            Some("AUTO") => Some(ToolChoice::Auto),
            _ => None,
        };
    }
    // Gemini may leave calls unnamed; results are matched to the earliest
    // open call of the same function.
    let mut open_calls: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    req.messages.reserve_exact(json::deferred_len(contents));
    let count = json::each_deferred_item(contents, "contents", |i, c| {
        let c = &json::item(c)?;
        let at = format!("contents[{i}].");
        let role = match json::opt_str(c, "role", &at)?.unwrap_or("user") {
            "user" | "function" | "tool" => Role::User,
            "model" | "assistant" => Role::Assistant,
            other => return Err(bad(format!("'{at}role' {other:?} is not valid"))),
        };
        let mut parts = Vec::new();
        for (j, p) in json::array(c, "parts", &at)?.iter().enumerate() {
            let at = format!("{at}parts[{j}].");
            let signature = json::opt_str(p, "thoughtSignature", &at)?.map(str::to_string);
            if let Some(text) = json::opt_str(p, "text", &at)? {
                if p.get("thought").and_then(JsonRef::as_bool) == Some(true) {
                    parts.push(Part::thinking(text.to_string(), signature));
                } else if !text.is_empty() {
                    parts.push(Part::Text(text.to_string()));
                }
            } else if let Some(data) = p.get("inlineData").or_else(|| p.get("inline_data")) {
                parts.push(Part::media(Media::Inline {
                    media_type: json::req_str(data, "mimeType", &at)?.to_string(),
                    data: json::req_str(data, "data", &at)?.to_string(),
                }));
            } else if let Some(file) = p.get("fileData") {
                parts.push(Part::media(Media::Url {
                    url: json::req_str(file, "fileUri", &at)?.to_string(),
                    media_type: json::opt_str(file, "mimeType", &at)?.map(str::to_string),
                }));
            } else if let Some(call) = p.get("functionCall") {
                let name = json::req_str(call, "name", &at)?.to_string();
                let id = match json::opt_str(call, "id", &at)? {
                    Some(id) => id.to_string(),
                    None => {
                        n += 1;
                        format!("call_{name}_{n}")
                    }
                };
                open_calls.push((id.clone(), name.clone()));
                let arguments = call.get("args").map_or_else(|| "{}".into(), JsonRef::to_string);
                parts.push(Part::tool_call(ToolCall { id, name, arguments, signature }));
            } else if let Some(resp) = p.get("functionResponse") {
                let name = json::req_str(resp, "name", &at)?.to_string();
                let id = match json::opt_str(resp, "id", &at)? {
                    Some(id) => id.to_string(),
                    None => match open_calls.iter().position(|(_, n)| *n == name) {
                        Some(k) => open_calls.remove(k).0,
                        None => format!("call_{name}_orphan"),
                    },
                };
                open_calls.retain(|(open, _)| *open != id);
                let response = resp.get("response").unwrap_or(&JsonRef::Null);
                let is_error = response.get("error").is_some() && response.get("output").is_none();
                let text = match response {
                    JsonRef::Object(o) if o.len() == 1 => match o.first().map(|(_, v)| v) {
                        Some(JsonRef::String(s)) => s.to_string(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                    other => other.to_string(),
                };
                parts.push(Part::tool_result(ToolResult {
                    call_id: id,
                    name: Some(name),
                    content: vec![Part::Text(text)],
                    is_error,
                }));
            } else {
                let kind = match p {
                    JsonRef::Object(o) => {
                        o.iter().map(|(k, _)| k).find(|k| *k != "thoughtSignature").map(|k| k.to_string())
                    }
                    _ => None,
                };
                return Err(bad(format!(
                    "'{at}{}' cannot be translated to another provider's format",
                    kind.unwrap_or_else(|| "part".into())
                )));
            }
        }
        req.messages.push(Message { role, parts: parts.into() });
        req.trim_last();
        Ok(())
    })?;
    if count == 0 {
        return Err(bad("'contents' must be a non-empty array"));
    }
    Ok(req)
}

fn parse_generation_config(gc: &JsonRef<'_>, req: &mut Request) -> Result<()> {
    req.temperature = json::opt_f64(gc, "temperature")?;
    req.top_p = json::opt_f64(gc, "topP")?;
    req.top_k = json::opt_u64(gc, "topK")?;
    req.max_tokens = json::opt_u64(gc, "maxOutputTokens")?;
    req.stop = json::string_or_list(gc.get("stopSequences"), "generationConfig.stopSequences")?;
    if json::opt_u64(gc, "candidateCount")?.is_some_and(|n| n > 1) {
        return Err(bad("'generationConfig.candidateCount' above 1 cannot be translated"));
    }
    for field in ["presencePenalty", "frequencyPenalty"] {
        if json::opt_f64(gc, field)?.is_some_and(|v| v != 0.0) {
            return Err(bad(format!("'generationConfig.{field}' cannot be translated")));
        }
    }
    let schema = gc.get("responseJsonSchema").or_else(|| gc.get("responseSchema")).filter(|s| !s.is_null());
    if let Some(schema) = schema {
        req.output = Some(OutputFormat::JsonSchema {
            name: "response".into(),
            schema: lowercase_types(schema.to_value()),
            strict: None,
        });
    } else if json::opt_str(gc, "responseMimeType", "generationConfig.")? == Some("application/json") {
        req.output = Some(OutputFormat::JsonObject);
    }
    if let Some(tc) = gc.get("thinkingConfig").filter(|t| !t.is_null()) {
        let budget = tc.get("thinkingBudget").and_then(JsonRef::as_i64);
        let level = json::opt_str(tc, "thinkingLevel", "generationConfig.thinkingConfig.")?;
        req.reasoning = Some(Reasoning {
            enabled: budget != Some(0),
            effort: level.map(str::to_ascii_lowercase).as_deref().and_then(Effort::parse),
            budget_tokens: budget.and_then(|b| u64::try_from(b).ok()).filter(|b| *b > 0),
            include_thoughts: json::opt_bool(tc, "includeThoughts")?.unwrap_or(false),
        });
    }
    Ok(())
}

fn parse_tools(t: &JsonRef<'_>, i: usize, req: &mut Request) -> Result<()> {
    let at = format!("tools[{i}].");
    let decls = t.get("functionDeclarations").or_else(|| t.get("function_declarations"));
    if let Some(JsonRef::Array(decls)) = decls {
        for (j, d) in decls.iter().enumerate() {
            let at = format!("{at}functionDeclarations[{j}].");
            let parameters = match (d.field("parametersJsonSchema"), d.get("parameters")) {
                (Some(s), _) if !s.is_null() => s.schema(),
                (_, Some(s)) if !s.is_null() => Schema::from_value(&lowercase_types(s.to_value())),
                _ => Schema::from_value(&json!({"type": "object", "properties": {}})),
            };
            req.tools.push(Tool::Function {
                name: json::req_str(d, "name", &at)?.to_string(),
                description: json::opt_str(d, "description", &at)?.map(str::to_string),
                parameters,
                strict: None,
            });
        }
        return Ok(());
    }
    if t.get("googleSearch").is_some() || t.get("google_search").is_some() {
        req.tools.push(Tool::WebSearch);
        return Ok(());
    }
    let kind = match t {
        JsonRef::Object(o) => o.first().map(|(k, _)| k.to_string()),
        _ => None,
    }
    .unwrap_or_else(|| "tool".into());
    req.tools.push(Tool::Hosted { kind, raw: t.to_value() });
    Ok(())
}

/// Gemini's OpenAPI schemas spell types in capitals (`OBJECT`); JSON
/// Schema wants them lower-case.
fn lowercase_types(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "type" {
                        if let Value::String(s) = child {
                            *s = s.to_ascii_lowercase();
                        }
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

pub fn build_request(req: &Request, buffer: Vec<u8>) -> Result<Vec<u8>> {
    let mut top = Map::new();
    let names: Vec<(&str, &str)> = req
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| if let Part::ToolCall(c) = p { Some((c.id.as_str(), c.name.as_str())) } else { None })
        .collect();
    let mut contents = json::Items::new_in(buffer, "contents", req.size_hint(FRAMING));
    for m in &req.messages {
        let role = if m.role == Role::Assistant { "model" } else { "user" };
        let mut parts: Vec<JsonRef<'_>> = Vec::with_capacity(m.parts.len());
        for p in &m.parts {
            if let Some(part) = build_part(p, m.role, &names)? {
                parts.push(part);
            }
        }
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(JsonRef::Array(prev)) = last.get_mut("parts") {
                    prev.extend(parts);
                }
            }
            _ => contents.push(obj([("role", s(role)), ("parts", JsonRef::Array(parts))])),
        }
    }
    if !req.system.is_empty() {
        top.insert("systemInstruction".into(), json!({"parts": [{"text": req.system.join("\n\n")}]}));
    }
    let mut decls = Vec::new();
    let mut tools = Vec::new();
    for tool in &req.tools {
        match tool {
            Tool::Function { name, description, parameters, .. } => decls.push(obj([
                ("name", s(name)),
                ("description", s(description.as_deref().unwrap_or_default())),
                ("parametersJsonSchema", raw(parameters.raw())),
            ])),
            Tool::Custom { name, description } => decls.push(obj([
                ("name", s(name)),
                ("description", s(description.as_deref().unwrap_or_default())),
                ("parametersJsonSchema", raw(super::codec::custom_tool_schema_raw())),
            ])),
            Tool::WebSearch => tools.push(obj([("googleSearch", JsonRef::Object(Vec::new()))])),
            Tool::Hosted { kind, .. } => {
                return Err(unsupported(format!("the hosted tool type '{kind}'"), ME))
            }
        }
    }
    if !decls.is_empty() {
        tools.insert(0, obj([("functionDeclarations", JsonRef::Array(decls))]));
    }
    let mut more = Vec::new();
    if !tools.is_empty() {
        more.push(("tools", JsonRef::Array(tools)));
    }
    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Named(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        top.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    let mut gc = Map::new();
    for (key, v) in [("temperature", req.temperature), ("topP", req.top_p)] {
        if let Some(v) = v {
            gc.insert(key.into(), json!(v));
        }
    }
    if let Some(k) = req.top_k {
        gc.insert("topK".into(), json!(k));
    }
    if let Some(m) = req.max_tokens {
        gc.insert("maxOutputTokens".into(), json!(m));
    }
    if !req.stop.is_empty() {
        gc.insert("stopSequences".into(), json!(req.stop));
    }
    match &req.output {
        None => {}
        Some(OutputFormat::JsonObject) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(OutputFormat::JsonSchema { schema, .. }) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
            gc.insert("responseJsonSchema".into(), schema.clone());
        }
    }
    if let Some(r) = req.reasoning {
        let mut tc = Map::new();
        if r.enabled {
            tc.insert("includeThoughts".into(), json!(r.include_thoughts));
            match (r.budget_tokens, r.effort) {
                (Some(b), _) => tc.insert("thinkingBudget".into(), json!(b)),
                (None, Some(e)) => {
                    tc.insert("thinkingLevel".into(), json!(if e >= Effort::Medium { "high" } else { "low" }))
                }
                (None, None) => None,
            };
        } else {
            tc.insert("thinkingBudget".into(), json!(0));
        }
        gc.insert("thinkingConfig".into(), Value::Object(tc));
    }
    if !gc.is_empty() {
        top.insert("generationConfig".into(), Value::Object(gc));
    }
    Ok(contents.finish_with(&top, &more))
}

fn build_part<'a>(part: &'a Part, role: Role, names: &[(&str, &'a str)]) -> Result<Option<JsonRef<'a>>> {
    Ok(Some(match part {
        Part::Text(t) if role == Role::System => obj([("text", owned(format!("[system] {t}")))]),
        Part::Text(t) => obj([("text", s(t))]),
        Part::Media(m) => match m.as_ref() {
            Media::Inline { media_type, data } => {
                obj([("inlineData", obj([("mimeType", s(media_type)), ("data", s(data))]))])
            }
            Media::Url { url, media_type } => obj([(
                "fileData",
                obj([
                    ("mimeType", s(media_type.as_deref().unwrap_or_else(|| guess_mime(url)))),
                    ("fileUri", s(url)),
                ]),
            )]),
        },
        Part::ToolCall(c) => obj([
            ("functionCall", obj([("name", s(&c.name)), ("args", json::arguments_ref(&c.arguments))])),
            ("thoughtSignature", s(c.signature.as_deref().unwrap_or(SKIP_SIGNATURE))),
        ]),
        Part::ToolResult(r) => {
            // Gemini pairs results with calls by function name.
            let name = r
                .name
                .as_deref()
                .or_else(|| names.iter().find(|(id, _)| *id == r.call_id).map(|(_, n)| *n))
                .ok_or_else(|| {
                    bad(format!("the tool result for call '{}' has no matching tool call", r.call_id))
                })?;
            let key = if r.is_error { "error" } else { "result" };
            obj([(
                "functionResponse",
                obj([("name", s(name)), ("response", JsonRef::Object(vec![(key.into(), owned(r.text()))]))]),
            )])
        }
        // Gemini drops earlier turns' thoughts; they need not be replayed.
        Part::Thinking { .. } | Part::RedactedThinking(_) => return Ok(None),
    }))
}

fn guess_mime(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or_default();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}
