//! Server-sent events: an incremental decoder that takes chunks cut at any
//! byte (inside a line, a CRLF or a UTF-8 character) and yields whole
//! events, each with its raw bytes so a pass-through can forward them
//! untouched, and an encoder for the events the gateway writes itself.
//!
//! Pure: no I/O, no runtime. Follows the WHATWG event-stream grammar:
//! lines end in CRLF, LF or CR; `:` starts a comment; `data` lines join
//! with `\n`; one leading space after the colon is dropped; a blank line
//! ends an event.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The event exactly as received, up to and including its blank line.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`; `None` when the event had no data
    /// (a comment-only keep-alive, for example).
    pub data: Option<String>,
}

/// The largest event a decoder holds by default: a provider that never
/// ends an event must not grow memory without bound.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of an event not yet complete.
    pending: BytesMut,
    /// Where in `pending` the incomplete last line starts.
    line_start: usize,
    /// How far `pending` has been searched for a line end, so each byte is
    /// scanned once however slowly a long line arrives.
    scanned: usize,
    max_event: usize,
    overflowed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that gives up on an event larger than `max_event` bytes.
    pub fn with_limit(max_event: usize) -> Self {
        Self { pending: BytesMut::new(), line_start: 0, scanned: 0, max_event, overflowed: false }
    }

    /// Whether an event exceeded the limit: the decoder then drops what it
    /// held and ignores the rest of the stream.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes held back because their event is not complete yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one chunk, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        if self.pending.is_empty() {
            // Fast path: complete events are slices of the chunk, no copy.
            let mut rest = chunk.clone();
            let mut cursor = Cursor::default();
            while let Some(end) = event_end(&rest, &mut cursor, false) {
                let raw = rest.split_to(end);
                cursor = Cursor::default();
                push_event(raw, out);
            }
            if !rest.is_empty() {
                self.pending.extend_from_slice(&rest);
                (self.line_start, self.scanned) = (cursor.line_start, cursor.scanned);
            }
        } else {
            self.pending.extend_from_slice(chunk);
            self.drain(false, out);
        }
        if self.pending.len() > self.max_event {
            self.overflowed = true;
            self.pending = BytesMut::new();
            (self.line_start, self.scanned) = (0, 0);
        }
    }

    /// Ends the stream: an unterminated last event is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        self.drain(true, out);
        if !self.pending.is_empty() {
            let raw = self.pending.split().freeze();
            (self.line_start, self.scanned) = (0, 0);
            push_event(raw, out);
        }
    }

    fn drain(&mut self, eof: bool, out: &mut Vec<SseEvent>) {
        let mut cursor = Cursor { line_start: self.line_start, scanned: self.scanned };
        while let Some(end) = event_end(&self.pending, &mut cursor, eof) {
            let raw = self.pending.split_to(end).freeze();
            cursor = Cursor::default();
            push_event(raw, out);
        }
        (self.line_start, self.scanned) = (cursor.line_start, cursor.scanned);
    }
}

/// Where an event search stopped: the start of the incomplete line, and
/// how far past it the bytes were already searched.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    line_start: usize,
    scanned: usize,
}

/// The length of the first complete event in `buf` (through its blank
/// line), resuming where the last search stopped.
fn event_end(buf: &[u8], cursor: &mut Cursor, eof: bool) -> Option<usize> {
    let mut start = cursor.line_start;
    loop {
        let from = cursor.scanned.max(start).min(buf.len());
        let Some(offset) = memchr::memchr2(b'\n', b'\r', buf.get(from..).unwrap_or_default()) else {
            *cursor = Cursor { line_start: start, scanned: buf.len() };
            return None;
        };
        let i = from + offset;
        let term = if buf[i] == b'\r' {
            match buf.get(i + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                // A CR at the end may be the first half of a CRLF.
                None if eof => 1,
                None => {
                    *cursor = Cursor { line_start: start, scanned: i };
                    return None;
                }
            }
        } else {
            1
        };
        if i == start {
            return Some(i + term);
        }
        start = i + term;
    }
}

fn push_event(raw: Bytes, out: &mut Vec<SseEvent>) {
    let mut event = None;
    let mut data: Option<String> = None;
    for line in lines(&raw) {
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => event = Some(text(value).into_owned()),
            b"data" => {
                let value = text(value);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => data = Some(value.into_owned()),
                }
            }
            _ => {}
        }
    }
    if event.is_none() && data.is_none() && raw.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        // A stray blank line between events carries nothing worth a record,
        // but its bytes still belong to the stream.
        out.push(SseEvent { raw, event: None, data: None });
        return;
    }
    out.push(SseEvent { raw, event, data });
}

/// A field's value as text; invalid UTF-8 (rare) is replaced rather than
/// refused. The strict check first: it is much faster than the lossy one.
fn text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value),
    }
}

fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                let line = &rest[..i];
                let term = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + term..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

/// Writes one event: `event: NAME` (when given) and `data: DATA`.
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
