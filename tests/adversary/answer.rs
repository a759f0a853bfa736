//! What a caller received, read in its own format (is it whole, its usage,
//! its text deltas), and what tokens cost at the demo's list prices.

use serde_json::Value;

/// A caller's answer as read: whether it completed as the provider meant
/// it, an error event in it, the usage it carried, its text deltas.
#[derive(Debug, Default, Clone, Copy)]
pub struct Answer {
    pub complete: bool,
    pub error: bool,
    /// (input, output) tokens, as the caller's format reports them.
    pub usage: Option<(i64, i64)>,
    pub deltas: u64,
    /// Any of the answer itself arrived: more than error events (the
    /// gateway's own, when the provider failed before sending anything).
    pub answered: bool,
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Complete SSE events (ended by a blank line) as (name, data).
pub fn events(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.pop(); // what follows the last blank line is not an event yet
    blocks
        .into_iter()
        .filter_map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_string());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

pub fn read_answer(format: &str, stream: bool, body: &[u8], clean_end: bool) -> Answer {
    let mut a = Answer::default();
    if !stream {
        a.answered = !body.is_empty();
        let Ok(doc) = serde_json::from_slice::<Value>(body) else { return a };
        a.answered = doc.get("error").is_none_or(Value::is_null);
        a.error = doc.get("error").is_some_and(|e| !e.is_null()) || doc["type"] == "error";
        let (usage, whole) = match format {
            "openai" => (&doc["usage"], doc["choices"].is_array()),
            "responses" => (&doc["usage"], doc["output"].is_array()),
            "anthropic" => (&doc["usage"], doc["type"] == "message"),
            _ => (&doc["usageMetadata"], doc["candidates"].is_array()),
        };
        a.usage = usage_of(format, usage);
        a.complete = clean_end && whole && !a.error;
        return a;
    }
    let mut done = false;
    let mut input = None;
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    // Bytes past the last whole event: part of one, not yet readable.
    a.answered = !text.ends_with("\n\n") && !text.is_empty();
    for (name, data) in events(body) {
        if done {
            // Past the closing event (a provider error after it): not part of the answer.
            break;
        }
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Value>(&data) else { continue };
        let kind = name.as_deref().or(ev["type"].as_str()).unwrap_or("").to_string();
        if ev.get("error").is_some_and(|e| !e.is_null()) || kind == "error" || kind == "response.failed" {
            a.error = true;
            continue;
        }
        a.answered = true;
        match format {
            "openai" => {
                if ev["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()) {
                    a.deltas += 1;
                }
                if ev["usage"].is_object() {
                    a.usage = usage_of(format, &ev["usage"]);
                }
            }
            "responses" => match kind.as_str() {
                "response.output_text.delta" => a.deltas += 1,
                "response.completed" | "response.incomplete" => {
                    done = true;
                    a.usage = usage_of(format, &ev["response"]["usage"]);
                }
                _ => {}
            },
            "anthropic" => match kind.as_str() {
                "message_start" => input = usage_of(format, &ev["message"]["usage"]).map(|u| u.0),
                "content_block_delta" if ev["delta"]["type"] == "text_delta" => a.deltas += 1,
                "message_delta" => {
                    let u = &ev["usage"];
                    let out = u["output_tokens"].as_i64();
                    let inp = u["input_tokens"]
                        .as_i64()
                        .map(|i| i + n(&u["cache_read_input_tokens"]) + n(&u["cache_creation_input_tokens"]));
                    a.usage = out.and_then(|o| Some((inp.or(input)?, o)));
                }
                "message_stop" => done = true,
                _ => {}
            },
            _ => {
                let parts = ev["candidates"][0]["content"]["parts"].as_array();
                if parts.is_some_and(|p| p.iter().any(|p| p["text"].as_str().is_some_and(|t| !t.is_empty())))
                {
                    a.deltas += 1;
                }
                if ev["usageMetadata"].is_object() {
                    a.usage = usage_of(format, &ev["usageMetadata"]);
                }
                if ev["candidates"][0]["finishReason"].is_string() {
                    done = true;
                }
            }
        }
    }
    a.complete = done && clean_end && !a.error;
    a
}

/// (input, output) from a usage object in `format`'s words.
fn usage_of(format: &str, u: &Value) -> Option<(i64, i64)> {
    let (input, output) = match format {
        "openai" => (u["prompt_tokens"].as_i64()?, u["completion_tokens"].as_i64()?),
        "responses" => (u["input_tokens"].as_i64()?, u["output_tokens"].as_i64()?),
        "anthropic" => (
            u["input_tokens"].as_i64()?
                + n(&u["cache_read_input_tokens"])
                + n(&u["cache_creation_input_tokens"]),
            u["output_tokens"].as_i64()?,
        ),
        _ => (
            u["promptTokenCount"].as_i64()?,
            u["candidatesTokenCount"].as_i64().unwrap_or(0) + n(&u["thoughtsTokenCount"]),
        ),
    };
    Some((input, output))
}

/// nano-USD per million tokens (input, output) and the model's id.
pub fn price(model: &str) -> (i64, i64, &'static str) {
    match model {
        "gpt-5.5" => (1_250_000_000, 10_000_000_000, "openai/gpt-5.5"),
        "claude-sonnet-4-6" => (3_000_000_000, 15_000_000_000, "anthropic/claude-sonnet-4-6"),
        _ => (300_000_000, 2_500_000_000, "google/gemini-3-flash-preview"),
    }
}

/// What `input` and `output` tokens of `model` cost at list price, rounded once.
pub fn cost(model: &str, input: i64, output: i64) -> i64 {
    let (i, o, _) = price(model);
    let tokens = i128::from(input) * i128::from(i) + i128::from(output) * i128::from(o);
    i64::try_from((tokens + 500_000) / 1_000_000).unwrap()
}
