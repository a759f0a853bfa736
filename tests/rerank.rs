//! `POST /v1/rerank` (issue #19 item 2) through the real binary and the
//! mock: Cohere's and Jina's request shapes, documents as strings or
//! objects; results sorted, cut to `top_n`, with their documents when
//! asked; billed per search unit (Cohere's price) or per token (Jina's),
//! exactly, in the ledger; obeying the limits; bad input a 400 in OpenAI's
//! format with nothing billed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{charge_of, customer, not_charged, DEMO_ACCOUNT};
use common::{client, Stack, KEY};
use serde_json::{json, Value};

async fn rerank(stack: &Stack, key: &str, path: &str, body: Value) -> (u16, String, Value) {
    let r = client().post(stack.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (status, id, r.json().await.unwrap_or(Value::Null))
}

fn docs(n: usize) -> Vec<Value> {
    (0..n)
        .map(
            |i| {
                if i == 7 {
                    json!({"text": "the red apple", "id": "seven"})
                } else {
                    json!(format!("doc {i}"))
                }
            },
        )
        .collect()
}

#[tokio::test]
async fn results_are_sorted_cut_and_billed_per_search_unit_or_per_token() {
    let stack = Stack::demo();
    for path in ["/v1/rerank", "/v2/rerank"] {
        let body = json!({"model": "rerank-v3.5", "query": "red apple", "documents": docs(150), "top_n": 3, "return_documents": true});
        let (s, id, doc) = rerank(&stack, KEY, path, body).await;
        assert_eq!(s, 200, "{doc}");
        let results = doc["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["index"], 7);
        assert_eq!(
            results[0]["document"],
            json!({"text": "the red apple", "id": "seven"}),
            "the caller's own object"
        );
        let scores: Vec<f64> = results.iter().map(|r| r["relevance_score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        // 150 documents are two search units, at $0.002 each.
        assert_eq!(doc["meta"]["billed_units"]["search_units"], 2);
        let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
        assert_eq!(charge["amount_nano_usd"].as_i64(), Some(-4_000_000), "{charge}");
    }
    // Jina counts tokens: billed at $0.02 a million, documents left out.
    let (s, id, doc) = rerank(
        &stack,
        KEY,
        "/v1/rerank",
        json!({"model": "jina-reranker-v2", "query": "red apple", "documents": docs(10)}),
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["results"].as_array().unwrap().len(), 10, "every document without top_n");
    assert!(doc["results"][0].get("document").is_none());
    let tokens = doc["usage"]["total_tokens"].as_i64().unwrap();
    let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
    assert_eq!(charge["input_tokens"].as_i64(), Some(tokens));
    assert_eq!(charge["amount_nano_usd"].as_i64(), Some(-(tokens * 20_000_000 + 500_000) / 1_000_000));
    assert_eq!(charge["estimated"], Value::Bool(false));
    let metrics = stack.metrics_text().await;
    assert!(metrics.lines().any(|l| l.contains("route=\"rerank\"")));
}

#[tokio::test]
async fn bad_input_is_a_400_and_nothing_is_billed_and_the_limits_hold() {
    let stack = Stack::demo();
    for body in [
        json!({"model": "rerank-v3.5", "documents": ["a"]}),
        json!({"model": "rerank-v3.5", "query": "", "documents": ["a"]}),
        json!({"model": "rerank-v3.5", "query": "q", "documents": []}),
        json!({"model": "rerank-v3.5", "query": "q", "documents": [1, 2]}),
        json!({"model": "rerank-v3.5", "query": "q", "documents": ["a"], "top_n": 0}),
        json!({"model": "gpt-5.5", "query": "q", "documents": ["a"]}),
        json!({"model": "text-embedding-3-small", "query": "q", "documents": ["a"]}),
    ] {
        let (s, id, doc) = rerank(&stack, KEY, "/v1/rerank", body.clone()).await;
        assert_eq!(s, 400, "{body}: {doc}");
        assert_eq!(doc["error"]["type"], "invalid_request_error");
        assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
    }
    let (s, id, doc) = rerank(
        &stack,
        KEY,
        "/v1/rerank",
        json!({"model": "rerank-v3.5", "query": "q", "documents": ["a"], "x": 1}),
    )
    .await;
    assert_eq!(s, 200, "unknown fields are ignored: {doc}");
    assert!(charge_of(&stack, DEMO_ACCOUNT, &id).await.is_some());
    // A key's rpm counts rerank calls too.
    let (_, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "ranker", "limits": {"rpm": 1}})).await;
    let body = json!({"model": "rerank-v3.5", "query": "q", "documents": ["a"]});
    assert_eq!(rerank(&stack, &key, "/v1/rerank", body.clone()).await.0, 200);
    let (s, _, doc) = rerank(&stack, &key, "/v1/rerank", body).await;
    assert_eq!(s, 429, "{doc}");
}
