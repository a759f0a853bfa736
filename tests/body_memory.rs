//! Memory for every body shape (issue #20): a request body of ~30 MB of
//! each shape, sent through the binary in one format to a model of another
//! (and passed through), must not raise the gateway's peak RSS by more
//! than 3x its size (BENCHMARKS.md has the table). Each shape gets a
//! gateway of its own, so each peak
//! (VmHWM) is its own; the baseline is the process's RSS after a small
//! warm-up call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, Stack, KEY};
use serde_json::{json, Value};

const SIZE: usize = 30_000_000;

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A JSON array of `n` zeros, written directly (a `Value` of it would be
/// this test's own memory problem).
fn zeros(n: usize) -> String {
    let mut s = String::with_capacity(2 * n + 2);
    s.push('[');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('0');
    }
    s.push(']');
    s
}

/// `{"type":"object","properties":{"p0":{"type":"string","description":"..."},...}}` of about `size` bytes.
fn big_schema(size: usize) -> String {
    let mut s = String::from(r#"{"type":"object","properties":{"#);
    let mut i = 0;
    while s.len() < size {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#""p{i}":{{"type":"string","description":"d{i}"}}"#));
        i += 1;
    }
    s.push_str("}}");
    s
}

struct Shape {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
}

/// Peak RSS growth allowed, in multiples of the body's size (issue #20).
const GOAL: f64 = 3.0;

fn shapes() -> Vec<Shape> {
    let ask = |model: &str| json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let with_raw = |doc: Value, field: &str, raw: &str| -> Vec<u8> {
        let text = doc.to_string();
        format!("{{\"{field}\":{raw},{}", &text[1..]).into_bytes()
    };
    let mut out = Vec::new();
    out.push(Shape {
        name: "messages -> openai, an unknown field of 15M zeros",
        path: "/v1/messages",
        body: with_raw(ask("gpt-5.5"), "x_unknown", &zeros(SIZE / 2)),
    });
    out.push(Shape {
        name: "chat -> openai (passed through), an unknown field of 15M zeros",
        path: "/v1/chat/completions",
        body: with_raw(ask("gpt-5.5"), "x_unknown", &zeros(SIZE / 2)),
    });
    let tools = format!(r#"[{{"name":"big","description":"d","input_schema":{}}}]"#, big_schema(SIZE));
    out.push(Shape {
        name: "messages -> openai, one tool with a 30 MB schema",
        path: "/v1/messages",
        body: with_raw(ask("gpt-5.5"), "tools", &tools),
    });
    let text = "lorem ipsum ".repeat(SIZE / 12);
    out.push(Shape {
        name: "chat -> anthropic, one 30 MB message",
        path: "/v1/chat/completions",
        body: json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": text}]})
            .to_string()
            .into_bytes(),
    });
    out.push(Shape {
        name: "messages -> openai, one 30 MB message",
        path: "/v1/messages",
        body: json!({"model": "gpt-5.5", "max_tokens": 16, "messages": [{"role": "user", "content": text}]})
            .to_string()
            .into_bytes(),
    });
    out.push(Shape {
        name: "responses -> anthropic, one 30 MB message",
        path: "/v1/responses",
        body: json!({"model": "claude-sonnet-4-6", "input": text}).to_string().into_bytes(),
    });
    let many: Vec<Value> = (0..SIZE / 60)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
        .collect();
    out.push(Shape {
        name: "chat -> gemini, 500,000 small messages",
        path: "/v1/chat/completions",
        body: json!({"model": "gemini-3-flash-preview", "messages": many}).to_string().into_bytes(),
    });
    out.push(Shape {
        name: "messages -> gemini, 500,000 small messages",
        path: "/v1/messages",
        body: json!({"model": "gemini-3-flash-preview", "max_tokens": 16, "messages": many})
            .to_string()
            .into_bytes(),
    });
    let items: Vec<Value> =
        many.iter().map(|m| json!({"type": "message", "role": m["role"], "content": m["content"]})).collect();
    out.push(Shape {
        name: "responses -> anthropic, 500,000 small input items",
        path: "/v1/responses",
        body: json!({"model": "claude-sonnet-4-6", "input": items}).to_string().into_bytes(),
    });
    let image = "A".repeat(SIZE);
    out.push(Shape {
        name: "gemini -> anthropic, a 30 MB inline image",
        path: "/v1beta/models/claude-sonnet-4-6:generateContent",
        body: json!({"contents": [{"role": "user", "parts": [
            {"text": "what is this"}, {"inlineData": {"mimeType": "image/png", "data": image}}]}]})
        .to_string()
        .into_bytes(),
    });
    out
}

#[tokio::test]
async fn no_body_shape_raises_the_peak_rss_past_three_times_its_size() {
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for shape in shapes() {
        let stack = Stack::demo();
        let pid = stack.pid();
        let warm = client()
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(warm.status(), 200);
        let before = status_kb(pid, "VmRSS:");
        let len = shape.body.len() as u64;
        let r = client()
            .post(stack.url(shape.path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .header("x-goog-api-key", KEY)
            .body(shape.body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(status < 500, "{}: {status} {}", shape.name, &text[..text.len().min(300)]);
        let peak = status_kb(pid, "VmHWM:");
        let grew = peak.saturating_sub(before) * 1024;
        let ratio = grew as f64 / len as f64;
        report.push(format!(
            "{}: {} MB body, status {status}, peak +{} MB ({ratio:.2}x)",
            shape.name,
            len / 1_000_000,
            grew / 1_000_000
        ));
        if ratio > GOAL {
            failed.push(shape.name);
        }
    }
    for line in &report {
        eprintln!("{line}");
    }
    assert!(failed.is_empty(), "past 3x their size: {failed:?}\n{}", report.join("\n"));
}
