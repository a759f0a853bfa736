//! A mount with `error_style: detail` (issue #19 item 8, seed 004's API):
//! its errors are `{"detail": "..."}` with the same status codes and
//! headers as OpenAI's shape on the other mounts; the short forms seed 004
//! documents for a bad key, a spent cap and a rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::customer;
use common::{client, Stack};
use serde_json::{json, Value};

async fn chat(stack: &Stack, path: &str, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(stack.url(path))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_detail_mount_answers_its_errors_as_detail_with_the_same_status_and_headers() {
    let stack = Stack::demo();
    let (s, _, doc) = chat(&stack, "/zai/v1/chat/completions", "sk-tollgate-nope").await;
    assert_eq!((s, doc), (401, json!({"detail": "Invalid API key"})));
    let (s, _, doc) = chat(&stack, "/v1/chat/completions", "sk-tollgate-nope").await;
    assert_eq!(s, 401);
    assert_eq!(doc["error"]["type"], "authentication_error", "the other mounts keep OpenAI's shape");

    let (_, _, capped) =
        customer(&stack, "pro", "5", 1, json!({"name": "capped", "spend_cap_usd": "0.00001"})).await;
    let (s, _, doc) = chat(&stack, "/zai/v1/chat/completions", &capped).await;
    assert_eq!((s, doc), (402, json!({"detail": "Spend cap reached: 0.00001 USD"})));

    let (_, _, limited) =
        customer(&stack, "pro", "5", 1, json!({"name": "limited", "limits": {"rpm": 1}})).await;
    let (s, _, doc) = chat(&stack, "/zai/v1/chat/completions", &limited).await;
    assert_eq!(s, 200, "{doc}");
    let (s, headers, doc) = chat(&stack, "/zai/v1/chat/completions", &limited).await;
    assert_eq!((s, doc), (429, json!({"detail": "Rate limit exceeded"})));
    assert!(headers.contains_key("retry-after"), "the same headers: {headers:?}");
    let (s, other_headers, doc) = chat(&stack, "/v1/chat/completions", &limited).await;
    assert_eq!(s, 429);
    assert_eq!(doc["error"]["code"], "rate_limit_exceeded");
    for name in ["retry-after", "x-ratelimit-limit-requests"] {
        assert_eq!(headers.contains_key(name), other_headers.contains_key(name), "{name}");
    }

    // Bad input and an unknown route under the mount are detail too.
    let r = client()
        .post(stack.url("/zai/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["detail"].as_str().is_some_and(|d| d.starts_with("Invalid request")), "{doc}");
    let r = client().get(stack.url("/zai/v1/nothing-here")).bearer_auth(common::KEY).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["detail"].is_string(), "{doc}");
}
