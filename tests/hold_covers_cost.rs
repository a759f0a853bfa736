//! The hold covers the bill: for random requests in every client format to
//! every provider of `conf/demo.yaml` (many one-letter messages, unicode,
//! with and without output limits, several answers, reasoning), the hold
//! the gateway takes before a call goes upstream is at least what the mock
//! provider bills for the body the gateway sends it, and at least what the
//! provider could bill at the output limit that body sets. In process: the
//! gateway's planner and the mock's reply, no sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use tollgate::billing::NanoUsd;
use tollgate::formats::usage::{from_response, Usage};
use tollgate::formats::ClientFormat;
use tollgate::gateway::Gateway;
use tollgate::routing::{Endpoint, Route};
use tollgate_mock::conversation::Conversation;
use tollgate_mock::replies::{Api, Reply};
use tollgate_mock::Knobs;

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.yaml")).unwrap();
        let config = tollgate::config::parse_str(&text, &|_| None).unwrap();
        Gateway::from_config(&config).unwrap()
    })
}

const FORMATS: [ClientFormat; 4] =
    [ClientFormat::Openai, ClientFormat::Responses, ClientFormat::Anthropic, ClientFormat::Gemini];
const MODELS: [&str; 3] = ["gpt-5.5", "claude-sonnet-4-6", "gemini-3-flash-preview"];

#[derive(Debug, Clone)]
struct Case {
    format: ClientFormat,
    model: &'static str,
    messages: Vec<String>,
    limit: Option<u64>,
    /// Chat: which limit fields carry it (both: the other is half of it).
    limit_field: u8,
    /// Chat `n`, Gemini `candidateCount`: only where the provider is the caller's own.
    answers: u64,
    reasoning: Option<&'static str>,
    stream: bool,
    /// What the mock says, in deltas.
    chunks: usize,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]",
        "[a-zA-Z ,.]{1,60}",
        "\\PC{1,30}",
        "[\u{4e00}-\u{9fff}]{1,40}",
        "[\u{1f600}-\u{1f64f}]{1,20}",
    ]
}

fn messages() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![prop::collection::vec(text(), 1..40), (1usize..1_200).prop_map(|n| vec!["a".to_string(); n]),]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (0usize..4, 0usize..3, messages()),
        (prop::option::of(prop_oneof![Just(0u64), Just(1), 0u64..3_000]), 0u8..3, 1u64..5),
        (prop::option::of(prop::sample::select(vec!["low", "medium", "high"])), any::<bool>(), 1usize..64),
    )
        .prop_map(|((f, m, messages), (limit, limit_field, answers), (reasoning, stream, chunks))| {
            Case {
                format: FORMATS[f],
                model: MODELS[m],
                messages,
                limit,
                limit_field,
                answers,
                reasoning,
                stream,
                chunks,
            }
        })
}

/// The last message is the user's; before it, turns alternate.
fn role(case: &Case, i: usize, assistant: &'static str) -> &'static str {
    if (case.messages.len() - 1 - i).is_multiple_of(2) {
        "user"
    } else {
        assistant
    }
}

/// The request as the caller sends it, and where.
fn request(case: &Case) -> (Route, Value) {
    let own =
        |format| FORMATS.iter().position(|f| *f == format) == MODELS.iter().position(|m| *m == case.model);
    let openai_model = case.model == "gpt-5.5";
    let (endpoint, mut body) = match case.format {
        ClientFormat::Openai => {
            let messages: Vec<Value> = (0..case.messages.len())
                .map(|i| json!({"role": role(case, i, "assistant"), "content": case.messages[i]}))
                .collect();
            let mut body = json!({"model": case.model, "messages": messages, "stream": case.stream});
            if let Some(limit) = case.limit {
                match case.limit_field {
                    0 => body["max_tokens"] = json!(limit),
                    1 => body["max_completion_tokens"] = json!(limit),
                    _ => {
                        body["max_completion_tokens"] = json!(limit);
                        body["max_tokens"] = json!(limit / 2);
                    }
                }
            }
            if openai_model {
                body["n"] = json!(case.answers);
            }
            if let Some(effort) = case.reasoning {
                body["reasoning_effort"] = json!(effort);
            }
            (Endpoint::ChatCompletions, body)
        }
        ClientFormat::Responses => {
            let input: Vec<Value> = (0..case.messages.len())
                .map(|i| json!({"role": role(case, i, "assistant"), "content": case.messages[i]}))
                .collect();
            let mut body = json!({"model": case.model, "input": input, "stream": case.stream});
            if let Some(limit) = case.limit {
                body["max_output_tokens"] = json!(limit);
            }
            if let Some(effort) = case.reasoning {
                body["reasoning"] = json!({"effort": effort, "summary": "auto"});
            }
            (Endpoint::Responses, body)
        }
        ClientFormat::Anthropic => {
            let messages: Vec<Value> = (0..case.messages.len())
                .map(|i| json!({"role": role(case, i, "assistant"), "content": case.messages[i]}))
                .collect();
            let max_tokens = case.limit.unwrap_or(4_096);
            let mut body = json!({"model": case.model, "messages": messages, "max_tokens": max_tokens, "stream": case.stream});
            if case.reasoning.is_some() && max_tokens > 1_024 {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": 1_024});
            }
            (Endpoint::Messages, body)
        }
        ClientFormat::Gemini => {
            let contents: Vec<Value> = (0..case.messages.len())
                .map(|i| json!({"role": role(case, i, "model"), "parts": [{"text": case.messages[i]}]}))
                .collect();
            let mut config = json!({});
            if let Some(limit) = case.limit {
                config["maxOutputTokens"] = json!(limit);
            }
            if own(ClientFormat::Gemini) {
                config["candidateCount"] = json!(case.answers);
            }
            if case.reasoning.is_some() {
                config["thinkingConfig"] = json!({"thinkingBudget": 2_048, "includeThoughts": true});
            }
            let endpoint = Endpoint::GenerateContent { model: case.model.to_string(), stream: case.stream };
            (endpoint, json!({"contents": contents, "generationConfig": config}))
        }
    };
    if body.get("model").is_some() && case.format == ClientFormat::Gemini {
        body.as_object_mut().unwrap().remove("model");
    }
    (Route { format: case.format, endpoint, style: Default::default() }, body)
}

fn format_of(api: &Api) -> ClientFormat {
    match api {
        Api::OpenaiChat => ClientFormat::Openai,
        Api::OpenaiResponses => ClientFormat::Responses,
        Api::AnthropicMessages | Api::AnthropicCountTokens => ClientFormat::Anthropic,
        Api::Gemini { .. } => ClientFormat::Gemini,
    }
}

/// The largest output limit a provider could read in the body it gets.
fn upstream_limit(body: &Value) -> Option<u64> {
    ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|f| body.get(*f).and_then(Value::as_u64))
        .chain(body.pointer("/generationConfig/maxOutputTokens").and_then(Value::as_u64))
        .max()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_local_rejects: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn the_hold_covers_what_the_provider_bills(case in case()) {
        let gateway = gateway();
        let (route, body) = request(&case);
        let query = (case.stream && case.format == ClientFormat::Gemini).then_some("alt=sse");
        let planned = tollgate::exchange::plan(gateway, &route, Bytes::from(body.to_string()), query, &http::HeaderMap::new(), "req");
        // A request the gateway refuses (a translation it cannot make) is never held.
        prop_assume!(planned.is_ok());
        let plan = planned.unwrap();
        let model = &plan.model;
        let price = model.price.unwrap();
        let per_answer = plan.max_output.unwrap_or(model.max_output_tokens);
        let held_output = per_answer.saturating_mul(plan.choices.max(1));
        let hold = NanoUsd(price.worst_case(plan.input_estimate, held_output, plan.units).0.max(1));

        let (path, query) = plan.path.split_once('?').unwrap_or((&plan.path, ""));
        let api = Api::from_path("POST", path, query).unwrap();
        let upstream: Value = serde_json::from_slice(&plan.body).unwrap();
        // A body the provider would refuse is never billed.
        let convo = Conversation::read(&api, &upstream);
        prop_assume!(convo.is_ok());
        let knobs = Knobs { chunks: case.chunks, ..Knobs::default() };
        let reply = Reply::new(&api, &upstream, plan.body.len(), &knobs, &convo.unwrap());
        let usage = from_response(format_of(&api), &reply.whole_body()).unwrap();
        let cost = price.cost(&usage, 0);
        prop_assert!(hold >= cost, "held {hold:?} for {usage:?} costing {cost:?}: {}", String::from_utf8_lossy(&plan.body));

        // And at the most the provider may answer with, every answer.
        if let Some(limit) = upstream_limit(&upstream) {
            prop_assert!(limit <= per_answer, "the body lets the provider write {limit}, {per_answer} held");
            let worst = Usage { output_tokens: limit.saturating_mul(plan.choices.max(1)), ..usage };
            prop_assert!(hold >= price.cost(&worst, 0));
        }
    }
}
