//! Per-request behaviour of the mock, read from `x-mock-*` headers.

use bytes::Bytes;
use hyper::body::Frame;
use hyper::HeaderMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Ways a provider misbehaves inside a well-formed HTTP exchange
/// (`x-mock-fault`); faults of HTTP itself are in [`super::faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with an event stream even when none was asked for.
    SseAlways,
    /// Write JSON with a space after every `:` and `,`, as many
    /// OpenAI-compatible servers do.
    SpacedJson,
    /// Open one event and never end it: `x-mock-pad-bytes` bytes of it
    /// (default: until the gateway leaves).
    EndlessEvent,
    /// Send only SSE comments, every 100 ms, and never an event.
    OnlyComments,
    /// After `x-mock-cut-after` deltas, the API's in-stream error event,
    /// then a clean close ([`crate::broken::error_after`]).
    ErrorAfter,
    /// Answer a Gemini stream as its JSON array even when `alt=sse` was asked.
    GeminiArray,
    /// A Gemini usage chunk after the one with `finishReason`.
    LateUsage,
    /// The whole answer, then the connection cut instead of a clean end.
    CutAfterEnd,
}

impl Fault {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "sse-always" => Some(Self::SseAlways),
            "spaced-json" => Some(Self::SpacedJson),
            "endless-event" => Some(Self::EndlessEvent),
            "only-comments" => Some(Self::OnlyComments),
            "error-after" => Some(Self::ErrorAfter),
            "gemini-array" => Some(Self::GeminiArray),
            "late-usage" => Some(Self::LateUsage),
            "cut-after-end" => Some(Self::CutAfterEnd),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub chunks: usize,
    pub chunk_delay_ms: u64,
    pub cut_after: Option<u64>,
    /// Extra reply text, in bytes (`x-mock-pad-bytes`): large documents.
    pub pad_bytes: usize,
    pub fault: Option<Fault>,
    /// Input tokens reported as read from the prompt cache.
    pub cached_tokens: u64,
    /// Output tokens reported whatever was sent (`x-mock-report-output-tokens`).
    pub report_output_tokens: Option<u64>,
    /// A usage report no reader understands (`x-mock-usage`).
    pub usage: Option<crate::broken::UsageShape>,
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

type Sender = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

impl Knobs {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            status: number(headers, "x-mock-status").and_then(|s| u16::try_from(s).ok()),
            latency_ms: number(headers, "x-mock-latency-ms").unwrap_or(0),
            ttfb_ms: number(headers, "x-mock-ttfb-ms").unwrap_or(0),
            chunks: number(headers, "x-mock-chunks").map_or(3, |n| n.clamp(1, 100_000) as usize),
            chunk_delay_ms: number(headers, "x-mock-chunk-delay-ms").unwrap_or(0),
            cut_after: number(headers, "x-mock-cut-after"),
            pad_bytes: number(headers, "x-mock-pad-bytes").map_or(0, |n| n.min(1 << 30) as usize),
            cached_tokens: number(headers, "x-mock-cached-tokens").unwrap_or(0),
            report_output_tokens: number(headers, "x-mock-report-output-tokens"),
            fault: headers.get("x-mock-fault").and_then(|v| v.to_str().ok()).and_then(Fault::parse),
            usage: headers
                .get("x-mock-usage")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::broken::UsageShape::parse),
        }
    }

    /// Sends the events with the requested pacing; `events[i].1` marks the
    /// text deltas, which `cut_after` counts. Returns `false` when the
    /// gateway left before the last event.
    pub async fn pace(&self, events: Vec<(Bytes, bool)>, tx: Sender) -> bool {
        if self.ttfb_ms > 0 && !wait(&tx, Duration::from_millis(self.ttfb_ms)).await {
            return false;
        }
        match self.fault {
            Some(Fault::EndlessEvent) => return endless_event(&tx, self.pad_bytes).await,
            Some(Fault::OnlyComments) => loop {
                if tx.send(Ok(Frame::data(Bytes::from_static(b": thinking\n\n")))).await.is_err()
                    || !wait(&tx, Duration::from_millis(100)).await
                {
                    return false;
                }
            },
            _ => {}
        }
        let mut deltas = 0;
        for (i, (event, is_delta)) in events.into_iter().enumerate() {
            if is_delta {
                if self.cut_after == Some(deltas) {
                    let _ = tx.send(Err(std::io::Error::other("mock: stream cut"))).await;
                    return true;
                }
                deltas += 1;
                if self.chunk_delay_ms > 0
                    && i > 0
                    && !wait(&tx, Duration::from_millis(self.chunk_delay_ms)).await
                {
                    return false;
                }
            }
            let event = if self.fault == Some(Fault::SpacedJson) { spaced_event(&event) } else { event };
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                return false;
            }
        }
        if self.fault == Some(Fault::CutAfterEnd) {
            // Written out first: a cut at once may drop what the server
            // had not flushed yet.
            if !wait(&tx, Duration::from_millis(50)).await {
                return true;
            }
            let _ = tx.send(Err(std::io::Error::other("mock: cut after the end"))).await;
        }
        true
    }
}

/// Sleeps, unless the gateway leaves first (`false` then).
async fn wait(tx: &Sender, how_long: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(how_long) => true,
        () = tx.closed() => false,
    }
}

async fn endless_event(tx: &Sender, limit: usize) -> bool {
    let piece = Bytes::from(vec![b'a'; 64 * 1024]);
    if tx.send(Ok(Frame::data(Bytes::from_static(b"data: {\"text\":\"")))).await.is_err() {
        return false;
    }
    let mut sent = 0usize;
    while limit == 0 || sent < limit {
        if tx.send(Ok(Frame::data(piece.clone()))).await.is_err() {
            return false;
        }
        sent += piece.len();
    }
    true
}

/// The event with its JSON data re-written with spaces after `:` and `,`.
fn spaced_event(event: &Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(event) else { return event.clone() };
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let parsed = line
            .strip_prefix("data: ")
            .and_then(|data| serde_json::from_str::<serde_json::Value>(data.trim_end()).ok());
        match parsed {
            Some(value) => {
                out.push_str("data: ");
                out.push_str(&spaced_json(&value));
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    Bytes::from(out)
}

/// JSON with `": "` and `", "` separators.
pub fn spaced_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            format!("[{}]", items.iter().map(spaced_json).collect::<Vec<_>>().join(", "))
        }
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), spaced_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
