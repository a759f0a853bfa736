//! How a stream's events are framed: server-sent events, or the JSON array
//! Gemini's `:streamGenerateContent` answers without `alt=sse`, whose
//! elements (each a `GenerateContentResponse`) are yielded one by one as
//! they complete. Either way events come out the same wherever the chunks
//! are cut, and memory is bounded by the largest event, not the answer.

use crate::sse::{SseDecoder, SseEvent};
use bytes::Bytes;

#[derive(Debug)]
pub enum Framing {
    Sse(SseDecoder),
    JsonArray(JsonArrayDecoder),
}

impl Framing {
    pub fn sse() -> Self {
        Framing::Sse(SseDecoder::new())
    }

    pub fn json_array() -> Self {
        Framing::JsonArray(JsonArrayDecoder::with_limit(crate::sse::DEFAULT_MAX_EVENT_BYTES))
    }

    /// Gives up on an event (or array element) larger than `max` bytes.
    pub fn with_limit(self, max: usize) -> Self {
        match self {
            Framing::Sse(_) => Framing::Sse(SseDecoder::with_limit(max)),
            Framing::JsonArray(_) => Framing::JsonArray(JsonArrayDecoder::with_limit(max)),
        }
    }

    pub fn is_sse(&self) -> bool {
        matches!(self, Framing::Sse(_))
    }

    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<SseEvent>) {
        match self {
            Framing::Sse(d) => d.feed(chunk, out),
            Framing::JsonArray(d) => d.feed(chunk, out),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        match self {
            Framing::Sse(d) => d.finish(out),
            // An element cut short is not JSON: nothing to yield.
            Framing::JsonArray(_) => {}
        }
    }

    pub fn overflowed(&self) -> bool {
        match self {
            Framing::Sse(d) => d.overflowed(),
            Framing::JsonArray(d) => d.overflowed,
        }
    }

    /// Bytes of an event not complete yet.
    pub fn pending_len(&self) -> usize {
        match self {
            Framing::Sse(d) => d.pending_len(),
            Framing::JsonArray(d) => d.element.len(),
        }
    }
}

/// Splits a JSON array into its elements as its bytes stream past: every
/// byte is looked at once (string contents are skipped with memchr), and
/// only the element being read is kept. Each element comes out as an
/// event with no name whose data is the element, as an SSE chunk of the
/// same stream would. A bare object (no array) is one element.
#[derive(Debug)]
pub struct JsonArrayDecoder {
    /// Nesting outside strings.
    depth: usize,
    /// The depth between elements: 1 inside an array, 0 for a bare object.
    base: usize,
    started: bool,
    in_string: bool,
    escaped: bool,
    /// The start of an element that began in an earlier chunk.
    element: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl JsonArrayDecoder {
    pub fn with_limit(max: usize) -> Self {
        Self {
            depth: 0,
            base: 1,
            started: false,
            in_string: false,
            escaped: false,
            element: Vec::new(),
            max,
            overflowed: false,
        }
    }

    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        // Where in this chunk the element being read starts.
        let mut start = (self.depth > self.base).then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                let Some(j) = memchr::memchr2(b'"', b'\\', &chunk[i..]) else { break };
                i += j + 1;
                if chunk[i - 1] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    if !self.started {
                        self.started = true;
                        if b == b'[' {
                            self.depth = 1;
                            continue;
                        }
                        self.base = 0;
                    }
                    if self.depth == self.base {
                        start = Some(i - 1);
                    }
                    self.depth += 1;
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == self.base {
                        if let Some(s) = start.take() {
                            self.emit(chunk, s, i, out);
                            if self.overflowed {
                                // Nothing after an element past the limit,
                                // wherever the chunks were cut.
                                return;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            if self.element.len() + (chunk.len() - s) > self.max {
                self.overflowed = true;
                self.element = Vec::new();
            } else {
                self.element.extend_from_slice(&chunk[s..]);
            }
        }
    }

    fn emit(&mut self, chunk: &Bytes, from: usize, to: usize, out: &mut Vec<SseEvent>) {
        let raw = if self.element.is_empty() {
            // The element is all in this chunk: a slice of it, no copy.
            chunk.slice(from..to)
        } else {
            self.element.extend_from_slice(&chunk[from..to]);
            Bytes::from(std::mem::take(&mut self.element))
        };
        if raw.len() > self.max {
            self.overflowed = true;
            return;
        }
        let data = String::from_utf8_lossy(&raw).into_owned();
        out.push(SseEvent { raw, event: None, data: Some(data) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRAY: &str = "[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a ]} \\\" [{\"}]}}]}\n,\r\n{\"usageMetadata\": {\"promptTokenCount\": 3}}\n]";

    fn elements(input: &[u8], cuts: &[usize], limit: usize) -> (Vec<String>, bool) {
        let mut d = Framing::json_array().with_limit(limit);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            d.feed(&Bytes::copy_from_slice(&input[at..cut]), &mut out);
            at = cut;
        }
        d.finish(&mut out);
        (out.into_iter().filter_map(|e| e.data).collect(), d.overflowed())
    }

    #[test]
    fn yields_each_element_wherever_the_chunks_are_cut() {
        let whole = elements(ARRAY.as_bytes(), &[], 1 << 20).0;
        assert_eq!(whole.len(), 2);
        for e in &whole {
            assert!(serde_json::from_str::<serde_json::Value>(e).is_ok(), "{e}");
        }
        assert!(whole[0].contains("a ]} \\\" [{"), "string contents are not structure");
        for a in 0..=ARRAY.len() {
            for b in a..=ARRAY.len() {
                assert_eq!(elements(ARRAY.as_bytes(), &[a, b], 1 << 20).0, whole, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn a_bare_object_is_one_element_and_garbage_never_panics() {
        assert_eq!(elements(b" {\"a\":[1]} ", &[4], 100).0, vec!["{\"a\":[1]}".to_string()]);
        for junk in [&b"]]]}}}"[..], b"[[[[", b"\"\\", b"[\"x\",1,{\"y\":\"\\\\\"}]", b"\xff[{}]"] {
            let _ = elements(junk, &[1], 100);
        }
        assert_eq!(elements(b"[1, \"s\", {}]", &[], 100).0, vec!["{}".to_string()], "scalars are no events");
    }

    #[test]
    fn nothing_follows_an_element_past_the_limit_however_the_chunks_are_cut() {
        let array = r#"[{"a":1},{"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb":2},{"c":3}]"#;
        let whole = elements(array.as_bytes(), &[], 20);
        assert_eq!(whole, (vec![r#"{"a":1}"#.to_string()], true));
        for cut in 1..array.len() {
            assert_eq!(elements(array.as_bytes(), &[cut], 20), whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_element_past_the_limit_stops_the_decoder() {
        let (got, overflowed) = elements(ARRAY.as_bytes(), &[10, 20], 30);
        assert!(overflowed);
        assert!(got.is_empty());
        let (_, overflowed) = elements(ARRAY.as_bytes(), &[10, 20], 200);
        assert!(!overflowed);
    }
}
