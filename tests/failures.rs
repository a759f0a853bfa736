//! What goes wrong, through the real gateway: auth, unknown and
//! coming-soon models, dead and slow providers, bad bodies, huge bodies,
//! cut streams; each answered in the caller's own format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, repo, sse_events, tag, Stack, KEY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_openai_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
}

#[tokio::test]
async fn every_key_place_accepts_the_key_and_rejects_a_wrong_one() {
    let stack = Stack::demo();
    let c = client();
    let gem = "/v1beta/models/gemini-3-flash-preview:generateContent";
    let gem_body = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let anth = json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    for (header, value_of) in [
        ("authorization", (|k: &str| format!("Bearer {k}")) as fn(&str) -> String),
        ("x-api-key", |k: &str| k.to_string()),
        ("anthropic-api-key", |k: &str| k.to_string()),
        ("x-goog-api-key", |k: &str| k.to_string()),
    ] {
        let ok =
            c.post(stack.url("/v1/messages")).header(header, value_of(KEY)).json(&anth).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{header}");
        // Wrong key, in Anthropic's error shape on the Anthropic endpoint.
        let bad = c
            .post(stack.url("/v1/messages"))
            .header(header, value_of("sk-wrong"))
            .json(&anth)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401, "{header}");
        let body: Value = bad.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        // Wrong key on Gemini: Gemini's error shape.
        let bad =
            c.post(stack.url(gem)).header(header, value_of("sk-wrong")).json(&gem_body).send().await.unwrap();
        let body: Value = bad.json().await.unwrap();
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{body}");
    }
    let ok = c.post(stack.url(&format!("{gem}?key={KEY}"))).json(&gem_body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let bad = c.post(stack.url(&format!("{gem}?key=nope"))).json(&gem_body).send().await.unwrap();
    assert_eq!(bad.status(), 401);
    let missing = c.post(stack.url("/v1/chat/completions")).json(&chat("gpt-5.5")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_openai_error(&missing.json().await.unwrap(), "missing_api_key");
    let missing =
        c.post(stack.url("/v1/responses")).bearer_auth("").json(&chat("gpt-5.5")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
}

#[tokio::test]
async fn unknown_model_is_404_and_coming_soon_is_503_without_upstream_traffic() {
    let stack = Stack::demo();
    let c = client();
    let t = tag();
    let r = c
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-tag", &t)
        .json(&chat("gpt-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_openai_error(&r.json().await.unwrap(), "model_not_found");
    let r = c
        .post(stack.url("/v1beta/models/nano-banana-pro:generateContent"))
        .header("x-goog-api-key", KEY)
        .header("x-mock-tag", &t)
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
    assert!(stack.received(&t).await.is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn bad_bodies_get_400_in_the_callers_format() {
    let stack = Stack::demo();
    let c = client();
    let cases: [(&str, &str, &[u8], &str); 7] = [
        ("/v1/chat/completions", "authorization", b"{not json", "openai"),
        ("/v1/chat/completions", "authorization", b"", "openai"),
        ("/v1/chat/completions", "authorization", b"[1,2]", "openai"),
        ("/v1/responses", "authorization", b"{\"input\":\"no model\"}", "openai"),
        ("/v1/messages", "x-api-key", b"{\"model\":42}", "anthropic"),
        ("/v1/messages", "x-api-key", b"{\"model\":\"claude-sonnet-4-6\",\"stream\":\"yes\"}", "anthropic"),
        ("/v1beta/models/gemini-3-flash-preview:generateContent", "x-goog-api-key", b"\xff\xfe", "gemini"),
    ];
    for (path, header, body, shape) in cases {
        let value = if header == "authorization" { format!("Bearer {KEY}") } else { KEY.to_string() };
        let r = c.post(stack.url(path)).header(header, value).body(body.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path} {:?}", String::from_utf8_lossy(body));
        let doc: Value = r.json().await.unwrap();
        match shape {
            "openai" => assert_eq!(doc["error"]["type"], "invalid_request_error", "{doc}"),
            "anthropic" => assert_eq!(doc["error"]["type"], "invalid_request_error", "{doc}"),
            _ => assert_eq!(doc["error"]["status"], "INVALID_ARGUMENT", "{doc}"),
        }
    }
    // A feature the provider has no equivalent for: a 400 that names it,
    // never a silent drop.
    let body = json!({"model": "claude-sonnet-4-6", "input": "hi", "tools": [{"type": "tool_search"}]});
    let r = c.post(stack.url("/v1/responses")).bearer_auth(KEY).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let doc: Value = r.json().await.unwrap();
    assert_openai_error(&doc, "unsupported_feature");
    assert!(doc["error"]["message"].as_str().unwrap().contains("'tool_search'"), "{doc}");
    let r = c.get(stack.url("/v1/chat/completions")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = c.post(stack.url("/v2/whatever")).bearer_auth(KEY).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn five_megabyte_bodies_pass_every_route_streaming_or_not() {
    let stack = Stack::demo();
    let c = client();
    let big = "x".repeat(5 * 1024 * 1024);
    for stream in [false, true] {
        let calls: [(String, &str, String, Value); 4] = [
            (
                "/v1/chat/completions".into(),
                "authorization",
                format!("Bearer {KEY}"),
                json!({"model": "gpt-5.5", "stream": stream, "messages": [{"role": "user", "content": big}]}),
            ),
            (
                "/v1/responses".into(),
                "authorization",
                format!("Bearer {KEY}"),
                json!({"model": "gpt-5.5", "stream": stream, "input": big}),
            ),
            (
                "/v1/messages".into(),
                "x-api-key",
                KEY.into(),
                json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": stream, "messages": [{"role": "user", "content": big}]}),
            ),
            (
                format!(
                    "/v1beta/models/gemini-3-flash-preview:{}",
                    if stream { "streamGenerateContent?alt=sse" } else { "generateContent" }
                ),
                "x-goog-api-key",
                KEY.into(),
                json!({"contents": [{"parts": [{"text": big}]}]}),
            ),
        ];
        for (path, header, value, body) in calls {
            let t = tag();
            let r = c
                .post(stack.url(&path))
                .header(header, value)
                .header("x-mock-tag", &t)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} stream={stream}");
            let text = r.text().await.unwrap();
            assert!(text.contains("Hello"), "{path}");
            let seen = stack.received(&t).await;
            assert!(seen[0]["body_len"].as_u64().unwrap() > 5 * 1024 * 1024, "{path}: body arrived whole");
        }
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replace("server:\n  threads: 2", "server:\n  threads: 2\n  max_request_body_bytes: 1000");
    let stack = Stack::custom(&yaml);
    let r = client()
        .post(stack.url("/v1/messages"))
        .header("x-api-key", KEY)
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "y".repeat(5000)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn upstream_errors_pass_through_with_their_status() {
    let stack = Stack::demo();
    let c = client();
    let r = c
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-status", "429")
        .json(&chat("gpt-5.5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    let r = c
        .post(stack.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("x-mock-status", "529")
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 529);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
}

fn dead_and_slow_config() -> String {
    let dead = common::free_port();
    std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replace(
        "models:\n",
        &format!(
            "  - name: dead\n    kind: openai\n    base_url: http://127.0.0.1:{dead}/v1\n    api_keys: [k]\n\
             \x20 - name: slow\n    kind: anthropic\n    base_url: \"${{TOLLGATE_MOCK_URL}}/anthropic\"\n    api_keys: [k]\n    forward_headers: [\"x-mock-*\"]\n    timeouts: {{ read_ms: 300 }}\n\
             models:\n  - {{ id: dead/model, provider: dead, price: {{ input: \"1\", output: \"1\" }} }}\n  - {{ id: slow/model, provider: slow, upstream_model: claude, price: {{ input: \"1\", output: \"1\" }} }}\n"
        ),
    )
}

#[tokio::test]
async fn dead_provider_is_502_and_silent_provider_is_504() {
    let stack = Stack::custom(&dead_and_slow_config());
    let c = client();
    let r = c
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat("dead/model"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_openai_error(&r.json().await.unwrap(), "upstream_unavailable");
    let started = Instant::now();
    let r = c
        .post(stack.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("x-mock-latency-ms", "3000")
        .json(&json!({"model": "slow/model", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500), "timed out by the gateway, not the mock");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn a_stream_cut_upstream_ends_with_an_error_event() {
    let stack = Stack::demo();
    let c = client();
    let cut_stream = |path: &'static str, deltas: &'static str, body: Value| {
        let request = c.post(stack.url(path)).bearer_auth(KEY).header("x-mock-cut-after", deltas).json(&body);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let body = cut_stream(
        "/v1/messages",
        "1",
        json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": true, "messages": []}),
    )
    .await;
    let events = sse_events(&body);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{body}");
    assert_eq!(serde_json::from_str::<Value>(data).unwrap()["error"]["type"], "api_error");
    assert!(!body.contains("message_stop"));

    let body =
        cut_stream("/v1/chat/completions", "2", json!({"model": "gpt-5.5", "stream": true, "messages": []}))
            .await;
    let last: Value = serde_json::from_str(&sse_events(&body).last().unwrap().1).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{body}");

    // A Responses stream's error event goes on with its sequence numbers.
    let body =
        cut_stream("/v1/responses", "2", json!({"model": "gpt-5.5", "stream": true, "input": "hi"})).await;
    let events = sse_events(&body);
    let numbers: Vec<u64> = events
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(events.last().unwrap().0.as_deref(), Some("error"), "{body}");
    assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>(), "{body}");

    // A whole document cut short: the caller sees a failed read, not a clean end.
    let r = c
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-cut-after", "2")
        .json(&chat("gpt-5.5"))
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.is_err());
}

#[tokio::test]
async fn streams_are_relayed_as_they_arrive() {
    let stack = Stack::demo();
    let mut r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-chunks", "4")
        .header("x-mock-chunk-delay-ms", "300")
        .json(&json!({"model": "gpt-5.5", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("assistant"));
    while r.chunk().await.unwrap().is_some() {}
    // Not a speed test: a buffering gateway would hold the first chunk for the
    // whole ~900 ms the upstream takes.
    assert!(first_at < Duration::from_millis(500), "first chunk after {first_at:?}");
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn hop_by_hop_and_client_identity_headers_stay_behind() {
    let stack = Stack::demo();
    let t = tag();
    client()
        .post(stack.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .header("anthropic-version", "2026-10-21")
        .header("connection", "keep-alive, x-private-hop")
        .header("x-private-hop", "secret")
        .header("x-forwarded-for", "203.0.113.7")
        .header("cookie", "session=1")
        .header("x-mock-tag", &t)
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    let seen = &stack.received(&t).await[0];
    let headers = seen["headers"].as_object().unwrap();
    assert_eq!(headers["anthropic-beta"][0], "interleaved-thinking-2025-05-14");
    assert_eq!(headers["anthropic-version"][0], "2026-10-21");
    for gone in ["x-private-hop", "x-forwarded-for", "cookie", "authorization"] {
        assert!(!headers.contains_key(gone), "{gone} reached the upstream");
    }
}

#[test]
fn check_names_the_bad_key_and_line() {
    let dir = common::TempDir::new();
    let path = dir.0.join("bad.yaml");
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replace("    kind: anthropic\n", "    kind: anthropic\n    bsae_url: oops\n");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bsae_url") && err.contains("providers[1]") && err.contains("line"), "{err}");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(repo().join("conf/demo.yaml"))
        .output()
        .unwrap();
    assert!(ok.status.success());
}
