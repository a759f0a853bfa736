//! `POST /v1/embeddings` (issue #19 item 1) through the real binary and the
//! mock: every input shape, `dimensions`, float and base64 to an OpenAI
//! and a Gemini model (translated to `batchEmbedContents`, vectors in
//! input order, base64 made by the gateway); billed per input token in
//! the ledger (Gemini's count flagged estimated), obeying the key's
//! allowlist and idempotency keys, counted in the metrics; bad input a 400
//! in OpenAI's format with nothing billed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, customer, not_charged, DEMO_ACCOUNT};
use common::{client, Stack, KEY};
use serde_json::{json, Value};

async fn embed(stack: &Stack, key: &str, body: Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut req = client().post(stack.url("/v1/embeddings")).bearer_auth(key).json(&body);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (status, id, r.json().await.unwrap_or(Value::Null))
}

/// A base64 embedding's floats (little-endian f32).
fn floats(b64: &str) -> Vec<f32> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[tokio::test]
async fn both_providers_answer_every_input_shape_in_order_and_are_billed_per_input_token() {
    let stack = Stack::demo();
    for (model, price_per_million) in
        [("text-embedding-3-small", 20_000_000), ("gemini-embedding-001", 150_000_000)]
    {
        let texts = ["the first text", "a second, longer text to embed", "third"];
        let (s, id, doc) =
            embed(&stack, KEY, json!({"model": model, "input": texts, "dimensions": 5}), &[]).await;
        assert_eq!(s, 200, "{model}: {doc}");
        assert_eq!(doc["object"], "list");
        let data = doc["data"].as_array().unwrap();
        assert_eq!(data.len(), 3, "{doc}");
        for (i, item) in data.iter().enumerate() {
            assert_eq!(
                (item["index"].as_u64(), item["object"].as_str()),
                (Some(i as u64), Some("embedding"))
            );
            assert_eq!(item["embedding"].as_array().unwrap().len(), 5, "{model}: dimensions");
        }
        // The same text, alone, is the vector it was in the batch: in order.
        let (_, _, alone) =
            embed(&stack, KEY, json!({"model": model, "input": texts[1], "dimensions": 5}), &[]).await;
        assert_eq!(alone["data"][0]["embedding"], data[1]["embedding"], "{model}");

        // Base64: the same vectors, as little-endian f32.
        let (s, _, b64) = embed(
            &stack,
            KEY,
            json!({"model": model, "input": texts, "dimensions": 5, "encoding_format": "base64"}),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b64}");
        let decoded = floats(b64["data"][2]["embedding"].as_str().unwrap());
        let plain: Vec<f32> =
            data[2]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(decoded, plain, "{model}");

        // Billed at the model's input price for the tokens in the answer.
        let tokens = doc["usage"]["prompt_tokens"].as_i64().unwrap();
        assert!(tokens > 0);
        let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
        assert_eq!(charge["input_tokens"].as_i64(), Some(tokens), "{charge}");
        assert_eq!(charge["output_tokens"].as_i64(), Some(0));
        assert_eq!(
            charge["amount_nano_usd"].as_i64(),
            Some(-(tokens * price_per_million + 500_000) / 1_000_000)
        );
        // Gemini counts nothing: the gateway's count, flagged.
        assert_eq!(charge["estimated"], Value::Bool(model.starts_with("gemini")), "{charge}");
    }
    let metrics = stack.metrics_text().await;
    assert!(metrics.lines().any(|l| l.contains("route=\"embeddings\"")), "embeddings in the metrics");
}

#[tokio::test]
async fn token_arrays_go_to_openai_and_gemini_refuses_them() {
    let stack = Stack::demo();
    let (s, _, doc) =
        embed(&stack, KEY, json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}), &[])
            .await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["usage"]["prompt_tokens"], 5);
    assert_eq!(doc["data"].as_array().unwrap().len(), 2);
    let (s, id, doc) =
        embed(&stack, KEY, json!({"model": "gemini-embedding-001", "input": [1, 2, 3]}), &[]).await;
    assert_eq!(s, 400, "{doc}");
    assert_eq!(doc["error"]["type"], "invalid_request_error");
    assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
}

#[tokio::test]
async fn bad_input_is_a_400_in_openais_format_and_nothing_is_billed() {
    let stack = Stack::demo();
    for body in [
        json!({"model": "text-embedding-3-small"}),
        json!({"model": "text-embedding-3-small", "input": ""}),
        json!({"model": "text-embedding-3-small", "input": []}),
        json!({"model": "text-embedding-3-small", "input": {"text": "x"}}),
        json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}),
        json!({"model": "text-embedding-3-small", "input": "x", "dimensions": -1}),
        json!({"model": "gpt-5.5", "input": "a chat model"}),
    ] {
        let (s, id, doc) = embed(&stack, KEY, body.clone(), &[]).await;
        assert_eq!(s, 400, "{body}: {doc}");
        assert_eq!(doc["error"]["type"], "invalid_request_error", "{body}: {doc}");
        assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await, "{body}");
    }
    let (s, _, doc) = embed(&stack, KEY, json!({"model": "no-such-embed", "input": "x"}), &[]).await;
    assert_eq!(s, 404, "{doc}");
    // An embedding model is not a chat model either.
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The provider's own error keeps its status, in OpenAI's format.
    for model in ["text-embedding-3-small", "gemini-embedding-001"] {
        let (s, id, doc) =
            embed(&stack, KEY, json!({"model": model, "input": "x"}), &[("x-mock-status", "503")]).await;
        assert_eq!(s, 503, "{model}: {doc}");
        assert!(doc["error"]["message"].is_string(), "{doc}");
        assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
    }
}

#[tokio::test]
async fn the_keys_allowlist_and_idempotency_keys_hold_for_embeddings() {
    let stack = Stack::demo();
    let (account, _, key) = customer(
        &stack,
        "pro",
        "5",
        1,
        json!({"name": "embedder", "models": ["google/gemini-embedding-001"]}),
    )
    .await;
    let (s, _, doc) =
        embed(&stack, &key, json!({"model": "text-embedding-3-small", "input": "x"}), &[]).await;
    assert_eq!(s, 403, "not on the key's allowlist: {doc}");
    let body = json!({"model": "gemini-embedding-001", "input": ["once", "only"]});
    let again = [("idempotency-key", "embed-1")];
    let (s, first, doc) = embed(&stack, &key, body.clone(), &again).await;
    assert_eq!(s, 200, "{doc}");
    let (s, second, replayed) = embed(&stack, &key, body, &again).await;
    assert_eq!(s, 200);
    assert_eq!(replayed, doc, "the same answer");
    assert!(charge_of(&stack, account, &first).await.is_some());
    assert!(not_charged(&stack, account, &second).await, "a replay is not billed again");
    let (_, ledger) = admin(&stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let charges = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 1, "{ledger}");
}
