//! Golden files per translation direction.
//!
//! Inputs: client requests in `tests/golden/client/<format>.<case>.json`,
//! provider answers in `tests/golden/provider/<format>.<case>.{json,sse}`.
//! Expected outputs: `tests/golden/<client>-<provider>/`, holding
//! `request.<case>.json` (what the provider receives, or `.error` for a
//! clear refusal), `response.<case>.json` and `stream.<case>.sse` (what the
//! caller receives). Every stream is also replayed split at every byte and
//! must translate to the same bytes.
//!
//! `GOLDEN_BLESS=1 cargo test --test golden` rewrites the expected files;
//! review the diff before committing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use std::path::{Path, PathBuf};
use tollgate::formats::translate::relay::{translate_document, StreamTranslation};
use tollgate::formats::translate::{self, ClientContext, Target};
use tollgate::formats::ClientFormat;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn ctx() -> ClientContext {
    ClientContext {
        model: "client-model".into(),
        created: 1_767_225_600,
        custom_tools: vec!["apply_patch".into()],
        include_usage: true,
        input_estimate: 42,
        gemini_sse: true,
        namespaces: vec!["multi_agent_v1".into()],
        request_id: "req_golden".into(),
    }
}

fn format_named(name: &str) -> ClientFormat {
    *ClientFormat::ALL.iter().find(|f| f.as_str() == name).unwrap()
}

/// `(format, case, path)` for every file in `sub` with extension `ext`.
fn inputs(sub: &str, ext: &str) -> Vec<(ClientFormat, String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let (format, case) = stem.split_once('.').unwrap();
            (format_named(format), case.to_string(), p.clone())
        })
        .collect();
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out
}

/// Compares `actual` with the golden file, or writes it when blessing.
fn check(path: &Path, actual: &[u8], failures: &mut Vec<String>) {
    if std::env::var_os("GOLDEN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        )),
        Err(_) => failures.push(format!("{}: missing (run with GOLDEN_BLESS=1)", path.display())),
    }
}

fn pretty(json: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let mut out = serde_json::to_vec_pretty(&v).unwrap();
    out.push(b'\n');
    out
}

fn direction(client: ClientFormat, provider: ClientFormat) -> PathBuf {
    dir().join(format!("{}-{}", client.as_str(), provider.as_str()))
}

#[test]
fn requests_translate_as_recorded() {
    let mut failures = Vec::new();
    for (client, case, path) in inputs("client", "json") {
        let body = std::fs::read(&path).unwrap();
        for provider in ClientFormat::ALL {
            let Some(t) = translate::translator(client, provider) else { continue };
            let out = (t.client.parse_request)(&body).and_then(|mut req| {
                req.model = "upstream-model".into();
                (t.provider.build_request)(&req, Target::Native, Vec::new())
            });
            let dir = direction(client, provider);
            match out {
                Ok(bytes) => check(&dir.join(format!("request.{case}.json")), &pretty(&bytes), &mut failures),
                Err(e) => {
                    let text = format!("{} {}\n", e.status(), e);
                    check(&dir.join(format!("request.{case}.error")), text.as_bytes(), &mut failures)
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn documents_translate_as_recorded() {
    let mut failures = Vec::new();
    for (provider, case, path) in inputs("provider", "json") {
        let body = std::fs::read(&path).unwrap();
        for client in ClientFormat::ALL {
            let Some(t) = translate::translator(client, provider) else { continue };
            let (status, out, usage) = translate_document(t, &ctx(), 200, &body, false);
            assert_eq!(status, 200, "{client} from {}", path.display());
            assert!(
                usage.is_some_and(|u| u.input_tokens > 0),
                "usage kept: {client} from {}",
                path.display()
            );
            check(
                &direction(client, provider).join(format!("response.{case}.json")),
                &pretty(&out),
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn translate_stream(client: ClientFormat, provider: ClientFormat, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    let t = translate::translator(client, provider).unwrap();
    let mut st = StreamTranslation::new(t, &ctx());
    let mut out = Vec::new();
    for piece in pieces {
        st.on_chunk(&Bytes::copy_from_slice(piece), &mut out);
    }
    let usage = st.finish(&mut out);
    (out.concat(), usage.is_some())
}

#[test]
fn streams_translate_as_recorded_at_every_split() {
    let mut failures = Vec::new();
    for (provider, case, path) in inputs("provider", "sse") {
        let input = std::fs::read(&path).unwrap();
        for client in ClientFormat::ALL {
            if client == provider {
                continue;
            }
            let (whole, has_usage) = translate_stream(client, provider, &[&input]);
            assert!(has_usage, "usage read: {client} from {}", path.display());
            check(&direction(client, provider).join(format!("stream.{case}.sse")), &whole, &mut failures);
            for cut in 1..input.len() {
                let (split, _) = translate_stream(client, provider, &[&input[..cut], &input[cut..]]);
                assert!(split == whole, "{client} from {} differs when split at byte {cut}", path.display());
            }
            // Byte by byte: the worst a slow network can do.
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert!(
                translate_stream(client, provider, &bytes).0 == whole,
                "{client} from {} byte by byte",
                path.display()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn provider_errors_reach_the_caller_in_its_format() {
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}"#;
    for client in [ClientFormat::Openai, ClientFormat::Responses, ClientFormat::Gemini] {
        let t = translate::translator(client, ClientFormat::Anthropic).unwrap();
        let (status, out, usage) = translate_document(t, &ctx(), 429, body, true);
        assert_eq!(status, 429);
        assert!(usage.is_none());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let message = v.pointer("/error/message").and_then(|m| m.as_str()).unwrap();
        assert_eq!(message, "Slow down", "{client}: {v}");
    }
    let t = translate::translator(ClientFormat::Anthropic, ClientFormat::Gemini).unwrap();
    let gemini = br#"{"error":{"code":400,"message":"Bad schema","status":"INVALID_ARGUMENT"}}"#;
    let (status, out, _) = translate_document(t, &ctx(), 400, gemini, false);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (status, v["type"].as_str(), v["error"]["type"].as_str()),
        (400, Some("error"), Some("invalid_request_error"))
    );
    // Anthropic's 529 is a 503 for callers whose SDKs do not know it.
    let t = translate::translator(ClientFormat::Openai, ClientFormat::Anthropic).unwrap();
    let (status, _, _) = translate_document(
        t,
        &ctx(),
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
        false,
    );
    assert_eq!(status, 503);
}

#[test]
fn an_error_after_the_closing_event_changes_nothing_the_caller_gets() {
    // What a provider sends after its stream's end (here an error event, in
    // the same read as the end) neither reaches the caller nor fails the call.
    let late: [(ClientFormat, &str); 4] = [
        (
            ClientFormat::Anthropic,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"late\"}}\n\n",
        ),
        (ClientFormat::Openai, "data: {\"error\":{\"message\":\"late\",\"type\":\"server_error\"}}\n\n"),
        (
            ClientFormat::Responses,
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"late\"}\n\n",
        ),
        (ClientFormat::Gemini, "data: {\"error\":{\"code\":500,\"message\":\"late\",\"status\":\"INTERNAL\"}}\n\n"),
    ];
    for (provider, case, path) in inputs("provider", "sse") {
        if case != "text" {
            continue;
        }
        let input = std::fs::read(&path).unwrap();
        let trailer = late.iter().find(|(f, _)| *f == provider).unwrap().1;
        let with_late = [input.as_slice(), trailer.as_bytes()].concat();
        for client in ClientFormat::ALL.into_iter().filter(|c| *c != provider) {
            let t = translate::translator(client, provider).unwrap();
            let mut st = StreamTranslation::new(t, &ctx());
            let mut out = Vec::new();
            st.on_chunk(&Bytes::from(with_late.clone()), &mut out);
            st.finish(&mut out);
            assert!(!st.failed(), "{client} from {provider}: failed by an error after the end");
            let (alone, _) = translate_stream(client, provider, &[&input]);
            assert!(out.concat() == alone, "{client} from {provider}: the late error reached the caller");
        }
    }
}
