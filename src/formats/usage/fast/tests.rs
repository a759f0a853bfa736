use super::read;
use crate::formats::usage::from_usage_value;
use crate::formats::ClientFormat;
use proptest::prelude::*;

const FORMATS: [ClientFormat; 4] =
    [ClientFormat::Openai, ClientFormat::Responses, ClientFormat::Anthropic, ClientFormat::Gemini];

/// What the serde types alone make of `value` (the reader's answer, when
/// it gives one, must be this).
fn by_serde(format: ClientFormat, value: &[u8]) -> Option<crate::formats::usage::Usage> {
    super::super::from_usage_value_by_serde(format, value)
}

#[test]
fn the_shapes_providers_send_are_read_without_serde() {
    let samples: [(ClientFormat, &str); 6] = [
        (
            ClientFormat::Openai,
            r#"{"completion_tokens":3,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":2,"rejected_prediction_tokens":0},"prompt_tokens":20,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":4},"total_tokens":23}"#,
        ),
        (
            ClientFormat::Responses,
            r#"{"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123}"#,
        ),
        (
            ClientFormat::Anthropic,
            r#"{"input_tokens":2095,"cache_creation_input_tokens":7,"cache_read_input_tokens":100,"cache_creation":{"ephemeral_5m_input_tokens":7,"ephemeral_1h_input_tokens":0},"output_tokens":503,"service_tier":"standard"}"#,
        ),
        (ClientFormat::Anthropic, r#"{"output_tokens":15}"#),
        (
            ClientFormat::Gemini,
            r#"{"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 25, "thoughtsTokenCount": 5}"#,
        ),
        (
            ClientFormat::Gemini,
            r#"{"promptTokenCount":8,"candidatesTokenCount":12,"totalTokenCount":20,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}],"candidatesTokensDetails":[]}"#,
        ),
    ];
    for (format, text) in samples {
        let fast = read(format, text.as_bytes());
        assert!(fast.is_some(), "{format:?}: {text}");
        assert_eq!(fast, by_serde(format, text.as_bytes()), "{format:?}: {text}");
        assert_eq!(from_usage_value(format, text.as_bytes()), fast);
    }
}

#[test]
fn what_it_cannot_be_sure_of_is_left_to_serde() {
    for text in [
        r#"{"prompt_tokens":-1}"#,
        r#"{"prompt_tokens":1.0}"#,
        r#"{"prompt_tokens":1e3}"#,
        r#"{"prompt_tokens":01}"#,
        r#"{"prompt_tokens":18446744073709551616}"#,
        r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
        r#"{"prompt\u005ftokens":1}"#,
        r#"{"x":[[[1]]]}"#,
        r#"{"a":{"b":{"c":{"d":1}}}}"#,
        r#"{"x":[1.5]}"#,
        r#"{"x":"caf\u00e9"}"#,
        "{\"x\":\"caf\u{e9}\"}",
        r#"{"prompt_tokens":1} x"#,
        r#"{"prompt_tokens":1"#,
        r#"null"#,
        r#"{"prompt_tokens":1,}"#,
    ] {
        assert_eq!(read(ClientFormat::Openai, text.as_bytes()), None, "{text}");
    }
}

/// A JSON value of the kinds a usage object holds, and of kinds it does
/// not; `depth` bounds the nesting.
fn value(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        12 => (0u64..100_000).prop_map(|n| n.to_string()),
        3 => Just("null".to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("-3".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("2e2".to_string()),
        1 => Just("007".to_string()),
        1 => Just("true".to_string()),
        1 => Just("false".to_string()),
        2 => Just("\"standard\"".to_string()),
        1 => Just("\"a\\\"b\"".to_string()),
        1 => Just("\"\u{e9}\"".to_string()),
        1 => Just("[1, {\"a\": 2}]".to_string()),
        1 => Just("nul".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![3 => leaf, 1 => object(depth - 1)].boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "cached_tokens",
        "reasoning_tokens",
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "promptTokenCount",
        "candidatesTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "total_tokens",
        "service_tier",
        "prompt\\u005ftokens",
        "k\u{e9}y",
    ])
    .prop_map(str::to_string)
}

fn space() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n  ", "\t", "\r\n"])
}

fn object(depth: u32) -> BoxedStrategy<String> {
    prop::collection::vec((key(), value(depth), space(), space()), 0..8)
        .prop_map(|fields| {
            let inner: Vec<String> =
                fields.into_iter().map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}")).collect();
            format!("{{{}}}", inner.join(","))
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn its_answer_is_serdes_wherever_it_gives_one(text in object(2), tail in space()) {
        let text = format!("{text}{tail}");
        for format in FORMATS {
            if let Some(fast) = read(format, text.as_bytes()) {
                prop_assert_eq!(Some(fast), by_serde(format, text.as_bytes()), "{:?}: {}", format, text);
            }
            prop_assert_eq!(from_usage_value(format, text.as_bytes()), by_serde(format, text.as_bytes()));
        }
    }
}

#[test]
fn the_property_sees_the_reader_answer_often() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut answered, mut cases) = (0, 0);
    for _ in 0..2000 {
        let text = object(2).new_tree(&mut runner).unwrap().current();
        cases += 1;
        if FORMATS.iter().any(|f| read(*f, text.as_bytes()).is_some()) {
            answered += 1;
        }
    }
    // The property says something only where the reader answers.
    assert!(answered * 5 > cases, "the reader answered {answered} of {cases}");
}

/// The usage a document's top-level field gives when the document is
/// scanned from its start (what [`super::from_document_end`] must agree with).
fn scanned_from_start(format: ClientFormat, doc: &[u8]) -> Option<crate::formats::usage::Usage> {
    let mut scan = crate::formats::field_scan::FieldScan::new(crate::formats::usage::usage_field(format));
    scan.feed(doc);
    from_usage_value(format, scan.value()?)
}

#[test]
fn provider_documents_are_read_from_their_end() {
    let samples: [(ClientFormat, &str, u64); 5] = [
        (
            ClientFormat::Openai,
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"say \"usage\": {\"prompt_tokens\": 9}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
            19,
        ),
        (
            ClientFormat::Responses,
            r#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123},"user":null,"metadata":{}}"#,
            36,
        ),
        (
            ClientFormat::Anthropic,
            "{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],\"stop_reason\":\"end_turn\",\n \"usage\" : {\"input_tokens\":12,\"output_tokens\":6}\n}\n",
            12,
        ),
        (
            ClientFormat::Gemini,
            r#"{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":12,"totalTokenCount":20,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
            8,
        ),
        (ClientFormat::Openai, r#"{"usage":{"prompt_tokens":3,"completion_tokens":1}}"#, 3),
    ];
    for (format, doc, input) in samples {
        let end = super::from_document_end(format, doc.as_bytes());
        assert_eq!(end.map(|u| u.input_tokens), Some(input), "{format:?}: {doc}");
        assert_eq!(end, scanned_from_start(format, doc.as_bytes()), "{format:?}: {doc}");
    }
}

#[test]
fn documents_not_ending_so_are_left_to_the_scan() {
    for doc in [
        // Nested, not at the top level.
        r#"{"choices":[{"usage":{"prompt_tokens":5}}]}"#,
        r#"{"a":{"usage":{"prompt_tokens":5}}}"#,
        // A string's text, not a key.
        r#"{"usage":{"prompt_tokens":1},"text":"\"usage\":{\"prompt_tokens\":5}}"}"#,
        r#"{"usage":{"prompt_tokens":1},"tags":["usage"]}"#,
        // Cut before its end.
        r#"{"usage":{"prompt_tokens":5}"#,
        r#"{"usage":{"prompt_tokens":5},"x":1"#,
        // A field after it that is not of the plain shape.
        r#"{"usage":{"prompt_tokens":5},"choices":[{"message":{"content":"hi"}}]}"#,
        // Something after the document.
        r#"{"usage":{"prompt_tokens":5}} {}"#,
        r#"{"usage":null}"#,
    ] {
        assert_eq!(super::from_document_end(ClientFormat::Openai, doc.as_bytes()), None, "{doc}");
    }
}

/// A top-level field of a response document: the usage, or what
/// surrounds it (text that spells a usage, a usage nested deeper).
fn document_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(vec!["usage", "usageMetadata"]), object(2))
            .prop_map(|(k, v)| format!("\"{k}\":{v}")),
        2 => Just(r#""choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 7}"},"usage":{"prompt_tokens":8}}]"#.to_string()),
        2 => Just(r#""service_tier":"default""#.to_string()),
        1 => Just(r#""metadata":{"usage":"x"}"#.to_string()),
        1 => Just(r#""user":null"#.to_string()),
        1 => Just(r#""tags":["usage", "usageMetadata"]"#.to_string()),
        1 => Just(r#""n":12"#.to_string()),
        1 => Just(r#""usage":null"#.to_string()),
    ]
}

/// A response document; some lose their last bytes, as a cut body does.
fn document() -> impl Strategy<Value = String> {
    (prop::collection::vec((document_field(), space()), 0..6), space(), 0usize..4).prop_map(
        |(fields, tail, cut)| {
            let inner: Vec<String> = fields.into_iter().map(|(f, s)| format!("{s}{f}{s}")).collect();
            let mut doc = format!("{{{}}}{tail}", inner.join(","));
            doc.truncate(doc.len().saturating_sub(cut.saturating_sub(2)));
            doc
        },
    )
}

#[test]
fn the_property_sees_documents_read_from_their_end() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut answered, mut cases) = (0, 0);
    for _ in 0..2000 {
        let doc = proptest::strategy::ValueTree::current(&document().new_tree(&mut runner).unwrap());
        cases += 1;
        if FORMATS.iter().any(|f| super::from_document_end(*f, doc.as_bytes()).is_some()) {
            answered += 1;
        }
    }
    // Most documents end otherwise (a field after the usage that is not of
    // the plain shape, a cut, a usage the reader leaves to serde).
    assert!(answered * 20 > cases, "read from the end: {answered} of {cases}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    #[test]
    fn read_from_the_end_it_answers_as_the_scan_from_the_start(doc in document()) {
        for format in FORMATS {
            if let Some(end) = super::from_document_end(format, doc.as_bytes()) {
                prop_assert_eq!(Some(end), scanned_from_start(format, doc.as_bytes()), "{:?}: {}", format, doc);
            }
            prop_assert_eq!(
                crate::formats::usage::from_response(format, doc.as_bytes()),
                scanned_from_start(format, doc.as_bytes()),
                "{:?}: {}", format, doc
            );
        }
    }
}
