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
