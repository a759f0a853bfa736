//! The top level of a JSON request body, read without building a tree:
//! each field keeps its raw bytes, so the gateway can read `model` and
//! `stream`, rewrite one or two fields, and copy everything else verbatim
//! (a multi-megabyte history is validated once and never re-serialised).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, PartialEq)]
pub struct TopLevel<'a> {
    fields: Vec<(Cow<'a, str>, Raw<'a>)>,
}

/// A top-level field's value: its JSON text, as the body has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    pub fn get(self) -> &'a str {
        self.0
    }
}

impl<'a> TopLevel<'a> {
    /// Parses `body`, which must be one JSON object: by
    /// [`body_scan`](super::body_scan) where it is sure of the body, else by
    /// serde (which also words what is wrong with a body).
    pub fn parse(body: &'a [u8]) -> Result<Self, String> {
        match super::body_scan::fields(body) {
            Some(fields) if first_duplicate(&fields).is_none() => {
                Ok(Self { fields: fields.into_iter().map(|(k, v)| (Cow::Borrowed(k), Raw(v))).collect() })
            }
            _ => Self::parse_by_serde(body),
        }
    }

    /// [`parse`](Self::parse) by serde alone (the fuzz target and the
    /// property test hold the two to the same answers).
    pub fn parse_by_serde(body: &'a [u8]) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err("the request body is empty; expected a JSON object".into());
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .map_err(|e| format!("the body is not a valid JSON object: {e}"))?;
        de.end().map_err(|e| format!("the body has trailing characters after the JSON object: {e}"))?;
        Ok(Self { fields })
    }

    /// Every field as owned text, in document order.
    #[cfg(test)]
    pub(crate) fn fields_for_test(&self) -> Vec<(String, String)> {
        self.fields.iter().map(|(k, v)| (k.to_string(), v.get().to_string())).collect()
    }

    pub fn raw(&self, name: &str) -> Option<Raw<'a>> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A string field; `Err` when present with another type.
    pub fn str_field(&self, name: &str) -> Result<Option<String>, String> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            // A string without escapes or control characters (a model's
            // name) is its text: serde's machinery cost ten times the copy.
            Some(raw) if plain_string(raw.get()).is_some() => Ok(plain_string(raw.get()).map(str::to_string)),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| format!("'{name}' must be a string")),
        }
    }

    pub fn bool_field(&self, name: &str) -> Result<Option<bool>, String> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str::<bool>(raw.get())
                .map(Some)
                .map_err(|_| format!("'{name}' must be a boolean")),
        }
    }

    /// The body with `edits` applied: `(name, Some(json))` sets a field
    /// (in place, or appended), `(name, None)` removes it.
    pub fn rewrite(&self, edits: &[(&str, Option<String>)]) -> Vec<u8> {
        let size: usize = self.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, k: &str, v: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys were unescaped when parsed; write them back escaped.
            out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        };
        for (k, v) in &self.fields {
            match edits.iter().find(|(name, _)| name == k) {
                Some((_, Some(new))) => put(&mut out, k, new),
                Some((_, None)) => {}
                None => put(&mut out, k, v.get()),
            }
        }
        for (name, value) in edits {
            if let (Some(value), None) = (value, self.raw(name)) {
                put(&mut out, name, value);
            }
        }
        out.push(b'}');
        out
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, Raw<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push((key.0, Raw(value.get())));
        }
        if let Some(name) = first_duplicate(&fields) {
            // Routing and metering read one value; the provider might
            // read the other.
            return Err(serde::de::Error::custom(format!("duplicate key '{name}' at the top level")));
        }
        Ok(fields)
    }
}

/// The first key that appears twice, in time linear in the number of keys.
fn first_duplicate<K: AsRef<str> + PartialEq, V>(fields: &[(K, V)]) -> Option<&str> {
    if fields.len() <= 16 {
        return fields
            .iter()
            .enumerate()
            .find(|(i, (k, _))| fields[..*i].iter().any(|(earlier, _)| earlier == k))
            .map(|(_, (k, _))| k.as_ref());
    }
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    fields.iter().map(|(k, _)| k.as_ref()).find(|k| !seen.insert(*k))
}

/// The text of a JSON string that has no escapes and no control
/// characters (what serde would read it as), `None` for any other value.
fn plain_string(raw: &str) -> Option<&str> {
    let text = raw.strip_prefix('"')?.strip_suffix('"')?;
    super::escape::needs_no_escape(text).then_some(text)
}

/// A map key borrowed from the input when it has no escapes.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn reads_fields_and_keeps_the_rest_verbatim() {
        let body = br#"{"model":"gpt-5.5","messages":[{"role":"user","content":"hi \u00e9"}],"stream":true}"#;
        let top = TopLevel::parse(body).unwrap();
        assert_eq!(top.str_field("model").unwrap().as_deref(), Some("gpt-5.5"));
        assert_eq!(top.bool_field("stream").unwrap(), Some(true));
        let out = top.rewrite(&[
            ("model", Some("\"up\"".into())),
            ("stream_options", Some("{\"include_usage\":true}".into())),
        ]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""content":"hi \u00e9""#), "untouched bytes: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model"], "up");
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn escaped_keys_survive_a_rewrite() {
        let top = TopLevel::parse(br#"{"we\"ird":1,"model":"m"}"#).unwrap();
        let v: Value = serde_json::from_slice(&top.rewrite(&[("model", None)])).unwrap();
        assert_eq!(v, json!({"we\"ird": 1}));
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        for bad in [&b""[..], b"  ", b"[]", b"{", b"{\"a\":1} x", b"nul", b"\"s\""] {
            assert!(TopLevel::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let top = TopLevel::parse(br#"{"model":5,"stream":"yes"}"#).unwrap();
        assert!(top.str_field("model").is_err());
        for dup in [
            &br#"{"model":"a","model":"b"}"#[..],
            br#"{"stream":false,"x":1,"stream":true}"#,
            br#"{"model":"a","model":"b"}"#,
        ] {
            let err = TopLevel::parse(dup).err().unwrap();
            assert!(err.contains("duplicate key"), "{err}");
        }
        let many: String = (0..40).map(|i| format!("\"k{i}\":1,")).collect::<String>() + "\"k7\":2}";
        assert!(TopLevel::parse(format!("{{{many}").as_bytes()).err().unwrap().contains("'k7'"));
        assert!(
            TopLevel::parse(br#"{"a":{"x":1},"b":{"x":2}}"#).is_ok(),
            "nested keys may repeat across objects"
        );
        let top = TopLevel::parse(br#"{"model":5,"stream":"yes"}"#).unwrap();
        assert!(top.str_field("model").is_err());
        assert!(top.bool_field("stream").is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_string_field_is_what_serde_reads(text in r#"\PC*|[a-z"\\\x00-\x1f\x7f-\xff]{0,12}"#) {
            let body = serde_json::to_vec(&json!({ "model": text })).unwrap();
            let top = TopLevel::parse(&body).unwrap();
            proptest::prop_assert_eq!(top.str_field("model").unwrap(), Some(text));
        }
    }
}
