//! The output of an answer whose usage cannot be read, estimated from the
//! JSON it relayed: the bytes of its string values (the text, and the few
//! ids and names; not keys, numbers or structure), four to a token as the
//! input is estimated from a request, and at least one token for an
//! answer of any length. Read as the bytes stream past, at any size.

#[derive(Debug, Default, Clone)]
pub struct TextBytes {
    in_string: bool,
    escaped: bool,
    /// The open string is a value (it follows a `:`).
    counting: bool,
    after_colon: bool,
    text: u64,
    seen: u64,
}

impl TextBytes {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.seen += chunk.len() as u64;
        let mut i = 0;
        while i < chunk.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.count(1);
                    i += 1;
                    continue;
                }
                let Some(j) = memchr::memchr2(b'"', b'\\', &chunk[i..]) else {
                    self.count(chunk.len() - i);
                    break;
                };
                self.count(j);
                i += j + 1;
                if chunk[i - 1] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    self.counting = false;
                }
                continue;
            }
            match chunk[i] {
                b'"' => {
                    self.in_string = true;
                    self.counting = self.after_colon;
                    self.after_colon = false;
                }
                b':' => self.after_colon = true,
                b'{' | b'}' | b'[' | b']' | b',' => self.after_colon = false,
                _ => {}
            }
            i += 1;
        }
    }

    fn count(&mut self, n: usize) {
        if self.counting {
            self.text += n as u64;
        }
    }

    /// Output tokens the bytes seen so far are estimated at.
    pub fn tokens(&self) -> u64 {
        if self.seen == 0 {
            return 0;
        }
        self.text.div_ceil(4).max(1)
    }
}

/// [`TextBytes::tokens`] of one whole answer.
pub fn output_tokens(body: &[u8]) -> u64 {
    let mut t = TextBytes::default();
    t.feed(body);
    t.tokens()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_string_values_wherever_the_chunks_are_cut() {
        let doc = br#"{"id": "abcd", "content": [{"text": "12345678\"9"}], "n": 12, "ok": true}"#;
        // "abcd" (4) + 12345678\"9 (11) = 15 bytes: 4 tokens.
        assert_eq!(output_tokens(doc), 4);
        for cut in 0..=doc.len() {
            let mut t = TextBytes::default();
            t.feed(&doc[..cut]);
            t.feed(&doc[cut..]);
            assert_eq!(t.tokens(), 4, "cut {cut}");
        }
        assert_eq!(output_tokens(b"{}"), 1, "anything relayed is at least a token");
        assert_eq!(output_tokens(b""), 0);
        assert_eq!(output_tokens(b"data: {\"delta\":\"abcdefgh\"}\n\n"), 2, "an SSE body reads the same");
    }
}
