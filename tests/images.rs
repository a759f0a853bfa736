//! `POST /v1/images/generations` (issue #19 item 3, seed 001) through the
//! real binary and the mock: OpenAI's images as URLs or `b64_json`, billed
//! per image at the price of their size and quality; a provider that
//! queues the job is polled until done; past the model's time the caller
//! gets 504 `upstream_timeout` and nothing is billed, then or later;
//! Gemini's image models translated; `GET` lists the image models; bad
//! input is a 400 with nothing billed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, held, not_charged, DEMO_ACCOUNT};
use common::{client, repo, tag, Stack, KEY};
use serde_json::{json, Value};

async fn generate(stack: &Stack, body: Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut req = client().post(stack.url("/v1/images/generations")).bearer_auth(KEY).json(&body);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (status, id, r.json().await.unwrap_or(Value::Null))
}

async fn charged(stack: &Stack, id: &str) -> i64 {
    -charge_of(stack, DEMO_ACCOUNT, id).await.unwrap()["amount_nano_usd"].as_i64().unwrap()
}

#[tokio::test]
async fn images_are_billed_per_image_at_their_tiers_price_and_a_queued_job_is_polled() {
    let stack = Stack::demo();
    let (s, id, doc) =
        generate(&stack, json!({"model": "gpt-image-2", "prompt": "a red apple", "n": 2}), &[]).await;
    assert_eq!(s, 200, "{doc}");
    let data = doc["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert!(data[0]["url"].as_str().unwrap().starts_with("https://"));
    assert_eq!(charged(&stack, &id).await, 2 * 60_000_000, "$0.06 an image");

    let body = json!({"model": "gpt-image-2", "prompt": "a pear", "size": "1024x1536", "quality": "high", "response_format": "b64_json"});
    let (s, id, doc) = generate(&stack, body, &[]).await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc["data"][0]["b64_json"].as_str().is_some_and(|b| !b.is_empty()));
    assert_eq!(charged(&stack, &id).await, 250_000_000, "the 1024x1536/high tier");

    // Queued: answered once the job is done, billed once.
    let t = tag();
    let (s, id, doc) = generate(
        &stack,
        json!({"model": "gpt-image-2", "prompt": "a plum", "n": 3}),
        &[("x-mock-image-async-ms", "600"), ("x-mock-tag", &t)],
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["data"].as_array().unwrap().len(), 3);
    assert_eq!(charged(&stack, &id).await, 3 * 60_000_000);
    let received = stack.received(&t).await;
    assert_eq!(received[0]["method"], "POST");
    assert!(
        received.len() >= 2 && received[1..].iter().all(|r| r["method"] == "GET"),
        "polled: {received:?}"
    );

    // Gemini's image model, translated, b64 or a data: URL.
    let body =
        json!({"model": "gemini-2.5-flash-image", "prompt": "a fig", "n": 2, "response_format": "b64_json"});
    let (s, id, doc) = generate(&stack, body, &[]).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["data"].as_array().unwrap().len(), 2);
    assert_eq!(charged(&stack, &id).await, 2 * 39_000_000);
    let (s, _, doc) =
        generate(&stack, json!({"model": "gemini-2.5-flash-image", "prompt": "a fig"}), &[]).await;
    assert_eq!(s, 200);
    assert!(doc["data"][0]["url"].as_str().unwrap().starts_with("data:image/png;base64,"));

    let metrics = stack.metrics_text().await;
    assert!(metrics.lines().any(|l| l.contains("route=\"images\"")));
}

#[tokio::test]
async fn past_its_time_a_queued_job_is_a_504_and_is_never_billed() {
    let demo = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let yaml = demo.replacen(
        "    image_timeout_ms: 120000\n",
        "    image_timeout_ms: 700\n    image_poll_ms: 100\n",
        1,
    );
    assert_ne!(yaml, demo);
    let stack = Stack::custom(&yaml);
    let (s, id, doc) = generate(
        &stack,
        json!({"model": "gpt-image-2", "prompt": "slow", "n": 2}),
        &[("x-mock-image-async-ms", "2500")],
    )
    .await;
    assert_eq!(s, 504, "{doc}");
    assert_eq!(doc["error"]["code"], "upstream_timeout");
    assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
    assert_eq!(held(&stack, DEMO_ACCOUNT).await, 0, "the hold is released");
    // The job finishes later: no one asks for it, nothing is billed.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
}

#[tokio::test]
async fn bad_input_is_a_400_and_get_lists_the_image_models() {
    let stack = Stack::demo();
    for body in [
        json!({"model": "gpt-image-2"}),
        json!({"model": "gpt-image-2", "prompt": ""}),
        json!({"model": "gpt-image-2", "prompt": "x", "n": 11}),
        json!({"model": "gpt-image-2", "prompt": "x", "response_format": "png"}),
        json!({"model": "gpt-5.5", "prompt": "a chat model"}),
    ] {
        let (s, id, doc) = generate(&stack, body.clone(), &[]).await;
        assert_eq!(s, 400, "{body}: {doc}");
        assert_eq!(doc["error"]["type"], "invalid_request_error");
        assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
    }
    let r = client().get(stack.url("/v1/images/generations")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openai/gpt-image-2", "google/gemini-2.5-flash-image"]);
    let (_, models) = admin(&stack, "GET", "/admin/v1/models", None).await;
    let image =
        models["models"].as_array().unwrap().iter().find(|m| m["id"] == "openai/gpt-image-2").unwrap();
    assert_eq!(
        (image["kind"].as_str(), image["price_nano_usd"]["per_image"].as_i64()),
        (Some("image"), Some(60_000_000))
    );
}
