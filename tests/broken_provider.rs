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
             models:\n  - {{ id: dead/model, provider: dead }}\n"
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
        for secret in ["provider-secret-cookie", "org-provider-internal", "no header", "127.0.0.1", &dead.to_string()] {
            assert!(!body.contains(secret), "{}: {secret} leaked: {body}", c.path);
        }
        assert!(body.contains(&id), "the caller gets the request id: {body}");
        let log = stack.log_when(|log| log.contains(&format!("{id} "))).await;
        let line = log.lines().find(|l| l.contains(&format!("{id} "))).unwrap();
        assert!(line.contains("failure="), "the log has the cause: {line}");
    }
}
