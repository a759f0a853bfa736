//! How a call reaches Redis: the admit library's FCALL (loaded again when
//! Redis lost it) and the wallet script's EVALSHA, each within one
//! timeout, tried once more on a reconnected connection, their round trip
//! measured; and the admits' own connection on the request runtime.

use super::{unavailable, Unavailable, FUNCTION, LIBRARY};
use crate::hot::batch::Transport;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::sync::Arc;
use std::time::Duration;

/// The admits' own connection, made on its first use on the runtime that
/// serves requests: its round trip then stays on those threads (the other
/// connection's I/O runs on the store's runtime, a thread hop each way).
pub(super) struct Here {
    pub(super) client: redis::Client,
    pub(super) conn: tokio::sync::OnceCell<ConnectionManager>,
}

impl Transport for Arc<Here> {
    async fn send(&self, keys: &[String], args: &[String]) -> Result<Value, Unavailable> {
        let connect = self
            .conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), manager_config()));
        let conn = match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Ok(conn) => conn.map_err(unavailable)?,
            Err(_) => return Err(Unavailable("no connection in time".into())),
        };
        fcall(conn, keys, args).await
    }
}

/// A Redis that is down must cost a call its timeout, not the
/// reconnection's whole back-off: the outage policy decides then.
pub(super) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(2)
}

/// Runs `script` once; a dropped connection (the first command after
/// Redis restarted) is tried once more on the reconnected one. The
/// `redis` crate loads the script again when Redis answers NOSCRIPT.
pub(in crate::hot) async fn invoke(
    conn: &ConnectionManager,
    script: &Script,
    keys: &[String],
    args: &[String],
) -> Result<Value, Unavailable> {
    timed(invoke_twice(conn, script, keys, args)).await
}

/// A call to Redis within `CALL_TIMEOUT`, its round trip measured.
async fn timed(
    call: impl std::future::Future<Output = Result<Value, Unavailable>>,
) -> Result<Value, Unavailable> {
    let started = std::time::Instant::now();
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answer) => {
            if answer.is_ok() {
                crate::metrics::redis_round_trip(started.elapsed());
            }
            answer
        }
        Err(_) => Err(Unavailable(format!("no answer in {} ms", CALL_TIMEOUT.as_millis()))),
    }
}

/// Calls the admit function once, within the same timeout as `invoke`,
/// sent again only on a dropped connection (see `fcall_twice`); a Redis
/// that lost the library (restarted without persistence, or failed over)
/// gets it loaded again, then the call.
pub(super) async fn fcall(
    conn: &ConnectionManager,
    keys: &[String],
    args: &[String],
) -> Result<Value, Unavailable> {
    timed(fcall_twice(conn, keys, args)).await
}

async fn fcall_twice(
    conn: &ConnectionManager,
    keys: &[String],
    args: &[String],
) -> Result<Value, Unavailable> {
    let mut last = None;
    for _ in 0..2 {
        let mut conn = conn.clone();
        let answer = redis::cmd("FCALL")
            .arg(FUNCTION)
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .query_async(&mut conn)
            .await;
        match answer {
            Ok(v) => return Ok(v),
            // Sent again only on a connection that dropped (Redis
            // restarted): an admit or a charge is not idempotent, and one
            // that timed out may still run on a Redis that was only slow.
            Err(e) if e.is_connection_dropped() => last = Some(e),
            Err(e) if e.is_io_error() => return Err(unavailable(e)),
            Err(e) if function_missing(&e) => {
                load_library(&mut conn).await?;
                last = Some(e);
            }
            Err(e) => {
                crate::metrics::redis_script_error();
                return Err(unavailable(e));
            }
        }
    }
    Err(last.map_or_else(|| Unavailable("no answer".into()), unavailable))
}

/// Redis's answer to an FCALL of a function it does not have.
fn function_missing(e: &redis::RedisError) -> bool {
    e.detail().is_some_and(|d| d.contains("Function not found"))
}

/// FUNCTION LOAD REPLACE: the library, the same text from every node of
/// this release (loading it twice changes nothing).
pub(super) async fn load_library(conn: &mut ConnectionManager) -> Result<(), Unavailable> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .query_async::<String>(conn)
        .await
        .map(drop)
        .map_err(unavailable)
}

/// The longest a call waits for Redis, reconnection included.
const CALL_TIMEOUT: Duration = Duration::from_millis(750);

async fn invoke_twice(
    conn: &ConnectionManager,
    script: &Script,
    keys: &[String],
    args: &[String],
) -> Result<Value, Unavailable> {
    let mut last = None;
    for _ in 0..2 {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = conn.clone();
        match inv.invoke_async::<Value>(&mut conn).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_connection_dropped() || e.is_io_error() => last = Some(e),
            Err(e) => {
                crate::metrics::redis_script_error();
                return Err(unavailable(e));
            }
        }
    }
    Err(last.map_or_else(|| Unavailable("no answer".into()), unavailable))
}
