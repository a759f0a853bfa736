//! Traces over OTLP/HTTP through the real binary: with
//! `tracing.otlp_endpoint` set to a receiver this test starts, a billed
//! call becomes one span with the GenAI attributes (operation, provider,
//! model, tokens in and out) and its child spans `admit`, `upstream` and
//! `settle`, in one trace; without it, nothing is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, Stack};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An OTLP/HTTP receiver on a free port: every POST's path and JSON body.
async fn receiver() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let kept = kept.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let doc = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            kept.lock().unwrap().push((path, doc));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (port, received)
}

fn demo_with(extra: &str) -> Stack {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml")).unwrap().replacen(
        "store:\n",
        &format!("{extra}store:\n"),
        1,
    );
    Stack::custom(&yaml)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    let value = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &value["value"];
    v.get("stringValue").or_else(|| v.get("intValue")).or_else(|| v.get("boolValue"))
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(-1),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        _ => -1,
    }
}

async fn chat(stack: &Stack) -> Value {
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .json(&json!({"model": "gpt-5.5", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_billed_call_is_one_trace_with_admit_upstream_and_settle() {
    let (port, received) = receiver().await;
    let stack = demo_with(&format!(
        "tracing:\n  otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\"\n  service_name: tollgate-test\n  export_every_ms: 100\n"
    ));
    let answer = chat(&stack).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans: Vec<Value> = loop {
        let spans: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path == "/v1/traces")
            .flat_map(|(_, doc)| {
                let resource = doc["resourceSpans"].as_array().cloned().unwrap_or_default();
                resource.into_iter().flat_map(|r| {
                    let service = r["resource"]["attributes"].clone();
                    r["scopeSpans"].as_array().cloned().unwrap_or_default().into_iter().flat_map(move |s| {
                        let service = service.clone();
                        s["spans"].as_array().cloned().unwrap_or_default().into_iter().map(move |mut span| {
                            span["service"] = service.clone();
                            span
                        })
                    })
                })
            })
            .collect();
        if spans.len() >= 4 || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let root = spans
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("chat ")))
        .unwrap_or_else(|| panic!("no request span: {spans:#?}"));
    assert_eq!(attribute(root, "gen_ai.operation.name"), Some(&json!("chat")), "{root:#}");
    assert_eq!(attribute(root, "gen_ai.provider.name"), Some(&json!("openai")), "{root:#}");
    assert!(attribute(root, "gen_ai.request.model")
        .and_then(Value::as_str)
        .is_some_and(|m| m.contains("gpt-5.5")));
    assert_eq!(
        int(attribute(root, "gen_ai.usage.input_tokens")),
        answer["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        int(attribute(root, "gen_ai.usage.output_tokens")),
        answer["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert!(int(attribute(root, "tollgate.cost_nano_usd")) > 0);
    assert!(root["service"].to_string().contains("tollgate-test"), "{}", root["service"]);
    for child in ["admit", "upstream", "settle"] {
        let span = spans
            .iter()
            .find(|s| s["name"] == child)
            .unwrap_or_else(|| panic!("no {child} span: {spans:#?}"));
        assert_eq!(span["traceId"], root["traceId"], "{child}");
        assert_eq!(span["parentSpanId"], root["spanId"], "{child}");
    }
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_sent() {
    let (port, received) = receiver().await;
    let stack = demo_with("");
    chat(&stack).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(received.lock().unwrap().is_empty(), "port {port}");
}
