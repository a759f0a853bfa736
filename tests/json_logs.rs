//! `log.format: json` through the binary: the demo configuration with
//! `TOLLGATE_LOG_FORMAT=json`; after a call and a stream, every line the
//! gateway wrote (stderr and stdout) is one JSON object with a timestamp,
//! level, target and message, and each access line carries its fields as
//! keys, typed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, client, free_port, repo, start_mock, wait_for, Guard, TempDir, KEY};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_line_is_a_json_object_and_the_access_line_has_its_fields_as_keys() {
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let dir = TempDir::new();
    let (stderr, stdout) = (dir.0.join("stderr.log"), dir.0.join("stdout.log"));
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(repo().join("conf/demo.yaml"))
        .env("TOLLGATE_LOG_FORMAT", "json")
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TOLLGATE_MOCK_URL", &mock)
        .env("TOLLGATE_DEMO_KEY", KEY)
        .env("TOLLGATE_DB", dir.0.join("tollgate.db"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let _gateway = Guard(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&url);

    let mut ids = Vec::new();
    for stream in [false, true] {
        let c = call("openai", "gpt-5.5", stream, "hello");
        let r =
            client().post(format!("{url}{}", c.path)).header(c.auth.0, &c.auth.1).json(&c.body).send().await;
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
        r.text().await.unwrap();
    }
    let missing = client().get(format!("{url}/v1/models")).send().await.unwrap();
    assert_eq!(missing.status(), 401);

    // The logging hook runs after the answer is out: wait for three access lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        // Only whole lines: a read may catch the gateway in the middle of writing one.
        let whole = |path: &std::path::Path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end().to_string())
                .collect::<Vec<_>>()
        };
        let lines = [whole(&stderr), whole(&stdout)].concat();
        let done = lines.iter().filter(|l| l.contains("\"target\":\"access\"")).count() >= 3;
        if done || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(lines.len() > 3, "{lines:?}");
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    for line in &parsed {
        let timestamp = line["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp: {line}"));
        // RFC 3339 in UTC, to the millisecond: 2026-01-02T03:04:05.678Z
        assert!(timestamp.len() == 24 && timestamp.ends_with('Z') && &timestamp[10..11] == "T", "{line}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&line["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(line["target"].is_string() && line["message"].is_string(), "{line}");
    }

    let access = |id: &str| -> &Value {
        parsed
            .iter()
            .find(|l| l["target"] == "access" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    for (id, stream) in ids.iter().zip([false, true]) {
        let a = access(id);
        assert_eq!(a["method"], "POST", "{a}");
        assert_eq!(a["path"], "/v1/chat/completions");
        assert_eq!(a["status"], 200);
        assert_eq!(a["route"], "chat_completions");
        assert_eq!(a["format"], "openai");
        assert_eq!(a["model"], "openai/gpt-5.5");
        assert_eq!(a["provider"], "openai");
        assert_eq!(a["account"], "demo");
        assert_eq!(a["key"], "demo");
        assert!(a["key_id"].is_u64(), "{a}");
        assert!(a["input_tokens"].as_u64().unwrap() > 0, "{a}");
        assert!(a["output_tokens"].as_u64().unwrap() > 0, "{a}");
        assert!(a["cached_tokens"].is_u64() && a["reasoning_tokens"].is_u64(), "{a}");
        assert!(a["cost_nano_usd"].as_i64().unwrap() > 0, "{a}");
        assert_eq!(a["estimated"], false);
        assert!(a["duration_ms"].as_f64().unwrap() > 0.0, "{a}");
        assert!(a["upstream_ttfb_ms"].as_f64().unwrap() > 0.0, "stream {stream}: {a}");
        assert_eq!(a["failure"], Value::Null, "{a}");
        assert!(a["message"].as_str().unwrap().contains(" status=200 "), "the text line rides along: {a}");
    }
    let refused = parsed.iter().find(|l| l["target"] == "access" && l["status"] == 401).unwrap();
    assert_eq!(refused["key"], Value::Null, "{refused}");
    assert_eq!(refused["cost_nano_usd"], Value::Null);
    assert_eq!(refused["failure"], "missing_api_key", "{refused}");
}
