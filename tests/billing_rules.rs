//! The README's billing rule for every way a request can end, each through
//! the real binary and the mock, read back from the ledger in SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{charge_of, gpt_cost, held, not_charged, DEMO_ACCOUNT};
use common::{call, client, tag, Stack, KEY, ROUTES};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_completed_call_is_billed_at_the_providers_count_in_every_format_streamed_or_not() {
    let stack = Stack::demo();
    for stream in [false, true] {
        for (format, model) in ROUTES {
            let r = stack.send(&call(format, model, stream, "hi"), &[("x-mock-chunks", "4")]).await;
            assert_eq!(r.status(), 200, "{format} {model}");
            let id = request_id(&r);
            let _ = r.bytes().await.unwrap();
            let charge = charge_of(&stack, DEMO_ACCOUNT, &id)
                .await
                .unwrap_or_else(|| panic!("{format} {model} {stream}"));
            assert_eq!(charge["estimated"], false, "{format} {model} {stream}: {charge}");
            assert_eq!(charge["output_tokens"], 4, "{format} {model} {stream}: the mock's four deltas");
            assert!(charge["input_tokens"].as_i64().unwrap() > 0);
        }
    }
    assert_eq!(held(&stack, DEMO_ACCOUNT).await, 0, "every hold settled");
}

#[tokio::test]
async fn a_call_stopped_at_max_tokens_is_billed_what_the_provider_counted() {
    let stack = Stack::demo();
    let body = json!({"model": "gpt-5.5", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-mock-chunks", "10")
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = request_id(&r);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["choices"][0]["finish_reason"], "length");
    let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
    assert_eq!((charge["output_tokens"].clone(), charge["estimated"].clone()), (json!(2), json!(false)));
    assert_eq!(charge["amount_nano_usd"], -gpt_cost(&doc["usage"]));
}

/// Reads a few events of a slow stream, then leaves.
async fn leave_after_some_events(stack: &Stack, format: &str, model: &str) -> String {
    let r = stack
        .send(&call(format, model, true, "hi"), &[("x-mock-chunks", "60"), ("x-mock-chunk-delay-ms", "50")])
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let mut body = r.bytes_stream();
    let mut seen = 0;
    while let Some(chunk) = body.next().await {
        seen += chunk.unwrap().len();
        if seen > 600 {
            break;
        }
    }
    drop(body);
    id
}

#[tokio::test]
async fn a_caller_that_leaves_mid_stream_pays_an_estimate_of_what_it_received() {
    let stack = Stack::demo();
    for (format, model) in
        [("openai", "gpt-5.5"), ("anthropic", "claude-sonnet-4-6"), ("responses", "claude-sonnet-4-6")]
    {
        let id = leave_after_some_events(&stack, format, model).await;
        let charge =
            charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap_or_else(|| panic!("{format}: no charge"));
        assert_eq!(charge["estimated"], true, "{format}: {charge}");
        let out = charge["output_tokens"].as_i64().unwrap();
        assert!((1..60).contains(&out), "{format}: {out} of the 60 tokens, as relayed");
        assert!(charge["amount_nano_usd"].as_i64().unwrap() < 0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held(&stack, DEMO_ACCOUNT).await, 0);
}

#[tokio::test]
async fn an_upstream_error_before_the_first_byte_costs_nothing() {
    let stack = Stack::demo();
    for (format, model) in ROUTES {
        let r = stack.send(&call(format, model, false, "hi"), &[("x-mock-status", "500")]).await;
        assert!(r.status().is_server_error(), "{format} {model}");
        let id = request_id(&r);
        assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await, "{format} {model}: not charged");
    }
    // A provider that cannot be reached at all.
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml"))
        .unwrap()
        .replace("${TOLLGATE_MOCK_URL:-http://127.0.0.1:9100}", "http://127.0.0.1:9");
    let down = Stack::custom(&yaml);
    let r = down.send(&call("openai", "gpt-5.5", true, "hi"), &[]).await;
    assert_eq!(r.status(), 502);
    assert!(not_charged(&down, DEMO_ACCOUNT, &request_id(&r)).await);
    assert_eq!(held(&down, DEMO_ACCOUNT).await, 0, "the hold was released");
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_billed_for_what_the_caller_received() {
    let stack = Stack::demo();
    for (format, model) in
        [("openai", "gpt-5.5"), ("anthropic", "gpt-5.5"), ("gemini", "gemini-3-flash-preview")]
    {
        let r = stack
            .send(
                &call(format, model, true, "hi"),
                &[("x-mock-chunks", "20"), ("x-mock-cut-after", "3"), ("x-mock-chunk-delay-ms", "20")],
            )
            .await;
        let id = request_id(&r);
        let _ = r.bytes().await;
        let charge =
            charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap_or_else(|| panic!("{format}: no charge"));
        // Gemini counts in every chunk: its count of what was relayed stands.
        let counted_by_provider = format == "gemini";
        assert_eq!(charge["estimated"], !counted_by_provider, "{format}: {charge}");
        let out = charge["output_tokens"].as_i64().unwrap();
        assert!((1..20).contains(&out), "{format}: {out}, about the 3 deltas relayed");
    }
}

#[tokio::test]
async fn a_coming_soon_model_answers_503_and_costs_nothing() {
    let stack = Stack::demo();
    let t = tag();
    let r = stack.send(&call("gemini", "nano-banana-pro", false, "draw"), &[("x-mock-tag", &t)]).await;
    assert_eq!(r.status(), 503);
    let id = request_id(&r);
    assert!(not_charged(&stack, DEMO_ACCOUNT, &id).await);
    assert!(stack.received(&t).await.is_empty());
}

#[tokio::test]
async fn cached_input_is_billed_at_the_cache_price_and_never_also_at_the_input_price() {
    let stack = Stack::demo();
    for stream in [false, true] {
        let mut c = call("openai", "gpt-5.5", stream, "a long prompt that was cached before");
        c.body["stream_options"] = json!({"include_usage": true});
        let r = stack.send(&c, &[("x-mock-cached-tokens", "6")]).await;
        let id = request_id(&r);
        let text = r.text().await.unwrap();
        let usage = if stream {
            let last = text.lines().rfind(|l| l.starts_with("data: {")).unwrap();
            serde_json::from_str::<Value>(&last[6..]).unwrap()["usage"].clone()
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
        };
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 6);
        let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
        assert_eq!(charge["cached_tokens"], 6);
        assert_eq!(charge["amount_nano_usd"], -gpt_cost(&usage), "6 tokens at $0.125/M, the rest at $1.25/M");
    }
    // Anthropic counts cache reads apart from input_tokens; the bill is the same rule.
    let r = stack
        .send(
            &call("anthropic", "claude-sonnet-4-6", false, "cached prompt"),
            &[("x-mock-cached-tokens", "4")],
        )
        .await;
    let id = request_id(&r);
    let doc: Value = r.json().await.unwrap();
    let (fresh, read, out) = (
        doc["usage"]["input_tokens"].as_i64().unwrap(),
        doc["usage"]["cache_read_input_tokens"].as_i64().unwrap(),
        doc["usage"]["output_tokens"].as_i64().unwrap(),
    );
    assert_eq!(read, 4);
    let charge = charge_of(&stack, DEMO_ACCOUNT, &id).await.unwrap();
    let expected = (fresh * 3_000_000_000 + read * 300_000_000 + out * 15_000_000_000 + 500_000) / 1_000_000;
    assert_eq!(charge["amount_nano_usd"], -expected);
}

#[tokio::test]
async fn usage_is_always_requested_from_the_upstream() {
    let stack = Stack::demo();
    let t = tag();
    let r = stack.send(&call("openai", "gpt-5.5", true, "hi"), &[("x-mock-tag", &t)]).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"usage\":{"), "the caller did not ask for usage and does not see it");
    let got = stack.received(&t).await;
    assert_eq!(got[0]["body"]["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn the_bill_shows_in_the_metrics_and_the_access_log() {
    let stack = Stack::demo_logged();
    let r = stack.send(&call("openai", "gpt-5.5", false, "hi"), &[]).await;
    let paid = request_id(&r);
    let _ = r.bytes().await;
    let r = stack
        .send(
            &call("openai", "gpt-5.5", true, "hi"),
            &[("x-mock-chunks", "20"), ("x-mock-cut-after", "3"), ("x-mock-chunk-delay-ms", "20")],
        )
        .await;
    let cut = request_id(&r);
    let _ = r.bytes().await;
    // A key with no money: a 402, counted by its code.
    let (_, account) =
        common::money::admin(&stack, "POST", "/admin/v1/accounts", Some(json!({"name": "m", "plan": "pro"})))
            .await;
    let path = format!("/admin/v1/accounts/{}/keys", account["id"]);
    let (_, key) = common::money::admin(&stack, "POST", &path, Some(json!({"name": "k"}))).await;
    let broke =
        common::money::post(&stack, key["key"].as_str().unwrap(), &common::money::chat("gpt-5.5", 5), &tag())
            .await;
    assert_eq!(broke.status(), 402);
    assert!(charge_of(&stack, DEMO_ACCOUNT, &cut).await.is_some());

    let metrics = stack.metrics_text().await;
    for line in [
        "tollgate_billing_refusals_total{code=\"insufficient_credits\"} 1",
        "tollgate_holds_open 0",
        "tollgate_journal_records_total",
        "tollgate_journal_lag_records",
        "tollgate_spend_nano_usd_total{model=\"openai/gpt-5.5\",plan=\"pro\"}",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let log = stack.log_when(|l| l.contains(&cut) && l.contains(&paid)).await;
    let line = |id: &str| log.lines().find(|l| l.contains(id) && l.contains("access")).unwrap().to_string();
    let paid_line = line(&paid);
    assert!(paid_line.contains("account=demo") && paid_line.contains("key_id=1"), "{paid_line}");
    assert!(paid_line.contains("cost_nano_usd=") && !paid_line.contains("cost_nano_usd=-"), "{paid_line}");
    assert!(!paid_line.contains("estimated=true"));
    assert!(line(&cut).contains("estimated=true"), "{}", line(&cut));
}
