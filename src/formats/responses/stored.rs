//! Stored responses for models served through translation (issue #19
//! item 5): what a Responses call keeps (its whole input, as items, and
//! the response it got), how a later call that names it by
//! `previous_response_id`, or names its items by `item_reference`, gets
//! the conversation rebuilt (earlier input, then earlier output, then its
//! own input: tool calls and signed reasoning items included, as the
//! parser reads them), and the final response read from a translated
//! stream. Pure: the store lookups are the caller's.

use serde_json::{json, Value};

/// A stored response, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: String,
    pub account_id: i64,
    /// Every input item the call was answered from, each with an `id`.
    pub input: Vec<Value>,
    /// The response object the caller got.
    pub response: Value,
}

impl Stored {
    /// The response's output items.
    pub fn output(&self) -> Vec<Value> {
        self.response.get("output").and_then(Value::as_array).cloned().unwrap_or_default()
    }
}

/// A request's `input` as items (a string is one user message).
pub fn input_items(input: Value) -> Result<Vec<Value>, String> {
    match input {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({ "type": "message", "role": "user", "content": s })]),
        Value::Array(items) => Ok(items),
        _ => Err("'input' must be a string or a list of items".into()),
    }
}

/// The ids of the `item_reference` items in `input`, in order.
pub fn references(input: &[Value]) -> Vec<String> {
    input
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("item_reference"))
        .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The conversation a call is answered from: the previous response's
/// input and output, then the call's own input with each
/// `item_reference` replaced by the item it names (`found`).
pub fn rebuild(
    previous: Option<&Stored>,
    input: Vec<Value>,
    found: &[(String, Value)],
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    if let Some(p) = previous {
        out.extend(p.input.iter().cloned());
        out.extend(p.output());
    }
    for item in input {
        if item.get("type").and_then(Value::as_str) != Some("item_reference") {
            out.push(item);
            continue;
        }
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        let referred = found
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, item)| item.clone())
            .ok_or_else(|| format!("Item with id '{id}' not found"))?;
        out.push(referred);
    }
    Ok(out)
}

/// `items`, each given an id (`<response id>_in_<n>`) where it has none,
/// so `input_items` and `item_reference` can name them.
pub fn with_ids(items: Vec<Value>, response_id: &str) -> Vec<Value> {
    items
        .into_iter()
        .enumerate()
        .map(|(n, mut item)| {
            if let Value::Object(map) = &mut item {
                if !map.contains_key("id") {
                    map.insert("id".into(), Value::String(format!("{response_id}_in_{n}")));
                }
                if !map.contains_key("type") {
                    map.insert("type".into(), Value::String("message".into()));
                }
            }
            item
        })
        .collect()
}

/// The input items an `input_items` listing shows, newest first as the
/// API's default order.
pub fn input_items_list(stored: &Stored) -> Value {
    let data: Vec<Value> = stored.input.iter().rev().cloned().collect();
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    json!({ "object": "list", "data": data, "first_id": id_of(data.first()), "last_id": id_of(data.last()), "has_more": false })
}

/// The response a translated Responses stream ended with: the `response`
/// of its `response.completed` (or `response.incomplete`) event, read from
/// what was written to the caller.
pub fn completed_in(events: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(events).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter(|d| d.contains("\"response.completed\"") || d.contains("\"response.incomplete\""))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|event| event.get("response").cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        Stored {
            id: "resp_1".into(),
            account_id: 1,
            input: with_ids(vec![json!({"role": "user", "content": "what is 2+2? use the tool"})], "resp_1"),
            response: json!({"id": "resp_1", "output": [
                {"type": "reasoning", "id": "rs_1", "encrypted_content": "tollgate.anthropic:sig", "summary": []},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add", "arguments": "{\"a\":2,\"b\":2}"}
            ]}),
        }
    }

    #[test]
    fn a_previous_response_and_item_references_rebuild_the_conversation() {
        let previous = stored();
        let turn = vec![json!({"type": "function_call_output", "call_id": "call_1", "output": "4"})];
        let rebuilt = rebuild(Some(&previous), turn, &[]).unwrap();
        let kinds: Vec<&str> = rebuilt.iter().map(|i| i["type"].as_str().unwrap_or("message")).collect();
        assert_eq!(kinds, ["message", "reasoning", "function_call", "function_call_output"]);
        assert_eq!(
            rebuilt[1]["encrypted_content"], "tollgate.anthropic:sig",
            "the signed thinking block kept"
        );
        assert_eq!(rebuilt[0]["id"], "resp_1_in_0");

        let referring = vec![
            json!({"type": "item_reference", "id": "fc_1"}),
            json!({"type": "function_call_output", "call_id": "call_1", "output": "4"}),
        ];
        assert_eq!(references(&referring), ["fc_1"]);
        let found = vec![("fc_1".to_string(), previous.output()[1].clone())];
        let rebuilt = rebuild(None, referring.clone(), &found).unwrap();
        assert_eq!(rebuilt[0]["name"], "add");
        assert!(rebuild(None, referring, &[]).unwrap_err().contains("fc_1"));
    }

    #[test]
    fn input_as_a_string_or_items_and_the_completed_response_of_a_stream() {
        assert_eq!(input_items(json!("hi")).unwrap()[0]["role"], "user");
        assert!(input_items(json!(3)).is_err());
        let events = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",\"output\":[]}}\n\n";
        assert_eq!(completed_in(events).unwrap()["status"], "completed");
        assert_eq!(completed_in(b"data: {\"type\":\"response.created\"}\n\n"), None);
        let list = input_items_list(&stored());
        assert_eq!(list["first_id"], "resp_1_in_0");
    }
}
