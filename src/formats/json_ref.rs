//! A JSON document read in place: strings without escapes borrow from the
//! request body instead of being copied, and objects are flat vectors (a
//! `serde_json::Value` object is a B-tree node of several hundred bytes
//! even for two keys). Request translation reads bodies of many megabytes
//! through it, so a request costs about its own size, not a tree 10x it.

use super::body::CowStr;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum JsonRef<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<JsonRef<'a>>),
    /// Keys in document order; a repeated key's last value wins, as in serde_json.
    Object(Vec<(Cow<'a, str>, JsonRef<'a>)>),
    /// Output only: a `data:` URL written from its parts, so a large image
    /// is not copied into a string of its own first.
    DataUrl {
        media_type: &'a str,
        data: &'a str,
    },
    /// JSON text as it is: a tool's schema read from a request (never a
    /// tree: a schema of megabytes is passed on as its text), a request's
    /// large field no translation reads, or a schema written out.
    Raw(Verbatim<'a>),
}

/// JSON text to write as it is; equal when the texts are.
#[derive(Debug, Clone, Copy)]
pub struct Verbatim<'a>(pub &'a RawValue);

impl PartialEq for Verbatim<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// JSON text written out as it is.
pub fn raw(text: &RawValue) -> JsonRef<'_> {
    JsonRef::Raw(Verbatim(text))
}

/// Fields whose value is a JSON schema, kept as text wherever they are in
/// a request's top-level field: tools pass their schemas on unchanged.
const SCHEMA_KEYS: [&str; 4] = ["input_schema", "parameters", "parametersJsonSchema", "schema"];

/// A top-level field of more than this that no translation reads is kept
/// as its text, never parsed (an unknown field of millions of items).
pub const UNREAD_BYTES: usize = 16 * 1024;

impl<'a> JsonRef<'a> {
    /// Parses one JSON value.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        serde_json::from_str::<JsonRef<'a>>(text).map_err(|e| format!("invalid JSON: {e}"))
    }

    /// Parses `body`, one JSON object, leaving its field `key` unparsed:
    /// a request's long array (messages, contents, input) is then read an
    /// item at a time, and no tree of the whole body exists at once.
    ///
    /// A field named in `read` is parsed with its schemas kept as text
    /// ([`SCHEMA_KEYS`]); any other field is parsed only if small
    /// ([`UNREAD_BYTES`]), else kept as its text.
    pub fn parse_object_deferring(
        body: &'a [u8],
        key: &str,
        read: &[&str],
    ) -> Result<(Self, Option<&'a RawValue>), String> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed = de
            .deserialize_map(DeferringVisitor { key, read })
            .map_err(|e| format!("the body is not a valid JSON object: {e}"))?;
        de.end().map_err(|e| format!("the body has trailing characters after the JSON object: {e}"))?;
        Ok(parsed)
    }

    /// Calls `each` with every item of a deferred array, in order, each
    /// still unparsed, and returns how many there were: `None` when `raw`
    /// is not an array. No list of the items is made (on half a million
    /// small messages it was 8 MB); the first error of `each` stops the walk.
    pub fn each_raw_item<E>(
        raw: &'a RawValue,
        each: impl FnMut(usize, &'a RawValue) -> Result<(), E>,
    ) -> Option<Result<usize, E>> {
        let mut failed = None;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let walked = serde::Deserializer::deserialize_seq(&mut de, EachItem { each, failed: &mut failed });
        match (walked, failed) {
            (_, Some(e)) => Some(Err(e)),
            (Ok(n), None) => Some(Ok(n)),
            (Err(_), None) => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&JsonRef<'a>> {
        match self {
            JsonRef::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A field as it is, for [`JsonRef::raw_text`] (the same as `get`).
    pub fn field(&self, key: &str) -> Option<&JsonRef<'a>> {
        self.get(key)
    }

    /// The value as a tool's schema: its text, as it came when it was
    /// kept raw.
    pub fn schema(&self) -> super::canonical::Schema {
        super::canonical::Schema::from_text(self.raw_text().into_owned())
    }

    /// The value's JSON text: a raw one's slice of the body as it is,
    /// any other written out.
    pub fn raw_text(&self) -> std::borrow::Cow<'a, str> {
        match self {
            JsonRef::Raw(raw) => Cow::Borrowed(raw.0.get()),
            other => Cow::Owned(serde_json::to_string(other).unwrap_or_else(|_| "null".into())),
        }
    }

    /// `/a/b/0`-style lookup, as `serde_json::Value::pointer`.
    pub fn pointer(&self, pointer: &str) -> Option<&JsonRef<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut at = self;
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            at = match at {
                JsonRef::Object(_) => at.get(&token)?,
                JsonRef::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut JsonRef<'a>> {
        match self {
            JsonRef::Object(fields) => fields.iter_mut().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A `serde_json::Value` read in place (its strings borrowed).
    pub fn of_value(v: &'a Value) -> JsonRef<'a> {
        match v {
            Value::Null => JsonRef::Null,
            Value::Bool(b) => JsonRef::Bool(*b),
            Value::Number(n) => JsonRef::Number(n.clone()),
            Value::String(s) => JsonRef::String(Cow::Borrowed(s)),
            Value::Array(items) => JsonRef::Array(items.iter().map(JsonRef::of_value).collect()),
            Value::Object(map) => JsonRef::Object(
                map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), JsonRef::of_value(v))).collect(),
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonRef::String(s) => Some(s),
            _ => None,
        }
    }

    /// A media item as a URL (a `data:` URL for inline data), borrowed.
    pub fn url_of(media: &'a super::canonical::Media) -> JsonRef<'a> {
        match media {
            super::canonical::Media::Url { url, .. } => JsonRef::String(Cow::Borrowed(url)),
            super::canonical::Media::Inline { media_type, data } => JsonRef::DataUrl { media_type, data },
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            JsonRef::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            JsonRef::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            JsonRef::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JsonRef::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[JsonRef<'a>]> {
        match self {
            JsonRef::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, JsonRef::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, JsonRef::Object(_))
    }

    /// An owned `serde_json::Value`, for the few parts kept as they are
    /// (tool schemas, hosted tools).
    pub fn to_value(&self) -> Value {
        match self {
            JsonRef::Null => Value::Null,
            JsonRef::Bool(b) => Value::Bool(*b),
            JsonRef::Number(n) => Value::Number(n.clone()),
            JsonRef::String(s) => Value::String(s.to_string()),
            JsonRef::Array(items) => Value::Array(items.iter().map(JsonRef::to_value).collect()),
            JsonRef::Object(fields) => {
                let mut map = Map::new();
                for (k, v) in fields {
                    map.insert(k.to_string(), v.to_value());
                }
                Value::Object(map)
            }
            JsonRef::DataUrl { media_type, data } => {
                Value::String(format!("data:{media_type};base64,{data}"))
            }
            JsonRef::Raw(raw) => serde_json::from_str(raw.0.get()).unwrap_or(Value::Null),
        }
    }
}

/// A string borrowed from the canonical request being written out.
pub fn s(text: &str) -> JsonRef<'_> {
    JsonRef::String(Cow::Borrowed(text))
}

/// A string made for the output.
pub fn owned(text: String) -> JsonRef<'static> {
    JsonRef::String(Cow::Owned(text))
}

/// An object with these fields, in this order.
pub fn obj<'a, const N: usize>(fields: [(&'static str, JsonRef<'a>); N]) -> JsonRef<'a> {
    JsonRef::Object(fields.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect())
}

impl From<bool> for JsonRef<'_> {
    fn from(b: bool) -> Self {
        JsonRef::Bool(b)
    }
}

impl From<u64> for JsonRef<'_> {
    fn from(n: u64) -> Self {
        JsonRef::Number(n.into())
    }
}

impl serde::Serialize for JsonRef<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            JsonRef::Null => ser.serialize_unit(),
            JsonRef::Bool(b) => ser.serialize_bool(*b),
            JsonRef::Number(n) => n.serialize(ser),
            JsonRef::String(s) => ser.serialize_str(s),
            JsonRef::Array(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            JsonRef::Object(fields) => {
                let mut map = ser.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            JsonRef::DataUrl { media_type, data } => ser.collect_str(&DataUrl { media_type, data }),
            JsonRef::Raw(raw) => raw.0.serialize(ser),
        }
    }
}

struct DataUrl<'a> {
    media_type: &'a str,
    data: &'a str,
}

impl fmt::Display for DataUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data:{};base64,{}", self.media_type, self.data)
    }
}

impl<'a> std::ops::Index<&str> for JsonRef<'a> {
    type Output = JsonRef<'a>;

    fn index(&self, key: &str) -> &JsonRef<'a> {
        const NULL: JsonRef<'static> = JsonRef::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl PartialEq<&str> for JsonRef<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl fmt::Display for JsonRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor { schemas_as_text: false })
    }
}

/// Reads any value; with `schemas_as_text`, the schemas in it
/// ([`SCHEMA_KEYS`], at any depth) stay text (`JsonRef::Raw`).
#[derive(Clone, Copy)]
struct RefVisitor {
    schemas_as_text: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for RefVisitor {
    type Value = JsonRef<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RefVisitor {
    type Value = JsonRef<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonRef::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Number::from_f64(v).map(JsonRef::Number).ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        items.shrink_to_fit();
        Ok(JsonRef::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let value = if self.schemas_as_text && SCHEMA_KEYS.contains(&key.0.as_ref()) {
                JsonRef::Raw(Verbatim(map.next_value::<&'de RawValue>()?))
            } else {
                map.next_value_seed(self)?
            };
            fields.push((key.0, value));
        }
        fields.shrink_to_fit();
        Ok(JsonRef::Object(fields))
    }
}

struct DeferringVisitor<'k> {
    key: &'k str,
    read: &'k [&'k str],
}

impl<'de> Visitor<'de> for DeferringVisitor<'_> {
    type Value = (JsonRef<'de>, Option<&'de RawValue>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        let mut deferred = None;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            if key.0 == self.key {
                deferred = Some(map.next_value::<&'de RawValue>()?);
            } else if self.read.contains(&key.0.as_ref()) {
                fields.push((key.0, map.next_value_seed(RefVisitor { schemas_as_text: true })?));
            } else {
                let raw = map.next_value::<&'de RawValue>()?;
                let value = if raw.get().len() > UNREAD_BYTES {
                    JsonRef::Raw(Verbatim(raw))
                } else {
                    serde_json::from_str::<JsonRef<'de>>(raw.get()).map_err(serde::de::Error::custom)?
                };
                fields.push((key.0, value));
            }
        }
        Ok((JsonRef::Object(fields), deferred))
    }
}

/// Walks an array's items for [`JsonRef::each_raw_item`].
struct EachItem<'e, F, E> {
    each: F,
    failed: &'e mut Option<E>,
}

impl<'de, F, E> serde::de::Visitor<'de> for EachItem<'_, F, E>
where
    F: FnMut(usize, &'de RawValue) -> Result<(), E>,
{
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if let Err(e) = (self.each)(n, item) {
                *self.failed = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_large_field_nobody_reads_and_every_schema_stay_text() {
        let zeros = format!("[{}0]", "0,".repeat(UNREAD_BYTES));
        let schema = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
        let body = format!(
            r#"{{"x_unknown":{zeros},"small":{{"k":1}},"tools":[{{"name":"t","input_schema":{schema},"function":{{"parameters":{schema}}}}}],"messages":[]}}"#
        );
        let (top, _) = JsonRef::parse_object_deferring(body.as_bytes(), "messages", &["tools"]).unwrap();
        assert!(matches!(top.get("x_unknown"), Some(JsonRef::Raw(_))), "not parsed");
        assert_eq!(top.pointer("/small/k").and_then(JsonRef::as_u64), Some(1), "small ones are");
        let tool = &top["tools"].as_array().unwrap()[0];
        assert!(matches!(tool.field("input_schema"), Some(JsonRef::Raw(_))));
        assert_eq!(tool["input_schema"].raw_text(), schema, "as it came");
        assert!(matches!(tool.pointer("/function/parameters"), Some(JsonRef::Raw(_))));
        assert_eq!(tool["name"], "t");
        // Written out as it came.
        let out = serde_json::to_value(&top).unwrap();
        assert_eq!(out, serde_json::from_str::<Value>(&body.replace(r#","messages":[]"#, "")).unwrap());
        assert_eq!(tool["input_schema"].to_value(), serde_json::from_str::<Value>(schema).unwrap());
    }

    #[test]
    fn reads_like_serde_json_and_borrows_plain_strings() {
        let body = br#"{"a":"plain","b":"esc\naped","n":[1,-2,3.5,null,true],"o":{"k":"v"},"a":"last"}"#;
        let doc = JsonRef::parse_object_deferring(body, "unused", &[]).unwrap().0;
        assert!(matches!(doc.get("a"), Some(JsonRef::String(Cow::Borrowed("last")))));
        assert!(matches!(doc.get("b"), Some(JsonRef::String(Cow::Owned(_)))));
        assert_eq!(doc.pointer("/o/k").and_then(JsonRef::as_str), Some("v"));
        assert_eq!(doc.pointer("/n/2").and_then(JsonRef::as_f64), Some(3.5));
        assert_eq!(doc["missing"], JsonRef::Null);
        assert_eq!(doc.to_value(), serde_json::from_slice::<Value>(body).unwrap());
        assert_eq!(doc["o"].to_value(), json!({"k": "v"}));
        assert_eq!(serde_json::to_value(&doc).unwrap(), doc.to_value(), "serialises as it reads");
        let v = json!({"a": [1, "x", {"b": null}]});
        assert_eq!(JsonRef::of_value(&v).to_value(), v);
        assert_eq!(
            serde_json::to_string(&obj([("t", s("a\"b")), ("n", 3u64.into())])).unwrap(),
            r#"{"t":"a\"b","n":3}"#
        );
        for bad in [&b"[1]"[..], b"{", b"\"s\"", b"{} x"] {
            assert!(JsonRef::parse_object_deferring(bad, "messages", &[]).is_err());
        }
        let (top, raw) =
            JsonRef::parse_object_deferring(br#"{"model":"m","messages":[{"a":1},"x"]}"#, "messages", &[])
                .unwrap();
        assert_eq!(top.get("model").and_then(JsonRef::as_str), Some("m"));
        assert!(top.get("messages").is_none());
        let mut seen = Vec::new();
        let walked = JsonRef::each_raw_item(raw.unwrap(), |i, item| {
            if i == 1 {
                assert_eq!(JsonRef::parse(item.get()).unwrap(), JsonRef::String(Cow::Borrowed("x")));
            }
            seen.push((i, item.get().to_string()));
            if i == 0 {
                Ok(())
            } else {
                Err("second")
            }
        });
        assert_eq!(walked, Some(Err("second")));
        assert_eq!(seen, [(0, r#"{"a":1}"#.to_string()), (1, r#""x""#.to_string())]);
        assert_eq!(JsonRef::each_raw_item(raw.unwrap(), |_, _| Ok::<(), ()>(())), Some(Ok(2)));
        let not_an_array =
            JsonRef::parse_object_deferring(br#"{"messages":"s"}"#, "messages", &[]).unwrap().1.unwrap();
        assert!(JsonRef::each_raw_item(not_an_array, |_, _| Ok::<(), ()>(())).is_none());
    }
}
