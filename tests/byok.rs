//! Customers' own provider keys (issue #19 item 7, seed 004) through the
//! real binary: registered through the admin API, sealed at rest (the
//! store's file never holds the key), never shown again; the account's
//! calls to that provider carry its key and are billed the platform fee
//! instead of the list price, its calls elsewhere the platform's key at
//! list price; `/v1/models` shows what its keys reach; removing the key
//! puts the platform's back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, customer};
use common::{client, repo, tag, Stack, TempDir};
use serde_json::{json, Value};

const SEALING_KEY: &str = "8f1e0d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100";
const OWN_KEY: &str = "sk-customer-own-key-9876";

fn stack() -> Stack {
    let demo = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let yaml = format!("{demo}\nbyok:\n  fee_percent: \"5\"\n  fee_per_request: \"0.0001\"\n");
    let dir = TempDir::new();
    let path = dir.0.join("tollgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    Stack::with_config(&path, Some(dir), &[("TOLLGATE_BYOK_KEY", SEALING_KEY)])
}

async fn chat(stack: &Stack, key: &str, model: &str, t: &str) -> (String, Value) {
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock-tag", t)
        .json(&json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (id, r.json().await.unwrap())
}

/// gpt-5.5's list price for a Chat answer's usage, in nano-USD (unrounded
/// numerator over a million).
fn gpt_list(usage: &Value) -> i64 {
    usage["prompt_tokens"].as_i64().unwrap() * 1_250_000_000
        + usage["completion_tokens"].as_i64().unwrap() * 10_000_000_000
}

#[tokio::test]
async fn an_accounts_own_key_carries_its_calls_to_that_provider_billed_the_fee() {
    let stack = stack();
    let (account, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "byo"})).await;
    let path = format!("/admin/v1/accounts/{account}/provider_keys");
    let (s, created) =
        admin(&stack, "POST", &path, Some(json!({"provider": "openai", "api_key": OWN_KEY}))).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["last4"], "9876");
    assert!(!created.to_string().contains(OWN_KEY), "never shown again: {created}");
    let (_, listed) = admin(&stack, "GET", &path, None).await;
    assert_eq!(listed["provider_keys"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(OWN_KEY));
    for bad in [json!({"provider": "nope", "api_key": "k"}), json!({"provider": "openai", "api_key": " "})] {
        assert_eq!(admin(&stack, "POST", &path, Some(bad)).await.0, 400);
    }

    // Its call to OpenAI carries its own key, billed 5 % of the list price
    // and $0.0001.
    let t = tag();
    let (id, answer) = chat(&stack, &key, "gpt-5.5", &t).await;
    let sent = &stack.received(&t).await[0];
    assert_eq!(sent["headers"]["authorization"][0], format!("Bearer {OWN_KEY}"));
    let fee = (gpt_list(&answer["usage"]) * 500 / 10_000 + 500_000) / 1_000_000 + 100_000;
    let charge = charge_of(&stack, account, &id).await.unwrap();
    assert_eq!(charge["amount_nano_usd"].as_i64(), Some(-fee), "{charge}");
    // To Anthropic, where it has no key: the platform's, at list price.
    let t = tag();
    let (id, _) = chat(&stack, &key, "claude-sonnet-4-6", &t).await;
    assert_eq!(stack.received(&t).await[0]["headers"]["x-api-key"][0], "mock-anthropic-key");
    let charge = charge_of(&stack, account, &id).await.unwrap();
    assert!(charge["amount_nano_usd"].as_i64().unwrap() < -100_000, "list price: {charge}");

    // Its model list is what its keys reach.
    let r = client().get(stack.url("/v1/models")).bearer_auth(&key).send().await.unwrap();
    let models: Value = r.json().await.unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"openai/gpt-5.5") && !ids.iter().any(|m| m.starts_with("anthropic/")), "{ids:?}");

    // Sealed at rest: the store's file never holds the key.
    let db = std::fs::read(&stack.db).unwrap();
    assert!(!db.windows(OWN_KEY.len()).any(|w| w == OWN_KEY.as_bytes()));

    // Removed: the platform's key again, at list price.
    let key_id = created["id"].as_i64().unwrap();
    assert_eq!(admin(&stack, "DELETE", &format!("/admin/v1/provider_keys/{key_id}"), None).await.0, 204);
    assert_eq!(admin(&stack, "DELETE", &format!("/admin/v1/provider_keys/{key_id}"), None).await.0, 404);
    let t = tag();
    let (id, answer) = chat(&stack, &key, "gpt-5.5", &t).await;
    assert_eq!(stack.received(&t).await[0]["headers"]["authorization"][0], "Bearer mock-openai-key");
    let charge = charge_of(&stack, account, &id).await.unwrap();
    assert_eq!(
        charge["amount_nano_usd"].as_i64(),
        Some(-((gpt_list(&answer["usage"]) + 500_000) / 1_000_000))
    );
}

#[tokio::test]
async fn without_byok_configured_no_key_is_taken() {
    let stack = Stack::demo();
    let (s, e) = admin(
        &stack,
        "POST",
        "/admin/v1/accounts/1/provider_keys",
        Some(json!({"provider": "openai", "api_key": "k"})),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("byok_not_configured")));
}
