//! Requests recorded from the real coding CLIs (Claude Code, Codex CLI,
//! Gemini CLI, OpenCode; see `scripts/record-cli-fixtures.sh`) replayed
//! through translation into every other provider format. Each must come
//! out whole (every tool, every tool call and result, mid-conversation
//! system text) or be refused with a 400 that names what cannot be carried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::PathBuf;
use tollgate::error::GatewayError;
use tollgate::formats::canonical::{Part, Role, Tool};
use tollgate::formats::translate::{self, Target};
use tollgate::formats::ClientFormat;

fn fixtures() -> Vec<(ClientFormat, String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let format = name.split('.').next().unwrap();
            let format = *ClientFormat::ALL.iter().find(|f| f.as_str() == format).unwrap();
            (format, name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(out.len() >= 8, "fixtures from all four CLIs");
    out
}

fn count_tools(v: &Value, format: ClientFormat) -> usize {
    match format {
        ClientFormat::Gemini => v["tools"]
            .as_array()
            .map_or(0, |t| t.iter().map(|t| t["functionDeclarations"].as_array().map_or(1, Vec::len)).sum()),
        _ => v["tools"].as_array().map_or(0, Vec::len),
    }
}

#[test]
fn cli_requests_translate_to_every_provider_or_are_refused_by_name() {
    for (client, name, body) in fixtures() {
        let t = translate::translator(client, ClientFormat::Openai)
            .unwrap_or_else(|| translate::translator(client, ClientFormat::Anthropic).unwrap());
        let req = (t.client.parse_request)(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let calls =
            req.messages.iter().flat_map(|m| &m.parts).filter(|p| matches!(p, Part::ToolCall(_))).count();
        let results =
            req.messages.iter().flat_map(|m| &m.parts).filter(|p| matches!(p, Part::ToolResult(_))).count();
        assert_eq!(calls, results, "{name}: every call has its result");
        for provider in ClientFormat::ALL {
            let Some(t) = translate::translator(client, provider) else { continue };
            match (t.provider.build_request)(&req, Target::Native, Vec::new()) {
                Ok(out) => {
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    // Gemini puts every function in one tools entry.
                    let functions = req.tools.iter().filter(|t| !matches!(t, Tool::WebSearch)).count();
                    let hosted = req.tools.len() - functions;
                    let expected =
                        if provider == ClientFormat::Gemini { functions + hosted } else { req.tools.len() };
                    assert_eq!(count_tools(&v, provider), expected, "{name} -> {provider}: tools");
                    let text = String::from_utf8_lossy(&out);
                    for r in req.messages.iter().flat_map(|m| &m.parts) {
                        if let Part::ToolResult(r) = r {
                            let start: String = r.text().chars().take(30).collect();
                            let needle = serde_json::to_string(&start).unwrap();
                            assert!(
                                text.contains(needle.trim_matches('"')),
                                "{name} -> {provider}: tool result carried"
                            );
                        }
                    }
                    for m in req.messages.iter().filter(|m| m.role == Role::System) {
                        if let Some(Part::Text(s)) = m.parts.first() {
                            let needle =
                                serde_json::to_string(&s.chars().take(40).collect::<String>()).unwrap();
                            assert!(
                                text.contains(needle.trim_matches('"')),
                                "{name} -> {provider}: mid-conversation system text"
                            );
                        }
                    }
                }
                Err(GatewayError::UnsupportedFeature { feature, .. }) => {
                    assert!(feature.contains("web_search"), "{name} -> {provider}: refused for {feature}");
                }
                Err(e) => panic!("{name} -> {provider}: {e}"),
            }
        }
    }
}
