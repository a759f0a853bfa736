//! Settings that would open a hole are refused: a short or empty
//! `admin.token` stops `serve` and `check` (through the real binary); a
//! key allowlist naming no configured model or class (a typo) is a 400
//! naming it; a write timeout of 0 is not read as "never".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, customer};
use common::{free_port, repo, Stack};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `tollgate {command}` on `conf/demo.yaml` with admin token `token`;
/// its exit code and stderr (killed after 20 s, if it ever serves).
fn run_with_token(command: &str, token: &str) -> (Option<i32>, String) {
    let dir = common::TempDir::new();
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let config = dir.0.join("tollgate.yaml");
    let line = "token: \"${TOLLGATE_ADMIN_TOKEN:-tollgate-admin-demo}\"";
    assert!(yaml.contains(line));
    std::fs::write(&config, yaml.replacen(line, &format!("token: \"{token}\""), 1)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([command, "--config"])
        .arg(&config)
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_DB", dir.0.join("tollgate.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_short_or_empty_admin_token_stops_serve_and_check() {
    for command in ["check", "serve"] {
        for token in ["", "short-token-15c"] {
            let (code, stderr) = run_with_token(command, token);
            assert!(code.is_some_and(|c| c != 0), "{command} with {token:?}: {code:?} {stderr}");
            assert!(stderr.contains("admin.token") && stderr.contains("16"), "{command}: {stderr}");
        }
    }
    let (code, stderr) = run_with_token("check", "sixteen-chars-ok");
    assert_eq!(code, Some(0), "16 characters are enough: {stderr}");
}

#[test]
fn a_write_timeout_of_zero_is_refused_rather_than_read_as_never() {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let yaml = yaml.replacen("server:\n", "server:\n  downstream_write_timeout_ms: 0\n", 1);
    let err = match tollgate::config::parse_str(&yaml, &|_| None) {
        Ok(config) => tollgate::gateway::Gateway::from_config(&config).err().unwrap(),
        Err(e) => panic!("{e}"),
    };
    assert!(err.contains("downstream_write_timeout_ms"), "{err}");
}

#[tokio::test]
async fn a_key_allowlist_naming_no_model_or_class_is_refused_by_name() {
    let stack = Stack::demo();
    common::wait_for(&stack.admin);
    let (account, key_id, _) = customer(&stack, "pro", "1", 1, json!({"name": "ok"})).await;
    let create = format!("/admin/v1/accounts/{account}/keys");
    let patch = format!("/admin/v1/keys/{key_id}");
    for (bad, named) in [
        (json!(["gpt-5.5-typo"]), "gpt-5.5-typo"),
        (json!(["openai/gpt-5.5", "class:sonet"]), "sonet"),
        (json!(["gpt-5.5"]), "openai/gpt-5.5"),
    ] {
        let (s, doc) = admin(&stack, "POST", &create, Some(json!({"name": "k", "models": bad}))).await;
        assert_eq!(s, 400, "{bad}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(named), "{doc}");
        let (s, doc) = admin(&stack, "PATCH", &patch, Some(json!({"models": bad}))).await;
        assert_eq!(s, 400, "{bad}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(named), "{doc}");
    }
    let (_, key) = admin(&stack, "GET", &patch, None).await;
    assert_eq!(key["models"], json!(null), "the refused changes changed nothing");
    for good in [json!(["openai/*"]), json!(["*"]), json!(["class:sonnet", "google/gemini-3-flash-preview"])]
    {
        let (s, doc) = admin(&stack, "POST", &create, Some(json!({"name": "k", "models": good}))).await;
        assert_eq!(s, 201, "{good}: {doc}");
        let (s, doc) = admin(&stack, "PATCH", &patch, Some(json!({"models": good}))).await;
        assert_eq!((s, &doc["models"]), (200, &good), "{doc}");
    }
}
