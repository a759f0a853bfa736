//! What the mock received, for tests to assert on.

use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

const KEEP: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body as JSON when it parses, else as text.
    pub body: serde_json::Value,
    pub body_len: usize,
    pub tag: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Which connection it came on (a counter per accepted connection).
    pub connection: u64,
    /// Set when the gateway closed the connection before the answer was
    /// complete: milliseconds after the request arrived.
    pub abandoned_after_ms: Option<u64>,
    #[serde(skip)]
    seq: u64,
    #[serde(skip)]
    arrived: Option<std::time::Instant>,
}

impl Recorded {
    pub fn new(parts: &hyper::http::request::Parts, body: &Bytes, connection: u64) -> Self {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &parts.headers {
            headers
                .entry(k.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        let tag = headers.get("x-mock-tag").and_then(|v| v.first().cloned());
        let body_json = serde_json::from_slice(body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
        Self {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers,
            body: body_json,
            body_len: body.len(),
            tag,
            version: format!("{:?}", parts.version),
            connection,
            abandoned_after_ms: None,
            seq: 0,
            arrived: Some(std::time::Instant::now()),
        }
    }
}

#[derive(Default)]
pub struct Journal(Mutex<Vec<Recorded>>, std::sync::atomic::AtomicU64);

impl Journal {
    /// Records a request; the number returned marks it later.
    pub fn push(&self, mut r: Recorded) -> u64 {
        let seq = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.seq = seq;
        if let Ok(mut v) = self.0.lock() {
            if v.len() >= KEEP {
                v.remove(0);
            }
            v.push(r);
        }
        seq
    }

    /// Notes that the gateway left request `seq` before its answer ended.
    pub fn abandoned(&self, seq: u64) {
        if let Ok(mut v) = self.0.lock() {
            if let Some(r) = v.iter_mut().find(|r| r.seq == seq) {
                r.abandoned_after_ms = r.arrived.map(|t| t.elapsed().as_millis() as u64);
            }
        }
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }

    pub fn list(&self, tag: Option<&str>) -> Vec<u8> {
        let Ok(v) = self.0.lock() else { return b"[]".to_vec() };
        let selected: Vec<&Recorded> =
            v.iter().filter(|r| tag.is_none() || r.tag.as_deref() == tag).collect();
        serde_json::to_vec(&selected).unwrap_or_default()
    }
}

pub fn tag_from_query(query: &str) -> Option<String> {
    crate::wire::query_param(query, "tag")
}

/// Marks a request abandoned if dropped before [`Abandonment::disarm`]:
/// hyper drops a request's future when its connection closes.
pub struct Abandonment<'a> {
    journal: &'a Journal,
    seq: u64,
    armed: bool,
}

impl<'a> Abandonment<'a> {
    pub fn watch(journal: &'a Journal, seq: u64) -> Self {
        Self { journal, seq, armed: true }
    }

    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandonment<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.journal.abandoned(self.seq);
        }
    }
}
