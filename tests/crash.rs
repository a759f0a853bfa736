//! A SIGKILL under load loses no completed charge: the gateway is killed
//! while calls stream, with its writer set to move nothing into SQLite
//! before the kill (so every charge is in the journal only), and started
//! again on the same files: every call whose response completed is in
//! the ledger exactly once, and no hold is left open. And the same as a
//! container runs it: pid 1 of its own pid namespace, killed and started
//! again as pid 1 on the same files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, repo, start_mock, Guard, TempDir, KEY};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Gateway {
    url: String,
    admin: String,
    child: Guard,
}

fn start(config: &std::path::Path, mock: &str, db: &std::path::Path, log: &std::path::Path) -> Gateway {
    let (url, admin, child) = common::serve_on_store(config, mock, db, Some(log));
    Gateway { url, admin, child: Guard(child) }
}

/// A test's files and mock: the store, the gateways' log, and the demo's
/// configuration with a writer that never moves a batch into SQLite by
/// itself (every charge stays in the journal only).
struct Scene {
    db: std::path::PathBuf,
    log: std::path::PathBuf,
    slow_writer: std::path::PathBuf,
    mock: String,
    _mock: Guard,
    _dir: TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = TempDir::new();
        let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
            "store:\n",
            "store:\n  batch_ms: 600000\n",
            1,
        );
        let slow_writer = dir.0.join("slow-writer.yaml");
        std::fs::write(&slow_writer, yaml).unwrap();
        let (mock, mock_child) = start_mock();
        Self {
            db: dir.0.join("tollgate.db"),
            log: dir.0.join("gateway.log"),
            slow_writer,
            mock,
            _mock: Guard(mock_child),
            _dir: dir,
        }
    }
}

/// What the demo's admin API answers at `/admin/v1/{path}`.
async fn admin_get(admin: &str, path: &str) -> Value {
    let r = client().get(format!("{admin}/admin/v1/{path}")).bearer_auth("tollgate-admin-demo").send().await;
    r.unwrap().json().await.unwrap()
}

/// The demo account's ledger, and its charges counted by request id.
async fn ledger_of_demo(admin: &str) -> (Value, HashMap<String, usize>) {
    let ledger = admin_get(admin, "ledger?account=1").await;
    let mut charges: HashMap<String, usize> = HashMap::new();
    for e in ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge") {
        *charges.entry(e["request_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    (ledger, charges)
}

/// A restarted gateway serves: a new call is answered (and billed).
async fn answers_a_call(url: &str) {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "after"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_sigkill_under_load_loses_no_completed_charge() {
    // The first process never moves a batch into SQLite by itself.
    let Scene { db, log, slow_writer, mock, .. } = &Scene::new();

    let first = start(slow_writer, mock, db, log);
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut calls = Vec::new();
    for i in 0..150 {
        let (url, completed) = (first.url.clone(), completed.clone());
        calls.push(tokio::spawn(async move {
            let stream = i % 2 == 0;
            let body = json!({"model": "gpt-5.5", "stream": stream, "max_tokens": 50,
                              "messages": [{"role": "user", "content": format!("call {i}")}]});
            // Spread over about two seconds: some finish before the kill, some are cut by it.
            let delay = (i % 30).to_string();
            let r = client()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(KEY)
                .header("x-mock-chunks", "20")
                .header("x-mock-chunk-delay-ms", delay)
                .json(&body)
                .send()
                .await;
            let Ok(r) = r else { return };
            let id = r.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
            if r.status() != 200 {
                return;
            }
            let Ok(text) = r.text().await else { return };
            let whole = if stream { text.contains("data: [DONE]") } else { text.ends_with('}') };
            if whole {
                completed.lock().unwrap().push(id.unwrap());
            }
        }));
    }
    // Kill once a good share has completed, with the rest in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while completed.lock().unwrap().len() < 40 {
        assert!(std::time::Instant::now() < deadline, "calls did not complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Gateway { child: mut killed, .. } = first;
    killed.0.kill().unwrap(); // SIGKILL
    let _ = killed.0.wait();
    for c in calls {
        let _ = c.await;
    }
    let completed: Vec<String> = completed.lock().unwrap().clone();
    assert!(completed.len() < 150, "some calls were cut by the kill");
    let journals: Vec<_> = std::fs::read_dir(format!("{}.journal", db.display()))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("journal-")))
        .collect();
    assert_eq!(journals.len(), 1, "the dead process left its journal");

    let second = start(&repo().join("conf/demo.yaml"), mock, db, log);
    let (ledger, charges) = ledger_of_demo(&second.admin).await;
    for id in &completed {
        assert_eq!(charges.get(id), Some(&1), "{id} completed and is billed exactly once");
    }
    assert!(charges.values().all(|n| *n == 1), "no charge is kept twice");
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(
        log_text.contains("ledger records from journals of processes that ended"),
        "replayed from the journal"
    );

    // The restarted wallet agrees with its ledger, and holds nothing.
    let account = admin_get(&second.admin, "accounts/1").await;
    let ledger_sum: i64 =
        ledger["entries"].as_array().unwrap().iter().map(|e| e["amount_nano_usd"].as_i64().unwrap()).sum();
    assert_eq!(account["balance_nano_usd"].as_i64().unwrap(), ledger_sum, "{account}");
    assert_eq!(account["held_nano_usd"], 0);
    // And it serves: a new call is billed on top.
    answers_a_call(&second.url).await;
    let unique: HashSet<&String> = completed.iter().collect();
    assert_eq!(unique.len(), completed.len());
}

/// A gateway as pid 1 of a pid namespace of its own, as a container's
/// entrypoint is: the wrapper (`unshare`) is the child, the gateway its
/// child, killed first when dropped.
struct Namespaced {
    url: String,
    admin: String,
    wrapper: std::process::Child,
}

/// The wrappers that make a pid namespace: as root, and, for a user who
/// is not, inside a user namespace of its own where that user is root.
const AS_PID_ONE: [&[&str]; 2] = [
    &["unshare", "--pid", "--fork", "--kill-child"],
    &["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"],
];

/// The first wrapper of [`AS_PID_ONE`] this machine lets run.
fn pid_namespace_wrapper() -> Option<&'static [&'static str]> {
    AS_PID_ONE.into_iter().find(|wrapper| {
        std::process::Command::new(wrapper[0])
            .args(&wrapper[1..])
            .arg("true")
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Namespaced {
    fn start(
        wrapper: &[&str],
        config: &std::path::Path,
        mock: &str,
        db: &std::path::Path,
        log: &std::path::Path,
    ) -> Self {
        let (url, admin, wrapper) = common::serve_on_store_under(wrapper, config, mock, db, Some(log));
        Self { url, admin, wrapper }
    }

    /// The gateway's pid outside its namespace, if it still runs.
    fn gateway_pid(&self) -> Option<String> {
        let id = self.wrapper.id();
        let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?;
        children.split_whitespace().next().map(str::to_string)
    }

    /// Kills the gateway and waits for its wrapper: its journal's lock is
    /// free once this returns.
    fn sigkill(mut self) {
        let pid = self.gateway_pid().unwrap();
        let status = std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success());
        let _ = self.wrapper.wait();
    }
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        if let Some(pid) = self.gateway_pid() {
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
        }
        let _ = self.wrapper.kill(); // and `--kill-child` kills the gateway with it
        let _ = self.wrapper.wait();
    }
}

/// A container restarted after a crash runs the gateway as pid 1 again,
/// on the same volume: the new process's journal has the dead one's
/// name. Every charge the dead one journaled and the store did not have
/// yet is kept, once.
#[tokio::test]
async fn a_restart_with_the_same_pid_keeps_the_dead_processs_charges() {
    let me = std::process::id();
    let children = std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists();
    let Some(wrapper) = pid_namespace_wrapper().filter(|_| children) else {
        eprintln!(
            "skipped: this machine cannot make a pid namespace (unshare --pid needs root, or user \
             namespaces for anyone else) or has no /proc/<pid>/task/<pid>/children"
        );
        return;
    };
    // The first process never moves a batch into SQLite by itself.
    let Scene { db, log, slow_writer, mock, .. } = &Scene::new();

    let first = Namespaced::start(wrapper, slow_writer, mock, db, log);
    let mut billed = Vec::new();
    for i in 0..20 {
        let r = client()
            .post(format!("{}/v1/chat/completions", first.url))
            .bearer_auth(KEY)
            .json(
                &json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": format!("call {i}")}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        billed.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
        r.bytes().await.unwrap();
    }
    let journal_dir = std::path::PathBuf::from(format!("{}.journal", db.display()));
    assert!(journal_dir.join("journal-1.jsonl").exists(), "the gateway ran as pid 1");
    first.sigkill();

    // Started again as pid 1, on a writer that moves batches into SQLite.
    let second = Namespaced::start(wrapper, &repo().join("conf/demo.yaml"), mock, db, log);
    let (_, charges) = ledger_of_demo(&second.admin).await;
    for id in &billed {
        assert_eq!(charges.get(id), Some(&1), "{id} was billed before the crash and is kept once");
    }
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(log_text.contains("left by an earlier process with this pid"), "{log_text}");
    // The restarted process serves and bills on top.
    answers_a_call(&second.url).await;
}
