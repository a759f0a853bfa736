//! Limits that hold (#17), through the real binary, continued: `rpm` is
//! the key's total across models (a class's own limit on top); the
//! rate-limit headers and `whoami` tell the truth; a limit of 0 blocks
//! with a 403 and takes nothing; a change of limit applies to the calls in
//! flight; `rph.images` is refused; a model outside the plan is a 404; a
//! plan change moves the daily cap's time zone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, customer, get, held};
use common::{client, free_port, repo, tag, Stack};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OPUS: &str = "  - id: anthropic/claude-opus-4-7
    aliases: [claude-opus-4-7]
    provider: anthropic
    upstream_model: claude-opus-4-7
    display_name: Claude Opus 4.7
    class: opus
    price: { input: \"5\", output: \"25\", cache_read: \"0.50\", cache_write: \"6.25\" }
";

/// `conf/demo.yaml` with an Opus model of class `opus`, and `plans` (YAML
/// list items) before the demo's own.
fn demo_with(plans: &str) -> String {
    std::fs::read_to_string(repo().join("conf/demo.yaml"))
        .unwrap()
        .replacen("server:\n", "server:\n  max_connections_per_address: 4096\n", 1)
        .replacen("models:\n", &format!("models:\n{OPUS}"), 1)
        .replacen("plans:\n", &format!("plans:\n{plans}"), 1)
}

fn plan(name: &str, limits: &str) -> String {
    format!("  - name: {name}\n    models: [\"*\"]\n    limits: {limits}\n")
}

type Answer = (u16, reqwest::header::HeaderMap, Value);

/// A call of `key` in `format` (`openai`, `responses`, `anthropic`,
/// `gemini`) to `model`, with extra headers.
async fn send(stack: &Stack, format: &str, key: &str, model: &str, headers: &[(&str, &str)]) -> Answer {
    let mut c = common::call(format, model, false, "hi");
    c.auth.1 = if c.auth.0 == "authorization" { format!("Bearer {key}") } else { key.to_string() };
    if format == "anthropic" {
        c.body["max_tokens"] = json!(5);
    }
    let mut req = client().post(stack.url(&c.path)).header(c.auth.0, &c.auth.1).json(&c.body);
    if format == "anthropic" {
        req = req.header("anthropic-version", "2023-06-01");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.json().await.unwrap_or(Value::Null))
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name).map_or_else(|| panic!("no {name} in {h:?}"), |v| v.to_str().unwrap().to_string())
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
async fn rpm_is_the_keys_total_across_models_and_a_class_has_its_own_on_top() {
    let stack = Stack::custom(&demo_with(
        &(plan("minute5", "{ rpm: 5 }") + &plan("opus2", "{ rpm: 5, rpm_by_class: { opus: 2 } }")),
    ));
    let (_, _, key) = customer(&stack, "minute5", "100", 1, json!({"name": "k"})).await;
    let started = Instant::now();
    let t = tag();
    let models = ["gpt-5.5", "claude-sonnet-4-6", "gemini-3-flash-preview"];
    let mut passed = 0;
    for i in 0..15 {
        let (status, _, doc) = send(&stack, "openai", &key, models[i % 3], &[("x-mock-tag", &t)]).await;
        match status {
            200 => passed += 1,
            429 => assert_eq!(doc["error"]["code"], "rate_limit_exceeded", "{doc}"),
            other => panic!("{other}: {doc}"),
        }
    }
    assert_eq!(passed, 5, "five a minute for the key, not five per class");
    assert_eq!(stack.received(&t).await.len(), 5);

    // Opus at most 2 of the 5, however they arrive; a refused Opus call
    // takes nothing from the key's 5.
    let (_, _, key) = customer(&stack, "opus2", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let calls = (0..20).map(|i| {
        let (key, t) = (key.clone(), t.clone());
        let model = if i % 2 == 0 { "claude-opus-4-7" } else { "claude-sonnet-4-6" };
        let stack = &stack;
        async move { (model, send(stack, "anthropic", &key, model, &[("x-mock-tag", &t)]).await) }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok = |model: &str| answers.iter().filter(|(m, a)| *m == model && a.0 == 200).count();
    assert_eq!(
        ok("claude-opus-4-7") + ok("claude-sonnet-4-6"),
        5,
        "{:?}",
        answers.iter().map(|a| a.1 .0).collect::<Vec<_>>()
    );
    assert_eq!(ok("claude-opus-4-7"), 2, "Opus: 2 a minute");
    for (model, (status, _, doc)) in &answers {
        assert!(
            *status == 200 || (*status == 429 && doc["error"]["type"] == "rate_limit_error"),
            "{model}: {status} {doc}"
        );
    }
    let (status, h, _) = send(&stack, "anthropic", &key, "claude-opus-4-7", &[]).await;
    assert_eq!(status, 429);
    assert_eq!(header(&h, "anthropic-ratelimit-requests-remaining"), "0");
    assert_eq!(stack.received(&t).await.len(), 5);
    assert!(started.elapsed() < Duration::from_secs(55), "one minute's calls: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_headers_and_whoami_report_the_rpm_never_the_concurrency() {
    let stack = Stack::custom(&demo_with(&plan("c4r10", "{ concurrent: 4, rpm: 10 }")));
    let (_, _, key) = customer(&stack, "c4r10", "100", 1, json!({"name": "k"})).await;
    let started = Instant::now();
    let (_, whoami) = get(&stack, &key, "/v1/whoami").await;
    assert_eq!(whoami["rate_limits"]["rpm"]["remaining"], 10, "{whoami}");
    for i in 0..10u64 {
        let left = (9 - i).to_string();
        if i % 2 == 0 {
            let (status, h, doc) = send(&stack, "openai", &key, "gpt-5.5", &[]).await;
            assert_eq!(status, 200, "{doc}");
            assert_eq!(header(&h, "x-ratelimit-limit-requests"), "10", "call {i}");
            assert_eq!(header(&h, "x-ratelimit-remaining-requests"), left, "call {i}");
            assert!(header(&h, "x-ratelimit-reset-requests").ends_with('s'));
        } else {
            let (status, h, doc) = send(&stack, "anthropic", &key, "claude-sonnet-4-6", &[]).await;
            assert_eq!(status, 200, "{doc}");
            assert_eq!(header(&h, "anthropic-ratelimit-requests-limit"), "10", "call {i}");
            assert_eq!(header(&h, "anthropic-ratelimit-requests-remaining"), left, "call {i}");
            assert!(h.get("x-ratelimit-limit-requests").is_none(), "OpenAI's headers to OpenAI's callers");
        }
        // The call's slot is freed as it is logged, just after its answer.
        let deadline = Instant::now() + Duration::from_secs(5);
        let whoami = loop {
            let (_, whoami) = get(&stack, &key, "/v1/whoami").await;
            if whoami["rate_limits"]["concurrent"]["remaining"] == 4 || Instant::now() > deadline {
                break whoami;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let limits = &whoami["rate_limits"];
        assert_eq!(limits["rpm"]["remaining"], 9 - i, "after call {i}: {whoami}");
        assert_eq!(limits["concurrent"], json!({"limit": 4, "remaining": 4, "reset_seconds": 0}), "{whoami}");
    }
    let (status, h, doc) = send(&stack, "openai", &key, "gpt-5.5", &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    assert_eq!(header(&h, "x-ratelimit-limit-requests"), "10");
    assert_eq!(header(&h, "x-ratelimit-remaining-requests"), "0");
    for path in ["/v1/whoami", "/v1/usage"] {
        let (_, doc) = get(&stack, &key, path).await;
        assert_eq!(doc["rate_limits"]["rpm"]["remaining"], 0, "{path}: {doc}");
        assert!(
            doc["rate_limits"]["rpm"]["reset_seconds"].as_u64().is_some_and(|s| s > 0 && s <= 60),
            "{doc}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(55), "one minute's calls: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_first_calls_headers_carry_both_limits_apart() {
    let stack = Stack::custom(&demo_with(&plan("c4r10", "{ concurrent: 4, rpm: 10 }")));
    let (_, _, key) = customer(&stack, "c4r10", "100", 1, json!({"name": "k"})).await;
    // A call in flight sees itself among the four slots.
    let (status, h, _) = send(&stack, "openai", &key, "gpt-5.5", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-ratelimit-limit"), "10", "the generic header is the rpm's too");
    assert_eq!(header(&h, "x-ratelimit-remaining"), "9");
    assert_eq!(header(&h, "x-ratelimit-limit-concurrent"), "4");
    assert_eq!(header(&h, "x-ratelimit-remaining-concurrent"), "3");
}

#[tokio::test]
async fn a_limit_of_zero_blocks_with_a_403_and_takes_nothing() {
    let stack = Stack::custom_logged(&demo_with(
        &(plan("open", "{ rpm: 100, rph: { messages: 100 } }")
            + &plan("zero", "{ rpm: 0 }")
            + &plan("opus0", "{ rpm: 100, rpm_by_class: { opus: 0 } }")),
    ));
    let (account, _, _) = customer(&stack, "open", "100", 1, json!({"name": "k"})).await;
    let t = tag();
    let zeros = [
        json!({"rpm": 0}),
        json!({"rph": 0}),
        json!({"daily_messages": 0}),
        json!({"concurrent": 0}),
        json!({"input_tpm": 0}),
    ];
    for limits in zeros {
        let body = json!({"name": tag(), "limits": limits});
        let (s, created) =
            admin(&stack, "POST", &format!("/admin/v1/accounts/{account}/keys"), Some(body)).await;
        assert_eq!(s, 201, "{created}");
        let key = created["key"].as_str().unwrap();
        for (format, model) in [
            ("openai", "gpt-5.5"),
            ("responses", "gpt-5.5"),
            ("anthropic", "claude-sonnet-4-6"),
            ("gemini", "gemini-3-flash-preview"),
        ] {
            let (status, h, doc) = send(&stack, format, key, model, &[("x-mock-tag", &t)]).await;
            assert_eq!(status, 403, "{limits} {format}: {doc}");
            assert!(h.get("retry-after").is_none(), "never a wait to retry after: {h:?}");
            match format {
                "openai" | "responses" => assert_eq!(doc["error"]["code"], "limit_blocked", "{doc}"),
                "anthropic" => {
                    assert_eq!(
                        (doc["type"].as_str(), doc["error"]["type"].as_str()),
                        (Some("error"), Some("permission_error")),
                        "{doc}"
                    )
                }
                _ => assert_eq!(doc["error"]["status"], "PERMISSION_DENIED", "{doc}"),
            }
            let message = doc["error"]["message"].as_str().unwrap();
            let name = limits.as_object().unwrap().keys().next().unwrap();
            assert!(message.contains(name.as_str()), "the message names the limit: {message}");
        }
    }
    // A plan's 0 blocks too; and an odd large limit is just a large limit.
    let (zero_account, _, zero_key) = customer(&stack, "zero", "100", 1, json!({"name": "k"})).await;
    let (status, _, doc) = send(&stack, "openai", &zero_key, "gpt-5.5", &[("x-mock-tag", &t)]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (403, Some("limit_blocked")), "{doc}");
    // A class's 0 blocks that class only.
    let (opus_account, _, opus_key) = customer(&stack, "opus0", "100", 1, json!({"name": "k"})).await;
    let (status, _, doc) = send(&stack, "openai", &opus_key, "claude-opus-4-7", &[("x-mock-tag", &t)]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (403, Some("limit_blocked")), "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().contains("rpm_by_class"), "{doc}");
    assert_eq!(send(&stack, "openai", &opus_key, "claude-sonnet-4-6", &[]).await.0, 200);
    // A bucket smaller than any request: refused, with no wait to retry after (none would help).
    let body = json!({"name": "tiny", "limits": {"input_tpm": 1}});
    let (s, created) =
        admin(&stack, "POST", &format!("/admin/v1/accounts/{opus_account}/keys"), Some(body)).await;
    assert_eq!(s, 201, "{created}");
    let (status, h, doc) = send(&stack, "openai", created["key"].as_str().unwrap(), "gpt-5.5", &[]).await;
    assert_eq!((status, doc["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{doc}");
    assert!(h.get("retry-after").is_none(), "it can never pass: {h:?}");
    let body = json!({"name": "big", "limits": {"rpm": u32::MAX, "rph": u32::MAX, "daily_messages": u32::MAX, "concurrent": u32::MAX, "input_tpm": u64::MAX}});
    let (s, created) =
        admin(&stack, "POST", &format!("/admin/v1/accounts/{zero_account}/keys"), Some(body)).await;
    assert_eq!(s, 201, "{created}");
    let (status, h, doc) = send(&stack, "openai", created["key"].as_str().unwrap(), "gpt-5.5", &[]).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(header(&h, "x-ratelimit-limit-requests"), u32::MAX.to_string());
    assert!(stack.received(&t).await.is_empty(), "nothing blocked reached the provider");
    assert_eq!(held_settles(&stack, account, 0).await, 0);
    assert_eq!(held_settles(&stack, zero_account, 0).await, 0);
    assert_eq!(held_settles(&stack, opus_account, 0).await, 0);
    let log = stack.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn a_lowered_concurrency_counts_the_calls_in_flight() {
    // With the plan's own concurrency, and with none: the calls in flight
    // count against a limit set while they run.
    let stack =
        Stack::custom(&demo_with(&(plan("slots", "{ concurrent: 10 }") + &plan("free", "{ rpm: 1000 }"))));
    for plan in ["slots", "free"] {
        let (_, key_id, key) = customer(&stack, plan, "100", 1, json!({"name": "k"})).await;
        let body = json!({"model": "gpt-5.5", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
        let mut streams = Vec::new();
        for _ in 0..3 {
            let r = client()
                .post(stack.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .header("x-mock-chunks", "40")
                .header("x-mock-chunk-delay-ms", "200")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            streams.push(tokio::spawn(r.text()));
        }
        let patch = json!({"limits": {"concurrent": 1}});
        let (s, view) = admin(&stack, "PATCH", &format!("/admin/v1/keys/{key_id}"), Some(patch)).await;
        assert_eq!(s, 200, "{view}");
        let (status, h, doc) = send(&stack, "openai", &key, "gpt-5.5", &[]).await;
        assert!(streams.iter().all(|s| !s.is_finished()), "{plan}: the streams are still running");
        assert_eq!(
            (status, doc["error"]["code"].as_str()),
            (429, Some("rate_limit_exceeded")),
            "{plan}: {doc}"
        );
        assert!(doc["error"]["message"].as_str().unwrap().contains("concurrent"), "{doc}");
        assert_eq!(header(&h, "x-ratelimit-limit-concurrent"), "1");
        for s in streams {
            assert!(s.await.unwrap().unwrap().contains("[DONE]"));
        }
        // Once they end (the slot is freed as the call is logged), one passes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _, doc) = send(&stack, "openai", &key, "gpt-5.5", &[]).await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 429, "{doc}");
            assert!(Instant::now() < deadline, "{plan}: the slots never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[test]
fn tollgate_check_refuses_an_hourly_limit_on_a_group_nothing_counts() {
    let check = |limits: &str| {
        let dir = common::TempDir::new();
        let config = dir.0.join("tollgate.yaml");
        std::fs::write(&config, demo_with(&plan("img", limits))).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["check", "--config"])
            .arg(&config)
            .env("TOLLGATE_DB", dir.0.join("tollgate.db"))
            .env("TOLLGATE_LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A group no endpoint counts in is refused ...
    let (code, stderr) = check("{ rph: { videos: 10 } }");
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(stderr.contains("rph") && stderr.contains("videos") && stderr.contains("img"), "{stderr}");
    // ... and every endpoint group the gateway counts is taken (images
    // since issue #19 made /v1/images/generations count in its own).
    let (code, stderr) =
        check("{ rph: { messages: 10, responses: 10, images: 10, embeddings: 10, rerank: 10 } }");
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn a_model_outside_the_keys_plan_is_not_found() {
    let stack = Stack::demo();
    let (_, _, starter) = customer(&stack, "starter", "100", 1, json!({"name": "k"})).await;
    let (status, list) = get(&stack, &starter, "/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(!ids.iter().any(|id| id.contains("gpt")), "{ids:?}");
    for id in ["gpt-5.5", "openai/gpt-5.5", "claude-sonnet-4-6"] {
        let (status, doc) = get(&stack, &starter, &format!("/v1/models/{id}")).await;
        assert_eq!(status, 404, "{id}: {doc}");
        assert_eq!(doc["error"]["code"], "model_not_found", "{doc}");
    }
    let (status, doc) = get(&stack, &starter, "/v1/models/gemini-3-flash-preview").await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["id"].as_str().unwrap().contains("gemini-3-flash-preview"), "{doc}");
    let listed_soon = ids.iter().any(|id| id.contains("nano-banana-pro"));
    let (status, _) = get(&stack, &starter, "/v1/models/nano-banana-pro").await;
    assert_eq!(status == 200, listed_soon, "a model coming soon: found as it is listed ({ids:?})");
    // Gemini's spelling of the same question.
    let gemini = |id: &str| {
        client()
            .get(stack.url(&format!("/v1beta/models/{id}")))
            .header("x-goog-api-key", starter.clone())
            .send()
    };
    assert_eq!(gemini("gpt-5.5").await.unwrap().status(), 404);
    assert_eq!(gemini("gemini-3-flash-preview").await.unwrap().status(), 200);
    // A key of every model sees it; a key's own allowlist hides it too.
    let (status, _) = get(&stack, common::KEY, "/v1/models/gpt-5.5").await;
    assert_eq!(status, 200);
    let (_, _, narrow) =
        customer(&stack, "pro", "100", 1, json!({"name": "n", "models": ["google/gemini-3-flash-preview"]}))
            .await;
    assert_eq!(get(&stack, &narrow, "/v1/models/gpt-5.5").await.0, 404);
    assert_eq!(get(&stack, &narrow, "/v1/models/gemini-3-flash-preview").await.0, 200);
}

/// Seconds from now to the next midnight at `offset_hours` east of UTC.
fn to_midnight(offset_hours: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let local = (now + offset_hours * 3_600_000).rem_euclid(86_400_000);
    (86_400_000 - local + 999) / 1000
}

#[tokio::test]
async fn a_plan_change_moves_the_daily_caps_time_zone() {
    let stack = Stack::custom(&demo_with(
        &(plan("tokyo", "{ daily_messages: 10, timezone: \"+09:00\" }")
            + &plan("new-york", "{ daily_messages: 10, timezone: \"-05:00\" }")),
    ));
    let (account, _, key) = customer(&stack, "tokyo", "100", 1, json!({"name": "k"})).await;
    assert_eq!(send(&stack, "openai", &key, "gpt-5.5", &[]).await.0, 200);
    let reset = |path: &'static str| {
        let (stack, key) = (&stack, key.clone());
        async move {
            let (_, doc) = get(stack, &key, path).await;
            doc["rate_limits"]["daily_messages"]["reset_seconds"].as_i64().unwrap()
        }
    };
    // Within a few seconds of the zone's midnight (or a day off, right at it).
    let near = |got: i64, offset: i64| {
        let want = to_midnight(offset);
        let d = (got - want).abs();
        assert!(d <= 5 || d >= 86_400 - 5, "reset in {got} s, {want} s to midnight at {offset:+} h");
    };
    for path in ["/v1/whoami", "/v1/usage"] {
        near(reset(path).await, 9);
    }
    let (s, view) =
        admin(&stack, "PATCH", &format!("/admin/v1/accounts/{account}"), Some(json!({"plan": "new-york"})))
            .await;
    assert_eq!(s, 200, "{view}");
    for path in ["/v1/whoami", "/v1/usage"] {
        near(reset(path).await, -5);
    }
    assert_eq!(send(&stack, "openai", &key, "gpt-5.5", &[]).await.0, 200);
}
