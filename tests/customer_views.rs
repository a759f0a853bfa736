//! Issue #17 item 5, through the binary: `whoami` and `usage` of an
//! account with a million charges in its ledger answer from running totals
//! (fast, and equal to the sums inserted), and one key flooding them slows
//! no other account, no billed call, no idempotent retry and not the
//! ledger writer; the flooding key gets 429 past its allowance. Run with
//! `--nocapture` for the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{chat, customer, get};
use common::{client, repo, tag, Stack, TempDir, KEY};
use serde_json::{json, Value};
use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::calendar::{start_of_day, start_of_month};

const ROWS: i64 = 1_000_000;
const MODELS: [&str; 3] = ["openai/gpt-5.5", "anthropic/claude-sonnet-4-6", "google/gemini-3-flash-preview"];

/// Charge `i` (1..=ROWS) of the seeded history: the same formulas as the SQL.
struct Seeded {
    model: usize,
    input: i64,
    output: i64,
    cached: i64,
    cost: i64,
    at: i64,
}

fn seeded(i: i64, now: i64) -> Seeded {
    Seeded {
        model: (i % 3) as usize,
        input: 100 + i % 1000,
        output: 10 + i % 50,
        cached: i % 7,
        cost: 1 + i % 997,
        at: now - (i % 5_000_000) * 1000 - 1000,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A store whose account 1 (the YAML's `demo`, made by the gateway's
/// first start) has `ROWS` charges by key 1 over the last 58 days: each a
/// wallet posting and its revenue posting, as an older writer kept them
/// (the writer now posts the counter book once per batch and account: a
/// ledger with more rows is the harder read).
async fn seed(db: &std::path::Path, now: i64) {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate!("./migrations").run(&mut conn).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, paid_nano, unpaid_nano, \
         key_id, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens, estimated, request_id, at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         SELECT 'seed-' || i || ':charge', 'charge', 1, 'wallet', -(1 + i % 997), 0, 0, 1, \
         CASE i % 3 WHEN 0 THEN 'openai/gpt-5.5' WHEN 1 THEN 'anthropic/claude-sonnet-4-6' \
         ELSE 'google/gemini-3-flash-preview' END, \
         100 + i % 1000, 10 + i % 50, i % 7, 0, 0, 'seed-' || i, ?1 - (i % 5000000) * 1000 - 1000 FROM n",
    )
    .bind(now)
    .bind(ROWS)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ledger_postings (entry_key, kind, account_id, book, amount_nano, at) \
         SELECT entry_key, kind, account_id, 'revenue', -amount_nano, at FROM ledger_postings WHERE book = 'wallet'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// What whoami and usage must show at `now`, added up from the formulas.
fn truth(seeded_at: i64, now: i64) -> Value {
    let (month, day) = (start_of_month(now), start_of_day(now));
    let mut per_model = [[0i64; 5]; 3];
    let (mut total, mut in_month) = ([0i64; 4], [0i64; 4]);
    let mut today = 0;
    for i in 1..=ROWS {
        let s = seeded(i, seeded_at);
        let m = &mut per_model[s.model];
        for (slot, n) in m.iter_mut().zip([s.input, s.output, s.cached, 1, s.cost]) {
            *slot += n;
        }
        for (slot, n) in total.iter_mut().zip([s.input, s.output, 1, s.cost]) {
            *slot += n;
        }
        if s.at >= month {
            for (slot, n) in in_month.iter_mut().zip([s.input, s.output, 1, s.cost]) {
                *slot += n;
            }
        }
        if s.at >= day && s.at < day + 86_400_000 {
            today += 1;
        }
    }
    let per_model: serde_json::Map<String, Value> = MODELS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let [input, output, cached, requests, spent] = per_model[i];
            let v = json!({"input_tokens": input, "output_tokens": output, "cached_tokens": cached,
                           "requests": requests, "spent_nano_usd": spent});
            (name.to_string(), v)
        })
        .collect();
    json!({"input": total[0], "output": total[1], "requests": total[2], "spent": total[3],
           "per_model": per_model, "today": today,
           "month": {"requests": in_month[2], "tokensIn": in_month[0], "tokensOut": in_month[1],
                     "cost_nano_usd": in_month[3]}})
}

/// Milliseconds of `n` sequential GETs of `path` with `key`, sorted.
async fn timed(stack: &Stack, key: &str, path: &str, n: usize) -> Vec<f64> {
    let http = client();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(stack.url(path)).bearer_auth(key).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    took
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn lag(stack: &Stack) -> Option<u64> {
    let text = stack.metrics_text().await;
    text.lines().find_map(|l| l.strip_prefix("tollgate_journal_lag_records ")?.trim().parse().ok())
}

#[tokio::test]
async fn a_million_ledger_rows_and_a_flooding_key_slow_no_one() {
    let dir = TempDir::new();
    let seeded_at = now_ms();
    let t = Instant::now();
    seed(&dir.0.join("tollgate.db"), seeded_at).await;
    println!("seeded {ROWS} charges ({} postings) in {:.1} s", 2 * ROWS, t.elapsed().as_secs_f64());
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
        "server:\n",
        "server:\n  customer_endpoint_rpm: 1000\n",
        1,
    );
    let config = dir.0.join("tollgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let t = Instant::now();
    let stack = Stack::with_config(&config, Some(dir), &[]);
    let start_up = t.elapsed();
    println!("start-up with {} postings in the ledger: {} ms", 2 * ROWS, start_up.as_millis());

    // (a) Fast, and the sums inserted.
    let whoami = timed(&stack, KEY, "/v1/whoami", 300).await;
    let usage = timed(&stack, KEY, "/v1/usage", 300).await;
    for (name, took) in [("whoami", &whoami), ("usage", &usage)] {
        let (p50, p99) = (pct(took, 0.5), pct(took, 0.99));
        println!(
            "{name} at {ROWS} charges: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
            took[took.len() - 1]
        );
        assert!(p50 < 5.0, "{name} p50 {p50:.2} ms");
        // Generous for a shared two-core machine: the old code took 230 ms at 200k.
        assert!(p99 < 25.0, "{name} p99 {p99:.2} ms");
    }
    let (_, who) = get(&stack, KEY, "/v1/whoami").await;
    let (_, used) = get(&stack, KEY, "/v1/usage").await;
    let truth = truth(seeded_at, now_ms());
    assert_eq!(who["total_spent_nano_usd"], truth["spent"], "{who}");
    assert_eq!(who["total_input_tokens"], truth["input"]);
    assert_eq!(who["total_output_tokens"], truth["output"]);
    assert_eq!(who["api_key"]["spend_nano_usd"], truth["spent"]);
    assert_eq!(who["balance_nano_usd"], 1_000_000_000_000 - truth["spent"].as_i64().unwrap());
    for (model, want) in truth["per_model"].as_object().unwrap() {
        for field in ["input_tokens", "output_tokens", "cached_tokens", "requests", "spent_nano_usd"] {
            assert_eq!(who["per_model"][model][field], want[field], "{model} {field}");
        }
    }
    for field in ["requests", "tokensIn", "tokensOut", "cost_nano_usd"] {
        assert_eq!(used["month"][field], truth["month"][field], "month.{field}: {used}");
    }
    assert_eq!(used["today"]["used"], truth["today"], "{used}");

    // (b) One key floods whoami from 32 tasks; another account goes on.
    let (_, _, other) = customer(&stack, "pro", "5", 1, json!({"name": "other"})).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (answered, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flood = Vec::new();
    for _ in 0..32 {
        let (url, stop, answered, refused) =
            (stack.url("/v1/whoami"), stop.clone(), answered.clone(), refused.clone());
        flood.push(tokio::spawn(async move {
            let http = client();
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).bearer_auth(KEY).send().await.unwrap();
                match r.status().as_u16() {
                    200 => answered.fetch_add(1, Ordering::Relaxed),
                    429 => {
                        assert!(r.headers().contains_key("retry-after"));
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    s => panic!("flood: {s}"),
                };
                r.bytes().await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = Instant::now();
    let mut theirs = Vec::new();
    let http = client();
    for _ in 0..50 {
        let t = Instant::now();
        let r = http.get(stack.url("/v1/whoami")).bearer_auth(&other).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        theirs.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // A billed call with an Idempotency-Key, its retry, and its bill.
    let idem = tag();
    let billed = |idem: String| {
        let http = client();
        let (url, other) = (stack.url("/v1/chat/completions"), other.clone());
        async move {
            let t = Instant::now();
            let r = http
                .post(url)
                .bearer_auth(other)
                .header("idempotency-key", idem)
                .json(&chat("gpt-5.5", 20))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let replayed = r.headers().get("idempotent-replayed").is_some();
            let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
            r.bytes().await.unwrap();
            (t.elapsed(), replayed, id)
        }
    };
    let (first, replayed, id) = billed(idem.clone()).await;
    assert!(!replayed);
    let (retry, replayed, _) = billed(idem).await;
    assert!(replayed, "the retry is the first call's answer");
    let t = Instant::now();
    let (status, bill) = get(&stack, &other, &format!("/v1/generation?id={id}")).await;
    let generation = t.elapsed();
    assert_eq!(status, 200, "{bill}");
    let flood_ran = flooded.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    theirs.sort_by(f64::total_cmp);
    let (answered, refused) = (answered.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    let (p50, p99) = (pct(&theirs, 0.5), pct(&theirs, 0.99));
    println!(
        "flood of {:.1} s: {answered} answered, {refused} refused (429); another account's whoami p50 {p50:.2} ms, \
         p99 {p99:.2} ms; a billed call {} ms, its idempotent retry {} ms, its generation {} ms",
        flood_ran.as_secs_f64(),
        first.as_millis(),
        retry.as_millis(),
        generation.as_millis()
    );
    assert!(refused > 0 && answered <= 1000, "{answered} answered past the allowance");
    // Generous: the test's own 32 clients share the two cores (before the
    // running totals this was 2.7 s).
    assert!(p99 < 250.0, "another account's whoami p99 {p99:.2} ms under the flood");
    assert!(first < Duration::from_secs(2) && retry < Duration::from_secs(2), "{first:?} {retry:?}");
    // The writer kept up: nothing waits in the journal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lag(&stack).await != Some(0) {
        assert!(Instant::now() < deadline, "the journal lag stays at {:?}", lag(&stack).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, who) = get(&stack, &other, "/v1/whoami").await;
    assert_eq!(who["per_model"]["openai/gpt-5.5"]["requests"], 1, "{who}");
    assert_eq!(who["total_spent_nano_usd"], bill["cost_nano_usd"]);
}
