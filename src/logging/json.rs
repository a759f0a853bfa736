//! Log lines as JSON objects, one a line: `timestamp` (RFC 3339, UTC, to
//! the millisecond), `level`, `target`, `message`, then the record's
//! key-values as keys of their own (the access line's fields, typed:
//! numbers stay numbers, an absent value is `null`). serde_json encodes
//! the line, so no text is escaped by hand.

use log::kv::{Error, Key, Value, VisitSource, VisitValue};
use serde_json::{Map, Value as Json};
use std::io::Write;

/// The keys every line has; a record's key-value of the same name is left
/// out rather than written twice.
const OWN_KEYS: [&str; 4] = ["timestamp", "level", "target", "message"];

#[derive(serde::Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'static str,
    target: &'a str,
    message: String,
    #[serde(flatten)]
    fields: Map<String, Json>,
}

/// env_logger's format for `log.format: json`.
pub fn format(buf: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    let line = line(buf.timestamp_millis().to_string(), record);
    serde_json::to_writer(&mut *buf, &line)?;
    writeln!(buf)
}

fn line<'a>(timestamp: String, record: &'a log::Record<'_>) -> Line<'a> {
    let mut fields = Map::new();
    // A value that cannot be read is left out; the line itself still goes.
    let _ = record.key_values().visit(&mut Fields(&mut fields));
    Line {
        timestamp,
        level: record.level().as_str(),
        target: record.target(),
        message: record.args().to_string(),
        fields,
    }
}

struct Fields<'m>(&'m mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        if OWN_KEYS.contains(&key.as_str()) {
            return Ok(());
        }
        let mut json = Json::Null;
        value.visit(Typed(&mut json))?;
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}

/// One key-value's value as JSON of its own type.
struct Typed<'j>(&'j mut Json);

impl<'v> VisitValue<'v> for Typed<'_> {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), Error> {
        *self.0 = Json::String(value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), Error> {
        *self.0 = Json::Null;
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), Error> {
        *self.0 = value.into();
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), Error> {
        *self.0 = value.into();
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), Error> {
        // NaN and infinities have no JSON number: null, as serde_json writes them.
        *self.0 = serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number);
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), Error> {
        *self.0 = value.into();
        Ok(())
    }
    fn visit_str(&mut self, value: &str) -> Result<(), Error> {
        *self.0 = value.into();
        Ok(())
    }
}

/// A panic is logged as one more JSON line (the default hook would write
/// plain text to stderr, in the middle of the JSON stream).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!(target: "panic", "thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(record: &log::Record<'_>) -> Json {
        let text = serde_json::to_string(&line("2026-01-02T03:04:05.678Z".into(), record)).unwrap();
        assert!(!text.contains('\n'), "{text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_line_with_its_fields_typed() {
        use log::kv::ToValue;
        let none: Option<u64> = None;
        let kvs: [(&str, Value<'_>); 6] = [
            ("status", Value::from(200u64)),
            ("path", Value::from("/v1/chat \"quoted\"\n")),
            ("duration_ms", Value::from(1.5f64)),
            ("cost_nano_usd", Value::from(-3i64)),
            ("key_id", none.to_value()),
            ("message", Value::from("not twice")),
        ];
        let args = format_args!("GET /v1 status=200");
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("access")
            .args(args)
            .key_values(&kvs)
            .build();
        let line = render(&record);
        assert_eq!(line["timestamp"], "2026-01-02T03:04:05.678Z");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "access");
        assert_eq!(line["message"], "GET /v1 status=200");
        assert_eq!(line["status"], 200);
        assert_eq!(line["path"], "/v1/chat \"quoted\"\n");
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["cost_nano_usd"], -3);
        assert_eq!(line["key_id"], Json::Null);
    }
}
