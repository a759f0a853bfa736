//! What the dashboards read, through the binary: the customer's pages of
//! billed requests and daily spend (`/v1/requests`, `/v1/usage/daily`),
//! the console's lists (accounts with a search, an account's keys, the
//! ledger in both orders, usage of every account, plans, live counters),
//! the pages themselves with their Content-Security-Policy, and every page
//! fast with a million ledger rows (aggregates and paging in the store).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, customer};
use common::{client, repo, Stack, TempDir, KEY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn get(stack: &Stack, key: &str, path: &str) -> (u16, Value) {
    let r = client().get(stack.url(path)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn chat(stack: &Stack, key: &str) -> String {
    let body = json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
    let r =
        client().post(stack.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_customer_pages_through_its_accounts_requests_newest_first() {
    let stack = Stack::demo();
    let (_, _, other_key) = customer(&stack, "pro", "5", 1, json!({"name": "other"})).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(chat(&stack, KEY).await);
    }
    let theirs = chat(&stack, &other_key).await;

    let (s, page) = get(&stack, KEY, "/v1/requests?limit=2").await;
    assert_eq!(s, 200, "{page}");
    let listed = |page: &Value| -> Vec<String> {
        page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(&page), [ids[4].clone(), ids[3].clone()]);
    assert_eq!(page["has_more"], true);
    let row = &page["data"][0];
    assert_eq!(row["model"], "openai/gpt-5.5");
    assert!(row["cost_nano_usd"].as_i64().unwrap() > 0 && row["input_tokens"].as_i64().unwrap() > 0, "{row}");
    assert!(row["created_at"].as_str().unwrap().ends_with('Z'));
    let mut seen = listed(&page);
    let mut cursor = page["next_before"].as_str().unwrap().to_string();
    loop {
        let (_, page) = get(&stack, KEY, &format!("/v1/requests?limit=2&before={cursor}")).await;
        seen.extend(listed(&page));
        match page["next_before"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every request once, and never another account's");
    assert!(!seen.contains(&theirs));
    let (_, mine) = get(&stack, &other_key, "/v1/requests").await;
    assert_eq!(listed(&mine), [theirs]);
    // The row's bill is the generation lookup's.
    let (s, bill) = get(&stack, KEY, &format!("/v1/generation?id={}", ids[0])).await;
    assert_eq!((s, &bill["cost_nano_usd"]), (200, &page["data"][1]["cost_nano_usd"]), "{bill}");

    for bad in
        ["/v1/requests?limit=0", "/v1/requests?limit=101", "/v1/requests?before=x", "/v1/usage/daily?days=0"]
    {
        let (s, e) = get(&stack, KEY, bad).await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{bad}: {e}");
    }
    let (s, _) = get(&stack, "sk-tollgate-nope", "/v1/requests").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn the_customer_sees_spend_per_day_with_its_models() {
    let stack = Stack::demo();
    for _ in 0..3 {
        chat(&stack, KEY).await;
    }
    let (s, daily) = get(&stack, KEY, "/v1/usage/daily?days=7").await;
    assert_eq!(s, 200, "{daily}");
    assert_eq!(daily["days"], 7);
    let days = daily["data"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{daily}");
    let today = &days[0];
    assert_eq!(today["requests"], 3);
    let (_, who) = get(&stack, KEY, "/v1/whoami").await;
    assert_eq!(today["cost_nano_usd"], who["total_spent_nano_usd"], "{today} {who}");
    assert_eq!(today["models"]["openai/gpt-5.5"]["requests"], 3);
    let (_, default) = get(&stack, KEY, "/v1/usage/daily").await;
    assert_eq!(default["days"], 30);
}

#[tokio::test]
async fn the_console_lists_accounts_keys_ledger_usage_plans_and_live_counters() {
    let stack = Stack::demo();
    let mut made = Vec::new();
    for name in ["Zeta Labs", "zeta-two", "Omega"] {
        let (s, a) =
            admin(&stack, "POST", "/admin/v1/accounts", Some(json!({"name": name, "plan": "pro"}))).await;
        assert_eq!(s, 201, "{a}");
        made.push(a["id"].as_i64().unwrap());
    }
    let (s, found) = admin(&stack, "GET", "/admin/v1/accounts?search=ZETA", None).await;
    assert_eq!(s, 200, "{found}");
    let names: Vec<&str> =
        found["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Zeta Labs", "zeta-two"]);
    let (_, none) = admin(&stack, "GET", "/admin/v1/accounts?search=%25", None).await;
    assert_eq!(none["data"], json!([]), "% is a character, not a wildcard");
    let (_, first) = admin(&stack, "GET", "/admin/v1/accounts?limit=2", None).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_i64().unwrap();
    let (_, rest) = admin(&stack, "GET", &format!("/admin/v1/accounts?limit=2&after={after}"), None).await;
    assert_eq!(rest["data"][0]["id"].as_i64().unwrap(), after + 1);
    let (s, _) = admin(&stack, "GET", "/admin/v1/accounts?limit=0", None).await;
    assert_eq!(s, 400);

    let account = made[0];
    for name in ["one", "two"] {
        let (s, k) =
            admin(&stack, "POST", &format!("/admin/v1/accounts/{account}/keys"), Some(json!({"name": name})))
                .await;
        assert_eq!(s, 201, "{k}");
    }
    let (s, keys) = admin(&stack, "GET", &format!("/admin/v1/accounts/{account}/keys"), None).await;
    assert_eq!(s, 200, "{keys}");
    let listed: Vec<&str> =
        keys["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["one", "two"]);
    assert!(
        !keys.to_string().contains("key_hash") && keys["data"][0].get("key").is_none(),
        "no secret: {keys}"
    );
    let (s, _) = admin(&stack, "GET", "/admin/v1/accounts/999/keys", None).await;
    assert_eq!(s, 404);

    for _ in 0..3 {
        chat(&stack, KEY).await;
    }
    let (_, all) = admin(&stack, "GET", "/admin/v1/ledger?account=1", None).await;
    let every: Vec<i64> =
        all["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(every.len() >= 4 && every.windows(2).all(|w| w[0] < w[1]), "{all}");
    assert_eq!(all["next_after"], Value::Null);
    let (_, newest) = admin(&stack, "GET", "/admin/v1/ledger?account=1&order=newest&limit=2", None).await;
    let ids: Vec<i64> =
        newest["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [every[every.len() - 1], every[every.len() - 2]]);
    let before = newest["next_before"].as_i64().unwrap();
    let (_, older) =
        admin(&stack, "GET", &format!("/admin/v1/ledger?account=1&before={before}&limit=100"), None).await;
    assert_eq!(older["entries"].as_array().unwrap().len(), every.len() - 2);
    let (_, oldest) = admin(&stack, "GET", "/admin/v1/ledger?account=1&limit=1", None).await;
    assert_eq!(oldest["entries"][0]["id"].as_i64(), Some(every[0]));
    assert_eq!(oldest["next_after"].as_i64(), Some(every[0]));
    let (s, _) = admin(&stack, "GET", "/admin/v1/ledger?account=1&order=sideways", None).await;
    assert_eq!(s, 400);

    let (s, usage) = admin(&stack, "GET", "/admin/v1/usage?days=30", None).await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["account"], Value::Null);
    assert_eq!(usage["total"]["requests"], 3);
    let (_, one) = admin(&stack, "GET", "/admin/v1/usage?account=1&days=1", None).await;
    assert_eq!(one["total"], usage["total"]);

    let (_, plans) = admin(&stack, "GET", "/admin/v1/plans", None).await;
    assert!(plans["data"].as_array().unwrap().iter().any(|p| p["name"] == "pro"), "{plans}");
    let (_, missing) = get(&stack, "sk-tollgate-nope", "/v1/models").await;
    assert!(missing["error"].is_object());
    // A call is counted by its logging hook, after its answer went out:
    // the refused call may not be counted the instant its answer arrives.
    let mut stats = Value::Null;
    for _ in 0..100 {
        let (s, now) = admin(&stack, "GET", "/admin/v1/stats", None).await;
        assert_eq!(s, 200, "{now}");
        stats = now;
        if stats["requests_total"].as_u64().unwrap() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(stats["requests_total"].as_u64().unwrap() >= 4, "{stats}");
    let refused =
        stats["errors"].as_array().unwrap().iter().find(|e| e["code"] == "invalid_api_key").unwrap();
    assert_eq!((refused["status"].as_u64(), refused["count"].as_u64()), (Some(401), Some(1)));
    let metrics = stack.metrics_text().await;
    assert!(
        metrics.contains("tollgate_errors_total{code=\"invalid_api_key\",status=\"401\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_pages_are_served_with_their_policy_and_hold_no_secret() {
    let stack = Stack::demo();
    for (base, path) in [
        (&stack.gateway, "/dashboard"),
        (&stack.gateway, "/dashboard/assets/customer.js"),
        (&stack.gateway, "/dashboard/setup.json"),
        (&stack.admin, "/admin"),
        (&stack.admin, "/admin/assets/admin.js"),
        (&stack.admin, "/admin/assets/style.css"),
    ] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        assert!(!body.contains(KEY) && !body.contains("tollgate-admin-demo"), "{path} holds a secret");
    }
    let (s, setup) = get(&stack, "", "/dashboard/setup.json").await;
    assert_eq!(s, 200);
    assert!(setup["mounts"].as_array().unwrap().iter().any(|m| m["prefix"] == "/"), "{setup}");
    assert_eq!(setup["models"]["anthropic"], "anthropic/claude-sonnet-4-6", "{setup}");
    for path in ["/dashboard/assets/admin.js", "/dashboard/nothing", "/admin"] {
        let r = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = client().post(stack.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client().get(format!("{}/admin/v1/accounts", stack.admin)).send().await.unwrap();
    assert_eq!(r.status(), 401, "the console's page is open; its API is not");
}

/// A million charges on the demo account over 90 days, and 10,000
/// accounts: each page the dashboards read answers from an index or the
/// daily totals, measured through the binary.
#[tokio::test]
async fn every_page_stays_fast_with_a_million_ledger_rows() {
    const ROWS: i64 = 1_000_000;
    let dir = TempDir::new();
    let db = dir.0.join("tollgate.db");
    let day = 86_400_000_i64;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // From 90 days ago to 2 days ago: the limits rebuild nothing at start.
    let (start, step) = (now - 90 * day, 88 * day / ROWS);
    let filled = Instant::now();
    tollgate::store::SqliteStore::open(Some(db.to_str().unwrap())).await.unwrap();
    // Written behind the gateway's back, as an older release's writer
    // would (no `totals_kept`): the store folds them into the day totals
    // when the gateway opens it.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, key_id, model, \
         input_tokens, output_tokens, cached_tokens, request_id, at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
         SELECT 'bulk-' || i, 'charge', 1, 'wallet', -1000, 1, \
         CASE i % 4 WHEN 0 THEN 'openai/gpt-5.5' WHEN 1 THEN 'anthropic/claude-sonnet-4-6' \
         WHEN 2 THEN 'google/gemini-3-flash-preview' ELSE 'openai/gpt-5-mini' END, \
         100, 10, 0, 'req_bulk_' || i, {start} + i * {step} FROM n"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO accounts (name, plan, status, created_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
         SELECT 'bulk account ' || i, 'pro', 'active', 0 FROM n",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    eprintln!("filled {ROWS} ledger rows in {:?}", filled.elapsed());

    let stack = Stack::with_config(&repo().join("conf/demo.yaml"), Some(dir), &[]);
    let (_, demo) = admin(&stack, "GET", "/admin/v1/accounts?search=demo", None).await;
    assert_eq!(demo["data"][0]["id"], 10_001, "the demo account is bootstrapped after the bulk ones: {demo}");
    // The bulk rows are account 1's; the demo key is account 10,001's: add a key to account 1.
    let (s, key) = admin(&stack, "POST", "/admin/v1/accounts/1/keys", Some(json!({"name": "bulk"}))).await;
    assert_eq!(s, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_string();

    let mut timings = Vec::new();
    let mut timed = |name: &'static str, took: Duration| timings.push((name, took));
    let pages: [(&str, &str); 7] = [
        ("ledger, newest page", "/admin/v1/ledger?account=1&order=newest&limit=50"),
        ("ledger, a page deep in", "/admin/v1/ledger?account=1&before=500000&limit=50"),
        ("ledger, oldest page", "/admin/v1/ledger?account=1&limit=50"),
        ("usage, every account, 120 days", "/admin/v1/usage?days=120"),
        ("usage, one account, 30 days", "/admin/v1/usage?account=1&days=30"),
        ("accounts, a search", "/admin/v1/accounts?search=account%209999"),
        ("accounts, a page deep in", "/admin/v1/accounts?after=9000&limit=50"),
    ];
    for (name, path) in pages {
        let at = Instant::now();
        let (s, body) = admin(&stack, "GET", path, None).await;
        timed(name, at.elapsed());
        assert_eq!(s, 200, "{name}: {body}");
    }
    let (_, usage) = admin(&stack, "GET", "/admin/v1/usage?days=120", None).await;
    assert_eq!(usage["total"]["requests"], ROWS, "the daily totals count every row");
    assert_eq!(usage["total"]["cost_nano_usd"], ROWS * 1000);
    for (name, path) in [
        ("customer: recent requests", "/v1/requests?limit=20"),
        ("customer: 30 days", "/v1/usage/daily?days=30"),
        ("customer: whoami", "/v1/whoami"),
    ] {
        let at = Instant::now();
        let (s, body) = get(&stack, &key, path).await;
        timed(name, at.elapsed());
        assert_eq!(s, 200, "{name}: {body}");
    }
    for (name, took) in &timings {
        eprintln!("{name}: {took:?}");
    }
    // Paged and aggregated, each is a few milliseconds; adding up a million
    // rows would take seconds. The bound leaves room for a loaded CI machine.
    for (name, took) in timings {
        assert!(took < Duration::from_millis(750), "{name} took {took:?} with a million ledger rows");
    }
}
