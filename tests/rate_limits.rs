//! Rate limits through the real binary: exact counts under a burst, the
//! concurrency cap, the daily cap, the input-token bucket, key overrides
//! from the admin API, and the headers clients back off on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, chat, customer, post};
use common::{client, tag, Stack};
use serde_json::{json, Value};
use std::time::Duration;

/// The demo with a plan `limited` whose limits are `limits` (YAML flow map).
fn stack_with(limits: &str) -> Stack {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen(
            "plans:\n",
            &format!("plans:\n  - name: limited\n    models: [\"*\"]\n    limits: {limits}\n"),
            1,
        );
    Stack::custom(&yaml)
}

async fn burst(
    stack: &Stack,
    key: &str,
    n: usize,
    body: &Value,
    t: &str,
) -> Vec<(u16, reqwest::header::HeaderMap, Value)> {
    let calls = (0..n).map(|_| async {
        let r = post(stack, key, body, t).await;
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.json::<Value>().await.unwrap_or(Value::Null))
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn five_hundred_at_once_against_rpm_50_let_exactly_50_through() {
    let stack = stack_with("{ rpm: 50 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let results = burst(&stack, &key, 500, &chat("gpt-5.5", 5), &t).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 50);
    for (status, headers, doc) in results.iter().filter(|r| r.0 != 200) {
        assert_eq!(*status, 429);
        assert_eq!(doc["error"]["code"], "rate_limit_exceeded", "{doc}");
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(headers.contains_key("retry-after-ms"));
        assert_eq!(headers["x-ratelimit-remaining"], "0");
    }
    assert_eq!(stack.received(&t).await.len(), 50, "nothing refused reached the upstream");
    let (_, ledger) = admin(&stack, "GET", "/admin/v1/ledger?account=2", None).await;
    let charges = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 50, "a refused call holds and costs nothing");
}

#[tokio::test]
async fn never_more_than_concurrent_calls_reach_the_upstream_at_once() {
    let stack = stack_with("{ concurrent: 4 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let slow = |key: String, t: String| {
        let url = stack.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .header("x-mock-tag", t)
                .header("x-mock-latency-ms", "400")
                .json(&chat("gpt-5.5", 5))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let statuses = futures_util::future::join_all((0..40).map(|_| slow(key.clone(), t.clone()))).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 4, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    // Once they end, the slots are free again.
    let again = futures_util::future::join_all((0..10).map(|_| slow(key.clone(), t.clone()))).await;
    assert_eq!(again.iter().filter(|s| **s == 200).count(), 4);
    assert_eq!(stack.received(&t).await.len(), 8);
}

#[tokio::test]
async fn a_daily_cap_lets_exactly_its_number_through_with_its_own_code() {
    let stack = stack_with("{ daily_messages: 10 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let results = burst(&stack, &key, 40, &chat("gpt-5.5", 5), &t).await;
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 10);
    let refused = results.iter().find(|r| r.0 == 429).unwrap();
    assert_eq!(refused.2["error"]["code"], "daily_limit");
    let (_, usage) = common::money::get(&stack, &key, "/v1/usage").await;
    assert_eq!(
        (usage["today"]["used"].clone(), usage["today"]["limit"].clone()),
        (json!(10), json!(10)),
        "{usage}"
    );
    let (_, whoami) = common::money::get(&stack, &key, "/v1/whoami").await;
    assert_eq!(whoami["rate_limits"]["daily_messages"]["remaining"], 0, "{whoami}");
    // The cap is the account's: another key of it is refused too.
    let (s, created) =
        admin(&stack, "POST", "/admin/v1/accounts/2/keys", Some(json!({"name": "second"}))).await;
    assert_eq!(s, 201);
    let r = post(&stack, created["key"].as_str().unwrap(), &chat("gpt-5.5", 5), &t).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn the_input_token_bucket_never_lets_more_through_and_its_wait_is_exact() {
    // 60,000 a minute is one token a millisecond.
    let stack = stack_with("{ input_tpm: 60000 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let mut body = chat("gpt-5.5", 5);
    body["messages"][0]["content"] = json!("x".repeat(20_000)); // ~5,000 tokens estimated
    let estimate = (body.to_string().len() as u64).div_ceil(4);
    let started = std::time::Instant::now();
    let results = burst(&stack, &key, 30, &body, &t).await;
    let elapsed = started.elapsed().as_millis() as u64;
    let ok = results.iter().filter(|r| r.0 == 200).count() as u64;
    assert!(ok * estimate <= 60_000 + elapsed + estimate, "{ok} x {estimate} tokens in {elapsed} ms");
    assert!(ok >= 60_000 / estimate - 1, "the burst the bucket holds: {ok}");
    let refused = results.iter().find(|r| r.0 == 429).unwrap();
    assert!(refused.1.contains_key("x-ratelimit-remaining-tokens"), "{:?}", refused.1);
    // Drained: the wait it names is exact.
    let r = post(&stack, &key, &body, &t).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!(wait > 100 && wait <= estimate + 100, "{wait}");
    tokio::time::sleep(Duration::from_millis(wait + 20)).await;
    assert_eq!(post(&stack, &key, &body, &t).await.status(), 200, "after the wait it named");
}

#[tokio::test]
async fn key_overrides_from_the_admin_api_raise_lower_and_clear() {
    let stack = stack_with("{ rpm: 100, rpm_by_class: { sonnet: 200 }, rph: { messages: 1000 } }");
    let (_, key_id, key) =
        customer(&stack, "limited", "100", 1, json!({"name": "k", "limits": {"rpm": 3}})).await;
    let (_, view) = admin(&stack, "GET", &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(view["limits"]["rpm"], 3, "{view}");
    assert_eq!(view["limits"]["rpm_by_class"]["sonnet"], 3, "the override is for every class");
    assert_eq!(view["limits"]["rph"]["messages"], 1000);
    let t = tag();
    let results = burst(&stack, &key, 10, &chat("gpt-5.5", 5), &t).await;
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 3);
    let cleared = json!({"limits": {"rpm": null, "concurrent": 1}});
    let (s, view) = admin(&stack, "PATCH", &format!("/admin/v1/keys/{key_id}"), Some(cleared)).await;
    assert_eq!(s, 200);
    assert_eq!((view["limits"]["rpm"].clone(), view["limits"]["concurrent"].clone()), (json!(100), json!(1)));
    let r = post(&stack, &key, &chat("gpt-5.5", 5), &t).await;
    assert_eq!(r.status(), 200, "the plan's 100 a minute again");
}

#[tokio::test]
async fn every_answer_carries_the_headers_of_its_callers_format() {
    let stack = stack_with("{ rpm: 100, input_tpm: 1000000 }");
    let (_, _, key) = customer(&stack, "limited", "100", 1, json!({"name": "k"})).await;
    let r = post(&stack, &key, &chat("gpt-5.5", 5), &tag()).await;
    let h = r.headers();
    assert_eq!(h["x-ratelimit-limit-requests"], "100");
    assert_eq!(h["x-ratelimit-remaining-requests"], "99");
    assert_eq!(h["x-ratelimit-limit-tokens"], "1000000");
    assert!(h.contains_key("x-ratelimit-reset"));
    let r = client()
        .post(stack.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    assert_eq!(h["anthropic-ratelimit-requests-limit"], "100");
    assert_eq!(h["anthropic-ratelimit-requests-remaining"], "98", "one window for the key, across models");
    assert!(h["anthropic-ratelimit-input-tokens-reset"].to_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn an_address_guessing_keys_is_slowed_and_valid_keys_behind_it_are_not() {
    let stack = Stack::demo();
    let mut statuses = Vec::new();
    for i in 0..70 {
        let r = client()
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(format!("sk-guess-{i}"))
            .json(&chat("gpt-5.5", 5))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..60].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[60..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = post(&stack, common::KEY, &chat("gpt-5.5", 5), &tag()).await;
    assert_eq!(r.status(), 200, "a valid key from the same address");
}
