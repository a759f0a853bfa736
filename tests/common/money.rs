//! Money helpers for the tests: the admin API, customers with a key, and
//! what gpt-5.5's usage costs at the demo's list prices.

use super::{client, tag, Stack};
use serde_json::{json, Value};

pub const ADMIN: &str = "tollgate-admin-demo";

pub async fn admin(stack: &Stack, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", stack.admin);
    let mut req = client().request(method.parse().unwrap(), url).bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A new account on `plan` with `usd` paid at `multiplier`, and a key.
pub async fn customer(
    stack: &Stack,
    plan: &str,
    usd: &str,
    multiplier: u32,
    key: Value,
) -> (i64, i64, String) {
    let (s, account) =
        admin(stack, "POST", "/admin/v1/accounts", Some(json!({"name": tag(), "plan": plan}))).await;
    assert_eq!(s, 201, "{account}");
    let id = account["id"].as_i64().unwrap();
    if usd != "0" {
        let topup = json!({"amount_usd": usd, "multiplier": multiplier, "idempotency_key": tag()});
        let (s, _) = admin(stack, "POST", &format!("/admin/v1/accounts/{id}/topups"), Some(topup)).await;
        assert_eq!(s, 200);
    }
    let (s, created) = admin(stack, "POST", &format!("/admin/v1/accounts/{id}/keys"), Some(key)).await;
    assert_eq!(s, 201, "{created}");
    (id, created["id"].as_i64().unwrap(), created["key"].as_str().unwrap().to_string())
}

pub fn chat(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

pub async fn post(stack: &Stack, key: &str, body: &Value, t: &str) -> reqwest::Response {
    client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock-tag", t)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn get(stack: &Stack, key: &str, path: &str) -> (u16, Value) {
    let r = client().get(stack.url(path)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// gpt-5.5 at $1.25 and $10 per million, cache reads at $0.125: what the
/// gateway must charge for a Chat response's usage, rounded once.
pub fn gpt_cost(usage: &Value) -> i64 {
    let input = usage["prompt_tokens"].as_i64().unwrap();
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_i64().unwrap_or(0);
    let output = usage["completion_tokens"].as_i64().unwrap();
    ((input - cached) * 1_250_000_000 + cached * 125_000_000 + output * 10_000_000_000 + 500_000) / 1_000_000
}

/// The demo account (the YAML's first, id 1) that the demo key bills.
pub const DEMO_ACCOUNT: i64 = 1;

/// The ledger entry charged for `request_id`, waiting up to 5 s for it
/// (a call the caller left settles once the gateway notices).
pub async fn charge_of(stack: &Stack, account: i64, request_id: &str) -> Option<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
        let found = ledger["entries"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["kind"] == "charge" && e["request_id"] == request_id).cloned());
        if found.is_some() || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What the account holds for requests in flight.
pub async fn held(stack: &Stack, account: i64) -> i64 {
    let (_, view) = admin(stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    view["held_nano_usd"].as_i64().unwrap()
}

/// Whether `request_id` went unbilled, once the logging hook (which
/// settles what ended early) has had time to run.
pub async fn not_charged(stack: &Stack, account: i64, request_id: &str) -> bool {
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (_, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    !ledger["entries"].as_array().unwrap().iter().any(|e| e["request_id"] == request_id)
}
