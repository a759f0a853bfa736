use super::*;
use crate::config::parse_str;
use serde_json::Value;

const CONFIG: &str = r#"
listeners: [{address: "127.0.0.1:0"}]
providers:
  - {name: oa, kind: openai, base_url: "http://127.0.0.1:9/openai/v1", api_keys: [sk-provider-oa]}
  - {name: an, kind: anthropic, base_url: "http://127.0.0.1:9/anthropic", api_keys: [sk-provider-an]}
  - {name: ge, kind: gemini, base_url: "http://127.0.0.1:9/gemini", api_keys: [sk-provider-ge]}
models:
  - {id: openai/gpt-5.5, aliases: [gpt-5.5], provider: oa}
  - {id: anthropic/claude-sonnet-4-6, aliases: [claude-sonnet-4-6], provider: an}
  - {id: google/gemini-3-flash-preview, aliases: [gemini-3-flash-preview], provider: ge}
  - {id: openai/gpt-6, provider: oa, status: coming_soon}
mounts: [{prefix: /, formats: [openai, responses, anthropic, gemini]}]
keys: [{name: demo, key: sk-customer}]
"#;

fn gateway() -> Gateway {
    Gateway::from_config(&parse_str(CONFIG, &|_| None).unwrap()).unwrap()
}

fn route(format: ClientFormat, endpoint: Endpoint) -> Route {
    Route { format, endpoint, style: crate::formats::errors::ErrorStyle::Native }
}

fn client_headers() -> http::HeaderMap {
    header_map(&[
        ("authorization", "Bearer sk-customer"),
        ("x-api-key", "sk-customer"),
        ("content-type", "application/json"),
        ("anthropic-beta", "tools-2024"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("x-forwarded-for", "203.0.113.9"),
        ("user-agent", "sdk/1"),
    ])
}

fn header_map(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v))).collect()
}

/// Whether the plan sends `name: value` upstream.
fn sends(p: &UpstreamPlan, name: &str, value: &str) -> bool {
    p.headers.iter().any(|(k, v)| k == name && v == value)
}

#[test]
fn openai_stream_gets_usage_and_upstream_model() {
    let g = gateway();
    let body = Bytes::from_static(br#"{"model":"gpt-5.5","stream":true,"messages":[]}"#);
    let p = plan(
        &g,
        &route(ClientFormat::Openai, Endpoint::ChatCompletions),
        body,
        None,
        &client_headers(),
        "req-test",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["model"], "gpt-5.5");
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert!(p.hide_usage && p.stream);
    assert_eq!(p.path, "/openai/v1/chat/completions");
}

#[test]
fn caller_that_asked_for_usage_keeps_its_body() {
    let g = gateway();
    let raw = br#"{"model":"openai/gpt-5.5","stream":true,"stream_options":{"include_usage":true}}"#;
    let p = plan(
        &g,
        &route(ClientFormat::Openai, Endpoint::ChatCompletions),
        Bytes::from_static(raw),
        None,
        &http::HeaderMap::new(),
        "req-test",
    )
    .unwrap();
    assert!(!p.hide_usage);
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["model"], "gpt-5.5", "public id rewritten to the upstream name");
}

#[test]
fn customer_key_never_goes_upstream() {
    let g = gateway();
    let body = Bytes::from_static(br#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[]}"#);
    let p = plan(
        &g,
        &route(ClientFormat::Anthropic, Endpoint::Messages),
        body.clone(),
        Some("beta=true"),
        &client_headers(),
        "req-test",
    )
    .unwrap();
    assert_eq!(p.body, body, "same model name: the very same bytes");
    let names: Vec<&str> = p.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!p.headers.iter().any(|(_, v)| v.to_str().unwrap().contains("sk-customer")), "{:?}", p.headers);
    assert!(
        !names.contains(&"authorization") && !names.contains(&"x-hop") && !names.contains(&"x-forwarded-for")
    );
    assert!(sends(&p, "x-api-key", "sk-provider-an"));
    assert!(sends(&p, "anthropic-version", "2023-06-01"));
    assert!(sends(&p, "anthropic-beta", "tools-2024"));
    assert_eq!(p.path, "/anthropic/v1/messages?beta=true");
}

#[test]
fn gemini_model_in_path_and_key_out_of_query() {
    let g = gateway();
    let ep = Endpoint::GenerateContent { model: "gemini-3-flash-preview".into(), stream: true };
    let p = plan(
        &g,
        &route(ClientFormat::Gemini, ep),
        Bytes::from_static(b"{\"contents\":[]}"),
        Some("alt=sse&key=sk-customer"),
        &http::HeaderMap::new(),
        "req-test",
    )
    .unwrap();
    assert_eq!(p.path, "/gemini/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse");
    assert!(sends(&p, "x-goog-api-key", "sk-provider-ge"));
}

#[test]
fn refusals_are_precise() {
    let g = gateway();
    let chat = route(ClientFormat::Openai, Endpoint::ChatCompletions);
    let call = |body: &'static [u8]| {
        plan(&g, &chat, Bytes::from_static(body), None, &http::HeaderMap::new(), "req-test").unwrap_err()
    };
    assert!(matches!(call(b"{\"model\":\"nope\"}"), GatewayError::ModelNotFound(_)));
    assert!(matches!(call(b"{\"model\":\"openai/gpt-6\"}"), GatewayError::ModelComingSoon(_)));
    assert!(matches!(call(b"{\"messages\":[]}"), GatewayError::BadRequest(_)));
    assert!(matches!(call(b"{not json"), GatewayError::BadRequest(_)));
    assert!(matches!(call(b"{\"model\":\"claude-sonnet-4-6\"}"), GatewayError::BadRequest(_)));
    assert!(matches!(
        call(b"{\"model\":\"gpt-5.5\",\"stream\":true,\"stream_options\":5}"),
        GatewayError::BadRequest(_)
    ));
}

#[test]
fn other_formats_are_translated_into_the_providers() {
    let g = gateway();
    let chat = route(ClientFormat::Openai, Endpoint::ChatCompletions);
    let body = br#"{"model":"claude-sonnet-4-6","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;
    let p = plan(&g, &chat, Bytes::from_static(body), None, &client_headers(), "req-test").unwrap();
    assert_eq!(p.path, "/anthropic/v1/messages");
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["model"], "claude-sonnet-4-6");
    assert_eq!(v["system"][0]["text"], "be brief");
    assert_eq!(v["max_tokens"], 8192);
    assert_eq!(v["stream"], true);
    assert!(p.translation.is_some() && p.stream);

    let gemini =
        route(ClientFormat::Gemini, Endpoint::GenerateContent { model: "gpt-5.5".into(), stream: true });
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let p = plan(&g, &gemini, Bytes::from_static(body), Some("alt=sse&key=k"), &client_headers(), "req-test")
        .unwrap();
    assert_eq!(p.path, "/openai/v1/chat/completions");
    assert!(!p.headers.iter().any(|(k, _)| k.as_str().starts_with("anthropic-")), "{:?}", p.headers);
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["messages"][0]["content"], "hi");

    let messages = route(ClientFormat::Anthropic, Endpoint::Messages);
    let body = br#"{"model":"gemini-3-flash-preview","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let p =
        plan(&g, &messages, Bytes::from_static(body), Some("beta=true"), &http::HeaderMap::new(), "req-test")
            .unwrap();
    assert_eq!(p.path, "/gemini/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse");
}

#[test]
fn a_translation_that_raises_the_output_limit_is_held_at_the_raised_limit() {
    let g = gateway();
    // Anthropic's thinking needs max_tokens above its budget: the provider
    // may bill up to the raised limit, so the hold is for it.
    let raw = br#"{"model":"claude-sonnet-4-6","max_tokens":10,"reasoning_effort":"low","messages":[{"role":"user","content":"a"}]}"#;
    let p = plan(
        &g,
        &route(ClientFormat::Openai, Endpoint::ChatCompletions),
        Bytes::from_static(raw),
        None,
        &http::HeaderMap::new(),
        "r",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    let sent = v["max_tokens"].as_u64().unwrap();
    assert!(sent > 1024, "{v}");
    assert_eq!(p.max_output, Some(sent));
    // A limit of 0 holds the one token a provider still answers with.
    let raw = br#"{"model":"gpt-5.5","max_tokens":0,"messages":[{"role":"user","content":"a"}]}"#;
    let p = plan(
        &g,
        &route(ClientFormat::Openai, Endpoint::ChatCompletions),
        Bytes::from_static(raw),
        None,
        &http::HeaderMap::new(),
        "r",
    )
    .unwrap();
    assert_eq!(p.max_output, Some(1));
}
