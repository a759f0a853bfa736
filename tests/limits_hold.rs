//! Limits that hold (#17), through the real binary: the account's counters
//! survive keys with different limits and changes of limit; the daily cap
//! counts only what it sells and outlives a restart, as do an open minute
//! and each endpoint's hour; a limit refuses before the wallet is asked
//! (429, never 402, and no hold); counting tokens counts against nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, chat, customer, get, held, ADMIN};
use common::{client, repo, start_mock, tag, Guard, Stack, TempDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `conf/demo.yaml` with `plans` (YAML list items) before the demo's own.
fn demo_with(plans: &str) -> String {
    std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen("plans:\n", &format!("plans:\n{plans}"), 1)
}

/// A plan of every model with `limits` (a YAML flow map).
fn plan(name: &str, limits: &str) -> String {
    format!("  - name: {name}\n    models: [\"*\"]\n    limits: {limits}\n")
}

/// A UTC offset in which it is now between 12:00 and 13:00: a daily cap
/// counted there has no midnight during a test, whenever it runs.
fn noon_zone() -> String {
    let hour = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 3600 % 24;
    let offset = 12 - hour as i64; // -11..=12
    format!("{}{:02}:00", if offset < 0 { '-' } else { '+' }, offset.abs())
}

/// A Chat call of `key` with extra headers: status, headers, body.
async fn call_with(
    gateway: &str,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().post(format!("{gateway}/v1/chat/completions")).bearer_auth(key).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.json().await.unwrap_or(Value::Null))
}

async fn call(stack: &Stack, key: &str, t: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    call_with(&stack.gateway, key, &chat("gpt-5.5", 5), &[("x-mock-tag", t)]).await
}

async fn new_key(stack: &Stack, account: i64, limits: Value) -> String {
    let body = json!({"name": tag(), "limits": limits});
    let (s, created) = admin(stack, "POST", &format!("/admin/v1/accounts/{account}/keys"), Some(body)).await;
    assert_eq!(s, 201, "{created}");
    created["key"].as_str().unwrap().to_string()
}

/// Alternates calls of keys `a` and `b` (`n` in all): how many passed;
/// every other one must be a 429 with `code`.
async fn alternate(stack: &Stack, a: &str, b: &str, n: usize, code: &str) -> usize {
    let t = tag();
    let mut passed = 0;
    for i in 0..n {
        let (status, _, doc) = call(stack, if i % 2 == 0 { a } else { b }, &t).await;
        match status {
            200 => passed += 1,
            429 => assert_eq!(doc["error"]["code"], code, "{doc}"),
            other => panic!("call {i}: {other} {doc}"),
        }
    }
    assert_eq!(stack.received(&t).await.len(), passed, "only what passed reached the provider");
    passed
}

/// The demo with plans `daily5` (5 messages a day, in a zone where it is
/// noon) and `hourly5` (5 messages an hour).
fn day_and_hour() -> Stack {
    let daily = format!("{{ daily_messages: 5, timezone: \"{}\" }}", noon_zone());
    Stack::custom(&demo_with(&(plan("daily5", &daily) + &plan("hourly5", "{ rph: { messages: 5 } }"))))
}

/// Key A on `daily5`, and key B of the same account with an override of
/// 6, after calls alternating between them used the day up.
async fn a_day_used_by_two_keys(stack: &Stack) -> (String, String) {
    let (account, _, a) = customer(stack, "daily5", "100", 1, json!({"name": "a"})).await;
    let b = new_key(stack, account, json!({"daily_messages": 6})).await;
    assert_eq!(alternate(stack, &a, &b, 18, "daily_limit").await, 6, "6 in the day, not 5 + 6 (or 17)");
    (a, b)
}

/// What `account` holds once the calls that ended have settled (their
/// holds are let go as they are logged, just after the answer): polled
/// until it is `want`, 5 s at most.
async fn held_settles(stack: &Stack, account: i64, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let h = held(stack, account).await;
        if h == want || Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_accounts_day_and_hour_hold_across_keys_with_different_limits() {
    let stack = day_and_hour();
    let (a, b) = a_day_used_by_two_keys(&stack).await;
    let (_, usage) = get(&stack, &b, "/v1/usage").await;
    assert_eq!(usage["today"], json!({"used": 6, "limit": 6}), "{usage}");
    for key in [&a, &b] {
        let (_, whoami) = get(&stack, key, "/v1/whoami").await;
        assert_eq!(whoami["rate_limits"]["daily_messages"]["remaining"], 0, "{whoami}");
    }

    // The same for the hour.
    let (account, _, a) = customer(&stack, "hourly5", "100", 1, json!({"name": "a"})).await;
    let b = new_key(&stack, account, json!({"rph": 6})).await;
    assert_eq!(alternate(&stack, &a, &b, 18, "rate_limit_exceeded").await, 6, "6 in the hour");
    for (key, limit) in [(&a, 5), (&b, 6)] {
        let (_, whoami) = get(&stack, key, "/v1/whoami").await;
        let rph = &whoami["rate_limits"]["rph"];
        assert_eq!((rph["limit"].as_u64(), rph["remaining"].as_u64()), (Some(limit), Some(0)), "{whoami}");
    }
}

/// `/v1/usage` reads the day's count as the limit less what remains, so a
/// key whose own limit is below the account's count reports its limit.
#[tokio::test]
async fn usage_reports_the_accounts_count_through_a_key_of_a_lower_limit() {
    let stack = day_and_hour();
    let (a, _) = a_day_used_by_two_keys(&stack).await;
    let (_, usage) = get(&stack, &a, "/v1/usage").await;
    assert_eq!(usage["today"], json!({"used": 6, "limit": 5}), "{usage}");
}

#[tokio::test]
async fn a_changed_rpm_judges_the_calls_already_made() {
    let stack = Stack::custom(&demo_with(&plan("minute5", "{ rpm: 5 }")));
    let (_, key_id, key) = customer(&stack, "minute5", "100", 1, json!({"name": "k"})).await;
    let started = Instant::now();
    let t = tag();
    for i in 0..5 {
        assert_eq!(call(&stack, &key, &t).await.0, 200, "call {i}");
    }
    let patch = |limits: Value| {
        let path = format!("/admin/v1/keys/{key_id}");
        let stack = &stack;
        async move {
            let (s, view) = admin(stack, "PATCH", &path, Some(json!({"limits": limits}))).await;
            assert_eq!(s, 200, "{view}");
        }
    };
    patch(json!({"rpm": 3})).await;
    let (status, h, doc) = call(&stack, &key, &t).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "lowered to 3");
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    patch(json!({"rpm": null})).await;
    let (status, h, _) = call(&stack, &key, &t).await;
    assert_eq!(status, 429, "back to the plan's 5: five already made");
    assert_eq!(h["x-ratelimit-limit-requests"], "5");
    patch(json!({"rpm": 6})).await;
    assert_eq!(call(&stack, &key, &t).await.0, 200, "raised to 6: one more");
    assert_eq!(call(&stack, &key, &t).await.0, 429);
    assert_eq!(stack.received(&t).await.len(), 6);
    assert!(started.elapsed() < Duration::from_secs(55), "all in one minute: {:?}", started.elapsed());
}

/// A gateway process on `config` and `db`, against the mock at `mock`.
struct Gateway {
    url: String,
    admin: String,
    _child: Guard,
}

impl Gateway {
    fn start(config: &Path, mock: &str, db: &Path) -> Self {
        let (url, admin, child) = common::serve_on_store(config, mock, db, None);
        Self { url, admin, _child: Guard(child) }
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req =
            client().request(method.parse().unwrap(), format!("{}{path}", self.admin)).bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A new account on `plan` with $100 and a key.
    async fn customer(&self, plan: &str) -> (i64, String) {
        let account =
            self.admin("POST", "/admin/v1/accounts", Some(json!({"name": tag(), "plan": plan}))).await;
        let id = account["id"].as_i64().unwrap();
        let topup = json!({"amount_usd": "100", "multiplier": 1, "idempotency_key": tag()});
        self.admin("POST", &format!("/admin/v1/accounts/{id}/topups"), Some(topup)).await;
        let key =
            self.admin("POST", &format!("/admin/v1/accounts/{id}/keys"), Some(json!({"name": "k"}))).await;
        (id, key["key"].as_str().unwrap().to_string())
    }

    /// The account's charges, once `at_least` of them are in the ledger (5 s at most).
    async fn charges(&self, account: i64, at_least: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ledger = self.admin("GET", &format!("/admin/v1/ledger?account={account}"), None).await;
            let charges: Vec<Value> = ledger["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "charge")
                .cloned()
                .collect();
            if charges.len() >= at_least || Instant::now() > deadline {
                return charges;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, key: &str, path: &str) -> Value {
        client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_daily_cap_counts_what_it_sells_and_outlives_a_restart() {
    let dir = TempDir::new();
    let (db, config) = (dir.0.join("tollgate.db"), dir.0.join("tollgate.yaml"));
    let daily = format!("{{ daily_messages: 5, timezone: \"{}\" }}", noon_zone());
    std::fs::write(&config, demo_with(&(plan("daily5", &daily) + &plan("minute3", "{ rpm: 3 }")))).unwrap();
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let first = Gateway::start(&config, &mock, &db);
    let (account, key) = first.customer("daily5").await;
    let body = chat("gpt-5.5", 5);

    // Five provider failures: none billed, none counted against the day.
    for status in ["500", "500", "500", "502", "502"] {
        let (got, _, doc) = call_with(&first.url, &key, &body, &[("x-mock-status", status)]).await;
        assert!(got >= 500, "the provider's {status} reaches the caller as an error: {got} {doc}");
    }
    for i in 0..5 {
        let (status, _, doc) = call_with(&first.url, &key, &body, &[]).await;
        assert_eq!(status, 200, "billed call {i}: the failures took nothing from the day: {doc}");
    }
    let (status, _, doc) = call_with(&first.url, &key, &body, &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("daily_limit")), "{doc}");
    let charges = first.charges(account, 5).await;
    assert_eq!(charges.len(), 5, "only the answered calls are billed: {charges:?}");

    // A minute's window open at the restart.
    let (_, minute_key) = first.customer("minute3").await;
    let opened = Instant::now();
    for i in 0..3 {
        assert_eq!(call_with(&first.url, &minute_key, &body, &[]).await.0, 200, "call {i}");
    }
    assert_eq!(call_with(&first.url, &minute_key, &body, &[]).await.0, 429);

    // SIGKILL, and again on the same store.
    drop(first);
    let second = Gateway::start(&config, &mock, &db);
    let (status, _, doc) = call_with(&second.url, &key, &body, &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("daily_limit")), "no new day: {doc}");
    let usage = second.get(&key, "/v1/usage").await;
    assert_eq!(usage["today"], json!({"used": 5, "limit": 5}), "{usage}");
    assert_eq!(second.charges(account, 5).await.len(), 5);

    let (status, h, doc) = call_with(&second.url, &minute_key, &body, &[]).await;
    assert!(opened.elapsed() < Duration::from_secs(55), "the restart took a minute: {:?}", opened.elapsed());
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    let wait: u64 = h["retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 60_000 - opened.elapsed().as_millis() as u64 + 5_000, "{wait}");
    let whoami = second.get(&minute_key, "/v1/whoami").await;
    assert_eq!(whoami["rate_limits"]["rpm"]["remaining"], 0, "{whoami}");
}

/// An embeddings call of `key` on `gateway`: status and body.
async fn embed(gateway: &str, key: &str) -> (u16, Value) {
    let body = json!({"model": "text-embedding-3-small", "input": "to embed"});
    let r =
        client().post(format!("{gateway}/v1/embeddings")).bearer_auth(key).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_restart_counts_embeddings_in_their_own_hour_not_in_messages() {
    let dir = TempDir::new();
    let (db, config) = (dir.0.join("tollgate.db"), dir.0.join("tollgate.yaml"));
    std::fs::write(&config, demo_with(&plan("hours", "{ rph: { embeddings: 3, messages: 2 } }"))).unwrap();
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let first = Gateway::start(&config, &mock, &db);
    let (account, key) = first.customer("hours").await;
    let body = chat("gpt-5.5", 5);
    for i in 0..3 {
        let (status, doc) = embed(&first.url, &key).await;
        assert_eq!(status, 200, "embeddings call {i}: {doc}");
    }
    let (status, doc) = embed(&first.url, &key).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    assert_eq!(call_with(&first.url, &key, &body, &[]).await.0, 200, "messages have an hour of their own");
    let charges = first.charges(account, 4).await;
    assert_eq!(charges.len(), 4, "three embeddings and a message billed: {charges:?}");

    // SIGKILL, and again on the same store: the ledger's four calls are
    // counted again, each in its own endpoint's hour.
    drop(first);
    let second = Gateway::start(&config, &mock, &db);
    let (status, doc) = embed(&second.url, &key).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (429, Some("rate_limit_exceeded")),
        "the hour's three embeddings outlive the restart: {doc}"
    );
    let (status, _, doc) = call_with(&second.url, &key, &body, &[]).await;
    assert_eq!(status, 200, "one message of two used, not four (the embeddings are not messages): {doc}");
    let (status, _, doc) = call_with(&second.url, &key, &body, &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    assert_eq!(second.charges(account, 5).await.len(), 5);
}

#[tokio::test]
async fn a_key_over_its_rpm_is_refused_before_the_wallet_is_asked() {
    let stack = Stack::custom(&demo_with(&plan("minute2", "{ rpm: 2 }")));
    // $0.01: a call of up to 100,000 output tokens ($1 at $10 a million) cannot be paid.
    let (account, _, key) = customer(&stack, "minute2", "0.01", 1, json!({"name": "k"})).await;
    let dear = chat("gpt-5.5", 100_000);
    let t = tag();
    assert_eq!(call(&stack, &key, &t).await.0, 200);
    let (status, _, doc) = call_with(&stack.gateway, &key, &dear, &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (402, Some("insufficient_credits")), "{doc}");
    assert_eq!(call(&stack, &key, &t).await.0, 200, "the refused call gave its minute back");
    for _ in 0..3 {
        let (status, _, doc) = call_with(&stack.gateway, &key, &dear, &[]).await;
        assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    }
    assert_eq!(held_settles(&stack, account, 0).await, 0);
}

#[tokio::test]
async fn a_flood_over_one_keys_rpm_takes_no_money_from_the_other_keys() {
    let stack = Stack::custom(&demo_with(&plan("open", "{ concurrent: 100 }")));
    // Each call holds about $0.01 (1,000 output tokens at $10 a million):
    // the wallet holds four at once, not five.
    let (account, _, limited) =
        customer(&stack, "open", "0.045", 1, json!({"name": "a", "limits": {"rpm": 3}})).await;
    let other = new_key(&stack, account, json!({})).await;
    let body = chat("gpt-5.5", 1_000);
    let slow = |key: String| {
        let (url, body) = (stack.gateway.clone(), body.clone());
        tokio::spawn(async move { call_with(&url, &key, &body, &[("x-mock-latency-ms", "15000")]).await.0 })
    };
    let first = slow(limited.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let one = loop {
        let h = held(&stack, account).await;
        if h > 0 {
            break h;
        }
        assert!(Instant::now() < deadline, "the first call never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rest = [slow(limited.clone()), slow(limited.clone())];
    while held(&stack, account).await < 3 * one {
        assert!(Instant::now() < deadline, "the three calls never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fifty more over the limit at once, while the other key calls.
    let flood =
        futures_util::future::join_all((0..50).map(|_| call_with(&stack.gateway, &limited, &body, &[])));
    let others = async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(call_with(&stack.gateway, &other, &body, &[]).await.0);
        }
        statuses
    };
    let (flood, others) = tokio::join!(flood, others);
    assert!(
        flood.iter().all(|r| r.0 == 429 && r.2["error"]["code"] == "rate_limit_exceeded"),
        "{:?}",
        flood.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(others, vec![200; 5], "the other key is never refused for money the flood held");
    assert!(!first.is_finished(), "the slow calls are still in flight");
    assert_eq!(
        held_settles(&stack, account, 3 * one).await,
        3 * one,
        "held: what the three admitted calls hold"
    );
    assert_eq!(first.await.unwrap(), 200);
    for r in rest {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(held_settles(&stack, account, 0).await, 0);
}

#[tokio::test]
async fn counting_tokens_is_free_and_counts_against_no_limit() {
    let limits = format!("{{ daily_messages: 1, rpm: 1, concurrent: 1, timezone: \"{}\" }}", noon_zone());
    let stack = Stack::custom(&demo_with(&plan("tight", &limits)));
    let (account, _, key) = customer(&stack, "tight", "0.001", 1, json!({"name": "k"})).await;
    let t = tag();
    let count = || {
        let (url, key, t) = (stack.url("/v1/messages/count_tokens"), key.clone(), t.clone());
        async move {
            let r = client()
                .post(url)
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
                .header("x-mock-tag", t)
                .json(&json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "how many?"}]}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Ten at once (over the concurrency of 1), then ten one by one (over the minute's 1).
    let mut answers = futures_util::future::join_all((0..10).map(|_| count())).await;
    for _ in 0..10 {
        answers.push(count().await);
    }
    for (status, doc) in &answers {
        assert_eq!(*status, 200, "{doc}");
        assert!(doc["input_tokens"].as_u64().is_some_and(|n| n > 0), "{doc}");
    }
    let (_, whoami) = get(&stack, &key, "/v1/whoami").await;
    let limits = &whoami["rate_limits"];
    for kind in ["rpm", "daily_messages", "concurrent"] {
        assert_eq!(limits[kind]["remaining"], 1, "{kind} untouched: {whoami}");
    }
    assert_eq!(held(&stack, account).await, 0, "nothing held, ever");
    let (_, ledger) = admin(&stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    assert!(ledger["entries"].as_array().unwrap().iter().all(|e| e["kind"] != "charge"), "{ledger}");
    let received = stack.received(&t).await;
    assert_eq!(received.len(), 20);
    for r in &received {
        assert!(r["path"].as_str().unwrap().ends_with("/count_tokens"), "{r}");
        assert!(
            r["body"].get("max_tokens").is_none(),
            "no max_tokens the caller did not send: {}",
            r["body"]
        );
    }
    // A message still passes, once.
    let url = stack.url("/v1/messages");
    let message = |key: String| {
        let url = url.clone();
        async move {
            client()
            .post(url)
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    assert_eq!(message(key.clone()).await, 200, "the day's and the minute's one message");
    assert_eq!(message(key.clone()).await, 429);
    assert_eq!(count().await.0, 200, "counting still passes with every limit used");
}
