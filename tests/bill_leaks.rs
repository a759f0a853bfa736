//! The bill has no leaks (issue #16), through the real binary and the mock:
//! a hold outlives its lease while its call runs (a slow reader, a slow
//! provider); a caller that stops reading is cut at the write timeout,
//! billed and let go; a stream cut at shutdown is billed and logged; a
//! provider's count past the hold stops at the key's cap and the wallet,
//! the rest recorded as unpaid; the hold covers the request as it goes
//! upstream, every answer asked for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, customer, gpt_cost, held, post, DEMO_ACCOUNT};
use common::{client, repo, start_mock, tag, wait_for, Guard, Stack, TempDir, KEY};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `conf/demo.yaml` with each `(from, to)` replaced once.
fn demo_with(edits: &[(&str, &str)]) -> String {
    let mut yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    for (from, to) in edits {
        assert!(yaml.contains(from), "{from} in conf/demo.yaml");
        yaml = yaml.replacen(from, to, 1);
    }
    yaml
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

async fn balance(stack: &Stack, account: i64) -> i64 {
    let (_, view) = admin(stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    view["balance_nano_usd"].as_i64().unwrap()
}

/// Polls `check` every 50 ms for up to 30 s; whether it came true.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The access log line of `id`, once it is written.
async fn access_line(log: &std::path::Path, id: &str) -> String {
    let find = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines().find(|l| l.contains(id) && l.contains("status=")).map(str::to_string)
    };
    assert!(eventually(|| std::future::ready(find().is_some())).await, "no access line for {id}");
    find().unwrap()
}

#[tokio::test]
async fn a_call_that_outlives_its_lease_is_charged_in_full_and_its_hold_is_kept() {
    let yaml = demo_with(&[
        ("store:\n", "store:\n  batch_ms: 20\n"),
        ("billing:\n", "billing:\n  hold_lease_seconds: 1\n"),
    ]);
    let stack = Stack::custom_logged(&yaml);
    wait_for(&stack.admin);
    let (account, _, key) = customer(&stack, "pro", "100", 1, json!({"name": "lease"})).await;
    let before = balance(&stack, account).await;

    // A large document whose caller reads the head, then waits past the lease.
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-mock-pad-bytes", "6000000")
        .json(&common::money::chat("gpt-5.5", 50))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let big = request_id(&r);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let doc: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let charge = charge_of(&stack, account, &big).await.expect("the slow reader's call is charged");
    assert_eq!(charge["estimated"], false, "{charge}");
    assert_eq!(charge["amount_nano_usd"], -gpt_cost(&doc["usage"]), "{charge}");

    // A provider that takes five seconds to stream its answer.
    let mut body = common::money::chat("gpt-5.5", 50);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-mock-chunks", "50")
        .header("x-mock-chunk-delay-ms", "100")
        .json(&body)
        .send()
        .await
        .unwrap();
    let slow = request_id(&r);
    let started = Instant::now();
    let (mut text, mut sampled) = (String::new(), None);
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        if sampled.is_none() && started.elapsed() > Duration::from_millis(2_000) && !text.contains("[DONE]") {
            sampled = Some(held(&stack, account).await);
        }
    }
    assert!(sampled.is_some_and(|h| h > 0), "still held past the lease, mid-call: {sampled:?}");
    let last = text.lines().rfind(|l| l.starts_with("data: {")).unwrap();
    let usage = serde_json::from_str::<Value>(&last[6..]).unwrap()["usage"].clone();
    assert_eq!(usage["completion_tokens"], 50);
    let charge = charge_of(&stack, account, &slow).await.expect("the slow stream is charged");
    assert_eq!((charge["estimated"].clone(), charge["output_tokens"].clone()), (json!(false), json!(50)));
    assert_eq!(charge["amount_nano_usd"], -gpt_cost(&usage));

    let spent = gpt_cost(&doc["usage"]) + gpt_cost(&usage);
    assert!(eventually(|| async { held(&stack, account).await == 0 }).await, "every hold settled");
    assert_eq!(balance(&stack, account).await, before - spent, "the wallet paid both calls");
    assert!(!stack.log_text().contains("holds whose lease ended"), "no hold was released early");
}

#[tokio::test]
async fn a_caller_that_stops_reading_is_cut_at_the_write_timeout_billed_and_let_go() {
    let yaml = demo_with(&[
        ("server:\n", "server:\n  downstream_write_timeout_ms: 500\n"),
        ("plans:\n", "plans:\n  - name: single\n    models: [\"*\"]\n    limits: { concurrent: 1 }\n"),
    ]);
    let stack = Stack::custom_logged(&yaml);
    wait_for(&stack.admin);
    let (account, _, key) = customer(&stack, "single", "100", 1, json!({"name": "stuck"})).await;

    // Far more than the socket buffers hold: 100,000 events of a stream.
    let body = json!({"model": "gpt-5.5", "stream": true, "max_tokens": 100_000,
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let addr = stack.gateway.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\nx-mock-chunks: 100000\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the gateway closed before the head");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let id = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap().trim().to_string();
    let stopped = Instant::now();
    // The caller now reads nothing more, and keeps its connection open.

    let line = access_line(stack.log.as_ref().unwrap(), &id).await;
    assert!(stopped.elapsed() < Duration::from_secs(20), "ended in {:?}", stopped.elapsed());
    let failure = line.split(" failure=").nth(1).unwrap_or_else(|| panic!("a failure: {line}"));
    let failure = failure.to_lowercase();
    assert!(failure.contains("timedout") || failure.contains("timeout"), "the write timed out: {failure}");
    let charge = charge_of(&stack, account, &id).await.expect("what went out is billed");
    assert_eq!(charge["estimated"], true, "{charge}");
    let out = charge["output_tokens"].as_i64().unwrap();
    assert!((1..100_000).contains(&out), "{out}: what went out, not what was asked");
    assert!(eventually(|| async { held(&stack, account).await == 0 }).await, "the hold was released");
    // The plan allows one call at a time: the next one gets the slot.
    let next = eventually(|| async {
        let r = post(&stack, &key, &common::money::chat("gpt-5.5", 5), &tag()).await;
        r.status() == 200
    });
    assert!(next.await, "the concurrency slot was freed");
    drop(socket);
}

/// A gateway process on `config` with its SQLite store at `db`, its
/// stderr appended to `log`: (gateway url, admin url, process).
fn start(
    config: &std::path::Path,
    mock: &str,
    db: &std::path::Path,
    log: &std::path::Path,
) -> (String, String, Guard) {
    let (url, admin, child) = common::serve_on_store(config, mock, db, Some(log));
    (url, admin, Guard(child))
}

#[tokio::test]
async fn a_stream_cut_at_shutdown_is_billed_and_logged() {
    cut_at_shutdown(Cut::Sse).await;
}

/// The same with a Gemini stream read as Google's JSON array (no
/// `alt=sse`): relayed as a body, not as events, and billed on its text.
#[tokio::test]
async fn a_json_array_stream_cut_at_shutdown_is_billed_and_logged() {
    cut_at_shutdown(Cut::JsonArray).await;
}

enum Cut {
    Sse,
    JsonArray,
}

impl Cut {
    /// (path, auth header, body, what marks one piece of the answer)
    fn call(&self) -> (&'static str, (&'static str, String), Value, &'static str) {
        match self {
            Cut::Sse => (
                "/v1/chat/completions",
                ("authorization", format!("Bearer {KEY}")),
                json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                "data: {",
            ),
            Cut::JsonArray => (
                "/v1beta/models/gemini-3-flash-preview:streamGenerateContent",
                ("x-goog-api-key", KEY.to_string()),
                json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
                "\"text\"",
            ),
        }
    }
}

async fn cut_at_shutdown(kind: Cut) {
    let dir = TempDir::new();
    let (db, log, config) =
        (dir.0.join("tollgate.db"), dir.0.join("gateway.log"), dir.0.join("tollgate.yaml"));
    let yaml = demo_with(&[(
        "server:\n",
        "server:\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n",
    )]);
    std::fs::write(&config, yaml).unwrap();
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let (url, _, mut first) = start(&config, &mock, &db, &log);

    // Thirty seconds of stream; the process is told to stop after a few events.
    let (path, auth, body, event) = kind.call();
    let mut r = client()
        .post(format!("{url}{path}"))
        .header(auth.0, auth.1)
        .header("x-mock-chunks", "300")
        .header("x-mock-chunk-delay-ms", "100")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let mut seen = 0;
    while seen < 5 {
        let chunk = r.chunk().await.unwrap().unwrap();
        seen += String::from_utf8_lossy(&chunk).matches(event).count();
    }
    let pid = first.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The caller goes on reading until the gateway cuts it.
    while let Ok(Some(_)) = r.chunk().await {}
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gateway did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    let text = std::fs::read_to_string(&log).unwrap();
    let line =
        text.lines().find(|l| l.contains(&id) && l.contains("status=")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("cut at shutdown"), "{line}");

    // A new process on the same store reads the first one's ledger.
    let (_, admin_url, _second) = start(&repo().join("conf/demo.yaml"), &mock, &db, &log);
    let ledger: Value = client()
        .get(format!("{admin_url}/admin/v1/ledger?account={DEMO_ACCOUNT}"))
        .bearer_auth(common::money::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let charges: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["request_id"] == id.as_str()).collect();
    assert_eq!(charges.len(), 1, "one charge for the cut stream: {ledger}");
    assert_eq!((charges[0]["kind"].clone(), charges[0]["estimated"].clone()), (json!("charge"), json!(true)));
    assert!(charges[0]["amount_nano_usd"].as_i64().unwrap() < 0, "{}", charges[0]);
    let out = charges[0]["output_tokens"].as_i64().unwrap();
    assert!((5..300).contains(&out), "{out}: about what was relayed");
}

/// The key's spend, by the admin API.
async fn key_spend(stack: &Stack, key_id: i64) -> i64 {
    let (_, key) = admin(stack, "GET", &format!("/admin/v1/keys/{key_id}"), None).await;
    key["spend_nano_usd"].as_i64().unwrap()
}

/// A call whose provider reports ten million output tokens, far past its
/// hold: the ledger entry, and what the reported usage costs at list price.
async fn over_reported(stack: &Stack, account: i64, key: &str) -> (Value, i64) {
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock-report-output-tokens", "10000000")
        .json(&common::money::chat("gpt-5.5", 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["usage"]["completion_tokens"], 10_000_000);
    (charge_of(stack, account, &id).await.unwrap(), gpt_cost(&doc["usage"]))
}

#[tokio::test]
async fn a_bill_past_the_hold_stops_at_the_keys_cap_and_the_wallet_and_the_rest_is_unpaid() {
    let stack = Stack::demo();
    wait_for(&stack.admin);
    // A cap of a cent, on a wallet of ten dollars.
    let (account, key_id, key) =
        customer(&stack, "pro", "10", 1, json!({"name": "capped", "spend_cap_usd": "0.01"})).await;
    let (charge, list) = over_reported(&stack, account, &key).await;
    let (paid, unpaid) =
        (-charge["amount_nano_usd"].as_i64().unwrap(), charge["unpaid_nano_usd"].as_i64().unwrap());
    assert_eq!(paid, 10_000_000, "charged up to the cap: {charge}");
    assert_eq!(paid + unpaid, list, "charged and unpaid make the list price");
    assert_eq!(key_spend(&stack, key_id).await, 10_000_000, "the key spent its cap, not more");
    assert_eq!(balance(&stack, account).await, 10_000_000_000 - paid);
    assert!(stack.counter("tollgate_unpaid_nano_usd_total").await > 0.0);

    // A wallet of a cent and no cap: it ends at exactly zero.
    let (account, _, key) = customer(&stack, "pro", "0.01", 1, json!({"name": "small"})).await;
    let (charge, list) = over_reported(&stack, account, &key).await;
    let (paid, unpaid) =
        (-charge["amount_nano_usd"].as_i64().unwrap(), charge["unpaid_nano_usd"].as_i64().unwrap());
    assert_eq!((paid, paid + unpaid), (10_000_000, list), "{charge}");
    assert_eq!((balance(&stack, account).await, held(&stack, account).await), (0, 0));
    let r = post(&stack, &key, &common::money::chat("gpt-5.5", 10), &tag()).await;
    assert_eq!(r.status(), 402, "an empty wallet pays for nothing more");
}

/// Dollars as a message says them (`0.0301`), in nano-dollars.
fn nanos(text: &str) -> i64 {
    let text = text.trim_end_matches(|c: char| !c.is_ascii_digit());
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    whole.parse::<i64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}").parse::<i64>().unwrap()
}

/// Nano-dollars as the admin API's dollars.
fn usd(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[tokio::test]
async fn the_hold_covers_the_request_as_it_goes_upstream_and_every_answer_asked_for() {
    let stack = Stack::demo();
    wait_for(&stack.admin);
    // 1,001 one-letter messages to Claude: a few characters of text, and
    // about ten thousand tokens of framing as the provider counts them.
    let messages: Vec<Value> = (0..1001).map(|_| json!({"role": "user", "content": "a"})).collect();
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": messages});
    let (account, key_id, key) =
        customer(&stack, "pro", "10", 1, json!({"name": "tight", "spend_cap_usd": "0.000000001"})).await;
    let r = post(&stack, &key, &body, &tag()).await;
    assert_eq!(r.status(), 402);
    let refusal: Value = r.json().await.unwrap();
    let message = refusal["error"]["message"].as_str().unwrap();
    let needed = message.rsplit("can cost up to $").next().unwrap();
    let hold = nanos(needed);
    // A cap just above the hold: whatever is charged past it would be unpaid.
    let cap = json!({"spend_cap_usd": usd(hold + 1)});
    assert_eq!(admin(&stack, "PATCH", &format!("/admin/v1/keys/{key_id}"), Some(cap)).await.0, 200);
    let r = post(&stack, &key, &body, &tag()).await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let doc: Value = r.json().await.unwrap();
    let (input, output) = (
        doc["usage"]["prompt_tokens"].as_i64().unwrap(),
        doc["usage"]["completion_tokens"].as_i64().unwrap(),
    );
    assert!(input > 4_000, "the provider counts the framing: {input}");
    let charge = charge_of(&stack, account, &id).await.unwrap();
    assert_eq!(charge["estimated"], false);
    assert_eq!(
        charge["amount_nano_usd"],
        -(input * 3_000 + output * 15_000),
        "at the provider's count: {charge}"
    );
    assert_eq!(charge["unpaid_nano_usd"], 0, "the hold covered it");

    // Three answers hold three times the output limit: $0.10 each here.
    let mut three = common::money::chat("gpt-5.5", 10_000);
    three["n"] = json!(3);
    let (account, _, key) = customer(&stack, "pro", "0.2", 1, json!({"name": "n3"})).await;
    let r = post(&stack, &key, &three, &tag()).await;
    assert_eq!(r.status(), 402, "the wallet affords one answer, not three");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "insufficient_credits");
    let topup = json!({"amount_usd": "0.15", "multiplier": 1, "idempotency_key": tag()});
    assert_eq!(
        admin(&stack, "POST", &format!("/admin/v1/accounts/{account}/topups"), Some(topup)).await.0,
        200
    );
    let r = post(&stack, &key, &three, &tag()).await;
    assert_eq!(r.status(), 200, "$0.35 affords three");
}

#[tokio::test]
async fn a_call_capped_to_what_the_wallet_affords_is_paid_in_full_by_its_hold() {
    let stack = Stack::demo();
    wait_for(&stack.admin);
    // No output limit of its own: sent with the cap the wallet affords,
    // one more field in the body that the provider counts as input.
    for (format, model) in [
        ("openai", "gpt-5.5"),
        ("responses", "gpt-5.5"),
        ("gemini", "gemini-3-flash-preview"),
        ("gemini", "gpt-5.5"),
    ] {
        let (account, _, key) = customer(&stack, "pro", "0.0006", 1, json!({"name": "short"})).await;
        let c = common::call(format, model, false, "hello there");
        let auth = if c.auth.0 == "authorization" { format!("Bearer {key}") } else { key.clone() };
        let r = client()
            .post(stack.url(&c.path))
            .header(c.auth.0, auth)
            .header("x-mock-chunks", "5000")
            .json(&c.body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{format} {model}");
        let id = request_id(&r);
        let _ = r.bytes().await.unwrap();
        let charge = charge_of(&stack, account, &id).await.unwrap();
        assert_eq!(
            (charge["estimated"].clone(), charge["unpaid_nano_usd"].clone()),
            (json!(false), json!(0)),
            "{format} {model}: {charge}"
        );
        assert!(charge["output_tokens"].as_i64().unwrap() < 5000, "capped: {charge}");
        assert!(balance(&stack, account).await >= 0);
    }
}
