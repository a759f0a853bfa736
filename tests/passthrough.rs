//! The real gateway on conf/demo.yaml against the real mock upstream, for
//! each of the four formats, streaming and not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, sse_events, tag, Stack, KEY};
use serde_json::{json, Value};

struct Call {
    path: &'static str,
    auth: (&'static str, String),
    body: Value,
}

fn openai(stream: bool) -> Call {
    Call {
        path: "/v1/chat/completions",
        auth: ("authorization", format!("Bearer {KEY}")),
        body: json!({"model": "gpt-5.5", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
    }
}

fn responses(stream: bool) -> Call {
    Call {
        path: "/v1/responses",
        auth: ("authorization", format!("Bearer {KEY}")),
        body: json!({"model": "openai/gpt-5.5", "stream": stream, "input": "hi", "instructions": "be brief"}),
    }
}

fn anthropic(stream: bool) -> Call {
    Call {
        path: "/v1/messages",
        auth: ("x-api-key", KEY.to_string()),
        body: json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
                     "messages": [{"role": "user", "content": "hi"}]}),
    }
}

fn gemini(stream: bool) -> Call {
    Call {
        path: if stream {
            "/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse"
        } else {
            "/v1beta/models/gemini-3-flash-preview:generateContent"
        },
        auth: ("x-goog-api-key", KEY.to_string()),
        body: json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    }
}

async fn send(stack: &Stack, call: &Call, tag: &str) -> reqwest::Response {
    client()
        .post(stack.url(call.path))
        .header(call.auth.0, &call.auth.1)
        .header("x-mock-tag", tag)
        .json(&call.body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn whole_responses_in_each_format() {
    let stack = Stack::demo();
    for (call, text_at, upstream_path) in [
        (openai(false), "/choices/0/message/content", "/openai/v1/chat/completions"),
        (responses(false), "/output/0/content/0/text", "/openai/v1/responses"),
        (anthropic(false), "/content/0/text", "/anthropic/v1/messages"),
        (
            gemini(false),
            "/candidates/0/content/parts/0/text",
            "/gemini/v1beta/models/gemini-3-flash-preview:generateContent",
        ),
    ] {
        let t = tag();
        let resp = send(&stack, &call, &t).await;
        assert_eq!(resp.status(), 200, "{}", call.path);
        assert!(resp.headers().get("x-request-id").is_some());
        assert!(resp.headers().get("x-mock-upstream-secret").is_none(), "provider headers stay behind");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body.pointer(text_at).and_then(Value::as_str), Some("Hello from the"), "{body}");
        let seen = stack.received(&t).await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["path"], upstream_path);
        let flat = seen[0].to_string();
        assert!(!flat.contains(KEY), "customer key reached the upstream: {flat}");
    }
}

#[tokio::test]
async fn upstream_receives_the_provider_model_name_and_key() {
    let stack = Stack::demo();
    let t = tag();
    send(&stack, &responses(false), &t).await;
    let seen = &stack.received(&t).await[0];
    assert_eq!(seen["body"]["model"], "gpt-5.5", "public id openai/gpt-5.5 becomes the upstream name");
    assert_eq!(seen["body"]["instructions"], "be brief");
    assert_eq!(seen["headers"]["authorization"][0], "Bearer mock-openai-key");
    let t = tag();
    send(&stack, &anthropic(false), &t).await;
    let seen = &stack.received(&t).await[0];
    assert_eq!(seen["headers"]["x-api-key"][0], "mock-anthropic-key");
    assert_eq!(seen["headers"]["anthropic-version"][0], "2023-06-01", "default version added");
}

#[tokio::test]
async fn streams_in_each_format_keep_their_event_order() {
    let stack = Stack::demo();

    let body = send(&stack, &openai(true), &tag()).await.text().await.unwrap();
    let events = sse_events(&body);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(!body.contains("\"usage\""), "caller did not ask for usage: {body}");
    let finish: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");

    let body = send(&stack, &anthropic(true), &tag()).await.text().await.unwrap();
    let names: Vec<String> = sse_events(&body).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );

    let body = send(&stack, &responses(true), &tag()).await.text().await.unwrap();
    let events = sse_events(&body);
    assert_eq!(events.first().unwrap().0.as_deref(), Some("response.created"));
    assert_eq!(events.last().unwrap().0.as_deref(), Some("response.completed"));
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());

    let body = send(&stack, &gemini(true), &tag()).await.text().await.unwrap();
    let events = sse_events(&body);
    assert_eq!(events.len(), 3);
    let last: Value = serde_json::from_str(&events[2].1).unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn openai_stream_usage_is_kept_when_asked_and_metered_always() {
    let stack = Stack::demo();
    let mut call = openai(true);
    call.body["stream_options"] = json!({"include_usage": true});
    let t = tag();
    let body = send(&stack, &call, &t).await.text().await.unwrap();
    let events = sse_events(&body);
    let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    // Not asked: the gateway still asks upstream, so it can meter.
    let t = tag();
    send(&stack, &openai(true), &t).await.text().await.unwrap();
    let seen = &stack.received(&t).await[0];
    assert_eq!(seen["body"]["stream_options"]["include_usage"], true);

    let metrics = stack.metrics_text().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("tollgate_tokens_total{kind=\"output\",model=\"openai/gpt-5.5\"}"))
        .unwrap_or_else(|| panic!("no output tokens metered: {metrics}"));
    assert!(line.ends_with(" 6"), "two streams of three tokens: {line}");
}

#[tokio::test]
async fn usage_of_every_format_reaches_the_metrics() {
    let stack = Stack::demo();
    for stream in [false, true] {
        for call in [anthropic(stream), gemini(stream), responses(stream)] {
            send(&stack, &call, &tag()).await.text().await.unwrap();
        }
    }
    let metrics = stack.metrics_text().await;
    for model in ["anthropic/claude-sonnet-4-6", "google/gemini-3-flash-preview", "openai/gpt-5.5"] {
        let want = format!("tollgate_tokens_total{{kind=\"output\",model=\"{model}\"}} 6");
        assert!(metrics.contains(&want), "{want} missing in\n{metrics}");
        assert!(metrics.contains(&format!("tollgate_tokens_total{{kind=\"input\",model=\"{model}\"}}")));
    }
    assert!(metrics.contains("tollgate_upstream_ttfb_seconds_bucket"));
    assert!(metrics.contains("tollgate_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn seed_layout_mounts_work() {
    let stack = Stack::demo();
    let c = client();
    for (path, call) in [
        ("/api/v1/codex/chat/completions", openai(false)),
        ("/api/v1/messages", anthropic(false)),
        ("/api/v1/gemini/v1beta/models/gemini-3-flash-preview:generateContent", gemini(false)),
        // Claude Code's path and query.
        ("/v1/messages?beta=true", anthropic(false)),
    ] {
        let r =
            c.post(stack.url(path)).header(call.auth.0, &call.auth.1).json(&call.body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn models_are_listed_in_the_callers_shape() {
    let stack = Stack::demo();
    let c = client();
    let list: Value =
        c.get(stack.url("/v1/models")).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert!(list["data"].as_array().unwrap().iter().any(|m| m["id"] == "openai/gpt-5.5"));
    let one: Value = c
        .get(stack.url("/v1/models/openai/gpt-5.5"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "openai/gpt-5.5");
    let anthropic: Value = c
        .get(stack.url("/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["has_more"], false);
    let gemini: Value = c
        .get(stack.url("/v1beta/models"))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(gemini["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "models/gemini-3-flash-preview"));
    let missing = c.get(stack.url("/v1/models/nope")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let health = c.get(stack.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// One HTTP/1.1 exchange on an open socket; the body is read by its
/// framing (length or chunks), never by waiting for the connection to close.
fn exchange(conn: &mut std::net::TcpStream, call: &Call) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let body = call.body.to_string();
    let request = format!(
        "POST {} HTTP/1.1\r\nhost: gw\r\n{}: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        call.path,
        call.auth.0,
        call.auth.1,
        body.len()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "connection closed in the head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let line = |conn: &mut std::net::TcpStream| {
        let mut l = Vec::new();
        let mut byte = [0u8; 1];
        while !l.ends_with(b"\r\n") {
            assert_eq!(conn.read(&mut byte).unwrap(), 1, "connection closed in the body");
            l.push(byte[0]);
        }
        String::from_utf8(l).unwrap()
    };
    let mut body = Vec::new();
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")) {
        body.resize(len.trim().parse().unwrap(), 0);
        conn.read_exact(&mut body).unwrap();
    } else {
        assert!(head.contains("transfer-encoding: chunked"), "a body with neither length nor chunks: {head}");
        loop {
            let size = usize::from_str_radix(line(conn).trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    (head, body)
}

#[tokio::test]
async fn streams_keep_the_connection_for_the_next_request() {
    let stack = Stack::demo();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let translated = Call {
        path: "/v1/messages",
        auth: ("x-api-key", KEY.to_string()),
        body: json!({"model": "gpt-5.5", "max_tokens": 64, "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]}),
    };
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        // Pass-through streams (the OpenAI one rewritten to hide the usage
        // chunk), a translated stream, and a whole answer after each.
        for call in [openai(true), anthropic(true), gemini(true), responses(true), translated] {
            let (head, body) = exchange(&mut conn, &call);
            assert!(head.starts_with("http/1.1 200"), "{}: {head}", call.path);
            assert!(head.contains("text/event-stream"), "{}: {head}", call.path);
            assert!(String::from_utf8_lossy(&body).contains("data:"), "{}", call.path);
            let (head, body) = exchange(&mut conn, &openai(false));
            assert!(head.starts_with("http/1.1 200"), "after {}: {head}", call.path);
            assert!(serde_json::from_slice::<Value>(&body).is_ok());
        }
    })
    .await
    .unwrap();
}
