//! A request body's top-level fields found in one pass over its bytes,
//! without serde: each field's key and its value's JSON text, the same
//! slices serde's `RawValue` would give. Every request's body is read
//! this way before anything else, so its cost is paid on each call and
//! grows with the body: serde's reading was ~40 instructions a byte;
//! this one skips the runs inside strings with memchr.
//!
//! It answers only where it is sure: a body it cannot read exactly as
//! serde would accept it (a key with an escape, invalid UTF-8, anything
//! outside JSON's grammar, nesting deeper than [`MAX_DEPTH`]) gives
//! `None`, and serde reads that body instead, to accept it or to word its
//! error. A property test and the `request_body` fuzz target hold every
//! answer to serde's.

/// Containers nested deeper than this are left to serde: a bound on this
/// reader's own recursion (serde steps over a raw value of any depth).
const MAX_DEPTH: usize = 128;

/// The top-level fields of `body`, one JSON object, in document order:
/// `(key, value's text)`. `None` when the body is not a JSON object this
/// reader is sure of (see the module's docs).
pub fn fields(body: &[u8]) -> Option<Vec<(&str, &str)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut scan = Scan { bytes: body, at: 0 };
    let mut fields = Vec::with_capacity(16);
    scan.space();
    scan.eat(b'{')?;
    scan.space();
    if scan.eat(b'}').is_none() {
        loop {
            let key = scan.plain_key()?;
            scan.space();
            scan.eat(b':')?;
            scan.space();
            let start = scan.at;
            scan.value(0)?;
            // Slices at ASCII delimiters of valid UTF-8: char boundaries.
            fields.push((text.get(key.0..key.1)?, text.get(start..scan.at)?));
            scan.space();
            if scan.eat(b',').is_some() {
                scan.space();
                continue;
            }
            scan.eat(b'}')?;
            break;
        }
    }
    scan.space();
    (scan.at == body.len()).then_some(fields)
}

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// JSON's whitespace (serde's: no form feed, nothing beyond ASCII).
    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// A key without escapes: where its text starts and ends.
    fn plain_key(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest.get(len) != Some(&b'"') || !plain_run(rest.get(..len)?) {
            return None;
        }
        self.at = start + len + 1;
        Some((start, start + len))
    }

    /// A string, escapes and all, as serde steps over one: an escape is
    /// one of JSON's, `\u` takes four hex digits (of any code point, as
    /// serde's skipping does not judge them), no control character.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let rest = self.bytes.get(self.at..)?;
            let len = memchr::memchr2(b'"', b'\\', rest)?;
            if !plain_run(rest.get(..len)?) {
                return None;
            }
            self.at += len + 1;
            if rest.get(len) == Some(&b'"') {
                return Some(());
            }
            match self.peek()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                b'u' => {
                    let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.at += 5;
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// JSON's number: `-`, an integer without a leading zero, a fraction
    /// and an exponent each with at least one digit.
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.bytes.get(self.at..)?.starts_with(word).then(|| self.at += word.len())
    }

    /// One value, the reader on its first byte, stepped over.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'[' if depth < MAX_DEPTH => self.container(b']', depth + 1),
            b'{' if depth < MAX_DEPTH => self.container(b'}', depth + 1),
            _ => None,
        }
    }

    /// An array (`close` is `]`) or an object (`}`), the reader on its
    /// opening byte.
    fn container(&mut self, close: u8, depth: usize) -> Option<()> {
        self.at += 1;
        self.space();
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            if close == b'}' {
                self.string()?;
                self.space();
                self.eat(b':')?;
                self.space();
            }
            self.value(depth)?;
            self.space();
            if self.eat(b',').is_none() {
                return self.eat(close);
            }
            self.space();
        }
    }
}

/// Whether a run of a string up to its first quote or backslash holds no
/// control character, which no JSON string may: the run has neither of
/// the other two bytes JSON escapes, so it is the journal's and the
/// body's plain-string check.
fn plain_run(run: &[u8]) -> bool {
    super::escape::bytes_need_no_escape(run)
}

#[cfg(test)]
mod tests {
    use super::fields;
    use proptest::prelude::*;

    #[test]
    fn reads_what_serde_reads() {
        let body = br#" { "model" : "gpt-5.5", "n":-1.5e+3, "messages":[{"role":"user","content":"a\"b\\c\u00e9\n"}],
            "deep":{"a":[[],{}],"b":null,"c":true,"d":false}, "s":"\ud83e" } "#;
        let got = fields(body).unwrap();
        assert_eq!(
            got,
            [
                ("model", "\"gpt-5.5\""),
                ("n", "-1.5e+3"),
                ("messages", r#"[{"role":"user","content":"a\"b\\c\u00e9\n"}]"#),
                ("deep", r#"{"a":[[],{}],"b":null,"c":true,"d":false}"#),
                ("s", r#""\ud83e""#),
            ]
        );
    }

    #[test]
    fn leaves_to_serde_what_it_is_not_sure_of() {
        for body in [
            &br#"{"a\u0062":1}"#[..],
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":1e}"#,
            br#"{"a":-}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":1,}"#,
            br#"{"a":{"b"}}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\xff\"}",
            br#"{"a":tru}"#,
            br#"{"a":1} x"#,
            br#"[1]"#,
            b"\x0c{}",
            br#"{"a":1"#,
            br#"{"a":"#,
        ] {
            assert_eq!(fields(body), None, "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"{\"a\x01\":1}"[..], b"{\"a\":1}\x00", b"\xef\xbb\xbf{}", b"{\"a\":\x0c1}"] {
            assert_eq!(fields(body), None, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(fields(b" {} "), Some(vec![]));
        assert_eq!(fields(b"{\"a\":\"\x7f\"}"), Some(vec![("a", "\"\x7f\"")]), "DEL is no control character");
        let nested = |depth: usize| format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(fields(nested(128).as_bytes()).is_some(), "as deep as it reads");
        assert_eq!(fields(nested(129).as_bytes()), None, "deeper than it reads");
    }

    /// JSON text of every shape: values of each kind, escapes of each
    /// kind, whitespace of each kind between tokens.
    fn json(depth: u32) -> proptest::strategy::BoxedStrategy<String> {
        let space = proptest::sample::select(vec!["", " ", "\n", "\t\r ", "\x0c"]);
        let string = proptest::collection::vec(
            proptest::sample::select(vec![
                "a", "é", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\ud83e", "\\x", "\\u12", "\u{1}", "\"",
                "🦀", " ",
            ]),
            0..6,
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat()));
        let number = proptest::sample::select(vec![
            "0", "-0", "12", "-3.25", "1e9", "1E+2", "2.5e-3", "01", "1.", "-", "1e", ".5", "+1",
        ])
        .prop_map(str::to_string);
        let word =
            proptest::sample::select(vec!["true", "false", "null", "tru", "nul"]).prop_map(str::to_string);
        let leaf = prop_oneof![string.clone(), number, word].boxed();
        if depth == 0 {
            return leaf;
        }
        let inner = json(depth - 1);
        let array = (proptest::collection::vec((inner.clone(), space.clone()), 0..4), space.clone())
            .prop_map(|(items, s)| {
                let items: Vec<String> = items.into_iter().map(|(v, sp)| format!("{sp}{v}{sp}")).collect();
                format!("[{s}{}]", items.join(","))
            });
        let object = (proptest::collection::vec((string, inner, space.clone()), 0..4), space).prop_map(
            |(fields, s)| {
                let fields: Vec<String> =
                    fields.into_iter().map(|(k, v, sp)| format!("{k}{sp}:{sp}{v}")).collect();
                format!("{{{s}{}}}", fields.join(","))
            },
        );
        prop_oneof![leaf, array, object].boxed()
    }

    fn serde_fields(body: &[u8]) -> Option<Vec<(String, String)>> {
        let top = crate::formats::body::TopLevel::parse_by_serde(body).ok()?;
        Some(top.fields_for_test())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Wherever the scan answers, serde reads the same fields; and a
        /// body serde reads with plain keys the scan reads too.
        #[test]
        fn answers_as_serde_does(
            body in json(3).prop_map(|v| format!(" {{\"k\":{v},\"model\" : \"m\"}} ")),
            cut in 0usize..64,
            flip in proptest::sample::select(vec![None, Some(b'"'), Some(b'\\'), Some(b','), Some(b'}'), Some(b'1')]),
        ) {
            let mut bytes = body.into_bytes();
            if let Some(b) = flip {
                let at = cut % bytes.len();
                bytes[at] = b;
            }
            let fast = fields(&bytes).map(|f| {
                f.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
            });
            let slow = serde_fields(&bytes);
            if fast.is_some() {
                prop_assert_eq!(&fast, &slow, "{}", String::from_utf8_lossy(&bytes));
            }
            if slow.is_some() && flip.is_none() {
                prop_assert!(fast.is_some(), "left to serde: {}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
