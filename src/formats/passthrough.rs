//! A response relayed in the caller's own format. Bytes go out as they came
//! (the same buffers, no copy) while the usage is read on the side. The one
//! rewrite: an OpenAI stream for which the gateway asked for
//! `stream_options.include_usage` on the caller's behalf, where the usage
//! chunk and the `"usage":null` fields it adds are removed again so the
//! caller sees exactly the stream it asked for.
//!
//! A Gemini stream has no closing event and may send a usage chunk after
//! the one with `finishReason`: from that chunk on its bytes are held
//! until the body ends, so the bill is settled on the last count and is
//! still journaled before the caller sees the end.

use super::body::TopLevel;
use super::estimate::TextBytes;
use super::field_scan::FieldScan;
use super::framing::Framing;
use super::usage::{self, StreamUsage, Usage};
use super::{errors, ClientFormat};
use crate::error::GatewayError;
use crate::sse::SseEvent;
use bytes::Bytes;
use std::collections::VecDeque;

#[derive(Debug)]
pub enum Passthrough {
    Stream(StreamRelay),
    Whole(WholeBody),
}

impl Passthrough {
    /// `is_sse` comes from the upstream's `content-type`, not the request,
    /// so an error document on a streaming request is read as a document.
    pub fn new(format: ClientFormat, is_sse: bool, hide_usage: bool) -> Self {
        if is_sse {
            let hide = hide_usage && format == ClientFormat::Openai;
            Passthrough::Stream(StreamRelay::new(format, Framing::sse(), hide))
        } else {
            Passthrough::Whole(WholeBody::new(format, true))
        }
    }

    /// The relay for an answer of `status`: a successful Gemini stream
    /// that is not SSE is Google's JSON array, read element by element;
    /// only a successful document's text is an estimate of its output.
    pub fn for_answer(
        format: ClientFormat,
        status: u16,
        is_sse: bool,
        streamed: bool,
        hide_usage: bool,
    ) -> Self {
        let ok = (200..300).contains(&status);
        if !is_sse && ok && streamed && format == ClientFormat::Gemini {
            return Passthrough::Stream(StreamRelay::new(format, Framing::json_array(), false));
        }
        match Self::new(format, is_sse, hide_usage) {
            Passthrough::Whole(_) => Passthrough::Whole(WholeBody::new(format, ok)),
            stream => stream,
        }
    }

    /// Gives up on a stream event larger than `max` bytes (see [`Self::overflowed`]).
    pub fn with_event_limit(mut self, max: usize) -> Self {
        if let Passthrough::Stream(s) = &mut self {
            s.decoder = std::mem::replace(&mut s.decoder, Framing::sse()).with_limit(max);
        }
        self
    }

    /// Whether the provider sent an event past the limit: the stream must
    /// end, with [`Self::cut_event`].
    pub fn overflowed(&self) -> bool {
        matches!(self, Passthrough::Stream(s) if s.decoder.overflowed())
    }

    /// The caller's keep-alive for a silence of the provider, when the
    /// format has one (a comment line for Chat and Responses) and the
    /// stream is between two events (never inside one).
    pub fn keepalive(&self, out: &mut Vec<Bytes>) {
        if let Passthrough::Stream(s) = self {
            if s.comments_keep_alive && s.decoder.pending_len() == 0 && !s.decoder.overflowed() {
                out.push(Bytes::from_static(super::codec::SSE_COMMENT_KEEPALIVE.as_bytes()));
            }
        }
    }

    /// Whether the caller's format has a keep-alive a pass-through can add.
    pub fn has_keepalive(&self) -> bool {
        matches!(self, Passthrough::Stream(s) if s.comments_keep_alive)
    }

    /// Whether the bytes sent may differ from the bytes received (the
    /// response then cannot keep the upstream's `content-length`).
    pub fn rewrites(&self) -> bool {
        matches!(self, Passthrough::Stream(s) if s.hide_usage)
    }

    pub fn on_chunk(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        match self {
            Passthrough::Stream(s) => s.on_chunk(chunk, out),
            Passthrough::Whole(w) => {
                w.keep(&chunk);
                out.push(chunk);
            }
        }
    }

    /// The stream's closing event has gone by, with the usage seen so far:
    /// the bill can be settled before that event reaches the caller.
    pub fn ended(&self) -> Option<Option<Usage>> {
        match self {
            Passthrough::Stream(s) if s.usage.ended() => Some(s.usage.usage()),
            _ => None,
        }
    }

    /// Whether the caller's stream already has its whole answer: an SSE
    /// stream's closing event (`[DONE]`, `message_stop`,
    /// `response.completed`) went by, or Gemini's `finishReason` chunk
    /// with a count of the output (Gemini has no closing event, and its
    /// full count may come in a chunk after that one), with no error,
    /// nothing past the event limit and no event begun since. What the
    /// provider does after it takes nothing from the caller. Never for a
    /// JSON array, whole only with its `]`.
    pub fn answered_whole(&self) -> bool {
        let Passthrough::Stream(s) = self else { return false };
        let counted = || s.usage.usage().is_some_and(|u| u.output_tokens > 0);
        s.decoder.is_sse()
            && !s.decoder.overflowed()
            && s.decoder.pending_len() == 0
            && !s.usage.failed()
            && (s.usage.ended() || (s.usage.closing() && counted()))
    }

    /// Whether the provider reported an error inside its stream: the call
    /// did not complete, whatever count came before.
    pub fn failed(&self) -> bool {
        matches!(self, Passthrough::Stream(s) if s.usage.failed())
    }

    /// Output tokens estimated from what a document (or a JSON-array
    /// stream) relayed so far, for when its usage cannot be read; an error
    /// document's is zero. SSE streams count their events instead.
    pub fn relayed_estimate(&self) -> u64 {
        match self {
            Passthrough::Stream(s) => s.text.as_ref().map_or(0, TextBytes::tokens),
            Passthrough::Whole(w) => w.estimate(),
        }
    }

    /// [`Self::relayed_estimate`] in constant time, for after each chunk
    /// (a request dropped mid-body, at a shutdown, is billed on it): a
    /// document's first chunk, which the caller has not been given yet,
    /// is not in it.
    pub fn relayed_so_far(&self) -> u64 {
        match self {
            Passthrough::Whole(w) => w.provisional(),
            stream => stream.relayed_estimate(),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Option<Usage> {
        match self {
            Passthrough::Stream(s) => s.finish(out),
            Passthrough::Whole(w) => w.usage(),
        }
    }

    /// The event that ends a stream the provider cut, in the caller's
    /// format; a Responses stream's carries the next sequence number.
    pub fn cut_event(&self, format: ClientFormat, err: &GatewayError) -> Bytes {
        let event = match self {
            Passthrough::Stream(s) if format == ClientFormat::Responses => {
                errors::responses_error_event(err, Some(s.next_sequence))
            }
            _ => errors::stream_error_event(format, err),
        };
        if !self.overflowed() {
            return event;
        }
        // The caller has part of an event that will never end: end it
        // first, so the error is an event of its own.
        let mut ended = b"\n\n".to_vec();
        ended.extend_from_slice(&event);
        Bytes::from(ended)
    }
}

#[derive(Debug)]
pub struct StreamRelay {
    decoder: Framing,
    usage: StreamUsage,
    hide_usage: bool,
    events: Vec<SseEvent>,
    /// Responses streams number their events; one the gateway adds goes on.
    numbered: bool,
    /// Chat and Responses callers skip comment lines: they can be kept alive.
    comments_keep_alive: bool,
    next_sequence: u64,
    /// A Gemini stream's end, held until its body ends (see the module doc).
    held: Vec<Bytes>,
    /// The text relayed by a stream without SSE events to count.
    text: Option<TextBytes>,
}

impl StreamRelay {
    fn new(format: ClientFormat, decoder: Framing, hide_usage: bool) -> Self {
        Self {
            text: (!decoder.is_sse()).then(TextBytes::default),
            decoder,
            usage: StreamUsage::new(format),
            hide_usage,
            events: Vec::new(),
            numbered: format == ClientFormat::Responses,
            comments_keep_alive: matches!(format, ClientFormat::Openai | ClientFormat::Responses),
            next_sequence: 0,
            held: Vec::new(),
        }
    }

    fn on_chunk(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        self.decoder.feed(&chunk, &mut self.events);
        if let Some(text) = &mut self.text {
            text.feed(&chunk);
        }
        let mut kept = Vec::new();
        self.drain(&mut kept);
        let into = if self.usage.closing() || !self.held.is_empty() { &mut self.held } else { out };
        if !self.hide_usage {
            into.push(chunk);
        }
        into.append(&mut kept);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Option<Usage> {
        self.decoder.finish(&mut self.events);
        out.append(&mut self.held);
        self.drain(out);
        self.usage.usage()
    }

    fn drain(&mut self, out: &mut Vec<Bytes>) {
        for event in self.events.drain(..) {
            self.usage.observe(&event);
            if self.numbered {
                if let Some(n) = event.data.as_deref().and_then(sequence_number) {
                    self.next_sequence = self.next_sequence.max(n.saturating_add(1));
                }
            }
            if self.hide_usage {
                if let Some(kept) = without_added_usage(&event) {
                    out.push(kept);
                }
            }
        }
    }
}

/// The `sequence_number` of a Responses event, read without parsing it.
fn sequence_number(data: &str) -> Option<u64> {
    const KEY: &str = "\"sequence_number\":";
    let at = data.find(KEY)? + KEY.len();
    let digits = data[at..].trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The event as the caller would have seen it without `include_usage`:
/// `None` for the usage-only chunk, the top-level `"usage": null` removed
/// from the others. Decided on the parsed top level, so whitespace, key
/// order and escapes do not matter (servers differ in all three).
fn without_added_usage(event: &SseEvent) -> Option<Bytes> {
    let Some(data) = event.data.as_deref() else {
        return Some(event.raw.clone());
    };
    if memchr::memmem::find(data.as_bytes(), b"usage").is_none() {
        return Some(event.raw.clone());
    }
    // `[DONE]`, or whatever else is not an object, goes on as it came.
    let Ok(top) = TopLevel::parse(data.as_bytes()) else {
        return Some(event.raw.clone());
    };
    let Some(usage) = top.raw("usage") else {
        return Some(event.raw.clone());
    };
    match usage.get().as_bytes().first() {
        Some(b'{') if top.raw("choices").is_some_and(|c| is_empty_array(c.get())) => None,
        Some(b'n') => {
            let kept = top.rewrite(&[("usage", None)]);
            Some(crate::sse::encode(event.event.as_deref(), &String::from_utf8_lossy(&kept)))
        }
        _ => Some(event.raw.clone()),
    }
}

fn is_empty_array(raw: &str) -> bool {
    raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')).is_some_and(|inner| inner.trim().is_empty())
}

/// A whole (non-SSE) response: its usage is read as it streams past, at
/// any size, and nothing of it is kept but the usage field and its last
/// bytes.
#[derive(Debug)]
pub struct WholeBody {
    format: ClientFormat,
    scan: FieldScan,
    text: TextBytes,
    /// The latest chunks, shared with what went out (not copied): at
    /// least the document's last [`usage::END_WINDOW`] bytes, where its
    /// usage is read from its end. While it is the only one, the first
    /// chunk is neither scanned nor counted: most answers come in one
    /// chunk, whose usage is then read from its end rather than scanned
    /// from its start, and whose text is never estimated (counting it
    /// cost as much as reading the usage).
    last: VecDeque<Bytes>,
    last_len: usize,
    /// A second chunk came: the first and every chunk since are scanned,
    /// and counted, as they pass.
    streaming: bool,
    /// A successful answer, whose text is what the caller was given.
    billable: bool,
}

impl WholeBody {
    fn new(format: ClientFormat, billable: bool) -> Self {
        Self {
            format,
            scan: FieldScan::new(usage::usage_field(format)),
            text: TextBytes::default(),
            last: VecDeque::new(),
            last_len: 0,
            streaming: false,
            billable,
        }
    }

    fn keep(&mut self, chunk: &Bytes) {
        if !self.streaming {
            match self.last.front().cloned() {
                None => {
                    self.retain(chunk);
                    return;
                }
                Some(first) => {
                    self.pass(&first);
                    self.streaming = true;
                }
            }
        }
        self.pass(chunk);
        self.retain(chunk);
    }

    fn pass(&mut self, chunk: &[u8]) {
        self.scan.feed(chunk);
        if self.billable {
            self.text.feed(chunk);
        }
    }

    /// Keeps `chunk` among the last ones, and no more of them than the
    /// window needs.
    fn retain(&mut self, chunk: &Bytes) {
        self.last.push_back(chunk.clone());
        self.last_len += chunk.len();
        while let Some(oldest) = self.last.front() {
            if self.last_len - oldest.len() < usage::END_WINDOW {
                break;
            }
            self.last_len -= oldest.len();
            self.last.pop_front();
        }
    }

    /// The document's last [`usage::END_WINDOW`] bytes (all of it when shorter).
    fn end_window(&self) -> Vec<u8> {
        let mut skip = self.last_len.saturating_sub(usage::END_WINDOW);
        let mut window = Vec::with_capacity(self.last_len - skip);
        for chunk in &self.last {
            let from = skip.min(chunk.len());
            skip -= from;
            window.extend_from_slice(&chunk[from..]);
        }
        window
    }

    /// The first chunk, while it is the only one.
    fn only(&self) -> Option<&Bytes> {
        self.last.front().filter(|_| !self.streaming)
    }

    /// Output tokens the text seen so far is estimated at (none for an
    /// answer that is not billable: its text is never kept).
    fn estimate(&self) -> u64 {
        let Some(only) = self.only().filter(|_| self.billable) else { return self.text.tokens() };
        let mut text = self.text.clone();
        text.feed(only);
        text.tokens()
    }

    /// [`Self::estimate`] in constant time: while one chunk has come, it
    /// says nothing (the exchange holds a document's latest chunk back,
    /// so the caller has none of it yet).
    fn provisional(&self) -> u64 {
        self.text.tokens()
    }

    /// Read from the document's end where it can be, else from the scan:
    /// the same window and the same scan whatever the chunks were.
    fn usage(&self) -> Option<Usage> {
        match self.only() {
            Some(only) => usage::from_response(self.format, only),
            None => usage::from_document_end(self.format, &self.end_window())
                .or_else(|| usage::from_usage_value(self.format, self.scan.value()?)),
        }
        .filter(Usage::is_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_WITH_USAGE: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";

    fn run(p: &mut Passthrough, input: &[u8], cut: usize) -> (Vec<u8>, Option<Usage>) {
        let mut out = Vec::new();
        p.on_chunk(Bytes::copy_from_slice(&input[..cut]), &mut out);
        p.on_chunk(Bytes::copy_from_slice(&input[cut..]), &mut out);
        let usage = p.finish(&mut out);
        (out.concat(), usage)
    }

    #[test]
    fn untouched_when_the_caller_asked_for_usage() {
        for cut in 0..OPENAI_WITH_USAGE.len() {
            let mut p = Passthrough::new(ClientFormat::Openai, true, false);
            let (bytes, usage) = run(&mut p, OPENAI_WITH_USAGE.as_bytes(), cut);
            assert_eq!(bytes, OPENAI_WITH_USAGE.as_bytes());
            assert_eq!(usage.unwrap().input_tokens, 3);
        }
    }

    #[test]
    fn removes_what_the_gateway_added() {
        let expected = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        for cut in 0..OPENAI_WITH_USAGE.len() {
            let mut p = Passthrough::new(ClientFormat::Openai, true, true);
            assert!(p.rewrites());
            let (bytes, usage) = run(&mut p, OPENAI_WITH_USAGE.as_bytes(), cut);
            assert_eq!(String::from_utf8(bytes).unwrap(), expected, "cut {cut}");
            assert_eq!(usage.unwrap().output_tokens, 1);
        }
    }

    #[test]
    fn removes_the_usage_chunk_whatever_the_whitespace_and_key_order() {
        let spaced = "data: {\"id\": \"c\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"\\\"usage\\\": null\"}}], \"usage\" : null}\n\n\
data: {\"usage\" : {\"prompt_tokens\": 3, \"completion_tokens\": 1}, \"choices\" : [ ], \"id\": \"c\"}\n\n\
data: [DONE]\n\n";
        for cut in 0..spaced.len() {
            let mut p = Passthrough::new(ClientFormat::Openai, true, true);
            let (bytes, usage) = run(&mut p, spaced.as_bytes(), cut);
            let text = String::from_utf8(bytes).unwrap();
            let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
            assert_eq!(events.len(), 2, "cut {cut}: {text}");
            let first: serde_json::Value =
                serde_json::from_str(events[0].trim_start_matches("data: ")).unwrap();
            assert!(first.get("usage").is_none(), "{first}");
            assert_eq!(
                first["choices"][0]["delta"]["content"], "\"usage\": null",
                "string contents untouched"
            );
            assert_eq!(events[1], "data: [DONE]");
            assert_eq!(usage.unwrap().input_tokens, 3, "still metered");
        }
    }

    #[test]
    fn a_cut_responses_stream_ends_with_the_next_sequence_number() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"sequence_number\\\":99\",\"sequence_number\": 7}\n\n";
        let mut p = Passthrough::new(ClientFormat::Responses, true, false);
        run(&mut p, stream.as_bytes(), 30);
        let err = GatewayError::UpstreamProtocol("cut".into());
        let event = p.cut_event(ClientFormat::Responses, &err);
        let data =
            std::str::from_utf8(&event).unwrap().lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(doc["sequence_number"], 8);
        assert_eq!(doc["type"], "error");
        // Other formats have no numbering.
        let p = Passthrough::new(ClientFormat::Anthropic, true, false);
        assert!(!String::from_utf8_lossy(&p.cut_event(ClientFormat::Anthropic, &err)).contains("sequence"));
    }

    #[test]
    fn whole_body_usage_across_chunks() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        let mut p = Passthrough::new(ClientFormat::Openai, false, true);
        assert!(!p.rewrites());
        let (bytes, usage) = run(&mut p, body, 10);
        assert_eq!(bytes, body);
        assert_eq!(usage.unwrap().input_tokens, 9);
    }

    const GEMINI_CHUNKS: [&str; 3] = [
        r#"{"candidates":[{"content":{"parts":[{"text":"Hello ]}"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"there"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4}}"#,
        r#"{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}"#,
    ];

    #[test]
    fn a_gemini_json_array_stream_is_read_like_its_sse_variant_at_any_cut() {
        let array = format!("[{}]", GEMINI_CHUNKS.join(",\r\n"));
        let sse: String = GEMINI_CHUNKS.iter().map(|c| format!("data: {c}\r\n\r\n")).collect();
        for (body, is_sse) in [(array.as_str(), false), (sse.as_str(), true)] {
            for cut in 0..=body.len() {
                let mut p = Passthrough::for_answer(ClientFormat::Gemini, 200, is_sse, true, false);
                let (bytes, usage) = run(&mut p, body.as_bytes(), cut);
                assert_eq!(bytes, body.as_bytes(), "cut {cut}: every byte relayed");
                let u = usage.unwrap();
                assert_eq!((u.input_tokens, u.output_tokens), (4, 2), "cut {cut}: the last count");
                assert!(p.ended().is_none() && !p.failed());
            }
        }
        // A document answer to a non-streaming call is still a document.
        assert!(matches!(
            Passthrough::for_answer(ClientFormat::Gemini, 200, false, false, false),
            Passthrough::Whole(_)
        ));
        assert!(matches!(
            Passthrough::for_answer(ClientFormat::Gemini, 400, false, true, false),
            Passthrough::Whole(_)
        ));
    }

    #[test]
    fn a_gemini_streams_end_is_held_until_its_body_ends() {
        let sse: Vec<String> = GEMINI_CHUNKS.iter().map(|c| format!("data: {c}\n\n")).collect();
        let mut p = Passthrough::for_answer(ClientFormat::Gemini, 200, true, true, false);
        let mut out = Vec::new();
        p.on_chunk(Bytes::from(sse[0].clone()), &mut out);
        assert_eq!(out.len(), 1, "a delta goes out at once");
        p.on_chunk(Bytes::from(sse[1].clone()), &mut out);
        p.on_chunk(Bytes::from(sse[2].clone()), &mut out);
        assert_eq!(out.len(), 1, "from finishReason on, held");
        let usage = p.finish(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(usage.map(|u| u.output_tokens), Some(2));
    }

    #[test]
    fn an_error_inside_a_stream_fails_it_and_a_document_estimates_its_text() {
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let mut p = Passthrough::new(ClientFormat::Anthropic, true, false);
        let _ = run(&mut p, anthropic.as_bytes(), 7);
        assert!(p.failed());
        assert!(p.ended().is_some(), "settled before the error reaches the caller");

        let body = br#"{"id":"x","choices":[{"message":{"content":"sixteen bytes!!!"}}],"usage":{"prompt_tokens":-1}}"#;
        let mut p = Passthrough::for_answer(ClientFormat::Openai, 200, false, false, false);
        let (_, usage) = run(&mut p, body, 30);
        assert_eq!(usage, None, "a negative count is no count");
        assert_eq!(p.relayed_estimate(), 5, "\"x\" and the sixteen bytes of text: 17 bytes");
        let mut p = Passthrough::for_answer(ClientFormat::Openai, 500, false, false, false);
        let _ = run(&mut p, body, 30);
        assert_eq!(p.relayed_estimate(), 0, "an error document is not billed");
    }

    #[test]
    fn a_documents_estimate_is_its_text_whether_counted_late_or_as_it_streams() {
        for size in [10, 1000, 20_000, 100_000] {
            let body =
                format!(r#"{{"id":"x","choices":[{{"message":{{"content":"{}"}}}}]}}"#, "a".repeat(size));
            let expected = crate::formats::estimate::output_tokens(body.as_bytes());
            for pieces in [1, 2, 7, 64] {
                let mut p = Passthrough::for_answer(ClientFormat::Openai, 200, false, false, false);
                let mut out = Vec::new();
                for piece in body.as_bytes().chunks(body.len().div_ceil(pieces)) {
                    p.on_chunk(Bytes::copy_from_slice(piece), &mut out);
                    assert!(p.relayed_so_far() <= p.relayed_estimate());
                    assert!(p.relayed_estimate() <= expected);
                }
                assert_eq!(p.relayed_estimate(), expected, "{size} bytes in {pieces} pieces");
                if pieces > 1 {
                    assert_eq!(p.relayed_so_far(), expected, "counted as it passed once a second chunk came");
                } else {
                    assert_eq!(p.relayed_so_far(), 0, "one chunk, held back: the caller has none of it");
                }
                assert_eq!(out.concat(), body.as_bytes(), "relayed as it came");
            }
        }
    }

    #[test]
    fn a_stream_is_answered_whole_after_its_end_and_a_gemini_one_with_its_count() {
        let fed = |mut p: Passthrough, input: &str| {
            p.on_chunk(Bytes::copy_from_slice(input.as_bytes()), &mut Vec::new());
            p
        };
        let sse = |format| Passthrough::new(format, true, false);
        assert!(fed(sse(ClientFormat::Openai), OPENAI_WITH_USAGE).answered_whole());
        let without_done = OPENAI_WITH_USAGE.trim_end_matches("data: [DONE]\n\n");
        assert!(!fed(sse(ClientFormat::Openai), without_done).answered_whole());
        let begun = format!("{OPENAI_WITH_USAGE}data: {{\"partial");
        assert!(!fed(sse(ClientFormat::Openai), &begun).answered_whole(), "an event begun after the end");
        let finished = |usage: &str| {
            format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"hi\"}}]}},\"finishReason\":\"STOP\"}}],\"usageMetadata\":{usage}}}\n\n")
        };
        let full = finished(r#"{"promptTokenCount":3,"candidatesTokenCount":1}"#);
        assert!(fed(sse(ClientFormat::Gemini), &full).answered_whole());
        let prompt_only = finished(r#"{"promptTokenCount":3}"#);
        assert!(!fed(sse(ClientFormat::Gemini), &prompt_only).answered_whole(), "its count may come later");
        let array = Passthrough::for_answer(ClientFormat::Gemini, 200, false, true, false);
        let element = full.trim_start_matches("data: ").trim_end();
        assert!(!fed(array, &format!("[{element}")).answered_whole(), "an array without its ]");
    }

    #[test]
    fn a_documents_usage_is_the_same_however_it_was_cut() {
        let usage = r#""usage":{"prompt_tokens":3,"completion_tokens":1}"#;
        let padding = "x".repeat(usage::END_WINDOW);
        let documents = [
            format!(r#"{{"choices":[{{"message":{{"content":"hi"}}}}],{usage},"system_fingerprint":"fp"}}"#),
            // Unbalanced before its usage: the scan from the start finds
            // no top-level usage, and the end reads the same bytes either way.
            format!(r#"{{"choices":[{{"message":{{"content":"hi"}}}},{usage}}}"#),
            // The usage further from the end than the window: scanned.
            format!(r#"{{{usage},"note":"{padding}"}}"#),
            format!(r#"{{"note":"{padding}",{usage}}}"#),
        ];
        for doc in &documents {
            let whole = {
                let mut p = Passthrough::new(ClientFormat::Openai, false, false);
                p.on_chunk(Bytes::copy_from_slice(doc.as_bytes()), &mut Vec::new());
                p.finish(&mut Vec::new())
            };
            let step = (doc.len() / 40).max(1);
            for cut in (0..doc.len()).step_by(step) {
                for pieces in [2, 5] {
                    let mut p = Passthrough::new(ClientFormat::Openai, false, false);
                    let mut out = Vec::new();
                    let size = (doc.len() - cut).div_ceil(pieces).max(1);
                    p.on_chunk(Bytes::copy_from_slice(&doc.as_bytes()[..cut]), &mut out);
                    for piece in doc.as_bytes()[cut..].chunks(size) {
                        p.on_chunk(Bytes::copy_from_slice(piece), &mut out);
                    }
                    assert_eq!(
                        p.finish(&mut out),
                        whole,
                        "cut {cut} in {pieces}: {}",
                        &doc[..doc.len().min(80)]
                    );
                    assert_eq!(out.concat(), doc.as_bytes());
                }
            }
        }
        let read = |doc: &str| {
            let mut p = Passthrough::new(ClientFormat::Openai, false, false);
            p.on_chunk(Bytes::copy_from_slice(doc.as_bytes()), &mut Vec::new());
            p.finish(&mut Vec::new()).map(|u| u.input_tokens)
        };
        assert_eq!(read(&documents[0]), Some(3));
        assert_eq!(read(&documents[2]), Some(3), "scanned past the window");
        assert_eq!(read(&documents[3]), Some(3));
    }
}
