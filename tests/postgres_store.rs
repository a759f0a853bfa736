//! The gateway on PostgreSQL (`store.url`), through the binary: the demo
//! config with its store on a private PostgreSQL; accounts, top-ups, a
//! billed call and the ledger through the admin API; then a restart on
//! the same database finds every balance equal to its ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/pg.rs"]
mod pg;

use common::money::{admin, charge_of, chat, customer, post, DEMO_ACCOUNT};
use common::{repo, tag, wait_for, Stack, TempDir};
use serde_json::{json, Value};
use std::path::Path;

/// The demo config with its store in PostgreSQL at `url`.
fn config(dir: &Path, url: &str, journal: bool) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let sqlite = "store:\n  path: \"${TOLLGATE_DB:-tollgate-demo.db}\"\n";
    assert!(demo.contains(sqlite), "the demo config's store section changed");
    let mut store = format!("store:\n  url: \"{url}\"\n  pool_size: 4\n");
    if journal {
        store.push_str(&format!("  journal_dir: \"{}\"\n", dir.join("journal").display()));
    }
    let path = dir.join(if journal { "pg.yaml" } else { "pg-no-journal.yaml" });
    std::fs::write(&path, demo.replace(sqlite, &store)).unwrap();
    path
}

/// Balance and ledger of `account`: the balance, and the sum of its entries.
async fn balance_and_ledger(stack: &Stack, account: i64) -> (i64, i64, Vec<Value>) {
    let (s, view) = admin(stack, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
    assert_eq!(s, 200, "{view}");
    let (s, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    assert_eq!(s, 200, "{ledger}");
    let entries = ledger["entries"].as_array().unwrap().clone();
    let sum = entries.iter().map(|e| e["amount_nano_usd"].as_i64().unwrap()).sum();
    (view["balance_nano_usd"].as_i64().unwrap(), sum, entries)
}

#[tokio::test]
async fn the_gateway_keeps_its_money_in_postgres_across_a_restart() {
    let db = pg::PgDatabase::new().await;
    let dir = TempDir::new();
    let config = config(&dir.0, &db.url, true);

    let stack = Stack::with_config(&config, None, &[]);
    wait_for(&stack.admin);
    let (account, _, key) = customer(&stack, "pro", "10.00", 4, json!({"name": "ci"})).await;
    let r = post(&stack, &key, &chat("gpt-5.5", 50), &tag()).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let charge = charge_of(&stack, account, &request_id).await.expect("the charge reaches PostgreSQL");
    let cost = -charge["amount_nano_usd"].as_i64().unwrap();
    assert!(cost > 0, "{charge}");
    let (balance, ledger, entries) = balance_and_ledger(&stack, account).await;
    assert_eq!(entries.iter().map(|e| e["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["topup", "charge"]);
    assert_eq!((balance, ledger), (40_000_000_000 - cost, 40_000_000_000 - cost));
    let demo = balance_and_ledger(&stack, DEMO_ACCOUNT).await;
    // In PostgreSQL itself, balanced.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE account_id = $1 AND book = 'wallet'), \
         COALESCE(SUM(amount_nano), 0)::bigint FROM ledger_postings",
    )
    .bind(account)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, (2, 0));
    pool.close().await;
    drop(stack);

    // Started again on the same database: the YAML's account is not
    // bootstrapped twice, and every balance is its ledger.
    let stack = Stack::with_config(&config, None, &[]);
    wait_for(&stack.admin);
    let (balance, ledger, entries) = balance_and_ledger(&stack, account).await;
    assert_eq!((balance, ledger, entries.len()), (40_000_000_000 - cost, 40_000_000_000 - cost, 2));
    assert_eq!(balance_and_ledger(&stack, DEMO_ACCOUNT).await.0, demo.0);
    assert_eq!(balance_and_ledger(&stack, DEMO_ACCOUNT).await.1, demo.1);
    // The key still works and bills the same wallet.
    let r = post(&stack, &key, &chat("gpt-5.5", 50), &tag()).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(charge_of(&stack, account, &request_id).await.is_some());
    let (balance, ledger, _) = balance_and_ledger(&stack, account).await;
    assert_eq!(balance, ledger);
    assert!(balance < 40_000_000_000 - cost);
}

#[test]
fn postgres_without_a_journal_directory_is_refused_with_a_reason() {
    let dir = TempDir::new();
    let config = config(&dir.0, "postgres://tollgate:hunter2@127.0.0.1:1/tollgate", false);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("store.journal_dir: must be set with store.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
