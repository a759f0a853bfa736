//! Money through the real gateway on `conf/demo.yaml`: a call holds its
//! worst-case cost before it goes upstream and settles to what the
//! provider's usage costs at list price; a wallet that cannot pay gets a
//! 402 in the caller's format and nothing goes upstream; concurrent calls
//! never overdraw; a plan that lacks the model or API access gets a 403.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, client, repo, tag, Stack, KEY};
use serde_json::{json, Value};

fn stack_with_balance(usd: &str, plan: &str) -> Stack {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replace("${TOLLGATE_DEMO_BALANCE_USD:-1000}", usd)
        .replace("    plan: pro\n", &format!("    plan: {plan}\n"));
    Stack::custom(&yaml)
}

/// gpt-5.5's list prices, in nano-USD per token.
const GPT_INPUT: u64 = 1_250;
const GPT_OUTPUT: u64 = 10_000;

#[tokio::test]
async fn a_wallet_that_cannot_pay_gets_402_in_the_callers_format_and_nothing_goes_upstream() {
    let stack = stack_with_balance("0", "pro");
    let t = tag();
    for (format, model) in common::ROUTES {
        let r = stack.send(&call(format, model, false, "hi"), &[("x-mock-tag", &t)]).await;
        assert_eq!(r.status(), 402, "{format} {model}");
        let doc: Value = r.json().await.unwrap();
        match format {
            "anthropic" => assert_eq!(doc["error"]["type"], "billing_error", "{doc}"),
            "gemini" => assert_eq!(doc["error"]["status"], "RESOURCE_EXHAUSTED", "{doc}"),
            _ => assert_eq!(doc["error"]["code"], "insufficient_credits", "{doc}"),
        }
    }
    assert!(stack.received(&t).await.is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn concurrent_calls_never_overdraw_and_each_is_billed_once_at_its_usage() {
    // $0.002: a few dozen small calls, far fewer than are sent.
    let stack = stack_with_balance("0.002", "pro");
    let body = json!({"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let calls = (0..200).map(|_| {
        let request = client().post(stack.url("/v1/chat/completions")).bearer_auth(KEY).json(&body);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut expected: u64 = 0;
    let mut ok = 0;
    for (status, doc) in &results {
        match status {
            200 => {
                ok += 1;
                expected += doc["usage"]["prompt_tokens"].as_u64().unwrap() * GPT_INPUT
                    + doc["usage"]["completion_tokens"].as_u64().unwrap() * GPT_OUTPUT;
            }
            402 => assert_eq!(doc["error"]["code"], "insufficient_credits", "{doc}"),
            other => panic!("{other}: {doc}"),
        }
    }
    assert!(ok > 0 && ok < 200, "{ok} calls were paid for");
    // The logging hook settles just after the last byte.
    let mut spent = 0.0;
    for _ in 0..50 {
        spent = stack.counter("tollgate_spend_nano_usd_total").await;
        if spent as u64 == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(spent as u64, expected, "each call billed once, at its usage times the list price");
    assert!(expected <= 2_000_000, "never more than the wallet held: {expected}");
}

#[tokio::test]
async fn a_call_without_its_own_limit_is_capped_at_what_the_wallet_affords() {
    let stack = stack_with_balance("0.001", "pro");
    let t = tag();
    let body = json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-tag", &t)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = stack.received(&t).await;
    let cap = got[0]["body"]["max_completion_tokens"].as_u64().expect("a cap was set");
    // The input held counts the cap's own field, which the provider reads as input too.
    let input = (body.to_string().len() as u64).div_ceil(4) + 16;
    assert!((got[0]["body"].to_string().len() as u64).div_ceil(4) <= input, "the field is held");
    assert_eq!(
        cap,
        (1_000_000 - input * GPT_INPUT) / GPT_OUTPUT,
        "what the balance pays for after the input"
    );
}

#[tokio::test]
async fn a_plan_without_the_model_or_api_access_gets_403_upgrade_required() {
    let starter = stack_with_balance("10", "starter");
    let r = starter.send(&call("openai", "gpt-5.5", false, "hi"), &[]).await;
    assert_eq!(r.status(), 403);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["error"]["code"], "upgrade_required", "{doc}");
    let r = starter.send(&call("gemini", "gemini-3-flash-preview", false, "hi"), &[]).await;
    assert_eq!(r.status(), 200, "the plan's own model");
    let web = stack_with_balance("10", "web");
    let r = web.send(&call("anthropic", "claude-sonnet-4-6", false, "hi"), &[]).await;
    assert_eq!(r.status(), 403);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["error"]["type"], "permission_error", "{doc}");
}
