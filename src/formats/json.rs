//! Small readers over `serde_json::Value` that name the offending field
//! in their errors, and a string escaper for the hand-written stream events.

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

pub fn opt_str<'a>(v: &'a Value, key: &str, at: &str) -> Result<Option<&'a str>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("'{at}{key}' must be a string"))),
    }
}

pub fn req_str<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str> {
    opt_str(v, key, at)?.ok_or_else(|| bad(format!("'{at}{key}' is required")))
}

pub fn opt_u64(v: &Value, key: &str) -> Result<Option<u64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(Some).ok_or_else(|| bad(format!("'{key}' must be a non-negative integer"))),
    }
}

pub fn opt_f64(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_f64().map(Some).ok_or_else(|| bad(format!("'{key}' must be a number"))),
    }
}

pub fn opt_bool(v: &Value, key: &str) -> Result<Option<bool>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("'{key}' must be a boolean"))),
    }
}

/// An array field; absent or null reads as empty.
pub fn array<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a [Value]> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(bad(format!("'{at}{key}' must be an array"))),
    }
}

/// `stop` as a string or a list of strings.
pub fn string_or_list(v: Option<&Value>, key: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(format!("'{key}' must hold strings"))))
            .collect(),
        Some(_) => Err(bad(format!("'{key}' must be a string or a list of strings"))),
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

/// Writes `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

pub fn quote(s: &str) -> String {
    let mut out = String::new();
    push_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_serde_json() {
        for s in ["", "plain", "quote \" and \\ back", "ctl \u{1} \n\t\r", "ünïcödé 🎉", "</script>"] {
            assert_eq!(quote(s), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn odd_arguments_are_kept_not_dropped() {
        assert_eq!(arguments_object(""), serde_json::json!({}));
        assert_eq!(arguments_object("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(arguments_object("[1]"), serde_json::json!({"_raw": "[1]"}));
    }
}
