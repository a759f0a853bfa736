use super::*;
use bytes::Bytes;

fn event(name: Option<&str>, data: &str) -> SseEvent {
    SseEvent { raw: Bytes::new(), event: name.map(str::to_string), data: Some(data.to_string()) }
}

#[test]
fn reads_each_formats_response_usage() {
    let o = br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
    assert_eq!(
        from_response(ClientFormat::Openai, o),
        Some(Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 2
        })
    );
    let a = br#"{"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20}}"#;
    let got = from_response(ClientFormat::Anthropic, a).unwrap();
    assert_eq!((got.input_tokens, got.cached_input_tokens, got.cache_write_tokens), (130, 100, 20));
    let g = br#"{"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":3,"thoughtsTokenCount":2,"cachedContentTokenCount":1}}"#;
    let got = from_response(ClientFormat::Gemini, g).unwrap();
    assert_eq!(
        (got.input_tokens, got.output_tokens, got.reasoning_tokens, got.cached_input_tokens),
        (7, 5, 2, 1)
    );
    let r = br#"{"usage":{"input_tokens":8,"output_tokens":2,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":1}}}"#;
    assert_eq!(from_response(ClientFormat::Responses, r).unwrap().reasoning_tokens, 1);
    assert_eq!(from_response(ClientFormat::Openai, b"not json"), None);
}

#[test]
fn follows_anthropic_start_then_delta() {
    let mut s = StreamUsage::new(ClientFormat::Anthropic);
    s.observe(&event(Some("message_start"), r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":1}}}"#));
    s.observe(&event(Some("content_block_delta"), r#"{"usage":"ignored"}"#));
    s.observe(&event(Some("message_delta"), r#"{"type":"message_delta","usage":{"output_tokens":42}}"#));
    let u = s.usage().unwrap();
    assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens), (15, 3, 42));
}

#[test]
fn openai_null_usage_is_not_usage() {
    let mut s = StreamUsage::new(ClientFormat::Openai);
    s.observe(&event(None, r#"{"choices":[{"delta":{"content":"\"usage\":{"}}],"usage":null}"#));
    assert_eq!(s.usage(), None);
    s.observe(&event(None, r#"{"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":4}}"#));
    assert_eq!(s.usage().unwrap().output_tokens, 4);
}

#[test]
fn responses_completed_and_gemini_last_chunk() {
    let mut r = StreamUsage::new(ClientFormat::Responses);
    r.observe(&event(
        Some("response.completed"),
        r#"{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6}}}"#,
    ));
    assert_eq!(r.usage().unwrap().input_tokens, 5);
    let mut g = StreamUsage::new(ClientFormat::Gemini);
    g.observe(&event(None, r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}}"#));
    g.observe(&event(None, r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":9}}"#));
    assert_eq!(g.usage().unwrap().output_tokens, 9);
}

/// `(event name, data)`.
type Ev<'a> = (Option<&'a str>, &'a str);

/// A stream of events, followed as a relay would.
fn follow(format: ClientFormat, events: &[Ev<'_>]) -> StreamUsage {
    let mut s = StreamUsage::new(format);
    for (name, data) in events {
        s.observe(&event(*name, data));
    }
    s
}

const ANTHROPIC_START: Ev<'static> = (
    Some("message_start"),
    r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}"#,
);

#[test]
fn each_formats_error_inside_a_stream_is_noticed() {
    let cases: [(ClientFormat, Vec<Ev<'_>>); 5] = [
        (
            ClientFormat::Anthropic,
            vec![
                ANTHROPIC_START,
                (
                    Some("error"),
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ),
            ],
        ),
        (ClientFormat::Openai, vec![(None, r#"{"error": {"message":"boom","type":"server_error"}}"#)]),
        (
            ClientFormat::Responses,
            vec![(
                Some("response.failed"),
                r#"{"type":"response.failed","response":{"status":"failed","usage":null}}"#,
            )],
        ),
        (ClientFormat::Responses, vec![(None, r#"{"type":"error","code":"server_error","message":"x"}"#)]),
        (ClientFormat::Gemini, vec![(None, r#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#)]),
    ];
    for (format, events) in cases {
        let s = follow(format, &events);
        assert!(s.failed(), "{format}");
        assert_eq!(s.ended(), format != ClientFormat::Gemini, "{format}: Gemini's end is its body's");
        assert!(s.closing(), "{format}");
    }
    // Text about an error is no error.
    let s = follow(ClientFormat::Openai, &[(None, r#"{"choices":[{"delta":{"content":"\"error\": {}"}}]}"#)]);
    assert!(!s.failed());
    let s = follow(
        ClientFormat::Gemini,
        &[(None, r#"{"candidates":[{"content":{"parts":[{"text":"error"}]}}]}"#)],
    );
    assert!(!s.failed());
}

#[test]
fn an_error_after_the_closing_event_leaves_the_call_completed() {
    // The caller had the whole answer before the error came: the call
    // completed (an idempotency key keeps its answer, not run again).
    let cases: [(ClientFormat, Vec<Ev<'_>>); 4] = [
        (
            ClientFormat::Anthropic,
            vec![
                ANTHROPIC_START,
                (Some("message_stop"), r#"{"type":"message_stop"}"#),
                (Some("error"), r#"{"type":"error","error":{"type":"overloaded_error","message":"late"}}"#),
            ],
        ),
        (
            ClientFormat::Openai,
            vec![(None, "[DONE]"), (None, r#"{"error": {"message":"late","type":"server_error"}}"#)],
        ),
        (
            ClientFormat::Responses,
            vec![
                (
                    Some("response.completed"),
                    r#"{"type":"response.completed","response":{"status":"completed"}}"#,
                ),
                (Some("response.failed"), r#"{"type":"response.failed","response":{"status":"failed"}}"#),
            ],
        ),
        (
            ClientFormat::Gemini,
            vec![
                (None, r#"{"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}]}"#),
                (None, r#"{"error":{"code":500,"message":"late","status":"INTERNAL"}}"#),
            ],
        ),
    ];
    for (format, events) in cases {
        let s = follow(format, &events);
        assert!(!s.failed(), "{format}");
    }
}

#[test]
fn a_usage_report_that_cannot_be_read_leaves_no_count() {
    for bad in [
        r#"{"output_tokens":-5}"#,
        r#"{"output_tokens":4.5}"#,
        r#"{"tokens":{"output_tokens":4}}"#,
        r#""lots""#,
    ] {
        let delta = format!(r#"{{"type":"message_delta","usage":{bad}}}"#);
        let s = follow(ClientFormat::Anthropic, &[ANTHROPIC_START, (Some("message_delta"), &delta)]);
        assert_eq!(s.usage(), None, "anthropic {bad}: never message_start's one token");
        let chat =
            format!(r#"{{"choices":[],"usage":{}}}"#, bad.replace("output_tokens", "completion_tokens"));
        assert_eq!(follow(ClientFormat::Openai, &[(None, &chat)]).usage(), None, "chat {bad}");
        let completed = format!(r#"{{"type":"response.completed","response":{{"usage":{bad}}}}}"#);
        assert_eq!(follow(ClientFormat::Responses, &[(None, &completed)]).usage(), None, "responses {bad}");
        let gemini = bad.replace("output_tokens", "candidatesTokenCount");
        let chunks = [
            r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}}"#.to_string(),
            format!(r#"{{"usageMetadata":{gemini}}}"#),
        ];
        let s = follow(ClientFormat::Gemini, &[(None, &chunks[0]), (None, &chunks[1])]);
        assert_eq!(s.usage(), None, "gemini {bad}: the last report decides");
    }
    let missing = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#;
    assert_eq!(
        follow(ClientFormat::Anthropic, &[ANTHROPIC_START, (Some("message_delta"), missing)]).usage(),
        None
    );
    assert_eq!(
        follow(ClientFormat::Responses, &[(Some("response.completed"), r#"{"response":{"usage":null}}"#)])
            .usage(),
        None
    );
}

#[test]
fn gemini_ends_with_its_body_and_a_late_usage_chunk_counts() {
    let s = follow(
        ClientFormat::Gemini,
        &[
            (
                None,
                r#"{"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5}}"#,
            ),
            (None, r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7}}"#),
        ],
    );
    assert!(s.closing() && !s.ended() && !s.failed());
    assert_eq!(s.usage().map(|u| u.output_tokens), Some(7));
}
