//! `/health` through the binary: it reports the store and Redis, 503
//! `degraded` when the store or (under `on_failure: closed`) Redis does
//! not answer, 200 `degraded_open` when only Redis is down under `open`;
//! `/livez` answers 200 throughout. On the main listener and the
//! metrics listener alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/redis.rs"]
mod redis_harness;

use common::{client, repo, Stack};
use redis_harness::RedisServer;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn get(url: String) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// `/health` of `stack` once `status` is what it says, or as it is after 10 s.
async fn health_when(stack: &Stack, status: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(stack.url("/health")).await;
        if answer.1["status"] == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn live(stack: &Stack) -> u16 {
    get(stack.url("/livez")).await.0
}

#[tokio::test]
async fn a_node_on_sqlite_reports_its_store_on_both_listeners() {
    let stack = Stack::demo();
    let (status, body) = get(stack.url("/health")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], serde_json::json!({"backend": "sqlite", "ok": true}));
    assert_eq!(body["redis"]["configured"], false);
    assert!(body["journal_depth"].is_u64(), "{body}");
    for path in ["/readyz", "/healthz"] {
        assert_eq!(get(stack.url(path)).await.1["store"]["backend"], "sqlite", "{path}");
    }
    let (status, body) = get(stack.url("/livez")).await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    let (status, body) = get(format!("{}/health", stack.metrics)).await;
    assert_eq!((status, &body["store"]["backend"]), (200, &Value::from("sqlite")), "{body}");
    assert_eq!(get(format!("{}/livez", stack.metrics)).await.0, 200);
}

/// The demo with its rate limits on the Redis at `url`.
fn on_redis(url: &str, on_failure: &str) -> Stack {
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replacen(
        "store:\n",
        &format!("hot_state:\n  redis_url: \"{url}\"\n  on_failure: {on_failure}\nstore:\n"),
        1,
    );
    Stack::custom(&yaml)
}

#[tokio::test]
async fn redis_down_is_503_when_closed_and_degraded_open_when_open() {
    let mut redis = RedisServer::start();
    let (closed, open) = (on_redis(&redis.url, "closed"), on_redis(&redis.url, "open"));
    for stack in [&closed, &open] {
        let (status, body) = health_when(stack, "ok").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["redis"]["configured"], true);
        assert_eq!(body["redis"]["ok"], true);
        assert!(body["redis"]["fleet_size"].as_u64().unwrap() >= 1, "{body}");
    }

    redis.stop();
    let (status, body) = health_when(&closed, "degraded").await;
    assert_eq!((status, &body["status"]), (503, &Value::from("degraded")), "{body}");
    assert_eq!(body["redis"]["ok"], false);
    assert_eq!(body["store"]["ok"], true, "only Redis is down");
    let (status, body) = health_when(&open, "degraded_open").await;
    assert_eq!((status, &body["status"]), (200, &Value::from("degraded_open")), "{body}");
    let (status, body) = get(format!("{}/health", closed.metrics)).await;
    assert_eq!(status, 503, "the metrics listener says the same: {body}");
    assert_eq!((live(&closed).await, live(&open).await), (200, 200), "/livez needs no backend");

    redis.restart();
    for stack in [&closed, &open] {
        let (status, body) = health_when(stack, "ok").await;
        assert_eq!(status, 200, "back once Redis answers: {body}");
    }
}

#[tokio::test]
async fn postgres_that_refuses_connections_is_503() {
    use sqlx::Connection;
    let db = pg::PgDatabase::new().await;
    let dir = common::TempDir::new();
    let demo = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap();
    let sqlite = "store:\n  path: \"${TOLLGATE_DB:-tollgate-demo.db}\"\n";
    let store = format!(
        "store:\n  url: \"{}\"\n  pool_size: 2\n  journal_dir: \"{}\"\n",
        db.url,
        dir.0.join("journal").display()
    );
    let path = dir.0.join("pg.yaml");
    std::fs::write(&path, demo.replace(sqlite, &store)).unwrap();
    let stack = Stack::with_config(&path, Some(dir), &[]);
    let (status, body) = health_when(&stack, "ok").await;
    assert_eq!((status, &body["store"]["backend"]), (200, &Value::from("postgres")), "{body}");

    // The database stops taking connections and drops the gateway's.
    // From the server's maintenance database: a database cannot refuse
    // its own session's connections.
    let (base, name) = db.url.rsplit_once('/').unwrap();
    let name = name.split('?').next().unwrap().to_string();
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
    let refuse = |allow: bool| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(refuse(false))).execute(&mut conn).await.unwrap();
    let others = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                  WHERE datname = $1";
    sqlx::query(others).bind(&name).execute(&mut conn).await.unwrap();
    let (status, body) = health_when(&stack, "degraded").await;
    assert_eq!((status, &body["store"]["ok"]), (503, &Value::from(false)), "{body}");
    assert_eq!(live(&stack).await, 200);

    sqlx::query(sqlx::AssertSqlSafe(refuse(true))).execute(&mut conn).await.unwrap();
    let (status, body) = health_when(&stack, "ok").await;
    assert_eq!(status, 200, "back once PostgreSQL answers: {body}");
}
