//! Callers that probe the gateway, through the real binary: duplicate
//! keys, headers and query parameters that would steer the operator's
//! provider account, bodies at the size limit, `Expect: 100-continue`,
//! pipelining, broken chunked bodies and connections held for free.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, client, repo, tag, Stack, KEY, ROUTES};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test]
async fn duplicate_top_level_keys_are_refused_in_the_callers_format() {
    let stack = Stack::demo();
    let t = tag();
    for (format, model) in ROUTES {
        let c = call(format, model, false, "hi");
        let text = c.body.to_string();
        let bodies: Vec<String> = if format == "gemini" {
            vec![text.replacen('{', "{\"contents\":[],", 1), text.replacen('{', "{\"c\\u006fntents\":[],", 1)]
        } else {
            vec![
                text.replacen('{', "{\"model\":\"claude-sonnet-4-6\",", 1),
                text.replacen('{', "{\"stream\":true,", 1),
                text.replacen('{', "{\"m\\u006fdel\":\"gpt-5.5\",", 1),
            ]
        };
        for body in bodies {
            let r = client()
                .post(stack.url(&c.path))
                .header(c.auth.0, &c.auth.1)
                .header("x-mock-tag", &t)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let doc: Value = r.json().await.unwrap();
            assert_eq!(status, 400, "{format} {body}: {doc}");
            let message = doc["error"]["message"].as_str().unwrap();
            assert!(message.contains("duplicate key"), "{format}: {doc}");
            if format == "gemini" {
                assert_eq!(doc["error"]["status"], "INVALID_ARGUMENT");
            } else {
                assert_eq!(doc["error"]["type"], "invalid_request_error");
            }
        }
    }
    assert!(stack.received(&t).await.is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn callers_cannot_steer_the_operators_provider_account() {
    let stack = Stack::demo();
    let steering = [
        ("OpenAI-Organization", "org-attacker"),
        ("OpenAI-Project", "proj-attacker"),
        ("x-goog-user-project", "attacker-project"),
        ("X-Goog-FieldMask", "candidates"),
        ("x-goog-api-client", "attacker"),
        ("Cookie", "session=attacker"),
        ("X-Forwarded-For", "1.2.3.4"),
    ];
    for (format, model) in ROUTES {
        for stream in [false, true] {
            let t = tag();
            let mut c = call(format, model, stream, "hi");
            let sep = if c.path.contains('?') { '&' } else { '?' };
            c.path = format!("{}{sep}$fields=candidates&k%65y={KEY}x&%61lt=json&alt=media&foo=bar", c.path);
            let mut headers: Vec<(&str, &str)> = steering.to_vec();
            headers.push(("x-mock-tag", &t));
            let r = stack.send(&c, &headers).await;
            assert_eq!(r.status(), 200, "{format} {model}: {}", r.text().await.unwrap());
            assert!(r.text().await.unwrap().contains("Hello"));
            let got = stack.received(&t).await;
            assert_eq!(got.len(), 1);
            let seen = &got[0];
            let names: Vec<&String> = seen["headers"].as_object().unwrap().keys().collect();
            for (name, _) in steering {
                assert!(
                    !names.contains(&&name.to_ascii_lowercase()),
                    "{format} {model}: {name} reached the provider"
                );
            }
            let query = seen["query"].as_str().unwrap();
            assert!(
                query.is_empty() || query == "alt=sse",
                "{format} {model} stream={stream}: only alt=sse may go upstream, got {query:?}"
            );
            assert!(!seen.to_string().contains(KEY), "the customer key reached the provider: {seen}");
        }
    }
}

/// `bytes` bytes of valid JSON for a chat call.
fn chat_body_of(bytes: usize) -> Vec<u8> {
    let head = br#"{"model":"gpt-5.5","messages":[{"role":"user","content":""#;
    let tail = br#""}]}"#;
    let mut body = head.to_vec();
    body.resize(bytes - tail.len(), b'a');
    body.extend_from_slice(tail);
    body
}

/// Sends a raw HTTP/1.1 request and returns the whole answer (the
/// connection is closed by `connection: close`).
fn raw_exchange(addr: &str, head: &str, body_parts: &[&[u8]], pause: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for part in body_parts {
        // A refused body is answered before it is all sent.
        if s.write_all(part).and_then(|()| s.flush()).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_body_limit_counts_every_byte_once() {
    const LIMIT: usize = 1024 * 1024;
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replace(
        "server:\n  threads: 2",
        &format!("server:\n  threads: 2\n  max_request_body_bytes: {LIMIT}"),
    );
    let stack = Stack::custom(&yaml);
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    for (size, expect) in [(1_048_000, "200"), (LIMIT, "200"), (LIMIT + 1, "413"), (500_000, "200")] {
        let body = chat_body_of(size);
        // Sized, in many reads.
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let parts: Vec<&[u8]> = body.chunks(64 * 1024).collect();
        let answer = raw_exchange(&addr, &head, &parts, Duration::from_millis(2));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {expect}")),
            "{size} sized: {}",
            &answer[..answer.len().min(300)]
        );
        // Chunked, in many reads, so no length is declared up front.
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let mut framed: Vec<Vec<u8>> = body
            .chunks(64 * 1024)
            .map(|c| {
                let mut f = format!("{:x}\r\n", c.len()).into_bytes();
                f.extend_from_slice(c);
                f.extend_from_slice(b"\r\n");
                f
            })
            .collect();
        framed.push(b"0\r\n\r\n".to_vec());
        let parts: Vec<&[u8]> = framed.iter().map(Vec::as_slice).collect();
        let answer = raw_exchange(&addr, &head, &parts, Duration::from_millis(2));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {expect}")),
            "{size} chunked: {}",
            &answer[..answer.len().min(300)]
        );
    }
    let _ = json!({});
}

/// Every place a customer key can be: (header or query, how it is written).
fn key_places(key: &str) -> Vec<(Option<(&'static str, String)>, String)> {
    vec![
        (Some(("authorization", format!("Bearer {key}"))), String::new()),
        (Some(("x-api-key", key.to_string())), String::new()),
        (Some(("anthropic-api-key", key.to_string())), String::new()),
        (Some(("x-goog-api-key", key.to_string())), String::new()),
        (None, format!("key={key}")),
        (None, format!("k%65y={key}")),
    ]
}

#[tokio::test]
async fn keys_never_reach_the_log_whatever_fails_and_wherever_the_key_is() {
    // Trace level: everything anyone could turn on.
    let stack = Stack::demo_logged_at("trace");
    let c = client();
    let chat = json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
    let chat_stream =
        json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut secrets = vec![KEY.to_string()];
    for (i, (header, query)) in key_places(KEY).into_iter().enumerate() {
        let wrong = format!("sk-wrong-secret-{i}");
        secrets.push(wrong.clone());
        let with = |path: &str, key: &str| {
            let (_, q) = &key_places(key)[i];
            if q.is_empty() {
                stack.url(path)
            } else {
                let sep = if path.contains('?') { '&' } else { '?' };
                stack.url(&format!("{path}{sep}{q}"))
            }
        };
        let auth = |req: reqwest::RequestBuilder, key: &str| match &key_places(key)[i].0 {
            Some((name, value)) => req.header(*name, value),
            None => req,
        };
        let _ = header;
        let _ = query;
        // Wrong key.
        let r = auth(c.post(with("/v1/chat/completions", &wrong)), &wrong).json(&chat).send().await.unwrap();
        assert_eq!(r.status(), 401);
        // Bad body, unknown model, provider error, oversized body.
        let r = auth(c.post(with("/v1/chat/completions", KEY)), KEY).body("{nope").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = auth(c.post(with("/v1/chat/completions", KEY)), KEY)
            .json(&json!({"model": "nope", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = auth(c.post(with("/v1/chat/completions", KEY)), KEY)
            .header("x-mock-status", "500")
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        // A document the provider cuts: the response is aborted mid-body.
        let r = auth(c.post(with("/v1/chat/completions", KEY)), KEY)
            .header("x-mock-cut-after", "1")
            .json(&chat)
            .send()
            .await;
        if let Ok(r) = r {
            let _ = r.bytes().await;
        }
        // A caller that leaves mid-stream.
        let r = auth(c.post(with("/v1/chat/completions", KEY)), KEY)
            .header("x-mock-chunks", "50")
            .header("x-mock-chunk-delay-ms", "20")
            .json(&chat_stream)
            .send()
            .await
            .unwrap();
        drop(r);
        // A Gemini stream cut by the provider.
        let r = auth(
            c.post(with("/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse", KEY)),
            KEY,
        )
        .header("x-mock-cut-after", "1")
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
        let _ = r.text().await;
    }
    // Malformed heads, with the key in the request line and a header.
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    for head in [
        format!("GET /v1/models?key={KEY} HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\nthis is no header\r\n\r\n"),
        format!("POST /v1/chat/completions?key={KEY} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        format!("GET /v1/models?key={KEY} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"),
    ] {
        let _ = raw_exchange(&addr, &head, &[], Duration::from_millis(0));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stack.log_text();
    assert!(log.contains("status=401") && log.contains("status=500"), "the failures were logged: {log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} is in the log:\n{}",
            log.lines().filter(|l| l.contains(secret.as_str())).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(!log.contains("mock-openai-key"), "the provider key is in the log");
}

fn chat_request(extra: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Reads from `s` until `needle` has appeared `count` times, or 10 s pass.
fn read_until(s: &mut TcpStream, needle: &str, count: usize) -> String {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while std::time::Instant::now() < deadline {
        if String::from_utf8_lossy(&got).matches(needle).count() >= count {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_the_connection_kept() {
    let stack = Stack::demo();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let body = chat_body_of(2 * 1024 * 1024);
    let mut s = TcpStream::connect(&addr).unwrap();
    let head = chat_request("expect: 100-continue\r\n", b"");
    let head = String::from_utf8(head)
        .unwrap()
        .replace("content-length: 0", &format!("content-length: {}", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    let interim = read_until(&mut s, "\r\n\r\n", 1);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    assert!(started.elapsed() < Duration::from_millis(900), "answered at once, not after a client timer");
    s.write_all(&body).unwrap();
    let answer = read_until(&mut s, "Hello", 1);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    // The same connection takes the next request.
    s.write_all(&chat_request("", &chat_body_of(200))).unwrap();
    let again = read_until(&mut s, "Hello", 1);
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let stack = Stack::demo();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut burst = chat_request("x-mock-chunks: 1\r\n", &chat_body_of(300));
    burst.extend(
        format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\r\n").into_bytes(),
    );
    burst.extend(chat_request("x-mock-chunks: 2\r\n", &chat_body_of(400)));
    s.write_all(&burst).unwrap();
    let answers = read_until(&mut s, "HTTP/1.1 200", 3);
    let heads: Vec<usize> = answers.match_indices("HTTP/1.1 200").map(|(i, _)| i).collect();
    assert_eq!(heads.len(), 3, "{answers}");
    let (first, models, second) =
        (&answers[heads[0]..heads[1]], &answers[heads[1]..heads[2]], &answers[heads[2]..]);
    assert!(first.contains("\"content\":\"Hello\""), "{first}");
    assert!(models.contains("\"object\":\"list\""), "{models}");
    assert!(second.contains("\"content\":\"Hello from\""), "{second}");
}

#[tokio::test]
async fn a_broken_chunked_body_closes_the_connection() {
    let stack = Stack::demo();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    let bad = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
    );
    s.write_all(bad.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Were the connection kept, this would be served as a new request.
    let _ = s.write_all(
        format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\r\n").as_bytes(),
    );
    let answers = read_until(&mut s, "HTTP/1.1", 2);
    assert!(answers.starts_with("HTTP/1.1 400"), "{answers}");
    assert!(answers.to_ascii_lowercase().contains("connection: close"), "{answers}");
    assert_eq!(
        answers.matches("HTTP/1.1").count(),
        1,
        "nothing after the unreadable body is served: {answers}"
    );
}

fn connection_limits_stack() -> Stack {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replace(
        "server:\n  threads: 2",
        "server:\n  threads: 2\n  keepalive_timeout_seconds: 1\n  request_head_timeout_ms: 1000\n  max_connections_per_address: 5",
    );
    Stack::custom(&yaml)
}

/// Whether the server has closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed() {
    let stack = connection_limits_stack();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    // Idle after a request: closed once the keep-alive timeout passes.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(&chat_request("", &chat_body_of(200))).unwrap();
    assert!(read_until(&mut idle, "Hello", 1).starts_with("HTTP/1.1 200"));
    assert!(!closed_within(&mut idle, Duration::from_millis(500)), "kept alive for a while");
    assert!(closed_within(&mut idle, Duration::from_millis(2000)), "closed after the idle timeout");
    // A connection that never sends a head.
    let mut silent = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_millis(2500)), "a silent connection is cut");
    // A head trickled a byte at a time, each byte well within any per-read timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    let head = chat_request("", &chat_body_of(200));
    let started = std::time::Instant::now();
    let mut cut = false;
    for b in head.iter().take(200) {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_millis(2500) {
            break;
        }
    }
    assert!(cut || closed_within(&mut slow, Duration::from_millis(500)), "a trickled head is cut");
    assert!(started.elapsed() < Duration::from_millis(2500), "cut near the 1 s head deadline");
    // A head in two parts well within the deadline is served.
    let mut ok = TcpStream::connect(&addr).unwrap();
    let (a, b) = head.split_at(40);
    ok.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok.write_all(b).unwrap();
    assert!(read_until(&mut ok, "Hello", 1).starts_with("HTTP/1.1 200"));
    // The deadline restarts with each request on a kept connection.
    std::thread::sleep(Duration::from_millis(700));
    ok.write_all(&head).unwrap();
    assert!(
        read_until(&mut ok, "Hello", 1).starts_with("HTTP/1.1 200"),
        "a second request on the connection"
    );
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_connections() {
    let stack = connection_limits_stack();
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let mut held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(&chat_request("", &chat_body_of(200))).unwrap();
            assert!(read_until(&mut s, "Hello", 1).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    let mut extra = TcpStream::connect(&addr).unwrap();
    let refused = read_until(&mut extra, "}}", 1);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(closed_within(&mut extra, Duration::from_millis(500)));
    // One leaves; another may come.
    held.pop();
    std::thread::sleep(Duration::from_millis(100));
    let mut next = TcpStream::connect(&addr).unwrap();
    next.write_all(&chat_request("", &chat_body_of(200))).unwrap();
    assert!(read_until(&mut next, "Hello", 1).starts_with("HTTP/1.1 200"));
    let metrics = stack.metrics_text().await;
    assert!(
        metrics.contains("tollgate_connections_refused_total{reason=\"per_address_limit\"} 1"),
        "{metrics}"
    );
}
