//! Property tests: a request built in format X from the canonical model
//! and read back gives the same canonical request, so what X can express
//! survives X → canonical → X.

use super::*;
use crate::formats::canonical::*;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, newlines and non-ASCII all appear.
    "[a-z \"\\\\\n☕é]{1,12}"
}

fn call() -> impl Strategy<Value = ToolCall> {
    ("[a-z]{1,6}", 0u32..1000, "[a-z]{1,5}").prop_map(|(name, n, id)| ToolCall {
        id: format!("call_{id}"),
        name,
        arguments: serde_json::json!({ "n": n, "s": "x" }).to_string(),
        signature: None,
    })
}

fn conversation() -> impl Strategy<Value = Vec<Message>> {
    let turn = (text(), proptest::option::of(text()), proptest::collection::vec(call(), 0..3), text())
        .prop_map(|(user, reply, calls, result)| {
            let mut out = vec![Message { role: Role::User, parts: smallvec::smallvec![Part::Text(user)] }];
            let mut parts: Vec<Part> = reply.into_iter().map(Part::Text).collect();
            let mut calls = calls;
            for (i, c) in calls.iter_mut().enumerate() {
                c.id = format!("{}_{i}", c.id);
            }
            parts.extend(calls.iter().cloned().map(Part::tool_call));
            if parts.is_empty() {
                return out;
            }
            out.push(Message { role: Role::Assistant, parts: parts.into() });
            if !calls.is_empty() {
                let results = calls
                    .iter()
                    .map(|c| {
                        Part::tool_result(ToolResult {
                            call_id: c.id.clone(),
                            name: None,
                            content: vec![Part::Text(result.clone())],
                            is_error: false,
                        })
                    })
                    .collect();
                out.push(Message { role: Role::User, parts: results });
            }
            out
        });
    proptest::collection::vec(turn, 1..4).prop_map(|turns| {
        let mut messages: Vec<Message> = turns.into_iter().flatten().collect();
        // Each format merges consecutive user turns; keep them apart.
        messages.dedup_by(|b, a| {
            a.role == Role::User && b.role == Role::User && {
                a.parts.append(&mut b.parts);
                true
            }
        });
        messages
    })
}

fn request(with_stop: bool) -> impl Strategy<Value = Request> {
    (
        proptest::option::of(text()),
        conversation(),
        proptest::collection::vec("[a-z]{1,6}", 0..3),
        1u64..5000,
        proptest::option::of(0u8..=20),
        proptest::collection::vec("[A-Z]{1,4}", 0..2),
    )
        .prop_map(move |(system, messages, tools, max, temp, stop)| Request {
            model: "m".into(),
            system: system.into_iter().collect(),
            messages,
            tools: tools
                .into_iter()
                .map(|name| Tool::Function {
                    name,
                    description: Some("d".into()),
                    parameters: crate::formats::canonical::Schema::object(),
                    strict: None,
                })
                .collect(),
            max_tokens: Some(max),
            temperature: temp.map(|t| f64::from(t) / 10.0),
            stop: if with_stop { stop } else { Vec::new() },
            ..Request::default()
        })
}

/// Differences of form, not content: how user turns are grouped (tool
/// results first, as every format wants them) and whether `strict: false`
/// is spelled out (Responses defaults to strict, so it always is).
fn normalize(mut req: Request) -> Request {
    let mut merged: Vec<Message> = Vec::new();
    for m in req.messages {
        match merged.last_mut() {
            Some(last) if last.role == Role::User && m.role == Role::User => last.parts.extend(m.parts),
            _ => merged.push(m),
        }
    }
    for m in &mut merged {
        m.parts.sort_by_key(|p| !matches!(p, Part::ToolResult(_)));
    }
    req.messages = merged;
    for t in &mut req.tools {
        if let Tool::Function { strict, .. } = t {
            *strict = None;
        }
    }
    req
}

fn round_trip(format: ClientFormat, req: &Request) -> Request {
    let codec = codec(format);
    let body = (codec.build_request)(req, Target::Native, Vec::new()).unwrap();
    let mut back = (codec.parse_request)(&body).unwrap();
    back.model = req.model.clone();
    normalize(back)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn chat_keeps_what_it_can_express(req in request(true)) {
        prop_assert_eq!(round_trip(ClientFormat::Openai, &req), normalize(req));
    }

    #[test]
    fn anthropic_keeps_what_it_can_express(req in request(true)) {
        prop_assert_eq!(round_trip(ClientFormat::Anthropic, &req), normalize(req));
    }

    #[test]
    fn responses_keeps_what_it_can_express(req in request(false)) {
        prop_assert_eq!(round_trip(ClientFormat::Responses, &req), normalize(req));
    }

    #[test]
    fn gemini_keeps_what_it_can_express(req in request(true)) {
        let req = normalize(req);
        let back = round_trip(ClientFormat::Gemini, &req);
        // Gemini carries no call ids, only names: compare with ids and
        // result names as Gemini reports them.
        prop_assert_eq!(back.messages.len(), req.messages.len());
        prop_assert_eq!(&back.system, &req.system);
        prop_assert_eq!(&back.tools, &req.tools);
        prop_assert_eq!((back.max_tokens, back.temperature, &back.stop), (req.max_tokens, req.temperature, &req.stop));
        for (a, b) in back.messages.iter().zip(&req.messages) {
            prop_assert_eq!(a.role, b.role);
            prop_assert_eq!(a.parts.len(), b.parts.len());
            for (pa, pb) in a.parts.iter().zip(&b.parts) {
                match (pa, pb) {
                    (Part::ToolCall(x), Part::ToolCall(y)) => {
                        prop_assert_eq!((&x.name, &x.arguments), (&y.name, &y.arguments));
                    }
                    (Part::ToolResult(x), Part::ToolResult(y)) => prop_assert_eq!(x.text(), y.text()),
                    (x, y) => prop_assert_eq!(x, y),
                }
            }
        }
    }
}

#[test]
fn chat_fields_without_an_equivalent_are_refused_by_name_unless_at_their_default() {
    let with = |extra: &str| {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        crate::formats::chat::parse_request(body.as_bytes())
    };
    assert!(with("").is_ok());
    for default in [r#","n":1"#, r#","logprobs":false"#, r#","frequency_penalty":0"#, r#","audio":null"#] {
        assert!(with(default).is_ok(), "{default}");
    }
    for (field, extra) in [
        ("n", r#","n":2"#),
        ("logprobs", r#","logprobs":true"#),
        ("web_search_options", r#","web_search_options":{}"#),
    ] {
        let err = with(extra).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(&format!("'{field}' cannot be translated")), "{extra}: {err}");
    }
}
