//! JSON string text: which strings are their own text, and the escaper
//! that writes the others as serde_json does. A leaf: the body readers
//! and the writers of every format use it, and it uses none of them.

/// What each byte becomes inside a JSON string: 0 for itself, `u` for a
/// `\u00XX` escape, else the letter after the backslash (serde_json's
/// choice of escapes, so the text reads the same as its output).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table
};

/// Whether `s` is its own JSON string text: no byte that [`ESCAPE`]
/// would escape (the same three tests, without an early exit, so the
/// check is a few vector steps rather than a branch a byte).
pub fn needs_no_escape(s: &str) -> bool {
    bytes_need_no_escape(s.as_bytes())
}

/// [`needs_no_escape`] of bytes (a run of a string still being read).
pub fn bytes_need_no_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Writes `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.push_str(&s[start..i]);
        out.push('\\');
        if escape == b'u' {
            out.push_str("u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push(char::from(escape));
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes an unsigned number.
pub fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

pub fn quote(s: &str) -> String {
    let mut out = String::new();
    push_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_no_escape_is_what_push_str_leaves_alone() {
        for b in 0u8..=0x7f {
            let s = char::from(b).to_string();
            assert_eq!(needs_no_escape(&s), quote(&s) == format!("\"{s}\""), "byte {b:#x}");
        }
        assert!(needs_no_escape("gpt-5.5 caf\u{e9}"));
    }

    #[test]
    fn quotes_like_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" and \\ back",
            "ctl \u{1} \n\t\r \u{8} \u{c} \u{1f}",
            "ünïcödé 🎉",
            "</script>",
        ] {
            assert_eq!(quote(s), serde_json::to_string(s).unwrap());
        }
    }
}
