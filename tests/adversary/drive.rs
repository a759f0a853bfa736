//! The drivers: each ending played against the gateway as a caller would,
//! and what the caller saw.

use super::{Ending, Plan};
use std::time::{Duration, Instant};

/// What the caller saw.
#[derive(Debug, Clone)]
pub struct Observed {
    pub plan: Plan,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub replayed: bool,
    pub body: Vec<u8>,
    /// The body was read to its end without an error.
    pub clean_end: bool,
    /// The caller left on purpose.
    pub left: bool,
    /// Sending or reading failed.
    pub error: Option<String>,
    /// When it was sent, and when the caller was done with it.
    pub sent_at: Instant,
    pub done_at: Instant,
}

/// Plays `plan` against the gateway at `url`. `started` is told once the
/// answer's first body bytes arrived (or dropped if none will).
pub async fn drive(url: &str, plan: Plan, started: Option<tokio::sync::mpsc::Sender<()>>) -> Observed {
    tokio::time::sleep(plan.wait).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(40)).build().unwrap();
    let auth = match plan.auth {
        "authorization" => format!("Bearer {}", plan.caller.key),
        _ => plan.caller.key.clone(),
    };
    let mut req = client
        .post(format!("{url}{}", plan.path))
        .header(plan.auth, auth)
        .header("content-type", "application/json")
        .header("x-mock-tag", &plan.tag)
        .header("x-mock-chunks", plan.chunks.to_string())
        .header("x-mock-chunk-delay-ms", plan.delay_ms.to_string())
        .body(plan.body.clone());
    if let Some(idem) = &plan.idem {
        req = req.header("idempotency-key", idem);
    }
    req = match plan.ending {
        Ending::ErrorAfter(k) => {
            req.header("x-mock-fault", "error-after").header("x-mock-cut-after", k.to_string())
        }
        Ending::Cut(k) => req.header("x-mock-cut-after", k.to_string()),
        Ending::Status(s) => req.header("x-mock-status", s.to_string()),
        Ending::Unmetered(shape) => req.header("x-mock-usage", shape),
        Ending::OverReport(n) => req.header("x-mock-report-output-tokens", n.to_string()),
        Ending::LeftBeforeHead => req.header("x-mock-latency-ms", "600"),
        Ending::ShutdownBeforeHead => req.header("x-mock-latency-ms", "5000"),
        _ => req,
    };
    let mut seen = Observed {
        plan,
        status: None,
        request_id: None,
        replayed: false,
        body: Vec::new(),
        clean_end: false,
        left: false,
        error: None,
        sent_at: Instant::now(),
        done_at: Instant::now(),
    };
    play(&mut seen, req, started).await;
    seen.done_at = Instant::now();
    seen
}

async fn play(
    seen: &mut Observed,
    req: reqwest::RequestBuilder,
    mut started: Option<tokio::sync::mpsc::Sender<()>>,
) {
    let sent = if seen.plan.ending == Ending::LeftBeforeHead {
        let Ok(sent) = tokio::time::timeout(Duration::from_millis(100), req.send()).await else {
            seen.left = true;
            return;
        };
        sent
    } else {
        req.send().await
    };
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            seen.error = Some(format!("send: {e}"));
            return;
        }
    };
    seen.status = Some(resp.status().as_u16());
    seen.request_id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
    seen.replayed = resp.headers().contains_key("idempotent-replayed");
    if seen.plan.ending == Ending::LeftAfterHead {
        seen.left = true;
        return;
    }
    let mut pause = match seen.plan.ending {
        Ending::Slow => Some(Duration::from_millis(1300)),
        Ending::Shutdown { slow: true } => Some(Duration::from_millis(3000)),
        _ => None,
    };
    loop {
        if let Ending::LeftAt(at) = seen.plan.ending {
            if seen.body.len() >= at {
                seen.left = true;
                return;
            }
        }
        match resp.chunk().await {
            Ok(Some(chunk)) => seen.body.extend_from_slice(&chunk),
            Ok(None) => {
                seen.clean_end = true;
                return;
            }
            Err(e) => {
                seen.error = Some(format!("read: {e}"));
                return;
            }
        }
        if let Some(tx) = started.take() {
            let _ = tx.send(()).await;
        }
        if let Some(pause) = pause.take() {
            tokio::time::sleep(pause).await;
        }
    }
}
