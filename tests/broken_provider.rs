//! Providers that misbehave, through the real gateway: interim heads,
//! malformed heads, huge documents, endless events, spaced JSON, event
//! streams nobody asked for, silence. None of it may panic a request,
//! leak the provider's internals, or go unmetered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, Stack, ROUTES};

#[tokio::test]
async fn interim_heads_are_skipped_and_the_answer_relayed_on_every_path() {
    let stack = Stack::demo_logged();
    let before = stack.counter("tollgate_requests_total").await;
    let mut sent = 0.0;
    for (format, model) in ROUTES {
        for stream in [false, true] {
            for interim in ["103", "100", "100,103,103"] {
                let c = call(format, model, stream, "hi");
                let r = stack.send(&c, &[("x-mock-raw", interim)]).await;
                let status = r.status();
                let body = r.text().await.unwrap();
                assert_eq!(status, 200, "{format} {model} stream={stream} {interim}: {body}");
                assert!(body.contains("Hello"), "{format} {model} stream={stream} {interim}: {body}");
                sent += 1.0;
            }
        }
    }
    let access = |log: &str| log.lines().filter(|l| l.contains(" status=200 ")).count();
    let log = stack.log_when(|log| access(log) as f64 >= sent).await;
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        stack.counter("tollgate_requests_total").await - before,
        sent,
        "every request is in the metrics"
    );
    assert_eq!(access(&log) as f64, sent, "every request is in the access log");
}

#[tokio::test]
async fn provider_internals_stay_in_the_log_not_in_the_callers_error() {
    let dead = common::free_port();
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml")).unwrap().replace(
        "models:\n",
        &format!(
            "  - {{ name: dead, kind: openai, base_url: \"http://127.0.0.1:{dead}/v1\", api_keys: [k] }}\n\
             models:\n  - {{ id: dead/model, provider: dead, price: {{ input: \"1\", output: \"1\" }} }}\n"
        ),
    );
    let stack = Stack::custom_logged(&yaml);
    let mut cases: Vec<(common::Call, Vec<(&str, &str)>)> = Vec::new();
    for (format, model) in ROUTES {
        for stream in [false, true] {
            cases.push((call(format, model, stream, "hi"), vec![("x-mock-raw", "bad-head")]));
        }
    }
    for format in ["openai", "anthropic", "gemini", "responses"] {
        cases.push((call(format, "dead/model", false, "hi"), vec![]));
    }
    for (c, headers) in cases {
        let r = stack.send(&c, &headers).await;
        assert_eq!(r.status(), 502, "{}", c.path);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        for secret in
            ["provider-secret-cookie", "org-provider-internal", "no header", "127.0.0.1", &dead.to_string()]
        {
            assert!(!body.contains(secret), "{}: {secret} leaked: {body}", c.path);
        }
        assert!(body.contains(&id), "the caller gets the request id: {body}");
        let log = stack.log_when(|log| log.contains(&format!("{id} "))).await;
        let line = log.lines().find(|l| l.contains(&format!("{id} "))).unwrap();
        assert!(line.contains("failure="), "the log has the cause: {line}");
    }
}

/// The access-log line of request `id`, once it is written.
async fn access_line(stack: &Stack, id: &str) -> String {
    let needle = format!("{id} ");
    let log = stack.log_when(|log| log.lines().any(|l| l.contains(&needle) && l.contains("status="))).await;
    log.lines().find(|l| l.contains(&needle) && l.contains("status=")).unwrap_or_default().to_string()
}

fn tokens(line: &str, field: &str) -> u64 {
    let at = line.find(&format!(" {field}=")).unwrap_or_else(|| panic!("no {field} in {line}"));
    line[at + field.len() + 2..].split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_document_of_any_size_is_metered() {
    let stack = Stack::demo_logged();
    for (format, model) in &ROUTES[..4] {
        let c = call(format, model, false, "hi");
        let r = stack.send(&c, &[("x-mock-pad-bytes", "20000000")]).await;
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.bytes().await.unwrap();
        assert!(body.len() > 20_000_000, "{format}: relayed whole");
        let line = access_line(&stack, &id).await;
        assert!(tokens(&line, "in") > 0 && tokens(&line, "out") > 0, "{format}: {line}");
    }
    let log = stack.log_text();
    assert!(!log.contains("UNMETERED"), "{log}");
}

#[tokio::test]
async fn a_response_without_usage_is_logged_loudly() {
    let stack = Stack::demo_logged();
    let before = stack.counter("tollgate_unmetered_responses_total").await;
    // A Gemini stream cut before its last chunk carries no usageMetadata.
    let c = call("gemini", "gemini-3-flash-preview", true, "hi");
    let r = stack.send(&c, &[("x-mock-cut-after", "1")]).await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = r.text().await;
    let log = stack.log_when(|log| log.contains("UNMETERED")).await;
    assert!(log.lines().any(|l| l.contains(&id) && l.contains("UNMETERED")), "{log}");
    assert_eq!(stack.counter("tollgate_unmetered_responses_total").await - before, 1.0);
}

#[tokio::test]
async fn a_caller_that_asked_for_a_document_never_gets_an_event_stream() {
    let stack = Stack::demo();
    for (format, model) in ROUTES {
        let c = call(format, model, false, "hi");
        let r = stack.send(&c, &[("x-mock-fault", "sse-always")]).await;
        assert_eq!(r.status(), 502, "{format} {model}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let doc: serde_json::Value = r.json().await.unwrap();
        assert!(doc["error"]["message"].as_str().is_some(), "{format} {model}: {doc}");
    }
}

#[tokio::test]
async fn the_added_usage_chunk_is_removed_whatever_the_providers_whitespace() {
    let stack = Stack::demo_logged();
    let c = call("openai", "gpt-5.5", true, "hi");
    let r = stack.send(&c, &[("x-mock-fault", "spaced-json")]).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    let events = common::sse_events(&body);
    assert!(events.len() > 3, "{body}");
    for (_, data) in &events {
        if data == "[DONE]" {
            continue;
        }
        let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
        assert!(chunk["choices"][0].is_object(), "every chunk has choices[0]: {data}");
        assert!(chunk.get("usage").is_none(), "the caller did not ask for usage: {data}");
    }
    let line = access_line(&stack, &id).await;
    assert!(tokens(&line, "in") > 0, "still metered: {line}");
    // A translated stream from a spaced provider is metered too.
    let c = call("anthropic", "gpt-5.5", true, "hi");
    let r = stack.send(&c, &[("x-mock-fault", "spaced-json")]).await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(r.text().await.unwrap().contains("message_stop"));
    assert!(tokens(&access_line(&stack, &id).await, "out") > 0);
}

#[tokio::test]
async fn a_departed_caller_ends_the_upstream_exchange_within_a_second() {
    let stack = Stack::demo();
    let quick = reqwest::Client::builder().timeout(std::time::Duration::from_millis(300)).build().unwrap();
    let mut pending = Vec::new();
    let mut calls = Vec::new();
    for (format, model) in ROUTES {
        for (stream, silence) in [
            (false, ("x-mock-latency-ms", "8000")),
            (true, ("x-mock-ttfb-ms", "8000")),
            (true, ("x-mock-fault", "only-comments")),
        ] {
            let t = common::tag();
            let c = call(format, model, stream, "hi");
            let request = quick
                .post(stack.url(&c.path))
                .header(c.auth.0, &c.auth.1)
                .header("x-mock-tag", &t)
                .header(silence.0, silence.1)
                .json(&c.body);
            // The caller gives up after 300 ms, before or after the head.
            calls.push(async move {
                if let Ok(r) = request.send().await {
                    let _ = r.bytes().await;
                }
            });
            pending.push((format!("{format} {model} stream={stream} {silence:?}"), t));
        }
    }
    futures_util::future::join_all(calls).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for (what, t) in pending {
        let got = stack.received(&t).await;
        assert_eq!(got.len(), 1, "{what}");
        let after = got[0]["abandoned_after_ms"].as_u64();
        assert!(
            after.is_some_and(|ms| ms < 1300),
            "{what}: the gateway left the provider after {after:?} ms"
        );
    }
}

#[tokio::test]
async fn an_event_that_never_ends_is_cut_at_the_limit_with_the_callers_error_event() {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml"))
        .unwrap()
        .replace("server:\n  threads: 2", "server:\n  threads: 2\n  max_stream_event_bytes: 1048576");
    let stack = Stack::custom(&yaml);
    for (format, model) in ROUTES {
        let t = common::tag();
        let c = call(format, model, true, "hi");
        let r = stack.send(&c, &[("x-mock-fault", "endless-event"), ("x-mock-tag", &t)]).await;
        assert_eq!(r.status(), 200, "{format} {model}");
        let body = r.text().await.unwrap();
        assert!(body.len() < 3 << 20, "{format} {model}: {} bytes relayed", body.len());
        let events = common::sse_events(&body);
        let (name, data) = events.last().unwrap();
        assert!(
            name.as_deref() == Some("error") || data.contains("\"error\""),
            "{format} {model} ends with an error event: {name:?} {}",
            &data[..data.len().min(200)]
        );
        let mut abandoned = false;
        for _ in 0..100 {
            abandoned = stack.received(&t).await[0]["abandoned_after_ms"].is_u64();
            if abandoned {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(abandoned, "{format} {model}: the gateway stopped reading");
    }
}

/// Each request a raw provider read whole, with the number of the
/// connection it came on (from 0, in the order they were accepted).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>>;

/// A provider on raw TCP that answers `answers` requests on each
/// connection and closes it when one more arrives (as a server does
/// whose idle timeout ended just as the request came). Each request it
/// reads whole (head, then `content-length` bytes) is kept, and those it
/// closed the connection on are counted.
fn raw_provider(answers: usize) -> (u16, Seen, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let kept = seen.clone();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = refused.clone();
    std::thread::spawn(move || {
        for (number, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let seen = kept.clone();
            let refused = counted.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = 0;
                loop {
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
                    let length = end.and_then(|end| {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let line = head.lines().find(|l| l.starts_with("content-length:"))?;
                        Some(end + line["content-length:".len()..].trim().parse::<usize>().ok()?)
                    });
                    if let Some(total) = length.filter(|total| buf.len() >= *total) {
                        if answered == answers {
                            refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return; // closed, unanswered: the gateway must retry elsewhere
                        }
                        seen.lock()
                            .unwrap()
                            .push((number, String::from_utf8_lossy(&buf[..total]).into_owned()));
                        buf.drain(..total);
                        let body = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        conn.write_all(answer.as_bytes()).unwrap();
                        answered += 1;
                        continue;
                    }
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, seen, refused)
}

/// The demo with one more provider, `raw` at `port`, and its model `raw/model`.
fn with_raw_provider(port: u16) -> Stack {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml")).unwrap().replace(
        "models:\n",
        &format!(
            "  - {{ name: raw, kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", api_keys: [raw-key] }}\n\
             models:\n  - {{ id: raw/model, provider: raw, price: {{ input: \"1\", output: \"1\" }} }}\n"
        ),
    );
    Stack::custom(&yaml)
}

/// Calls `raw/model` one after another on one keep-alive connection: the
/// gateway gives each call's provider connection back before it reads
/// the next call (a client per call could overtake that).
async fn calls_in_a_row(stack: &Stack, n: usize) {
    let client = common::client();
    for i in 0..n {
        let c = call("openai", "raw/model", false, &format!("request {i}"));
        let r =
            client.post(stack.url(&c.path)).header(c.auth.0, &c.auth.1).json(&c.body).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.contains("Hello"), "request {i}: {body}");
    }
}

#[tokio::test]
async fn a_pooled_connection_the_provider_closed_is_retried_on_a_fresh_one_and_the_request_arrives_whole() {
    let (port, seen, refused) = raw_provider(1);
    let stack = with_raw_provider(port);
    calls_in_a_row(&stack, 3).await;
    let seen = seen.lock().unwrap().clone();
    let connections: Vec<usize> = seen.iter().map(|(n, _)| *n).collect();
    // The second and third calls took the connection before them from the
    // pool; the provider closed it, unanswered, when they came; each was
    // answered on the new connection its retry opened.
    assert_eq!(
        connections,
        vec![0, 1, 2],
        "each request answered once, on a connection of its own: {seen:?}"
    );
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 2, "the pooled connections were taken");
    for (i, (_, request)) in seen.iter().enumerate() {
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{head}");
        assert!(head.contains("\r\nauthorization: Bearer raw-key\r\n"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(sent["messages"][0]["content"], format!("request {i}"), "{body}");
    }
}

#[tokio::test]
async fn calls_one_after_another_go_on_one_pooled_connection() {
    let (port, seen, _) = raw_provider(usize::MAX);
    let stack = with_raw_provider(port);
    calls_in_a_row(&stack, 5).await;
    let connections: Vec<usize> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
    assert_eq!(connections, vec![0; 5], "every call after the first took the pooled connection");
}
