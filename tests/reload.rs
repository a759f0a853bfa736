//! Configuration reload through the binary (`POST /admin/v1/reload` and
//! `SIGHUP`): a new model, a new price and a plan's new limit apply to the
//! calls after it, while a stream opened before it finishes intact and is
//! billed at the price it started under; a file that is broken, invalid, or
//! changes what only a restart applies is refused with its reason, and the
//! calls go on under the configuration in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, DEMO_ACCOUNT};
use common::{call, client, repo, Stack, KEY};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GPT_PRICE: &str = r#"price: { input: "1.25", output: "10", cache_read: "0.125" }"#;

fn demo() -> String {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    assert!(yaml.contains(GPT_PRICE), "the demo's gpt-5.5 price changed");
    yaml
}

/// The demo with gpt-5.5's output at $20, a new model `gpt-5.5-mini`, and
/// plan `pro` (the demo account's) limited to 3 requests a minute.
fn changed() -> String {
    demo()
        .replacen(GPT_PRICE, r#"price: { input: "1.25", output: "20", cache_read: "0.125" }"#, 1)
        .replacen(
            "models:\n",
            "models:\n  - id: openai/gpt-5.5-mini\n    aliases: [gpt-5.5-mini]\n    provider: openai\n    \
             price: { input: \"1\", output: \"2\" }\n",
            1,
        )
        .replacen(
            "  - name: pro                       # every model, API access\n    models: [\"*\"]\n",
            "  - name: pro\n    models: [\"*\"]\n    limits: { rpm: 3 }\n",
            1,
        )
}

/// The file the stack runs on (`Stack::custom_logged` writes it beside its log).
fn config_of(stack: &Stack) -> PathBuf {
    stack.log.as_ref().unwrap().with_file_name("tollgate.yaml")
}

async fn chat(stack: &Stack, model: &str) -> reqwest::Response {
    let c = call("openai", model, false, "hello");
    client().post(stack.url(&c.path)).header(c.auth.0, &c.auth.1).json(&c.body).send().await.unwrap()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

/// What gpt-5.5 at `output` nano-USD a token costs for a ledger charge's tokens.
fn cost(charge: &Value, output: i64) -> i64 {
    let tokens = |k: &str| charge[k].as_i64().unwrap_or(0);
    let (input, cached) = (tokens("input_tokens"), tokens("cached_tokens"));
    (input - cached) * 1250 + cached * 125 + tokens("output_tokens") * output
}

async fn reload(stack: &Stack) -> (u16, Value) {
    admin(stack, "POST", "/admin/v1/reload", None).await
}

#[tokio::test]
async fn a_reload_applies_to_new_calls_while_an_open_stream_finishes_on_the_old_one() {
    let stack = Stack::custom_logged(&demo());
    assert_eq!(chat(&stack, "gpt-5.5-mini").await.status(), 404, "not a model yet");
    for _ in 0..4 {
        assert_eq!(chat(&stack, "gpt-5.5").await.status(), 200, "no limit yet");
    }

    // A stream of 20 chunks, 100 ms apart, open across the reload.
    let c = call("openai", "gpt-5.5", true, "hello");
    let mut stream = client()
        .post(stack.url(&c.path))
        .header(c.auth.0, &c.auth.1)
        .header("x-mock-chunks", "20")
        .header("x-mock-chunk-delay-ms", "100")
        .json(&c.body)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let stream_id = request_id(&stream);
    let mut text = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();

    std::fs::write(config_of(&stack), changed()).unwrap();
    let (status, body) = reload(&stack).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"models": 11, "providers": 5, "plans": 3}));

    while let Some(chunk) = stream.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream ended as the provider meant it to: {text}"
    );
    let deltas = text.lines().filter(|l| l.starts_with("data: {") && l.contains("\"content\":\"")).count();
    assert!(deltas >= 20, "every chunk arrived ({deltas}): {text}");
    let charge = charge_of(&stack, DEMO_ACCOUNT, &stream_id).await.expect("the stream is billed");
    assert_eq!(charge["estimated"], false, "{charge}");
    assert_eq!(
        -charge["amount_nano_usd"].as_i64().unwrap(),
        cost(&charge, 10_000),
        "the price it began under"
    );

    // New calls: the new model, the new price, the plan's new limit (the
    // calls before it counted against no limit).
    assert_eq!(chat(&stack, "gpt-5.5-mini").await.status(), 200, "the new model serves");
    let r = chat(&stack, "gpt-5.5").await;
    assert_eq!(r.status(), 200);
    let charge = charge_of(&stack, DEMO_ACCOUNT, &request_id(&r)).await.unwrap();
    assert_eq!(-charge["amount_nano_usd"].as_i64().unwrap(), cost(&charge, 20_000), "the new price");
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(chat(&stack, "gpt-5.5").await.status().as_u16());
    }
    assert_eq!(more, [200, 429, 429], "rpm 3 now holds");
    let (_, models) = admin(&stack, "GET", "/admin/v1/models", None).await;
    assert!(
        models["models"].as_array().unwrap().iter().any(|m| m["id"] == "openai/gpt-5.5-mini"),
        "{models}"
    );
    assert_eq!(stack.counter("tollgate_config_reloads_total{result=\"ok\"}").await, 1.0);
}

#[tokio::test]
async fn a_file_that_cannot_be_put_in_force_is_refused_with_its_reason() {
    let stack = Stack::custom_logged(&demo());
    let path = config_of(&stack);
    let cases = [
        (demo().replacen("models:\n", "models:\n  - id: [unclosed\n", 1), "invalid YAML"),
        (demo().replacen("provider: openai\n", "provider: nobody\n", 1), "no provider named 'nobody'"),
        (demo().replacen("  threads: 2\n", "  threads: 3\n", 1), "server.threads: read only at start"),
        (
            demo().replacen("store:\n", "hot_state:\n  redis_url: \"redis://127.0.0.1:1/\"\nstore:\n", 1),
            "hot_state",
        ),
        (
            demo().replacen("  - name: demo\n    plan: pro\n", "  - name: demo\n    plan: starter\n", 1),
            "admin API",
        ),
    ];
    for (yaml, reason) in &cases {
        std::fs::write(&path, yaml).unwrap();
        let (status, body) = reload(&stack).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "reload_refused", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason}: {message}");
        assert!(message.contains("tollgate.yaml"), "names the file: {message}");
        let r = chat(&stack, "gpt-5.5").await;
        assert_eq!(r.status(), 200, "the configuration in force still serves");
        let charge = charge_of(&stack, DEMO_ACCOUNT, &request_id(&r)).await.unwrap();
        assert_eq!(
            -charge["amount_nano_usd"].as_i64().unwrap(),
            cost(&charge, 10_000),
            "at the price in force"
        );
    }
    let log = stack.log_when(|l| l.matches("configuration reload refused").count() >= cases.len()).await;
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("configuration reload refused")), "{log}");
    let refused = stack.counter("tollgate_config_reloads_total{result=\"refused\"}").await;
    assert_eq!(refused, cases.len() as f64);

    // Fixed, the same file goes in.
    std::fs::write(&path, changed()).unwrap();
    assert_eq!(reload(&stack).await.0, 200);
    assert_eq!(chat(&stack, "gpt-5.5-mini").await.status(), 200);
}

#[tokio::test]
async fn sighup_reads_the_file_again_and_a_bad_one_is_logged_and_left() {
    let stack = Stack::custom_logged(&demo());
    // The signal's default (ending the process) is replaced once this is said.
    let log = stack.log_when(|l| l.contains("SIGHUP reloads")).await;
    assert!(log.contains("SIGHUP reloads"), "{log}");
    let hup = || {
        let status = std::process::Command::new("kill").args(["-HUP", &stack.pid().to_string()]).status();
        assert!(status.unwrap().success());
    };

    std::fs::write(config_of(&stack), changed()).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&stack, "gpt-5.5-mini").await.status() != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {}", stack.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stack.log_text().contains("configuration reloaded: 11 models"), "{}", stack.log_text());

    std::fs::write(config_of(&stack), "listeners: [\n").unwrap();
    hup();
    let log = stack.log_when(|l| l.contains("configuration reload refused")).await;
    let line =
        log.lines().find(|l| l.contains("configuration reload refused")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR") && line.contains("invalid YAML"), "{line}");
    assert_eq!(chat(&stack, "gpt-5.5-mini").await.status(), 200, "still up, on the last good file");
    let r = client().get(stack.url("/v1/models")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
