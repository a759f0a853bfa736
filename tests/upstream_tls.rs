//! Providers over HTTPS, as every real one is: HTTP/2 by ALPN (one
//! connection multiplexing many streams, no `Host` beside `:authority`)
//! and HTTP/1.1, a private CA from the provider's `ca_file`, and
//! certificates that must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, free_port, start_mock_with, tag, Guard, Stack, TempDir, KEY};
use serde_json::{json, Value};
use std::collections::BTreeSet;

struct Pki {
    dir: TempDir,
    ca: String,
    cert: String,
    key: String,
}

/// A test CA and a certificate it signs for `localhost`.
fn pki() -> Pki {
    let dir = TempDir::new();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Tollgate test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", leaf.pem()),
        key: write("key.pem", leaf_key.serialize_pem()),
        dir,
    }
}

fn provider(name: &str, base_url: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file.map_or(String::new(), |ca| format!("    ca_file: \"{ca}\"\n"));
    format!(
        "  - name: {name}\n    kind: openai\n    base_url: \"{base_url}\"\n    api_keys: [\"mock-openai-key\"]\n    forward_headers: [\"x-mock-*\"]\n{ca}    timeouts: {{ connect_ms: 2000, read_ms: 20000 }}\n"
    )
}

struct TlsStack {
    stack: Stack,
    _mocks: Vec<Guard>,
    h2_port: u16,
    h1_port: u16,
    _pki: Pki,
}

fn tls_stack() -> TlsStack {
    let pki = pki();
    let (h2_port, h2) = start_mock_with(&["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
    let (h1_port, h1) =
        start_mock_with(&["--tls-cert", &pki.cert, "--tls-key", &pki.key, "--alpn", "http/1.1"]);
    let mut providers = String::new();
    providers += &provider("h2", &format!("https://localhost:{h2_port}/openai/v1"), Some(&pki.ca));
    providers += &provider("h1", &format!("https://localhost:{h1_port}/openai/v1"), Some(&pki.ca));
    // The system's roots do not know the test CA.
    providers += &provider("untrusted", &format!("https://localhost:{h2_port}/openai/v1"), None);
    // Signed by the trusted CA, but for another name than the one dialled.
    providers += &provider("wrong-name", &format!("https://127.0.0.1:{h2_port}/openai/v1"), Some(&pki.ca));
    let mut models = String::new();
    for name in ["h2", "h1", "untrusted", "wrong-name"] {
        models += &format!("  - id: {name}-model\n    provider: {name}\n    upstream_model: gpt-5.5\n");
    }
    let yaml = format!(
        "listeners:\n  - address: \"${{TOLLGATE_LISTEN}}\"\nmetrics:\n  address: \"${{TOLLGATE_METRICS_LISTEN}}\"\n\
         providers:\n{providers}models:\n{models}mounts:\n  - prefix: /\n    formats: [openai, responses, anthropic, gemini]\n\
         keys:\n  - name: test\n    key: \"{KEY}\"\n"
    );
    let path = pki.dir.0.join("tollgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let stack = Stack::with_config(&path, None, &[]);
    TlsStack { stack, _mocks: vec![Guard(h2), Guard(h1)], h2_port, h1_port, _pki: pki }
}

async fn received(port: u16, tag: &str) -> Vec<Value> {
    let c = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    c.get(format!("https://localhost:{port}/_mock/requests?tag={tag}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn chat(stack: &Stack, model: &str, tag: &str, content: &str, stream: bool) -> reqwest::Response {
    client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-tag", tag)
        .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn providers_over_tls_on_http2_and_http11() {
    let s = tls_stack();
    for (model, port, version) in [("h2-model", s.h2_port, "HTTP/2.0"), ("h1-model", s.h1_port, "HTTP/1.1")] {
        let t = tag();
        for stream in [false, true] {
            let r = chat(&s.stack, model, &t, "hi", stream).await;
            assert_eq!(r.status(), 200, "{model} stream={stream}: {}", r.text().await.unwrap());
            let body = r.text().await.unwrap();
            assert!(body.contains("Hello"), "{model}: {body}");
        }
        let got = received(port, &t).await;
        assert_eq!(got.len(), 2, "{model}");
        for r in &got {
            assert_eq!(r["version"], version, "{model}");
            let host = r["headers"].get("host");
            if version == "HTTP/2.0" {
                assert!(host.is_none(), "an h2 request carries no Host beside :authority: {r}");
            } else {
                assert_eq!(host.unwrap()[0], format!("localhost:{port}"));
            }
        }
    }
}

#[tokio::test]
async fn a_two_megabyte_body_goes_through_http2_and_http11() {
    let s = tls_stack();
    let big = "x".repeat(2 * 1024 * 1024);
    for (model, port) in [("h2-model", s.h2_port), ("h1-model", s.h1_port)] {
        for stream in [false, true] {
            let t = tag();
            let r = chat(&s.stack, model, &t, &big, stream).await;
            assert_eq!(r.status(), 200, "{model}: {}", r.text().await.unwrap());
            let got = received(port, &t).await;
            assert!(got[0]["body_len"].as_u64().unwrap() > 2 * 1024 * 1024);
        }
    }
}

#[tokio::test]
async fn a_hundred_concurrent_streams_share_h2_connections() {
    let s = tls_stack();
    let t = tag();
    // One request first, so the rest find a connection to multiplex on.
    assert_eq!(chat(&s.stack, "h2-model", &t, "warm", true).await.status(), 200);
    let calls = (0..100).map(|_| {
        let t = t.clone();
        let stack = &s.stack;
        async move {
            let r = chat(stack, "h2-model", &t, "hi", true).await;
            (r.status(), r.text().await.unwrap())
        }
    });
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    }
    let got = received(s.h2_port, &t).await;
    assert_eq!(got.len(), 101);
    let connections: BTreeSet<u64> = got.iter().map(|r| r["connection"].as_u64().unwrap()).collect();
    // Pingora's h2 pool hands a connection to one caller at a time while
    // it opens a stream ("false negatives" in its v2 connector), so a burst
    // opens a few connections; over HTTP/1.1 it would take 100.
    assert!(connections.len() <= 50, "101 streams over {} connections", connections.len());
}

#[tokio::test]
async fn certificates_that_must_be_refused_are() {
    let s = tls_stack();
    for model in ["untrusted-model", "wrong-name-model"] {
        let t = tag();
        let r = chat(&s.stack, model, &t, "hi", false).await;
        assert_eq!(r.status(), 502, "{model}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
        assert!(
            received(s.h2_port, &t).await.is_empty(),
            "{model}: nothing may reach an unverified provider"
        );
    }
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_a_config_error() {
    let dir = TempDir::new();
    let bad = dir.0.join("bad.pem");
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: \"127.0.0.1:{port}\"\nproviders:\n{}models:\n  - id: m\n    provider: p\nmounts:\n  - prefix: /\n    formats: [openai]\n",
        provider("p", "https://localhost:1/v1", Some(&bad.display().to_string()))
    );
    let path = dir.0.join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca_file"), "{err}");
}

/// Calls in a row, on one keep-alive connection to the gateway (which
/// gives the provider's connection back before it reads the next call),
/// to a TLS provider whose server chose HTTP/1.1 take its pooled
/// connection: one TLS handshake for all of them.
#[tokio::test]
async fn calls_in_a_row_to_an_http11_tls_provider_share_one_connection() {
    let s = tls_stack();
    let t = tag();
    let one = client();
    for i in 0..4 {
        let r = one
            .post(s.stack.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-mock-tag", &t)
            .json(
                &json!({"model": "h1-model", "messages": [{"role": "user", "content": format!("call {i}")}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {i}");
        r.text().await.unwrap();
    }
    let got = received(s.h1_port, &t).await;
    assert_eq!(got.len(), 4);
    let connections: BTreeSet<u64> = got.iter().map(|r| r["connection"].as_u64().unwrap()).collect();
    assert_eq!(connections.len(), 1, "one connection for every call: {connections:?}");
    assert!(got.iter().all(|r| r["version"] == "HTTP/1.1"));
}
