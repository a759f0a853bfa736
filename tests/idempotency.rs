//! `Idempotency-Key` through the real binary: a key is bound to the
//! request it was first used with (another request under it is a 422, in
//! the caller's format, unbilled) and to the API key that sent it; a replay
//! passes the access rules first; two gateway processes on one store run a
//! key once; an answer past the memory bound is not replayed, and its call
//! is billed once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, chat, customer, DEMO_ACCOUNT};
use common::{client, repo, start_mock, tag, wait_for, Guard, Stack, TempDir, KEY};
use serde_json::{json, Value};

/// A chat call with `key`, `idem` as its `Idempotency-Key`, tagged `t`.
async fn send(stack_url: &str, key: &str, idem: &str, t: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{stack_url}/v1/chat/completions"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .header("x-mock-tag", t)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The charges of `account` in its ledger, once the writer has moved them.
async fn charges(stack: &Stack, account: i64, expected: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // Past what is expected, wait a little longer for any extra to show.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let (_, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
        let found: Vec<Value> =
            ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").cloned().collect();
        if found.len() >= expected || std::time::Instant::now() > deadline {
            return found;
        }
    }
}

/// The demo stack once its admin API listens too (it may come up after
/// the proxy).
fn demo() -> Stack {
    let stack = Stack::demo();
    wait_for(&stack.admin);
    stack
}

fn replayed(r: &reqwest::Response) -> bool {
    r.headers().get("idempotent-replayed").is_some()
}

#[tokio::test]
async fn another_request_under_a_key_is_a_422_in_the_callers_format_and_unbilled() {
    let stack = demo();
    let (account, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "idem"})).await;
    let t = tag();
    let first = send(&stack.gateway, &key, "k-1", &t, &chat("gpt-5.5", 20)).await;
    assert_eq!(first.status(), 200);
    let first_body = first.text().await.unwrap();

    let other_prompt =
        json!({"model": "gpt-5.5", "max_tokens": 20, "messages": [{"role": "user", "content": "bye"}]});
    let other_model = chat("claude-sonnet-4-6", 20);
    for body in [other_prompt, other_model] {
        let r = send(&stack.gateway, &key, "k-1", &t, &body).await;
        assert_eq!(r.status(), 422);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["error"]["code"], "idempotency_key_reused", "{doc}");
        assert_eq!(doc["error"]["type"], "invalid_request_error");
    }
    // The same path in other formats: the Anthropic and Gemini error documents.
    let anthropic = json!({"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    let messages = |body: &Value| {
        client()
            .post(stack.url("/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .header("idempotency-key", "k-2")
            .header("x-mock-tag", &t)
            .json(body)
            .send()
    };
    assert_eq!(messages(&anthropic).await.unwrap().status(), 200);
    let mut changed = anthropic.clone();
    changed["max_tokens"] = json!(21);
    let r = messages(&changed).await.unwrap();
    assert_eq!(r.status(), 422);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["type"].clone(), doc["error"]["type"].clone()),
        (json!("error"), json!("invalid_request_error"))
    );
    let gemini = |text: &str| {
        client()
            .post(stack.url("/v1beta/models/gemini-3-flash-preview:generateContent"))
            .header("x-goog-api-key", &key)
            .header("idempotency-key", "k-3")
            .header("x-mock-tag", &t)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}))
            .send()
    };
    assert_eq!(gemini("hi").await.unwrap().status(), 200);
    let r = gemini("other").await.unwrap();
    assert_eq!(r.status(), 422);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["error"]["code"].clone(), doc["error"]["status"].clone()),
        (json!(422), json!("INVALID_ARGUMENT"))
    );

    // The same request still gets its answer.
    let again = send(&stack.gateway, &key, "k-1", &t, &chat("gpt-5.5", 20)).await;
    assert!(replayed(&again));
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(stack.received(&t).await.len(), 3, "each key went upstream once; no 422 did");
    assert_eq!(charges(&stack, account, 3).await.len(), 3, "the 422s and the replay are unbilled");
}

#[tokio::test]
async fn a_key_is_scoped_to_the_api_key_that_sent_it() {
    let stack = demo();
    let (account, _, first_key) = customer(&stack, "pro", "5", 1, json!({"name": "all"})).await;
    let keys = format!("/admin/v1/accounts/{account}/keys");
    let create = |body: Value| admin(&stack, "POST", &keys, Some(body));
    let (_, gemini_only) =
        create(json!({"name": "gemini", "models": ["google/gemini-3-flash-preview"]})).await;
    let gemini_only = gemini_only["key"].as_str().unwrap().to_string();
    let (_, second) = create(json!({"name": "second"})).await;
    let second = second["key"].as_str().unwrap().to_string();
    let t = tag();
    let gpt = chat("gpt-5.5", 20);
    let first = send(&stack.gateway, &first_key, "shared", &t, &gpt).await;
    assert_eq!(first.status(), 200);
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_string();

    // A key allowed only Gemini does not get the GPT answer: its own refusal.
    let r = send(&stack.gateway, &gemini_only, "shared", &t, &gpt).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "upgrade_required");
    // Its own call under the same key runs.
    let r = send(&stack.gateway, &gemini_only, "shared", &t, &chat("gemini-3-flash-preview", 20)).await;
    assert_eq!(r.status(), 200);
    assert!(!replayed(&r));
    // Another key of the account with the very same request runs anew.
    let r = send(&stack.gateway, &second, "shared", &t, &gpt).await;
    assert_eq!(r.status(), 200);
    assert!(!replayed(&r));
    let second_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let doc: Value = r.json().await.unwrap();
    assert!(doc["id"].is_string());

    assert_eq!(stack.received(&t).await.len(), 3);
    let billed: Vec<String> = charges(&stack, account, 3)
        .await
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(billed.len(), 3, "{billed:?}");
    assert!(billed.contains(&first_id) && billed.contains(&second_id));
}

#[tokio::test]
async fn a_replay_is_refused_once_the_account_is_suspended_or_the_key_revoked() {
    let stack = demo();
    let (account, key_id, key) = customer(&stack, "pro", "5", 1, json!({"name": "idem"})).await;
    let t = tag();
    let body = chat("gpt-5.5", 20);
    assert_eq!(send(&stack.gateway, &key, "r-1", &t, &body).await.status(), 200);
    assert!(replayed(&send(&stack.gateway, &key, "r-1", &t, &body).await));

    let status = |s: &str| json!({"status": s});
    admin(&stack, "PATCH", &format!("/admin/v1/accounts/{account}"), Some(status("suspended"))).await;
    let r = send(&stack.gateway, &key, "r-1", &t, &body).await;
    assert_eq!(r.status(), 403);
    assert!(!replayed(&r));
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "account_suspended");

    admin(&stack, "PATCH", &format!("/admin/v1/accounts/{account}"), Some(status("active"))).await;
    assert!(replayed(&send(&stack.gateway, &key, "r-1", &t, &body).await), "active again");
    let (s, _) = admin(&stack, "DELETE", &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(s, 200);
    let r = send(&stack.gateway, &key, "r-1", &t, &body).await;
    assert_eq!(r.status(), 401);
    assert!(!replayed(&r));
    assert_eq!(stack.received(&t).await.len(), 1);
}

/// A gateway process on `db`, as an upgrade's old and new ones are.
fn gateway(mock: &str, db: &std::path::Path) -> (String, Guard) {
    let (url, _, child) = common::serve_on_store(&repo().join("conf/demo.yaml"), mock, db, None);
    (url, Guard(child))
}

#[tokio::test]
async fn two_processes_on_one_store_run_each_key_once() {
    let dir = TempDir::new();
    let db = dir.0.join("tollgate.db");
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    // One after the other: the first creates the store and its accounts.
    let (a, _a) = gateway(&mock, &db);
    let (b, _b) = gateway(&mock, &db);
    let run = std::process::id();
    let mut calls = Vec::new();
    for i in 0..40 {
        let t = tag();
        let idem = format!("dual-{run}-{i}");
        let body = json!({"model": "gpt-5.5", "max_tokens": 20, "messages": [{"role": "user", "content": format!("call {i}")}]});
        let (a, b) = (a.clone(), b.clone());
        calls.push(tokio::spawn(async move {
            let one = |url: String| {
                let (idem, t, body) = (idem.clone(), t.clone(), body.clone());
                async move {
                    let r = client()
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(KEY)
                        .header("idempotency-key", &idem)
                        .header("x-mock-tag", &t)
                        .header("x-mock-latency-ms", "30")
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), replayed(&r))
                }
            };
            let (x, y) = tokio::join!(one(a), one(b));
            (t, x, y)
        }));
    }
    let mock_stack_url = mock.clone();
    for call in calls {
        let (t, x, y) = call.await.unwrap();
        for (status, _) in [x, y] {
            assert!(status == 200 || status == 409, "{status}");
        }
        let ran = [x, y].iter().filter(|(s, replay)| *s == 200 && !replay).count();
        assert_eq!(ran, 1, "one of the two ran: {x:?} {y:?}");
        let url = format!("{mock_stack_url}/_mock/requests?tag={t}");
        let received: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(received.len(), 1, "{t} went upstream once");
    }
}

#[tokio::test]
async fn an_answer_past_the_memory_bound_is_not_replayed_and_its_call_is_billed_once() {
    let dir = TempDir::new();
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
        "billing:\n",
        "billing:\n  idempotency_memory_bytes: 4096\n",
        1,
    );
    let config = dir.0.join("tollgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stack = Stack::with_config(&config, Some(dir), &[]);
    wait_for(&stack.admin);
    let t = tag();
    let body = chat("gpt-5.5", 20);
    // Within the bound: kept and replayed.
    assert_eq!(send(&stack.gateway, KEY, "small", &t, &body).await.status(), 200);
    assert!(replayed(&send(&stack.gateway, KEY, "small", &t, &body).await));

    let big = || {
        client()
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("idempotency-key", "big")
            .header("x-mock-tag", &t)
            .header("x-mock-pad-bytes", "8192")
            .json(&body)
            .send()
    };
    let first = big().await.unwrap();
    assert_eq!(first.status(), 200);
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(first.text().await.unwrap().len() > 8192, "the caller got the whole answer");
    let retry = big().await.unwrap();
    assert_eq!(retry.status(), 409);
    let doc: Value = retry.json().await.unwrap();
    assert_eq!(doc["error"]["code"], "idempotency_answer_not_kept", "{doc}");
    assert_eq!(stack.received(&t).await.len(), 2, "small once, big once: the retry did not run");
    let billed = charges(&stack, DEMO_ACCOUNT, 2).await;
    assert_eq!(billed.len(), 2, "{billed:?}");
    assert_eq!(billed.iter().filter(|e| e["request_id"] == first_id.as_str()).count(), 1);
}

#[tokio::test]
async fn a_call_that_runs_past_the_lease_keeps_its_key() {
    // The running mark is renewed while its call lives, as its hold is: a
    // retry while a long stream runs is a 409 however long it runs, then
    // the replay (found by tests/bill_adversary.rs).
    let dir = TempDir::new();
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
        "billing:\n",
        "billing:\n  hold_lease_seconds: 1\n",
        1,
    );
    let config = dir.0.join("tollgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stack = Stack::with_config(&config, Some(dir), &[]);
    wait_for(&stack.admin);
    let t = tag();
    let body = json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let send = || {
        client()
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("idempotency-key", "long-call")
            .header("x-mock-tag", &t)
            .header("x-mock-chunks", "40")
            .header("x-mock-chunk-delay-ms", "100")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    for _ in 0..2 {
        // 0.2 s and 1.7 s in, well past the 1 s lease the second time.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let retry = send().await.unwrap();
        assert_eq!(retry.status(), 409, "the first still runs");
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    }
    let answer = first.text().await.unwrap();
    assert!(answer.contains("[DONE]"));
    let replay = send().await.unwrap();
    assert!(replayed(&replay));
    assert_eq!(replay.text().await.unwrap(), answer);
    assert_eq!(stack.received(&t).await.len(), 1, "it ran once");
}

/// A provider that sends its whole stream and then cuts the connection
/// (instead of ending it cleanly): the caller had the whole answer, so the
/// call completed. Its key keeps the answer for a retry, which is replayed,
/// and the call is billed once; relayed as it came or translated, to every
/// caller format (a Gemini stream's end is its `finishReason` chunk, with
/// its count).
#[tokio::test]
async fn a_stream_cut_after_its_end_completes_its_key() {
    let stack = demo();
    let cases = [
        ("openai", "gpt-5.5"),
        ("anthropic", "claude-sonnet-4-6"),
        ("responses", "gpt-5.5"),
        ("gemini", "gemini-3-flash-preview"),
        ("openai", "claude-sonnet-4-6"),
        ("gemini", "gpt-5.5"),
        ("anthropic", "gemini-3-flash-preview"),
    ];
    for (n, (format, model)) in cases.into_iter().enumerate() {
        let c = common::call(format, model, true, "hi");
        let idem = format!("cut-after-end-{n}-{}", tag());
        let headers =
            [("idempotency-key", idem.as_str()), ("x-mock-fault", "cut-after-end"), ("x-mock-chunks", "3")];
        let first = stack.send(&c, &headers).await;
        assert_eq!(first.status(), 200, "{format} to {model}");
        let id = first.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = first.text().await.unwrap();
        let retry = stack.send(&c, &headers).await;
        assert_eq!(retry.status(), 200, "{format} to {model}: the retry");
        assert!(replayed(&retry), "{format} to {model}: the retry ran again instead of its replay");
        assert_eq!(retry.text().await.unwrap(), body, "{format} to {model}: the replay is the answer");
        let charge = common::money::charge_of(&stack, DEMO_ACCOUNT, &id).await;
        let charge = charge.unwrap_or_else(|| panic!("{format} to {model}: not billed"));
        assert_eq!(
            charge["estimated"], false,
            "{format} to {model}: billed on the provider's count: {charge}"
        );
    }
}
