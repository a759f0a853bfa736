//! Entry points of the fuzz targets (`fuzz/`, run with cargo fuzz) for
//! every parser that reads bytes from outside: the SSE decoder, the
//! request-body reader, the pass-through relay, Gemini's JSON-array
//! framing, and each format's request, document and stream parsers. They live here, not in `fuzz/`, so that
//! `tests/fuzz_replay.rs` can run them on stable Rust in every CI run, over
//! the golden files, the recorded CLI traffic and any saved crash.
//!
//! Each one asserts properties, not only "no panic": a stream decodes to
//! the same events and the same translation however it is cut into
//! chunks, a pass-through loses no byte, and whatever the gateway writes
//! is JSON.

use crate::formats::body::TopLevel;
use crate::formats::estimate::TextBytes;
use crate::formats::framing::Framing;
use crate::formats::passthrough::Passthrough;
use crate::formats::translate::relay::{translate_document, StreamTranslation};
use crate::formats::translate::{self, parse_error_document, ClientContext, Target, Translator};
use crate::formats::ClientFormat;
use crate::sse::{SseDecoder, SseEvent};
use bytes::Bytes;

/// The format a selector byte names.
fn format_of(selector: u8) -> ClientFormat {
    ClientFormat::ALL[usize::from(selector) % ClientFormat::ALL.len()]
}

/// Every (client, provider) pair that translates, as a selector byte picks it.
fn translator_of(selector: u8) -> Translator {
    let pairs: Vec<Translator> = ClientFormat::ALL
        .iter()
        .flat_map(|&c| ClientFormat::ALL.iter().filter_map(move |&p| translate::translator(c, p)))
        .collect();
    pairs[usize::from(selector) % pairs.len()]
}

/// `data` cut into chunks whose sizes cycle through 1..=`seed % 17 + 1`
/// bytes, so every seed cuts lines, CRLFs and UTF-8 characters somewhere.
fn chunks(data: &[u8], seed: u8) -> Vec<Bytes> {
    let widest = usize::from(seed % 17) + 1;
    let mut out = Vec::new();
    let mut at = 0;
    let mut size = 1;
    while at < data.len() {
        let end = (at + size).min(data.len());
        out.push(Bytes::copy_from_slice(&data[at..end]));
        at = end;
        size = size % widest + 1;
    }
    out
}

fn decode(chunks: &[Bytes]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut events);
    }
    decoder.finish(&mut events);
    events
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

fn context(flags: u8) -> ClientContext {
    ClientContext {
        model: "fuzz-model".into(),
        created: 1_767_225_600,
        custom_tools: vec!["apply_patch".into()],
        include_usage: flags & 1 != 0,
        input_estimate: 42,
        gemini_sse: flags & 2 != 0,
        namespaces: vec!["multi_agent_v1".into()],
        request_id: "req_fuzz".into(),
    }
}

fn assert_json(bytes: &[u8], what: &str) {
    assert!(
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok(),
        "{what} is not JSON: {}",
        String::from_utf8_lossy(bytes)
    );
}

/// `[seed, stream..]`: the SSE decoder yields the same events however the
/// stream is cut, and their raw bytes are the stream, byte for byte. With
/// an event size limit (from the seed), what comes out before it gives up
/// is a prefix of the unlimited events, and a stream with no event past
/// the limit is not given up on.
pub fn sse_decoder(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let whole = decode(&[Bytes::copy_from_slice(stream)]);
    assert_eq!(decode(&chunks(stream, seed)), whole, "chunk boundaries changed the events");
    let raw: Vec<u8> = whole.iter().flat_map(|e| e.raw.iter().copied()).collect();
    assert_eq!(raw, stream, "the events' raw bytes are not the stream");

    let limit = usize::from(seed) * 7 + 1;
    let mut limited = SseDecoder::with_limit(limit);
    let mut events = Vec::new();
    for chunk in chunks(stream, seed.rotate_left(3)) {
        limited.feed(&chunk, &mut events);
    }
    limited.finish(&mut events);
    assert!(whole.starts_with(&events), "a limited decoder changed the events it gave");
    let longest = whole.iter().map(|e| e.raw.len()).max().unwrap_or(0);
    if longest <= limit {
        assert!(!limited.overflowed(), "no event was past the limit of {limit}");
        assert_eq!(events, whole);
    }
}

/// `[seed, document..]`: the top-level field scanner finds the same value
/// however the document is cut, and, for a JSON object, the value serde
/// reads for the top-level `usage`; and read from its end, the usage the
/// scan from its start gives.
pub fn field_scan(data: &[u8]) {
    let Some((&seed, doc)) = data.split_first() else { return };
    let scan = |input: &[Bytes]| {
        let mut scan = crate::formats::field_scan::FieldScan::new("usage");
        for chunk in input {
            scan.feed(chunk);
        }
        scan.value().map(<[u8]>::to_vec)
    };
    let whole = scan(&[Bytes::copy_from_slice(doc)]);
    assert_eq!(scan(&chunks(doc, seed)), whole, "chunk boundaries changed the value found");
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(doc) else { return };
    // Read from its end, a document gives the usage its scan from the start gives.
    let format = format_of(seed);
    let mut from_start =
        crate::formats::field_scan::FieldScan::new(crate::formats::usage::usage_field(format));
    from_start.feed(doc);
    assert_eq!(
        crate::formats::usage::from_response(format, doc),
        from_start.value().and_then(|v| crate::formats::usage::from_usage_value(format, v)),
        "read from its end, the document gave another usage"
    );
    let found = whole.as_deref().and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok());
    match map.get("usage") {
        // Values past the scanner's bound are not kept.
        Some(expected) if doc.len() < 60_000 => {
            assert_eq!(found.as_ref(), Some(expected), "the scanner missed the top-level usage")
        }
        Some(_) => {}
        None => assert_eq!(found, None, "the scanner found a usage the document lacks at its top level"),
    }
}

/// `[format, flags, seed, body..]`: a response relayed in the caller's own
/// format. Without the usage rewrite every byte goes out as it came; with
/// it, the output and the usage do not depend on the chunk boundaries.
pub fn passthrough(data: &[u8]) {
    let [format, flags, seed, body @ ..] = data else { return };
    let (is_sse, hide_usage, streamed) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let relay = |input: &[Bytes]| {
        let mut relay = Passthrough::for_answer(format_of(*format), 200, is_sse, streamed, hide_usage);
        let mut out = Vec::new();
        for chunk in input {
            relay.on_chunk(chunk.clone(), &mut out);
        }
        let usage = relay.finish(&mut out);
        (concat(&out), usage, relay.rewrites())
    };
    let (whole, usage, rewrites) = relay(&[Bytes::copy_from_slice(body)]);
    let (split, split_usage, _) = relay(&chunks(body, *seed));
    assert_eq!(split, whole, "chunk boundaries changed the relayed bytes");
    assert_eq!(split_usage, usage, "chunk boundaries changed the usage");
    if !rewrites {
        assert_eq!(whole, body, "a pass-through changed the bytes");
    }
}

/// A request body: the one-pass top-level reader (held to serde's), and the rewrite of
/// `model` and `stream_options` the pass-through makes, which must still be
/// JSON with the new model in it.
pub fn request_body(data: &[u8]) {
    // The one-pass reader answers as serde does, wherever it answers.
    let by_serde = TopLevel::parse_by_serde(data);
    let parsed = TopLevel::parse(data);
    assert!(
        parsed.is_err() || parsed == by_serde,
        "the body's reader and serde differ: {}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(parsed.is_ok(), by_serde.is_ok(), "{}", String::from_utf8_lossy(data));
    let Ok(top) = parsed else { return };
    let _ = (top.str_field("model"), top.bool_field("stream"));
    let edits = [("model", Some("\"fuzz-model\"".to_string())), ("stream_options", None)];
    let rewritten = top.rewrite(&edits);
    // The grammar, not `Value`: fields are copied verbatim, and JSON's
    // grammar admits escapes (a lone `\ud83e`) that a `Value` cannot hold;
    // such a body is the caller's to send, and the provider's to judge.
    assert!(
        serde_json::from_slice::<&serde_json::value::RawValue>(&rewritten).is_ok(),
        "a rewritten body is not JSON: {}",
        String::from_utf8_lossy(&rewritten)
    );
    let again = TopLevel::parse(&rewritten).map(|t| t.str_field("model"));
    assert!(matches!(again, Ok(Ok(Some(m))) if m == "fuzz-model"), "the rewrite lost the model");
}

/// `[format, body..]`: a client request in `format` parsed to the
/// canonical model and built for every provider format; what is built is JSON.
pub fn requests(data: &[u8]) {
    let Some((&format, body)) = data.split_first() else { return };
    let Ok(request) = (translate::codec(format_of(format)).parse_request)(body) else { return };
    let _ = translate::estimate_tokens(&request);
    for target in ClientFormat::ALL {
        for flavor in [Target::Native, Target::Compatible] {
            if let Ok(built) = (translate::codec(target).build_request)(&request, flavor, Vec::new()) {
                assert_json(&built, "a translated request");
            }
        }
    }
}

/// `[pair, flags, status, body..]`: a provider's whole answer (document or
/// error) translated for the caller; the caller gets JSON, or a stream when
/// it asked for one.
pub fn documents(data: &[u8]) {
    let [pair, flags, status, body @ ..] = data else { return };
    let translator = translator_of(*pair);
    let status = if status & 1 == 0 { 200 } else { 400 + u16::from(*status) % 200 };
    let client_streams = flags & 4 != 0;
    let ctx = context(*flags);
    let (out_status, out, _) = translate_document(translator, &ctx, status, body, client_streams);
    if !(client_streams && out_status == 200) {
        assert_json(&out, "a translated document");
    }
    let err = parse_error_document(status, body);
    assert!(err.status() >= 400, "an error document mapped to {}", err.status());
}

/// `[pair, flags, seed, stream..]`: a provider's stream translated for the
/// caller, chunk by chunk; the result does not depend on where the
/// chunks were cut, and the caller's stream always ends.
pub fn stream_translation(data: &[u8]) {
    let [pair, flags, seed, stream @ ..] = data else { return };
    let translator = translator_of(*pair);
    let ctx = context(*flags);
    let run = |input: &[Bytes]| {
        let mut translation = StreamTranslation::new(translator, &ctx);
        if flags & 16 != 0 {
            translation = translation.with_json_array();
        }
        let mut out = Vec::new();
        for (i, chunk) in input.iter().enumerate() {
            translation.on_chunk(chunk, &mut out);
            if flags & 8 != 0 && i == 0 {
                translation.keepalive(&mut out);
            }
        }
        let usage = translation.finish(&mut out);
        (concat(&out), usage)
    };
    let (whole, usage) = run(&[Bytes::copy_from_slice(stream)]);
    if flags & 8 == 0 {
        let (split, split_usage) = run(&chunks(stream, *seed));
        assert_eq!(split, whole, "chunk boundaries changed the translation");
        assert_eq!(split_usage, usage, "chunk boundaries changed the usage");
    }
    assert!(!whole.is_empty(), "the caller's stream did not end");
}

/// `[seed, body..]`: Gemini's JSON-array framing yields the same elements
/// however the body is cut, each one JSON when the body is; for a JSON
/// array they are its object and array elements, in order. The text
/// estimate does not depend on the cuts either.
pub fn json_array(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else { return };
    let split = |input: &[Bytes]| {
        let mut framing = Framing::json_array().with_limit(usize::from(seed) * 64 + 1024);
        let mut text = TextBytes::default();
        let mut events = Vec::new();
        for chunk in input {
            framing.feed(chunk, &mut events);
            text.feed(chunk);
        }
        framing.finish(&mut events);
        let raw: Vec<Bytes> = events.into_iter().map(|e| e.raw).collect();
        (raw, framing.overflowed(), text.tokens())
    };
    let whole = split(&[Bytes::copy_from_slice(body)]);
    assert_eq!(split(&chunks(body, seed)), whole, "chunk boundaries changed the elements");
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if whole.1 {
        return;
    }
    let expected: Vec<&serde_json::Value> = items.iter().filter(|v| v.is_object() || v.is_array()).collect();
    let got: Vec<serde_json::Value> =
        whole.0.iter().map(|raw| serde_json::from_slice(raw).unwrap_or(serde_json::Value::Null)).collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), expected, "the elements are not the array's");
}

/// A fuzz target's body: asserts its properties on one input.
pub type FuzzTarget = fn(&[u8]);

/// Every entry point, by the name of its fuzz target.
pub const TARGETS: [(&str, FuzzTarget); 8] = [
    ("json_array", json_array),
    ("sse_decoder", sse_decoder),
    ("field_scan", field_scan),
    ("passthrough", passthrough),
    ("request_body", request_body),
    ("requests", requests),
    ("documents", documents),
    ("stream_translation", stream_translation),
];
