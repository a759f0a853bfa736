//! A translated Anthropic stream whose provider goes quiet gets `ping`
//! events, as Anthropic's own API sends during long reasoning, and still
//! carries every byte the provider sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, repo, sse_events, Stack, KEY};
use serde_json::{json, Value};

fn stack_pinging_every(ms: &str) -> Stack {
    Stack::with_config(&repo().join("conf/demo.yaml"), None, &[("TOLLGATE_STREAM_PING_MS", ms)])
}

async fn anthropic_stream(stack: &Stack, model: &str, silence: &[(&str, &str)]) -> String {
    let mut req = client().post(stack.url("/v1/messages")).header("x-api-key", KEY);
    for (name, value) in silence {
        req = req.header(*name, *value);
    }
    req.json(&json!({"model": model, "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn names(body: &str) -> Vec<String> {
    sse_events(body).into_iter().map(|(name, _)| name.unwrap_or_default()).collect()
}

fn text_of(body: &str) -> String {
    sse_events(body)
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_quiet_provider_gets_pings_before_and_between_deltas() {
    let stack = stack_pinging_every("100");
    // Silent for 600 ms before the first byte, then 400 ms between deltas.
    let quiet = [("x-mock-ttfb-ms", "600"), ("x-mock-chunk-delay-ms", "400"), ("x-mock-chunks", "3")];
    for model in ["gpt-5.5", "gemini-3-flash-preview"] {
        let body = anthropic_stream(&stack, model, &quiet).await;
        let names = names(&body);
        assert_eq!(names.first().map(String::as_str), Some("message_start"), "{model}: {body}");
        assert_eq!(names.last().map(String::as_str), Some("message_stop"), "{model}: {body}");
        assert_eq!(names.iter().filter(|n| *n == "message_start").count(), 1, "{body}");
        let first_block = names.iter().position(|n| n == "content_block_start").unwrap();
        assert!(
            names[..first_block].iter().filter(|n| *n == "ping").count() >= 2,
            "{model}: pings while the provider had not spoken yet: {body}"
        );
        let between = names[first_block..].iter().filter(|n| *n == "ping").count();
        assert!(between >= 2, "{model}: pings between deltas: {body}");
        assert_eq!(text_of(&body), "Hello from the", "{model}: nothing the provider sent was lost");
        // The real usage still arrives in message_delta.
        let delta =
            sse_events(&body).into_iter().find(|(n, _)| n.as_deref() == Some("message_delta")).unwrap();
        let usage: Value = serde_json::from_str(&delta.1).unwrap();
        assert!(usage["usage"]["output_tokens"].as_u64().unwrap() > 0, "{body}");
    }
}

#[tokio::test]
async fn a_chatty_provider_gets_no_extra_pings() {
    let stack = stack_pinging_every("5000");
    let body = anthropic_stream(&stack, "gpt-5.5", &[("x-mock-chunks", "5")]).await;
    // Only the one ping every Anthropic stream carries after message_start.
    assert_eq!(names(&body).iter().filter(|n| *n == "ping").count(), 1, "{body}");
}

#[tokio::test]
async fn pings_can_be_turned_off() {
    let stack = stack_pinging_every("0");
    let quiet = [("x-mock-ttfb-ms", "400")];
    let body = anthropic_stream(&stack, "gpt-5.5", &quiet).await;
    assert_eq!(names(&body).iter().filter(|n| *n == "ping").count(), 1, "{body}");
    assert_eq!(text_of(&body), "Hello from the");
}

/// The raw stream a Chat or Responses caller gets from `model`.
async fn openai_stream(stack: &Stack, path: &str, model: &str, quiet: &[(&str, &str)]) -> String {
    let body = if path.ends_with("responses") {
        json!({"model": model, "stream": true, "input": "hi"})
    } else {
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
    };
    let mut req = client().post(stack.url(path)).bearer_auth(KEY);
    for (name, value) in quiet {
        req = req.header(*name, *value);
    }
    req.json(&body).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn chat_and_responses_callers_get_comment_keepalives_in_silences() {
    let stack = stack_pinging_every("100");
    let quiet = [("x-mock-ttfb-ms", "500"), ("x-mock-chunk-delay-ms", "300"), ("x-mock-chunks", "3")];
    // Pass-through (gpt-5.5 speaks both) and translated (Claude, Gemini).
    for path in ["/v1/chat/completions", "/v1/responses"] {
        for model in ["gpt-5.5", "claude-sonnet-4-6", "gemini-3-flash-preview"] {
            let body = openai_stream(&stack, path, model, &quiet).await;
            let comments = body.matches(": keep-alive\n\n").count();
            assert!(comments >= 4, "{path} {model}: {comments} keep-alives in {body}");
            // Never inside an event: every block is a comment or a whole event.
            for block in body.split("\n\n").filter(|b| !b.is_empty()) {
                assert!(block == ": keep-alive" || block.contains("data: "), "{path} {model}: {block:?}");
            }
            assert!(body.contains("Hello"), "{path} {model}: {body}");
        }
    }
    // Gemini callers get none: google-genai does not skip comment lines.
    let gemini = client()
        .post(stack.url("/v1beta/models/gpt-5.5:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", KEY)
        .header("x-mock-ttfb-ms", "400")
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!gemini.contains(": keep-alive"), "{gemini}");
    // Off when stream_ping_ms is 0.
    let off = stack_pinging_every("0");
    let body = openai_stream(&off, "/v1/chat/completions", "claude-sonnet-4-6", &quiet).await;
    assert!(!body.contains(": keep-alive"), "{body}");
}
