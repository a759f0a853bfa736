//! Providers that report usage or end a stream in ways the gateway must
//! not bill as nothing: a usage report of a shape no reader understands
//! (`x-mock-usage`), an error inside a stream that then closes cleanly
//! (`x-mock-fault: error-after` with `x-mock-cut-after`), and a Gemini
//! usage chunk after the one with `finishReason` (`late-usage`). Each edits
//! the reply the mock would otherwise send, in the API's own wire format.

use super::api::Api;
use crate::wire::sse;
use bytes::Bytes;
use serde_json::{json, Value};

/// How the usage report is misshapen (`x-mock-usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageShape {
    /// Every count negative.
    Negative,
    /// Every count with a half.
    Fractional,
    /// No usage field at all.
    Missing,
    /// The usage object inside another (`{"tokens": {...}}`).
    Wrapped,
}

impl UsageShape {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "negative" => Some(Self::Negative),
            "fractional" => Some(Self::Fractional),
            "missing" => Some(Self::Missing),
            "wrapped" => Some(Self::Wrapped),
            _ => None,
        }
    }

    /// Misshapes the usage report of one document or event, if it has one
    /// (Anthropic's `message_start` keeps its count: the last report is
    /// the one that is wrong).
    fn apply(self, doc: &mut Value) {
        let parent = if doc.pointer("/response/usage").is_some_and(Value::is_object) {
            doc.get_mut("response")
        } else {
            Some(&mut *doc)
        };
        let Some(Value::Object(parent)) = parent else { return };
        let key = if parent.contains_key("usageMetadata") { "usageMetadata" } else { "usage" };
        let Some(Value::Object(usage)) = parent.get(key).cloned() else { return };
        match self {
            Self::Missing => {
                parent.remove(key);
            }
            Self::Wrapped => {
                parent.insert(key.into(), json!({ "tokens": usage }));
            }
            Self::Negative | Self::Fractional => {
                let mut edited = usage;
                for value in edited.values_mut() {
                    if let Some(n) = value.as_i64() {
                        *value =
                            if self == Self::Negative { json!(-n.max(1)) } else { json!(n as f64 + 0.5) };
                    }
                }
                parent.insert(key.into(), Value::Object(edited));
            }
        }
    }

    pub fn whole_body(self, body: Vec<u8>) -> Vec<u8> {
        let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else { return body };
        self.apply(&mut doc);
        serde_json::to_vec(&doc).unwrap_or(body)
    }

    pub fn events(self, api: &Api, events: Vec<(Bytes, bool)>) -> Vec<(Bytes, bool)> {
        let mut parsed = Parsed::read(api, events);
        for (_, doc, _) in &mut parsed.events {
            self.apply(doc);
        }
        parsed.write()
    }
}

/// A stream's events as JSON, to edit and frame again.
struct Parsed {
    /// Gemini's JSON array rather than SSE.
    array: bool,
    events: Vec<(Option<String>, Value, bool)>,
}

impl Parsed {
    fn read(api: &Api, events: Vec<(Bytes, bool)>) -> Self {
        let array = !api.sse_framing();
        let events = events
            .into_iter()
            .filter_map(|(bytes, delta)| {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if array {
                    let element = text.trim_start_matches(['[', ',', '\r', '\n']).trim_end_matches(']');
                    return Some((None, serde_json::from_str(element).ok()?, delta));
                }
                let name = text.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_string);
                let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
                let doc = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
                Some((name, doc, delta))
            })
            .collect();
        Self { array, events }
    }

    fn write(self) -> Vec<(Bytes, bool)> {
        let total = self.events.len();
        self.events
            .into_iter()
            .enumerate()
            .map(|(i, (name, doc, delta))| {
                let text = match &doc {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !self.array {
                    return (sse(name.as_deref(), &text), delta);
                }
                // The framing Google uses without alt=sse, as replies.rs writes it.
                let lead = if i == 0 { "[" } else { ",\r\n" };
                let tail = if i + 1 == total { "]" } else { "" };
                (Bytes::from(format!("{lead}{text}{tail}")), delta)
            })
            .collect()
    }
}

/// The stream up to its `after`-th text delta, then the API's error event,
/// then a clean close.
pub fn error_after(api: &Api, events: Vec<(Bytes, bool)>, after: u64) -> Vec<(Bytes, bool)> {
    let mut parsed = Parsed::read(api, events);
    let mut deltas = 0;
    let keep = parsed
        .events
        .iter()
        .position(|(_, _, delta)| {
            deltas += u64::from(*delta);
            *delta && deltas > after
        })
        .unwrap_or(parsed.events.len());
    parsed.events.truncate(keep);
    let message = format!("mock: provider error after {after} deltas");
    let error = match api {
        Api::OpenaiChat => (
            None,
            json!({ "error": { "message": message, "type": "server_error", "param": null, "code": null } }),
        ),
        Api::OpenaiResponses => (
            Some("response.failed".to_string()),
            json!({ "type": "response.failed", "sequence_number": keep,
                "response": { "id": "resp_mock", "object": "response", "status": "failed",
                    "error": { "code": "server_error", "message": message },
                    "incomplete_details": null, "output": [], "usage": null } }),
        ),
        Api::AnthropicMessages | Api::AnthropicCountTokens => (
            Some("error".to_string()),
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": message } }),
        ),
        Api::Gemini { .. } => {
            (None, json!({ "error": { "code": 500, "message": message, "status": "INTERNAL" } }))
        }
    };
    parsed.events.push((error.0, error.1, false));
    parsed.write()
}

/// A Gemini stream whose `finishReason` chunk counts only the prompt, its
/// full count in one more chunk after it, with no candidates.
pub fn late_usage(api: &Api, events: Vec<(Bytes, bool)>) -> Vec<(Bytes, bool)> {
    if !matches!(api, Api::Gemini { .. }) {
        return events;
    }
    let mut parsed = Parsed::read(api, events);
    let Some((_, last, _)) = parsed.events.last_mut() else { return parsed.write() };
    let Some(full) = last.get("usageMetadata").cloned() else { return parsed.write() };
    last["usageMetadata"] = json!({ "promptTokenCount": full["promptTokenCount"] });
    let trailer = json!({ "usageMetadata": full, "modelVersion": last["modelVersion"], "responseId": last["responseId"] });
    parsed.events.push((None, trailer, false));
    parsed.write()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemini(sse: bool) -> Api {
        Api::Gemini { model: "m".into(), stream: true, sse }
    }

    fn events(api: &Api, texts: &[&str]) -> Vec<(Bytes, bool)> {
        let docs: Vec<Value> = texts
            .iter()
            .map(|t| {
                json!({ "candidates": [{ "content": { "parts": [{ "text": t }] } }],
                "usageMetadata": { "promptTokenCount": 3, "candidatesTokenCount": 1 } })
            })
            .collect();
        let parsed =
            Parsed { array: !api.sse_framing(), events: docs.into_iter().map(|d| (None, d, true)).collect() };
        parsed.write()
    }

    fn body(events: &[(Bytes, bool)]) -> String {
        events.iter().map(|(b, _)| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn a_gemini_array_stays_one_json_array_through_every_edit() {
        let api = gemini(false);
        let cut = error_after(&api, events(&api, &["a", "b", "c"]), 2);
        let doc: Vec<Value> = serde_json::from_str(&body(&cut)).unwrap();
        assert_eq!(doc.len(), 3);
        assert_eq!(doc[2]["error"]["code"], 500);
        let late = late_usage(&api, events(&api, &["a"]));
        let doc: Vec<Value> = serde_json::from_str(&body(&late)).unwrap();
        assert_eq!(doc[1]["usageMetadata"]["candidatesTokenCount"], 1);
        assert!(doc[0]["usageMetadata"].get("candidatesTokenCount").is_none());
        for shape in [UsageShape::Negative, UsageShape::Fractional, UsageShape::Missing, UsageShape::Wrapped]
        {
            let doc: Vec<Value> =
                serde_json::from_str(&body(&shape.events(&api, events(&api, &["a"])))).unwrap();
            assert_ne!(doc[0]["usageMetadata"]["candidatesTokenCount"], 1, "{shape:?}");
        }
    }

    #[test]
    fn sse_streams_keep_their_event_names() {
        let api = Api::AnthropicMessages;
        let stream = vec![
            (
                sse(
                    Some("message_start"),
                    r#"{"type":"message_start","message":{"usage":{"output_tokens":1}}}"#,
                ),
                false,
            ),
            (sse(Some("content_block_delta"), r#"{"type":"content_block_delta"}"#), true),
            (sse(Some("message_delta"), r#"{"type":"message_delta","usage":{"output_tokens":2}}"#), false),
        ];
        let negative = body(&UsageShape::Negative.events(&api, stream.clone()));
        assert!(
            negative.contains(
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-2}}"
            ),
            "{negative}"
        );
        assert!(negative.contains("\"output_tokens\":1"), "message_start keeps its count");
        let failed = body(&error_after(&api, stream, 0));
        assert!(failed.ends_with("event: error\ndata: {\"error\":{\"message\":\"mock: provider error after 0 deltas\",\"type\":\"overloaded_error\"},\"type\":\"error\"}\n\n"), "{failed}");
    }
}
