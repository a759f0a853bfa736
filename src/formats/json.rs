//! Small readers over `serde_json::Value` that name the offending field
//! in their errors, and the writers of the hand-written stream events.

pub use super::escape::{push_str, push_u64, quote};
use super::json_ref::JsonRef;
use super::ClientFormat;
use crate::error::GatewayError;
use serde_json::{Map, Value};

pub type Result<T> = std::result::Result<T, GatewayError>;

pub fn bad(why: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(why.into())
}

/// `feature` has no equivalent in `target`: a 400 that names it.
pub fn unsupported(feature: impl Into<String>, target: ClientFormat) -> GatewayError {
    GatewayError::UnsupportedFeature { feature: feature.into(), provider_format: target.as_str() }
}

pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
    }
}

/// What the readers below need of a JSON value: both the owned
/// `serde_json::Value` and the borrowed [`JsonRef`] have it.
pub trait Json: Sized {
    fn member(&self, key: &str) -> Option<&Self>;
    fn text(&self) -> Option<&str>;
    fn null(&self) -> bool;
    fn unsigned(&self) -> Option<u64>;
    fn float(&self) -> Option<f64>;
    fn boolean(&self) -> Option<bool>;
    fn items(&self) -> Option<&[Self]>;
}

impl Json for Value {
    fn member(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn null(&self) -> bool {
        self.is_null()
    }
    fn unsigned(&self) -> Option<u64> {
        self.as_u64()
    }
    fn float(&self) -> Option<f64> {
        self.as_f64()
    }
    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }
    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
}

impl Json for JsonRef<'_> {
    fn member(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn null(&self) -> bool {
        self.is_null()
    }
    fn unsigned(&self) -> Option<u64> {
        self.as_u64()
    }
    fn float(&self) -> Option<f64> {
        self.as_f64()
    }
    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }
    fn items(&self) -> Option<&[Self]> {
        self.as_array()
    }
}

/// A field that is absent or `null` reads as `None`.
fn present<'a, J: Json>(v: &'a J, key: &str) -> Option<&'a J> {
    v.member(key).filter(|f| !f.null())
}

pub fn opt_str<'a, J: Json>(v: &'a J, key: &str, at: &str) -> Result<Option<&'a str>> {
    match present(v, key) {
        None => Ok(None),
        Some(f) => f.text().map(Some).ok_or_else(|| bad(format!("'{at}{key}' must be a string"))),
    }
}

pub fn req_str<'a, J: Json>(v: &'a J, key: &str, at: &str) -> Result<&'a str> {
    opt_str(v, key, at)?.ok_or_else(|| bad(format!("'{at}{key}' is required")))
}

pub fn opt_u64<J: Json>(v: &J, key: &str) -> Result<Option<u64>> {
    match present(v, key) {
        None => Ok(None),
        Some(n) => {
            n.unsigned().map(Some).ok_or_else(|| bad(format!("'{key}' must be a non-negative integer")))
        }
    }
}

pub fn opt_f64<J: Json>(v: &J, key: &str) -> Result<Option<f64>> {
    match present(v, key) {
        None => Ok(None),
        Some(n) => n.float().map(Some).ok_or_else(|| bad(format!("'{key}' must be a number"))),
    }
}

pub fn opt_bool<J: Json>(v: &J, key: &str) -> Result<Option<bool>> {
    match present(v, key) {
        None => Ok(None),
        Some(b) => b.boolean().map(Some).ok_or_else(|| bad(format!("'{key}' must be a boolean"))),
    }
}

/// An array field; absent or null reads as empty.
pub fn array<'a, J: Json>(v: &'a J, key: &str, at: &str) -> Result<&'a [J]> {
    match present(v, key) {
        None => Ok(&[]),
        Some(f) => f.items().ok_or_else(|| bad(format!("'{at}{key}' must be an array"))),
    }
}

/// Calls `each` with every item of a request's long array (read with
/// [`JsonRef::parse_object_deferring`]) as its turn comes, and returns
/// how many there were; absent or null reads as empty.
pub fn each_deferred_item<'a>(
    raw: Option<&'a serde_json::value::RawValue>,
    key: &str,
    each: impl FnMut(usize, &'a serde_json::value::RawValue) -> Result<()>,
) -> Result<usize> {
    match raw {
        None => Ok(0),
        Some(r) if r.get() == "null" => Ok(0),
        Some(r) => {
            JsonRef::each_raw_item(r, each).unwrap_or_else(|| Err(bad(format!("'{key}' must be an array"))))
        }
    }
}

/// How many items a request's long array holds, counted only past 1 MiB
/// (0 below): a parser reserves its messages with it, since a vector
/// grown by doubling briefly holds its old and new buffers, and ends with
/// up to twice the room it needs.
pub fn deferred_len(raw: Option<&serde_json::value::RawValue>) -> usize {
    match raw {
        Some(r) if r.get().len() > 1 << 20 => JsonRef::each_raw_item(r, |_, _| Ok::<(), ()>(())),
        _ => None,
    }
    .and_then(std::result::Result::ok)
    .unwrap_or(0)
}

/// One deferred item, parsed.
pub fn item(raw: &serde_json::value::RawValue) -> Result<JsonRef<'_>> {
    JsonRef::parse(raw.get()).map_err(bad)
}

/// `stop` as a string or a list of strings.
pub fn string_or_list<J: Json>(v: Option<&J>, key: &str) -> Result<Vec<String>> {
    let Some(v) = v.filter(|v| !v.null()) else { return Ok(Vec::new()) };
    if let Some(s) = v.text() {
        return Ok(vec![s.to_string()]);
    }
    match v.items() {
        Some(items) => items
            .iter()
            .map(|i| i.text().map(str::to_string).ok_or_else(|| bad(format!("'{key}' must hold strings"))))
            .collect(),
        None => Err(bad(format!("'{key}' must be a string or a list of strings"))),
    }
}

/// A request body written as it is built: its large array (messages,
/// contents, input) goes into the output item by item, so no tree of the
/// whole array exists at once; the last item stays open for builders that
/// merge the next one into it. The array comes first in the object, the
/// other (small) fields after it.
pub struct Items<'a> {
    out: Vec<u8>,
    pending: Option<JsonRef<'a>>,
    count: usize,
}

impl<'a> Items<'a> {
    /// Starts `{"key":[` in a buffer of `capacity` bytes.
    pub fn new(key: &str, capacity: usize) -> Self {
        Self::new_in(Vec::new(), key, capacity)
    }

    /// [`Items::new`] in `buffer`, emptied (a request's own body, when
    /// nothing else holds it: the translation is written where the body
    /// was, so the two are never both in memory in full).
    pub fn new_in(mut out: Vec<u8>, key: &str, capacity: usize) -> Self {
        out.clear();
        // The hint allows an eighth for escapes, rarely all used: a buffer
        // nearly that large is kept rather than traded for a larger one.
        // One too small is let go first, not grown: growing copies its
        // whole capacity into the new block, touching every page of it.
        if out.capacity() < capacity - capacity / 16 {
            drop(out);
            out = Vec::with_capacity(capacity);
        }
        out.push(b'{');
        out.extend_from_slice(quote(key).as_bytes());
        out.extend_from_slice(b":[");
        Self { out, pending: None, count: 0 }
    }

    /// Items borrow their text from the canonical request: it is written
    /// out without a copy.
    pub fn push(&mut self, item: JsonRef<'a>) {
        self.flush();
        self.pending = Some(item);
    }

    /// The item pushed last, while it can still change.
    pub fn last_mut(&mut self) -> Option<&mut JsonRef<'a>> {
        self.pending.as_mut()
    }

    fn flush(&mut self) {
        if let Some(item) = self.pending.take() {
            if self.count > 0 {
                self.out.push(b',');
            }
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.out, &item);
            self.count += 1;
        }
    }

    /// Ends the array and writes the other fields after it.
    pub fn finish(self, rest: &Map<String, Value>) -> Vec<u8> {
        self.finish_with(rest, &[])
    }

    /// [`Items::finish`], then fields written from borrowed values (the
    /// tools, whose schemas are written out as their text).
    pub fn finish_with(mut self, rest: &Map<String, Value>, more: &[(&str, JsonRef<'_>)]) -> Vec<u8> {
        self.flush();
        self.out.push(b']');
        for (key, value) in rest {
            self.out.push(b',');
            self.out.extend_from_slice(quote(key).as_bytes());
            self.out.push(b':');
            let _ = serde_json::to_writer(&mut self.out, value);
        }
        for (key, value) in more {
            self.out.push(b',');
            self.out.extend_from_slice(quote(key).as_bytes());
            self.out.push(b':');
            let _ = serde_json::to_writer(&mut self.out, value);
        }
        self.out.push(b'}');
        self.out
    }
}

/// [`arguments_object`] read in place: the arguments' strings are borrowed.
pub fn arguments_ref(arguments: &str) -> JsonRef<'_> {
    if arguments.trim().is_empty() {
        return JsonRef::Object(Vec::new());
    }
    match JsonRef::parse(arguments) {
        Ok(v @ JsonRef::Object(_)) => v,
        _ => super::json_ref::obj([("_raw", super::json_ref::s(arguments))]),
    }
}

/// Arguments text parsed as a JSON object for formats that carry objects;
/// a model's malformed or empty arguments become `{}` rather than an error
/// at the caller, which keeps the raw text under `_raw` so nothing is lost.
pub fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "_raw": arguments }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_write_the_same_object_as_a_tree() {
        use super::super::json_ref::{obj, s};
        let mut items = Items::new("messages", 16);
        items.push(obj([("role", s("user")), ("content", s("a"))]));
        if let Some(content) = items.last_mut().and_then(|l| l.get_mut("content")) {
            *content = s("a\"b");
        }
        items.push(obj([("role", s("assistant"))]));
        let mut rest = Map::new();
        rest.insert("model".into(), serde_json::json!("m"));
        let out: Value = serde_json::from_slice(&items.finish(&rest)).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "a\"b"}, {"role": "assistant"}]})
        );
        let empty: Value = serde_json::from_slice(&Items::new("input", 0).finish(&Map::new())).unwrap();
        assert_eq!(empty, serde_json::json!({"input": []}));
    }

    #[test]
    fn odd_arguments_are_kept_not_dropped() {
        assert_eq!(arguments_object(""), serde_json::json!({}));
        assert_eq!(arguments_object("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(arguments_object("[1]"), serde_json::json!({"_raw": "[1]"}));
    }
}
