//! Providers that fail over (issue #19 item 6), through the real binary
//! and the mock failing on command (`x-mock-only-model` aims a knob at one
//! deployment): before the first byte a 500, a 429, a stall past the read
//! timeout or a refused connection moves the call to the next deployment
//! (another provider and format included); after the first byte nothing is
//! retried; the caller gets the right error when none is left; the ledger
//! holds exactly one charge per call that answered and none for one that
//! did not; a deployment that keeps failing opens its circuit and is
//! skipped; which deployment served is in the access log and the metrics,
//! never in the response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, DEMO_ACCOUNT};
use common::{client, repo, sse_events, tag, Stack, KEY};
use serde_json::{json, Value};

fn config() -> String {
    let demo = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let providers = r#"  - name: openai-fast
    kind: openai
    base_url: "${TOLLGATE_MOCK_URL:-http://127.0.0.1:9100}/openai/v1"
    api_keys: ["mock-openai-key-1", "mock-openai-key-2"]
    forward_headers: ["x-mock-*"]
    timeouts: { connect_ms: 500, read_ms: 700 }
  - name: dead
    kind: openai
    base_url: "http://127.0.0.1:1/v1"
    api_keys: ["nobody-home"]
    timeouts: { connect_ms: 300, read_ms: 700 }

models:
  - id: acme/chat
    deployments:
      - { provider: openai-fast, upstream_model: primary-model }
      - { provider: anthropic, upstream_model: claude-backup }
    failover: { attempts: 3, budget_ms: 5000, breaker_failures: 3, breaker_cooldown_ms: 60000 }
    price: { input: "1", output: "2" }
  - id: acme/narrow
    deployments:
      - { provider: openai-fast, upstream_model: narrow-model, max_in_flight: 1 }
      - { provider: anthropic, upstream_model: claude-backup }
    price: { input: "1", output: "2" }
  - id: acme/survivor
    deployments:
      - { provider: dead, upstream_model: never }
      - { provider: openai-fast, upstream_model: live-model }
    price: { input: "1", output: "2" }
"#;
    demo.replacen("\nmodels:\n", &format!("\n{providers}"), 1)
}

async fn chat(
    stack: &Stack,
    model: &str,
    t: &str,
    knobs: &[(&str, &str)],
    stream: bool,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-tag", t)
        .json(&json!({"model": model, "stream": stream, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}));
    for (n, v) in knobs {
        req = req.header(*n, *v);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap_or_default())
}

async fn charges_of(stack: &Stack, request_id: &str) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={DEMO_ACCOUNT}"), None).await;
    ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "charge" && e["request_id"] == request_id)
        .count()
}

fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers["x-request-id"].to_str().unwrap().to_string()
}

fn models_received(received: &[Value]) -> Vec<String> {
    received.iter().map(|r| r["body"]["model"].as_str().unwrap_or("?").to_string()).collect()
}

#[tokio::test]
async fn a_failure_before_the_first_byte_moves_the_call_to_the_next_deployment() {
    let stack = Stack::custom_logged(&config());
    for (why, knobs) in [
        ("500", vec![("x-mock-only-model", "primary-model"), ("x-mock-status", "500")]),
        ("429", vec![("x-mock-only-model", "primary-model"), ("x-mock-status", "429")]),
        ("stall", vec![("x-mock-only-model", "primary-model"), ("x-mock-latency-ms", "2000")]),
    ] {
        let t = tag();
        let (s, headers, body) = chat(&stack, "acme/chat", &t, &knobs, false).await;
        assert_eq!(s, 200, "{why}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["object"], "chat.completion", "{why}: the caller's format");
        assert_eq!(answer["model"], "acme/chat", "{why}: never the deployment");
        assert!(!body.contains("claude-backup") && !body.contains("primary-model"), "{why}: {body}");
        for name in headers.keys() {
            let value = headers[name].to_str().unwrap_or("");
            assert!(
                !value.contains("claude-backup") && !value.contains("anthropic"),
                "{why}: {name}: {value}"
            );
        }
        assert_eq!(models_received(&stack.received(&t).await), ["primary-model", "claude-backup"], "{why}");
        assert_eq!(charges_of(&stack, &request_id(&headers)).await, 1, "{why}: billed once");
    }
    // A refused connection: the next deployment, as quickly.
    let t = tag();
    let (s, headers, body) = chat(&stack, "acme/survivor", &t, &[], true).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(sse_events(&body).last().map(|(_, d)| d.clone()), Some("[DONE]".to_string()));
    assert_eq!(models_received(&stack.received(&t).await), ["live-model"]);
    assert_eq!(charges_of(&stack, &request_id(&headers)).await, 1);

    let log = stack.log_when(|l| l.matches("deployment=").count() >= 4).await;
    assert!(log.contains("deployment=anthropic/claude-backup"), "the access log names it");
    assert!(log.contains("deployment=openai-fast/live-model"));
    let metrics = stack.metrics_text().await;
    for line in [
        r#"tollgate_deployment_attempts_total{deployment="openai-fast/primary-model",model="acme/chat",outcome="failed_over"} 3"#,
        r#"tollgate_deployment_attempts_total{deployment="anthropic/claude-backup",model="acme/chat",outcome="served"} 3"#,
        r#"tollgate_deployment_attempts_total{deployment="dead/never",model="acme/survivor",outcome="failed_over"} 1"#,
    ] {
        assert!(
            metrics.contains(line),
            "{line}\n{}",
            metrics.lines().filter(|l| l.contains("deployment")).collect::<Vec<_>>().join("\n")
        );
    }
}

#[tokio::test]
async fn a_key_answered_429_rests_for_its_retry_after_while_the_other_keys_carry_the_calls() {
    let stack = Stack::custom(&config());
    // openai-fast has two keys, taken in turn; the first answers 429 with
    // retry-after: 2, and the call moves on to the next deployment.
    let limited =
        [("x-mock-only-model", "primary-model"), ("x-mock-status", "429"), ("x-mock-retry-after", "2")];
    let t = tag();
    let (s, _, body) = chat(&stack, "acme/chat", &t, &limited, false).await;
    assert_eq!(s, 200, "{body}");
    let rested = stack.received(&t).await[0]["headers"]["authorization"][0].as_str().unwrap().to_string();
    // For the next two seconds every call on openai-fast carries the other key.
    for _ in 0..4 {
        let t = tag();
        let (s, _, body) = chat(&stack, "acme/survivor", &t, &[], false).await;
        assert_eq!(s, 200, "{body}");
        let used = stack.received(&t).await[0]["headers"]["authorization"][0].as_str().unwrap().to_string();
        assert_ne!(used, rested, "the key answered 429 rests");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let t = tag();
        chat(&stack, "acme/survivor", &t, &[], false).await;
        keys.insert(stack.received(&t).await[0]["headers"]["authorization"][0].as_str().unwrap().to_string());
    }
    assert!(keys.contains(&rested), "back in the rotation after its retry-after: {keys:?}");
}

#[tokio::test]
async fn a_deployment_at_its_in_flight_limit_passes_the_call_to_the_next() {
    let stack = Stack::custom(&config());
    // The first call holds narrow-model's one place for 400 ms; the second,
    // meanwhile, goes to the backup without trying it.
    let slow = [("x-mock-only-model", "narrow-model"), ("x-mock-latency-ms", "400")];
    let (t1, t2) = (tag(), tag());
    let first = chat(&stack, "acme/narrow", &t1, &slow, false);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        chat(&stack, "acme/narrow", &t2, &slow, false).await
    };
    let ((s1, _, b1), (s2, _, b2)) = tokio::join!(first, second);
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!(models_received(&stack.received(&t1).await), ["narrow-model"]);
    assert_eq!(models_received(&stack.received(&t2).await), ["claude-backup"], "skipped at its limit");
    let metrics = stack.metrics_text().await;
    assert!(
        metrics.contains(r#"deployment="openai-fast/narrow-model",model="acme/narrow",outcome="skipped"} 1"#)
    );
}

#[tokio::test]
async fn after_the_first_byte_nothing_is_retried_and_with_none_left_the_caller_gets_the_error() {
    let stack = Stack::custom(&config());
    // Cut after the first delta: the stream ends in an error, once.
    let t = tag();
    let knobs = [("x-mock-only-model", "primary-model"), ("x-mock-cut-after", "1")];
    let (s, headers, body) = chat(&stack, "acme/chat", &t, &knobs, true).await;
    assert_eq!(s, 200);
    assert_eq!(models_received(&stack.received(&t).await), ["primary-model"], "no second attempt: {body}");
    assert!(body.contains("error"), "the caller sees the cut: {body}");
    assert!(charges_of(&stack, &request_id(&headers)).await <= 1, "what was relayed, once at most");
    // Every deployment fails: the last one's error, nothing billed.
    let t = tag();
    let (s, headers, body) = chat(&stack, "acme/chat", &t, &[("x-mock-status", "503")], false).await;
    assert_eq!(s, 503, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert!(e["error"]["message"].is_string(), "in the caller's format: {body}");
    assert_eq!(stack.received(&t).await.len(), 2, "each deployment once");
    assert_eq!(charges_of(&stack, &request_id(&headers)).await, 0);
}

#[tokio::test]
async fn a_deployment_that_keeps_failing_opens_its_circuit_and_is_skipped() {
    let stack = Stack::custom(&config());
    let failing = [("x-mock-only-model", "primary-model"), ("x-mock-status", "500")];
    for _ in 0..3 {
        let (s, _, body) = chat(&stack, "acme/chat", &tag(), &failing, false).await;
        assert_eq!(s, 200, "{body}");
    }
    // Open now: even a call the primary would answer goes to the backup.
    let t = tag();
    let (s, _, body) = chat(&stack, "acme/chat", &t, &[], false).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(models_received(&stack.received(&t).await), ["claude-backup"]);
    let metrics = stack.metrics_text().await;
    assert!(metrics.contains(r#"tollgate_circuit_opened_total{deployment="openai-fast/primary-model"} 1"#));
    assert!(
        metrics.contains(r#"deployment="openai-fast/primary-model",model="acme/chat",outcome="skipped"} 1"#)
    );
}
