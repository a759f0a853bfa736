//! Finds one top-level field of a JSON document while its bytes stream
//! past, without keeping the document: every byte is looked at once (runs
//! of string content are skipped with memchr), and only the field's own
//! value is kept, up to a bound. It reads the usage at the end of a
//! response of any size, in memory that does not grow with the response.

/// Values longer than this are not kept (a usage object is a few hundred bytes).
const MAX_VALUE: usize = 64 * 1024;

/// The bytes that can change the scanner's state outside a string; the
/// rest (numbers, literals, whitespace) are stepped over.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut k = 0;
    let bytes = *b"\"{}[]:,";
    while k < bytes.len() {
        table[bytes[k] as usize] = true;
        k += 1;
    }
    table
};

#[derive(Debug)]
pub struct FieldScan {
    name: &'static [u8],
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the next string is a key.
    expect_key: bool,
    /// The key being read, or the last one read, at depth 1.
    key: Vec<u8>,
    reading_key: bool,
    capturing: bool,
    value: Vec<u8>,
    /// The last complete value of the field.
    found: Option<Vec<u8>>,
}

impl FieldScan {
    pub fn new(name: &'static str) -> Self {
        Self {
            name: name.as_bytes(),
            depth: 0,
            in_string: false,
            escaped: false,
            expect_key: false,
            key: Vec::with_capacity(32),
            reading_key: false,
            capturing: false,
            value: Vec::new(),
            found: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        // Bytes from `run` to `i` are kept (as key or value) in one piece
        // when the run ends, rather than byte by byte.
        let mut run = 0;
        while i < chunk.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                let Some(j) = memchr::memchr2(b'"', b'\\', &chunk[i..]) else {
                    i = chunk.len();
                    break;
                };
                i += j + 1;
                if chunk[i - 1] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    if self.reading_key {
                        self.keep(&chunk[run..i]);
                        run = i;
                        self.reading_key = false;
                    }
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            if !STRUCTURAL[usize::from(b)] {
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.keep(&chunk[run..i - 1]);
                        run = i;
                        self.expect_key = false;
                        self.reading_key = true;
                        self.key.clear();
                    }
                }
                b':' if self.depth == 1 => {
                    self.keep(&chunk[run..i - 1]);
                    run = i;
                    if self.key_is_name() {
                        self.capturing = true;
                        self.value.clear();
                    }
                }
                b',' if self.depth == 1 => {
                    self.keep(&chunk[run..i - 1]);
                    run = i;
                    self.end_value();
                    self.expect_key = true;
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth == 1 {
                        self.keep(&chunk[run..i - 1]);
                        run = i;
                        self.expect_key = b == b'{';
                    }
                }
                b'}' | b']' => {
                    if self.depth == 1 {
                        self.keep(&chunk[run..i - 1]);
                        run = i;
                        self.end_value();
                        self.depth = 0;
                    } else {
                        self.depth = self.depth.saturating_sub(1);
                    }
                }
                _ => {}
            }
        }
        self.keep(&chunk[run..i]);
    }

    /// The field's raw value, if the document had it at its top level.
    pub fn value(&self) -> Option<&[u8]> {
        self.found.as_deref()
    }

    /// Whether the last key read is the field's name (escapes decoded).
    fn key_is_name(&self) -> bool {
        let Some(raw) = self.key.strip_suffix(b"\"") else { return false };
        if !raw.contains(&b'\\') {
            return raw == self.name;
        }
        let mut quoted = Vec::with_capacity(self.key.len() + 1);
        quoted.push(b'"');
        quoted.extend_from_slice(&self.key);
        serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k.as_bytes() == self.name)
    }

    fn keep(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.reading_key {
            if self.key.len() + bytes.len() <= 64 {
                self.key.extend_from_slice(bytes);
            } else {
                self.key.clear();
                self.reading_key = false;
            }
        } else if self.capturing {
            if self.value.len() + bytes.len() <= MAX_VALUE {
                self.value.extend_from_slice(bytes);
            } else {
                self.capturing = false;
                self.value = Vec::new();
            }
        }
    }

    fn end_value(&mut self) {
        if self.capturing {
            self.capturing = false;
            self.found = Some(std::mem::take(&mut self.value));
        }
        self.key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(doc: &str, name: &'static str, cut: usize) -> Option<String> {
        let mut s = FieldScan::new(name);
        s.feed(&doc.as_bytes()[..cut]);
        s.feed(&doc.as_bytes()[cut..]);
        s.value().map(|v| String::from_utf8_lossy(v).trim().to_string())
    }

    #[test]
    fn finds_the_top_level_field_wherever_the_chunks_are_cut() {
        let doc = r#"{"id": "x", "choices": [{"message": {"content": "a \"usage\": {\"no\":1} b", "usage": {"nested": 1}}}],
            "usage" : {"prompt_tokens": 3, "completion_tokens": 1}, "system_fingerprint": "fp"}"#;
        for cut in 0..=doc.len() {
            assert_eq!(
                scan(doc, "usage", cut).as_deref(),
                Some(r#"{"prompt_tokens": 3, "completion_tokens": 1}"#),
                "cut {cut}"
            );
        }
        assert_eq!(
            scan(r#"{"a":{"usage":{"x":1}},"b":[{"usage":2}]}"#, "usage", 3),
            None,
            "only the top level counts"
        );
        assert_eq!(scan(r#"{"usage":null}"#, "usage", 5).as_deref(), Some("null"));
        assert_eq!(scan(r#"{"usageMetadata":{"x":1}}"#, "usage", 5), None);
        assert_eq!(scan(r#"{"usageMetadata":{"x":1}}"#, "usageMetadata", 5).as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(scan(r#"{"usage":{"x":"}"}}"#, "usage", 9).as_deref(), Some(r#"{"x":"}"}"#));
        assert_eq!(scan(r#"{"us\u0061ge":1}"#, "usage", 4).as_deref(), Some("1"), "escaped keys are decoded");
    }

    #[test]
    fn garbage_never_panics_and_memory_stays_bounded() {
        let mut s = FieldScan::new("usage");
        s.feed(b"{\"usage\":\"");
        for _ in 0..64 {
            s.feed(&[b'a'; 4096]);
        }
        assert!(s.value.len() <= MAX_VALUE);
        for junk in [&b"}}}]]]"[..], b"\\\\\"", b"{{{{", b":,:,\"\"\"", b"\xff\xfe"] {
            s.feed(junk);
        }
    }
}
