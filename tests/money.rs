//! Money end to end through the real binary on `conf/demo.yaml`: the admin
//! API creates accounts and keys and tops up; calls are billed into the
//! ledger in SQLite, to the nano-dollar; the customer endpoints show it;
//! the access rules refuse what they must, in the caller's format, before
//! anything goes upstream; a SIGKILL loses no completed charge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, chat, customer, get, gpt_cost, post};
use common::{client, tag, Stack};
use serde_json::{json, Value};

#[tokio::test]
async fn the_admin_api_wants_its_token_and_documents_itself() {
    let stack = Stack::demo();
    let r = client().get(format!("{}/admin/v1/models", stack.admin)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r =
        client().get(format!("{}/admin/v1/models", stack.admin)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (s, doc) = admin(&stack, "GET", "/admin/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    for path in
        ["/admin/v1/accounts", "/admin/v1/accounts/{id}/topups", "/admin/v1/keys/{id}", "/admin/v1/ledger"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let (_, models) = admin(&stack, "GET", "/admin/v1/models", None).await;
    let gpt = models["models"].as_array().unwrap().iter().find(|m| m["id"] == "openai/gpt-5.5").unwrap();
    // $1.25 per million tokens is 1,250 nano-USD per token.
    assert_eq!(gpt["price_nano_usd"]["input"], json!(1250), "per token, exact");
    assert_eq!(gpt["price_nano_usd"]["output"], json!(10000));
    let flash = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "google/gemini-3-flash-preview")
        .unwrap();
    assert_eq!(flash["price_nano_usd"]["cache_read"], json!(75));
    let (s, doc) =
        admin(&stack, "POST", "/admin/v1/accounts", Some(json!({"name": "x", "plan": "gold"}))).await;
    assert_eq!((s, doc["error"]["code"].clone()), (400, json!("invalid_request")), "no such plan");
    // Malformed input gets the API's own JSON errors.
    let (s, doc) = admin(&stack, "POST", "/admin/v1/accounts", Some(json!({"name": 5}))).await;
    assert_eq!((s, doc["error"]["code"].clone()), (400, json!("invalid_request")), "{doc}");
    let extra = json!({"name": "x", "plan": "pro", "extra": 1});
    let (s, doc) = admin(&stack, "POST", "/admin/v1/accounts", Some(extra)).await;
    assert_eq!(s, 400, "unknown fields are refused: {doc}");
    let (s, doc) = admin(&stack, "GET", "/admin/v1/accounts/abc", None).await;
    assert_eq!((s, doc["error"]["code"].clone()), (404, json!("not_found")));
    let (s, doc) = admin(&stack, "GET", "/admin/v1/ledger?account=x", None).await;
    assert_eq!((s, doc["error"]["code"].clone()), (400, json!("invalid_request")));
    let (s, doc) = admin(&stack, "GET", "/admin/v1/nothing", None).await;
    assert_eq!((s, doc["error"]["code"].clone()), (404, json!("not_found")));
    let (s, _) = admin(&stack, "GET", "/admin/v1/accounts/999", None).await;
    assert_eq!(s, 404);
    let body = json!({"amount_usd": 12.5, "multiplier": 1, "idempotency_key": "f"});
    let (s, _) = admin(&stack, "POST", "/admin/v1/accounts/1/topups", Some(body)).await;
    assert_eq!(s, 400, "dollars as a float are refused");
}

#[tokio::test]
async fn an_account_is_created_topped_up_at_4x_billed_to_the_nano_dollar_and_its_key_revoked() {
    let stack = Stack::demo();
    let (account, key_id, key) = customer(&stack, "pro", "10.00", 4, json!({"name": "ci"})).await;
    assert!(key.starts_with("sk-tollgate-") && key.len() == "sk-tollgate-".len() + 64, "{key}");
    let (_, view) = admin(&stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    assert_eq!(view["balance_credits"], 40_000_000, "$10 at 4x is $40 of list price");
    // A retried top-up changes nothing.
    let again = json!({"amount_usd": "10.00", "multiplier": 4, "idempotency_key": "pay-1"});
    let path = format!("/admin/v1/accounts/{account}/topups");
    let (_, first) = admin(&stack, "POST", &path, Some(again.clone())).await;
    let (_, second) = admin(&stack, "POST", &path, Some(again)).await;
    assert_eq!(first["balance_credits"], 80_000_000);
    assert_eq!(
        (second["balance_credits"].clone(), second["duplicate"].clone()),
        (json!(80_000_000), json!(true))
    );

    let t = tag();
    let r = post(&stack, &key, &chat("gpt-5.5", 50), &t).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let doc: Value = r.json().await.unwrap();
    let cost = gpt_cost(&doc["usage"]);

    let (s, generation) = get(&stack, &key, &format!("/v1/generation?id={request_id}")).await;
    assert_eq!(s, 200, "{generation}");
    assert_eq!(generation["cost_nano_usd"], cost);
    assert_eq!(generation["input_tokens"], doc["usage"]["prompt_tokens"]);
    assert_eq!(generation["estimated"], false);
    let (_, whoami) = get(&stack, &key, "/v1/whoami").await;
    assert_eq!(whoami["balance_nano_usd"], 80_000_000_000 - cost, "{whoami}");
    assert_eq!(whoami["api_key"]["spend_micro_usd"], cost / 1000);
    assert_eq!(whoami["per_model"]["openai/gpt-5.5"]["spent_nano_usd"], cost);
    assert_eq!(whoami["api_key"]["id"], key_id.to_string());
    let (_, usage) = get(&stack, &key, "/v1/usage").await;
    assert_eq!((usage["month"]["requests"].clone(), usage["plan"].clone()), (json!(1), json!("pro")));

    let (_, ledger) = admin(&stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let kinds: Vec<&str> =
        ledger["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["topup", "topup", "charge"]);
    let charge = &ledger["entries"][2];
    assert_eq!(
        (charge["amount_nano_usd"].clone(), charge["request_id"].clone()),
        (json!(-cost), json!(request_id))
    );
    assert_eq!(charge["paid_nano_usd"], cost / 4, "a 4x lot paid a quarter of the list price");
    let (_, totals) =
        admin(&stack, "GET", &format!("/admin/v1/usage?account={account}&model=openai/gpt-5.5"), None).await;
    assert_eq!(totals["total"]["cost_nano_usd"], cost);

    // Another account cannot read this request's bill.
    let (_, _, other) = customer(&stack, "pro", "1", 1, json!({"name": "other"})).await;
    assert_eq!(get(&stack, &other, &format!("/v1/generation?id={request_id}")).await.0, 404);

    let (s, revoked) = admin(&stack, "DELETE", &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!((s, revoked["status"].clone()), (200, json!("revoked")));
    let r = post(&stack, &key, &chat("gpt-5.5", 50), &t).await;
    assert_eq!(r.status(), 401);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["error"]["message"].as_str().unwrap().contains("revoked"), "{doc}");
    assert_eq!(stack.received(&t).await.len(), 1, "the revoked call never went upstream");
}

#[tokio::test]
async fn access_rules_refuse_in_the_callers_format_before_anything_goes_upstream() {
    let stack = Stack::demo();
    let t = tag();
    // A key allowed only Gemini models: 403 for GPT, and its model list shows only Gemini.
    let (_, _, narrow) = customer(&stack, "pro", "5", 1, json!({"name": "g", "models": ["google/*"]})).await;
    let r = post(&stack, &narrow, &chat("gpt-5.5", 10), &t).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "upgrade_required");
    let (_, models) = get(&stack, &narrow, "/v1/models").await;
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("google/")), "{ids:?}");
    // The same with a fallback model: served by it, and the response says so.
    let key = json!({"name": "f", "models": ["google/*"], "fallback_model": "google/gemini-3-flash-preview"});
    let (_, _, fallback) = customer(&stack, "pro", "5", 1, key).await;
    let r = post(&stack, &fallback, &chat("gpt-5.5", 10), &t).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "google/gemini-3-flash-preview");
    assert_eq!(r.headers()["x-tollgate-fallback-from"], "openai/gpt-5.5");
    // A key allowed a model class.
    let (_, _, sonnet) =
        customer(&stack, "pro", "5", 1, json!({"name": "s", "models": ["class:sonnet"]})).await;
    assert_eq!(post(&stack, &sonnet, &chat("gpt-5.5", 10), &t).await.status(), 403);
    let ok = post(&stack, &sonnet, &chat("claude-sonnet-4-6", 10), &t).await;
    assert_eq!(ok.status(), 200);
    // A spend cap that cannot pay for the call.
    let (_, _, capped) =
        customer(&stack, "pro", "5", 1, json!({"name": "c", "spend_cap_usd": "0.000001"})).await;
    let r = post(&stack, &capped, &chat("gpt-5.5", 1000), &t).await;
    assert_eq!(r.status(), 402);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "spend_cap_reached");
    // An empty wallet, in Anthropic's own format.
    let (_, _, broke) = customer(&stack, "pro", "0", 1, json!({"name": "b"})).await;
    let r = client()
        .post(stack.url("/v1/messages"))
        .header("x-api-key", &broke)
        .header("anthropic-version", "2023-06-01")
        .header("x-mock-tag", &t)
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["type"].clone(), doc["error"]["type"].clone()),
        (json!("error"), json!("billing_error")),
        "{doc}"
    );
    // A plan without API access, a suspended account, an expired key, an ended trial.
    let (_, _, web) = customer(&stack, "web", "5", 1, json!({"name": "w"})).await;
    assert_eq!(post(&stack, &web, &chat("gpt-5.5", 10), &t).await.status(), 403);
    let (suspended, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "s"})).await;
    admin(&stack, "PATCH", &format!("/admin/v1/accounts/{suspended}"), Some(json!({"status": "suspended"})))
        .await;
    assert_eq!(post(&stack, &key, &chat("gpt-5.5", 10), &t).await.status(), 403);
    let (_, _, expired) =
        customer(&stack, "pro", "5", 1, json!({"name": "e", "expires_at": "2020-01-01T00:00:00Z"})).await;
    let r = post(&stack, &expired, &chat("gpt-5.5", 10), &t).await;
    assert_eq!(r.status(), 401);
    let (trial, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "t"})).await;
    let past = json!({"trial_ends_at": "2020-01-01T00:00:00Z"});
    admin(&stack, "PATCH", &format!("/admin/v1/accounts/{trial}"), Some(past)).await;
    let r = post(&stack, &key, &chat("gpt-5.5", 10), &t).await;
    assert_eq!(r.status(), 402);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "trial_expired");
    assert_eq!(stack.received(&t).await.len(), 2, "only the fallback and the sonnet calls went upstream");
}

#[tokio::test]
async fn a_thousand_concurrent_calls_never_overdraw_and_the_ledger_adds_up_to_the_nano_dollar() {
    // A thousand connections from one address: past the default per-address cap.
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml")).unwrap().replacen(
        "server:\n",
        "server:\n  max_connections_per_address: 4096\n",
        1,
    );
    let stack = Stack::custom(&yaml);
    // $0.30: each call holds up to ~$0.001, so a few hundred fit at once.
    let (account, key_id, key) = customer(&stack, "pro", "0.30", 1, json!({"name": "load"})).await;
    let t = tag();
    let body = chat("gpt-5.5", 100);
    let calls = (0..1000).map(|_| {
        let (stack, key, body, t) = (&stack, &key, &body, &t);
        async move {
            let r = post(stack, key, body, t).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let (mut expected, mut ok) = (0i64, 0);
    for (status, doc) in &results {
        match status {
            200 => {
                ok += 1;
                expected += gpt_cost(&doc["usage"]);
            }
            402 => assert_eq!(doc["error"]["code"], "insufficient_credits", "{doc}"),
            other => panic!("{other}: {doc}"),
        }
    }
    assert!(ok > 100 && ok < 1000, "{ok} calls were paid for");
    assert_eq!(stack.received(&t).await.len(), ok, "every refused call was refused before going upstream");
    let (_, ledger) = admin(&stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let charges: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").collect();
    assert_eq!(charges.len(), ok, "every successful call billed exactly once");
    let billed: i64 = charges.iter().map(|e| -e["amount_nano_usd"].as_i64().unwrap()).sum();
    assert_eq!(billed, expected, "the ledger is the mock's usage times the list prices");
    let (_, view) = admin(&stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    assert_eq!(view["balance_nano_usd"], 300_000_000 - expected, "{view}");
    assert!(view["balance_nano_usd"].as_i64().unwrap() >= 0);
    assert_eq!(view["held_nano_usd"], 0, "no hold left open");
    let (_, k) = admin(&stack, "GET", &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(k["spend_nano_usd"], expected);
}

#[tokio::test]
async fn a_key_spend_cap_holds_under_concurrency() {
    let stack = Stack::demo();
    let (_, key_id, key) =
        customer(&stack, "pro", "100", 1, json!({"name": "cap", "spend_cap_usd": "0.05"})).await;
    let t = tag();
    let body = chat("gpt-5.5", 100);
    let calls = (0..300).map(|_| {
        let (stack, key, body, t) = (&stack, &key, &body, &t);
        async move { post(stack, key, body, t).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 402));
    assert!(ok > 10 && ok < 300, "{ok}");
    let (_, k) = admin(&stack, "GET", &format!("/admin/v1/keys/{key_id}"), None).await;
    assert!(k["spend_nano_usd"].as_i64().unwrap() <= 50_000_000, "{k}");
    assert_eq!(stack.received(&t).await.len(), ok);
}

#[tokio::test]
async fn an_idempotency_key_bills_once_replays_the_answer_and_refuses_a_retry_while_the_first_runs() {
    let stack = Stack::demo();
    let (account, _, key) = customer(&stack, "pro", "5", 1, json!({"name": "idem"})).await;
    let t = tag();
    let send = |body: Value, idem: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let mut req = client()
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-mock-tag", &t)
            .header("idempotency-key", idem)
            .json(&body);
        for (k, v) in extra {
            req = req.header(k, v);
        }
        req.send()
    };
    // A document: run once, then replayed byte for byte.
    let first = send(chat("gpt-5.5", 20), "doc-1", vec![]).await.unwrap();
    assert_eq!(first.status(), 200);
    let first_body = first.text().await.unwrap();
    let again = send(chat("gpt-5.5", 20), "doc-1", vec![]).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);

    // A stream: a retry while it runs is a 409; after, it is replayed as the stream it was.
    let mut streamed = chat("gpt-5.5", 20);
    streamed["stream"] = json!(true);
    let slow = vec![("x-mock-chunks", "8"), ("x-mock-chunk-delay-ms", "100")];
    let running = tokio::spawn(send(streamed.clone(), "stream-1", slow.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let conflict = send(streamed.clone(), "stream-1", vec![]).await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(conflict.json::<Value>().await.unwrap()["error"]["code"], "idempotency_conflict");
    let first = running.await.unwrap().unwrap();
    let first_stream = first.text().await.unwrap();
    assert!(first_stream.contains("data: [DONE]"));
    let replayed = send(streamed, "stream-1", vec![]).await.unwrap();
    assert_eq!(replayed.headers()["content-type"], "text/event-stream");
    assert_eq!(replayed.text().await.unwrap(), first_stream);

    // A first attempt that failed is forgotten: the retry runs.
    let failed = send(chat("gpt-5.5", 20), "fail-1", vec![("x-mock-status", "500")]).await.unwrap();
    assert!(failed.status().is_server_error());
    let retried = send(chat("gpt-5.5", 20), "fail-1", vec![]).await.unwrap();
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none());

    assert_eq!(stack.received(&t).await.len(), 4, "doc-1 once, stream-1 once, fail-1 twice");
    let (_, ledger) = admin(&stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    let charges = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 3, "each key billed once; the failed attempt cost nothing");
    // Keys are per account.
    let (_, _, other) = customer(&stack, "pro", "5", 1, json!({"name": "idem2"})).await;
    let r = client()
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&other)
        .header("idempotency-key", "doc-1")
        .json(&chat("gpt-5.5", 20))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn the_cli_creates_tops_up_issues_and_revokes_through_the_admin_api() {
    let stack = Stack::demo();
    let admin_url = stack.admin.clone();
    let cli = move |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--admin-url", &admin_url])
            .env("TOLLGATE_ADMIN_TOKEN", "tollgate-admin-demo")
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), doc)
    };
    let (code, account) = cli(&["accounts", "create", "--name", "cli-co", "--plan", "pro"]);
    assert_eq!(code, Some(0), "{account}");
    let id = account["id"].as_i64().unwrap().to_string();
    let (code, topped) =
        cli(&["topup", &id, "--usd", "2.50", "--multiplier", "6", "--idempotency-key", "inv-7"]);
    assert_eq!((code, topped["balance_credits"].clone()), (Some(0), json!(15_000_000)), "{topped}");
    let (_, again) = cli(&["topup", &id, "--usd", "2.50", "--multiplier", "6", "--idempotency-key", "inv-7"]);
    assert_eq!(again["duplicate"], true);
    let (code, key) = cli(&["keys", "create", &id, "--name", "laptop", "--model", "openai/*"]);
    assert_eq!(code, Some(0), "{key}");
    let secret = key["key"].as_str().unwrap().to_string();
    let r = post(&stack, &secret, &chat("gpt-5.5", 10), &tag()).await;
    assert_eq!(r.status(), 200);
    let (_, ledger) = cli(&["ledger", &id]);
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 2, "{ledger}");
    let (_, usage) = cli(&["usage", &id, "--model", "openai/gpt-5.5"]);
    assert_eq!(usage["total"]["requests"], 1);
    let key_id = key["id"].as_i64().unwrap().to_string();
    assert_eq!(cli(&["keys", "revoke", &key_id]).0, Some(0));
    assert_eq!(post(&stack, &secret, &chat("gpt-5.5", 10), &tag()).await.status(), 401);
    let (code, _) = cli(&["accounts", "create", "--name", "x", "--plan", "nonexistent"]);
    assert_eq!(code, Some(1), "a refusal is a failed command");
    let (code, _) = cli(&["models", "--token", "wrong"]);
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn a_plan_with_a_trial_starts_one_and_an_upgrade_ends_it() {
    let yaml = std::fs::read_to_string(common::repo().join("conf/demo.yaml")).unwrap().replacen(
        "plans:\n",
        "plans:\n  - name: trial\n    models: [\"*\"]\n    trial_days: 14\n",
        1,
    );
    let stack = Stack::custom(&yaml);
    let (account, _, key) = customer(&stack, "trial", "1", 1, json!({"name": "t"})).await;
    let (_, view) = admin(&stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    let ends = view["trial_ends_at"].as_str().unwrap().to_string();
    assert!(ends.ends_with('Z') && ends.as_str() > "2026", "{view}");
    assert_eq!(post(&stack, &key, &chat("gpt-5.5", 10), &tag()).await.status(), 200, "within the trial");
    let over = json!({"trial_ends_at": "2000-01-01T00:00:00Z"});
    admin(&stack, "PATCH", &format!("/admin/v1/accounts/{account}"), Some(over)).await;
    assert_eq!(post(&stack, &key, &chat("gpt-5.5", 10), &tag()).await.status(), 402);
    let upgrade = json!({"plan": "pro", "trial_ends_at": null});
    let (_, view) = admin(&stack, "PATCH", &format!("/admin/v1/accounts/{account}"), Some(upgrade)).await;
    assert_eq!((view["plan"].clone(), view["trial_ends_at"].clone()), (json!("pro"), Value::Null));
    assert_eq!(post(&stack, &key, &chat("gpt-5.5", 10), &tag()).await.status(), 200);
}
