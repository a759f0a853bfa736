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
}

impl Recorded {
    pub fn new(parts: &hyper::http::request::Parts, body: &Bytes) -> Self {
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
        }
    }
}

#[derive(Default)]
pub struct Journal(Mutex<Vec<Recorded>>);

impl Journal {
    pub fn push(&self, r: Recorded) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() >= KEEP {
                v.remove(0);
            }
            v.push(r);
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
    crate::auth::query_param(query, "tag")
}
