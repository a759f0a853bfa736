//! Per-request behaviour of the mock, read from `x-mock-*` headers.

use bytes::Bytes;
use hyper::body::Frame;
use hyper::HeaderMap;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub chunks: usize,
    pub chunk_delay_ms: u64,
    pub cut_after: Option<u64>,
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Knobs {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            status: number(headers, "x-mock-status").and_then(|s| u16::try_from(s).ok()),
            latency_ms: number(headers, "x-mock-latency-ms").unwrap_or(0),
            ttfb_ms: number(headers, "x-mock-ttfb-ms").unwrap_or(0),
            chunks: number(headers, "x-mock-chunks").map_or(3, |n| n.clamp(1, 100_000) as usize),
            chunk_delay_ms: number(headers, "x-mock-chunk-delay-ms").unwrap_or(0),
            cut_after: number(headers, "x-mock-cut-after"),
        }
    }

    /// Sends the events with the requested pacing; `events[i].1` marks the
    /// text deltas, which `cut_after` counts.
    pub async fn pace(
        &self,
        events: Vec<(Bytes, bool)>,
        tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    ) {
        if self.ttfb_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.ttfb_ms)).await;
        }
        let mut deltas = 0;
        for (i, (event, is_delta)) in events.into_iter().enumerate() {
            if is_delta {
                if self.cut_after == Some(deltas) {
                    let _ = tx.send(Err(std::io::Error::other("mock: stream cut"))).await;
                    return;
                }
                deltas += 1;
                if self.chunk_delay_ms > 0 && i > 0 {
                    tokio::time::sleep(Duration::from_millis(self.chunk_delay_ms)).await;
                }
            }
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                return;
            }
        }
    }
}
