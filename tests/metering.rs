//! Answers the usage readers do not understand, and providers' errors
//! inside a stream (issue #16 items 3 and 6): each is billed from what was
//! relayed, flagged estimated and counted, never zero in silence. Through
//! the real binary and the mock, read back from the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{charge_of, DEMO_ACCOUNT};
use common::{call, Call, Stack, ROUTES};
use serde_json::Value;

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

/// A Gemini stream call as the SDKs send it without `alt=sse`: the
/// answer is one JSON array.
fn gemini_array_call(model: &str) -> Call {
    let mut c = call("gemini", model, true, "hi");
    c.path = c.path.replace("?alt=sse", "");
    c
}

/// Sends `c` and reads the whole answer: (request id, status, body).
async fn send(stack: &Stack, c: &Call, headers: &[(&str, &str)]) -> (String, u16, String) {
    let r = stack.send(c, headers).await;
    let id = request_id(&r);
    let status = r.status().as_u16();
    (id, status, r.text().await.unwrap())
}

async fn charge(stack: &Stack, id: &str, what: &str) -> Value {
    charge_of(stack, DEMO_ACCOUNT, id).await.unwrap_or_else(|| panic!("{what}: no charge"))
}

#[tokio::test]
async fn a_gemini_stream_without_alt_sse_is_billed_as_its_sse_variant() {
    let stack = Stack::demo();
    let chunks = [("x-mock-chunks", "4")];
    let (sse_id, _, _) = send(&stack, &call("gemini", "gemini-3-flash-preview", true, "hi"), &chunks).await;
    let sse = charge(&stack, &sse_id, "sse").await;
    assert_eq!((sse["output_tokens"].as_i64(), &sse["estimated"]), (Some(4), &Value::Bool(false)), "{sse}");

    let (id, status, body) = send(&stack, &gemini_array_call("gemini-3-flash-preview"), &chunks).await;
    assert_eq!(status, 200);
    let elements: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(elements.len(), 4, "relayed as the provider's array");
    let array = charge(&stack, &id, "array").await;
    for field in ["input_tokens", "output_tokens", "estimated", "amount_nano_usd"] {
        assert_eq!(array[field], sse[field], "{field}: {array} vs {sse}");
    }

    // Translated: a provider that answers its array whatever was asked,
    // into every other caller format; and a Gemini array caller of Claude.
    let array_fault = [("x-mock-chunks", "4"), ("x-mock-fault", "gemini-array")];
    for format in ["openai", "responses", "anthropic"] {
        let (id, status, body) =
            send(&stack, &call(format, "gemini-3-flash-preview", true, "hi"), &array_fault).await;
        assert_eq!(status, 200, "{format}: {body}");
        assert!(body.contains("Tollgate"), "{format}: the text was translated: {body}");
        let c = charge(&stack, &id, format).await;
        assert_eq!(
            (c["output_tokens"].as_i64(), &c["estimated"]),
            (Some(4), &Value::Bool(false)),
            "{format}: {c}"
        );
    }
    let (id, _, body) = send(&stack, &gemini_array_call("claude-sonnet-4-6"), &chunks).await;
    assert!(serde_json::from_str::<Vec<Value>>(&body).is_ok(), "{body}");
    let c = charge(&stack, &id, "claude as an array").await;
    assert_eq!((c["output_tokens"].as_i64(), &c["estimated"]), (Some(4), &Value::Bool(false)), "{c}");
}

#[tokio::test]
async fn usage_the_readers_cannot_read_is_billed_as_an_estimate_and_counted() {
    let stack = Stack::demo_logged();
    let mut calls = 0.0;
    for shape in ["negative", "fractional", "missing", "wrapped"] {
        for stream in [false, true] {
            for (format, model) in ROUTES {
                let what = format!("{shape} {format}→{model} stream={stream}");
                let headers = [("x-mock-usage", shape), ("x-mock-chunks", "4")];
                let (id, status, body) = send(&stack, &call(format, model, stream, "hi"), &headers).await;
                assert_eq!(status, 200, "{what}: {body}");
                let c = charge(&stack, &id, &what).await;
                assert_eq!(c["estimated"], true, "{what}: {c}");
                assert!(c["output_tokens"].as_i64().unwrap() >= 1, "{what}: {c}");
                assert!(c["input_tokens"].as_i64().unwrap() >= 1, "{what}: the admission's estimate");
                assert!(c["amount_nano_usd"].as_i64().unwrap() < 0, "{what}: {c}");
                calls += 1.0;
            }
        }
    }
    // The Gemini array too.
    let (id, _, _) =
        send(&stack, &gemini_array_call("gemini-3-flash-preview"), &[("x-mock-usage", "negative")]).await;
    assert_eq!(charge(&stack, &id, "array").await["estimated"], true);
    calls += 1.0;
    assert_eq!(stack.counter("tollgate_unmetered_responses_total").await, calls);
    let log = stack.log_when(|l| l.contains(&id) && l.contains("UNMETERED")).await;
    let line = log.lines().find(|l| l.contains(&id) && l.contains("UNMETERED")).unwrap();
    assert!(line.contains("billed an estimate of"), "{line}");
    assert!(!log.contains("nothing was metered"), "the log says what was billed");
}

#[tokio::test]
async fn a_providers_error_inside_a_stream_is_billed_as_what_was_relayed() {
    let stack = Stack::demo_logged();
    let headers = [("x-mock-chunks", "40"), ("x-mock-fault", "error-after"), ("x-mock-cut-after", "20")];
    let mut ids = Vec::new();
    for (format, model) in ROUTES {
        let what = format!("{format}→{model}");
        let (id, status, body) = send(&stack, &call(format, model, true, "hi"), &headers).await;
        assert_eq!(status, 200, "{what}");
        assert!(
            body.contains("mock: provider error after 20 deltas"),
            "{what}: the caller saw the error: {body}"
        );
        let c = charge(&stack, &id, &what).await;
        let out = c["output_tokens"].as_i64().unwrap();
        assert!(out >= 20, "{what}: {out}, not the start's count, but the 20 deltas relayed: {c}");
        // Gemini counts in every chunk: its count of what was relayed stands.
        let counted = format == "gemini" && model.starts_with("gemini");
        assert_eq!(c["estimated"], !counted, "{what}: {c}");
        ids.push((what, id));
    }
    // The array framing's error element too.
    let (id, _, _) = send(&stack, &gemini_array_call("gemini-3-flash-preview"), &headers).await;
    let c = charge(&stack, &id, "array").await;
    assert!(c["output_tokens"].as_i64().unwrap() >= 20, "{c}");
    ids.push(("array".into(), id));
    let log = stack.log_when(|l| ids.iter().all(|(_, id)| l.contains(id.as_str()))).await;
    for (what, id) in ids {
        let line = log.lines().find(|l| l.contains(&id) && l.contains("status=")).unwrap();
        assert!(line.contains("failure=\"provider error mid-stream\""), "{what}: {line}");
    }
}

#[tokio::test]
async fn a_gemini_usage_chunk_after_the_finish_reason_counts() {
    let stack = Stack::demo();
    let headers = [("x-mock-chunks", "4"), ("x-mock-fault", "late-usage")];
    for (what, c) in [
        ("sse", call("gemini", "gemini-3-flash-preview", true, "hi")),
        ("array", gemini_array_call("gemini-3-flash-preview")),
        ("translated", call("openai", "gemini-3-flash-preview", true, "hi")),
        ("document-caller", call("anthropic", "gemini-3-flash-preview", true, "hi")),
    ] {
        let (id, status, body) = send(&stack, &c, &headers).await;
        assert_eq!(status, 200, "{what}");
        if what != "translated" && what != "document-caller" {
            assert!(
                body.contains("\"candidatesTokenCount\":4"),
                "{what}: the late chunk was relayed: {body}"
            );
        }
        let c = charge(&stack, &id, what).await;
        assert_eq!(
            (c["output_tokens"].as_i64(), &c["estimated"]),
            (Some(4), &Value::Bool(false)),
            "{what}: {c}"
        );
    }
}

#[tokio::test]
async fn an_unmetered_gemini_stream_pays_for_its_held_back_last_chunk() {
    // Gemini's `finishReason` chunk (with the last of the text) is held
    // until the body ends, then relayed: the estimate counts it with the
    // rest, one token a chunk (found by tests/bill_adversary.rs).
    let stack = Stack::demo();
    for shape in ["missing", "wrapped", "negative"] {
        let headers = [("x-mock-usage", shape), ("x-mock-chunks", "6")];
        let (id, status, body) =
            send(&stack, &call("gemini", "gemini-3-flash-preview", true, "hi"), &headers).await;
        assert_eq!(status, 200, "{shape}");
        let chunks = common::sse_events(&body).len();
        assert_eq!(chunks, 6, "{shape}: {body}");
        let c = charge(&stack, &id, shape).await;
        assert_eq!(
            (c["output_tokens"].as_i64(), &c["estimated"]),
            (Some(6), &Value::Bool(true)),
            "{shape}: {c}"
        );
    }
}
