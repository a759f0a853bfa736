//! Readiness: `GET /health` (also `/readyz`, `/healthz`, and `/health` on
//! the metrics listener) says whether this node can serve, and why not:
//! the store answers a `SELECT 1`, Redis a `PING` (when `hot_state` is
//! set), and how many ledger records wait in the journal. `/livez` is not
//! here: it answers while the process serves, whatever the backends (a
//! liveness check that failed with a shared backend would restart every
//! node at once and repair nothing).
//!
//! Each backend is asked at most once a second, whatever the number of
//! probes (load balancers, kubelet, Docker), and for at most a second: a
//! probe that waits longer counts as a failure. The answer:
//! 200 `ok`; 503 `degraded` when the store or Redis does not answer;
//! but 200 `degraded_open` when only Redis is down and `hot_state.on_failure`
//! is `open`: the node serves on its own limits then, and a readiness that
//! failed on every node at once would empty the fleet of the capacity
//! `open` was chosen to keep; and 200 `degraded_store` when only the store
//! is down on a fleet node whose Redis answers (its calls go on).

use crate::config::{Config, OnFailure};
use crate::gateway::Gateway;
use crate::hot::Hot;
use crate::store::journal::Journal;
use crate::store::StoreHandle;
use async_trait::async_trait;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one backend's answer is reused.
const FRESH: Duration = Duration::from_secs(1);
/// How long a backend may take to answer before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The health of this node's backends, probed and cached.
pub struct Health {
    store: Option<StoreProbe>,
    redis: Option<RedisProbe>,
    journal: Option<Arc<Journal>>,
}

struct StoreProbe {
    backend: &'static str,
    handle: StoreHandle,
    last: Cached,
    /// A ping still running on the store's runtime (a pool that waits for
    /// a connection outlives our timeout): no second one is started.
    running: Arc<AtomicBool>,
}

struct RedisProbe {
    hot: Arc<Hot>,
    last: Cached,
}

/// What `/health` answers: its status code and JSON body.
#[derive(Debug, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub store: StoreReport,
    pub redis: RedisReport,
    pub journal_depth: u64,
}

#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// `postgres`, `sqlite`, or `none` (nothing billed, no store).
    pub backend: &'static str,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct RedisReport {
    pub configured: bool,
    pub ok: bool,
    /// The fleet size this node last saw on Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<&'static str>,
}

impl Health {
    /// The backends `gateway` was started with (a reload changes neither
    /// the store nor `hot_state`, so these are the node's for its life).
    pub fn new(gateway: &Gateway, config: &Config) -> Self {
        let money = gateway.money.as_ref();
        Self {
            store: money.map(|m| StoreProbe {
                backend: if config.store.url.is_some() { "postgres" } else { "sqlite" },
                handle: m.store.clone(),
                last: Cached::new("store"),
                running: Arc::default(),
            }),
            redis: gateway.hot.clone().map(|hot| RedisProbe { hot, last: Cached::new("redis") }),
            journal: money.map(|m| m.journal.clone()),
        }
    }

    /// Probes what is due and reports.
    pub async fn report(&self) -> Report {
        let store = async {
            match &self.store {
                None => true,
                Some(p) => p.last.get(ping_store(&p.handle, &p.running)).await,
            }
        };
        let redis = async {
            match &self.redis {
                None => true,
                Some(p) => p.last.get(ping_redis(&p.hot)).await,
            }
        };
        let (store_ok, redis_ok) = tokio::join!(store, redis);
        let on_failure = self.redis.as_ref().map(|p| p.hot.on_failure);
        Report {
            status: verdict(store_ok, on_failure.map(|f| (redis_ok, f))),
            store: StoreReport { backend: self.store.as_ref().map_or("none", |p| p.backend), ok: store_ok },
            redis: RedisReport {
                configured: self.redis.is_some(),
                ok: redis_ok,
                fleet_size: self.redis.as_ref().map(|p| p.hot.fleet()),
                on_failure: on_failure.map(|f| match f {
                    OnFailure::Open => "open",
                    OnFailure::Closed => "closed",
                }),
            },
            journal_depth: self.journal.as_ref().map_or(0, |j| j.lag()),
        }
    }

    /// The status code and JSON body of `/health`.
    pub async fn answer(&self) -> (u16, Vec<u8>) {
        let report = self.report().await;
        let code = if report.status == "degraded" { 503 } else { 200 };
        (code, serde_json::to_vec(&report).unwrap_or_default())
    }
}

/// The node's status from what answered: `redis` is `None` without
/// `hot_state`, else whether it answered and the outage policy.
pub fn verdict(store_ok: bool, redis: Option<(bool, OnFailure)>) -> &'static str {
    match redis {
        // A fleet carries its calls on Redis and the journals while the
        // shared store is away: pulling every node would make a store
        // outage a full one.
        Some((true, _)) if !store_ok => "degraded_store",
        _ if !store_ok => "degraded",
        Some((false, OnFailure::Closed)) => "degraded",
        Some((false, OnFailure::Open)) => "degraded_open",
        _ => "ok",
    }
}

async fn ping_store(handle: &StoreHandle, running: &Arc<AtomicBool>) -> bool {
    if running.swap(true, Ordering::AcqRel) {
        return false;
    }
    let done = running.clone();
    let ping = handle.run(move |s| async move {
        let answer = s.ping().await;
        done.store(false, Ordering::Release);
        answer
    });
    match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::debug!(target: "tollgate", "health: {e}");
            false
        }
        Err(_) => false,
    }
}

async fn ping_redis(hot: &Hot) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, hot.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::debug!(target: "tollgate", "health: {e}");
            false
        }
        Err(_) => false,
    }
}

/// One backend's last answer, reused for [`FRESH`]; concurrent probes
/// wait for the one that asks.
struct Cached {
    name: &'static str,
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Cached {
    fn new(name: &'static str) -> Self {
        Self { name, last: tokio::sync::Mutex::new(None) }
    }

    async fn get(&self, probe: impl Future<Output = bool>) -> bool {
        let mut last = self.last.lock().await;
        let before = match *last {
            Some((at, ok)) if at.elapsed() < FRESH => return ok,
            Some((_, ok)) => Some(ok),
            None => None,
        };
        let ok = probe.await;
        *last = Some((Instant::now(), ok));
        // Said once when it changes, not at every probe of an outage.
        match (before, ok) {
            (Some(true) | None, false) => {
                log::warn!(target: "tollgate", "health: the {} does not answer", self.name)
            }
            (Some(false), true) => log::info!(target: "tollgate", "health: the {} answers again", self.name),
            _ => {}
        }
        ok
    }
}

/// Serves `GET /metrics` and the health checks of the main listener
/// (`/health` with the backends, `/livez` without) on the metrics listener.
pub struct MetricsApp {
    health: Arc<Health>,
}

impl MetricsApp {
    pub fn new(health: Arc<Health>) -> Self {
        Self { health }
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => (200, "text/plain; version=0.0.4", crate::metrics::render()),
            "/health" | "/healthz" | "/readyz" => {
                let (status, body) = self.health.answer().await;
                (status, "application/json", body)
            }
            "/livez" => (200, "application/json", b"{\"status\":\"ok\"}".to_vec()),
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_redis_outage_under_open_keeps_the_node_in() {
        use OnFailure::{Closed, Open};
        assert_eq!(verdict(true, None), "ok");
        assert_eq!(verdict(true, Some((true, Closed))), "ok");
        assert_eq!(verdict(false, None), "degraded");
        assert_eq!(verdict(true, Some((false, Closed))), "degraded");
        assert_eq!(verdict(true, Some((false, Open))), "degraded_open");
        assert_eq!(verdict(false, Some((false, Open))), "degraded");
        assert_eq!(verdict(false, Some((true, Closed))), "degraded_store");
    }

    #[tokio::test]
    async fn a_backend_is_asked_once_a_second() {
        let cached = Cached::new("test");
        let asked = std::sync::atomic::AtomicU32::new(0);
        let probe = || async {
            asked.fetch_add(1, Ordering::Relaxed);
            true
        };
        for _ in 0..5 {
            assert!(cached.get(probe()).await);
        }
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        *cached.last.lock().await = Some((Instant::now() - FRESH, true));
        assert!(cached.get(probe()).await);
        assert_eq!(asked.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_report_is_the_documented_json() {
        let report = Report {
            status: "ok",
            store: StoreReport { backend: "postgres", ok: true },
            redis: RedisReport { configured: true, ok: true, fleet_size: Some(3), on_failure: Some("open") },
            journal_depth: 0,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status":"ok","store":{"backend":"postgres","ok":true},
                "redis":{"configured":true,"ok":true,"fleet_size":3,"on_failure":"open"},"journal_depth":0})
        );
    }
}
