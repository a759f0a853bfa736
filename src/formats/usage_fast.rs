//! A usage object read without serde when it has the plain shape every
//! provider sends: an object of counts, with at most one level of nested
//! objects (OpenAI's `*_tokens_details`), keys without escapes, and
//! values that are unsigned integers, `null`, `true`, `false` or strings
//! without escapes. Anything else (an array, a sign, a fraction, an
//! escape, a repeated key, a count too large) is left to the serde types
//! in [`super::usage`], which decide as before: this reader answers only
//! where it is sure to answer as they would (a property test holds it to
//! that). It is on every billed response's path, where serde's derived
//! visitors cost ~7k instructions for OpenAI's ten fields.

use super::usage::Usage;
use super::ClientFormat;

/// Fields kept per object; a usage with more goes to serde.
const MAX_FIELDS: usize = 24;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Count(u64),
    Null,
    /// `true`, `false` or a string: never a count.
    Other,
    /// A nested object: its fields' index in [`Reader::nested`].
    Object(usize),
}

/// An object's fields, on the stack: a usage object has a dozen or so,
/// and growing a `Vec` to hold them cost more than reading them.
type Fields<'a> = smallvec::SmallVec<[(&'a [u8], Scalar); 16]>;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    nested: smallvec::SmallVec<[Fields<'a>; 2]>,
}

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// A string of printable ASCII without escapes, its quotes eaten (serde
    /// refuses control characters, and a key that is not UTF-8).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        let (text, end) = rest.split_at(len);
        // Without an early exit, so the check is a few vector steps.
        let printable = text.iter().fold(true, |ok, b| ok & (b' '..=b'~').contains(b));
        if !printable || end.first() != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        Some(text)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes.get(self.at..)?.starts_with(word).then(|| self.at += word.len())
    }

    /// Digits only, without a leading zero (as JSON has them), that fit a
    /// `u64`; a number with a sign, a fraction or an exponent is refused.
    fn count(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(&b) = self.bytes.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.at += 1;
        }
        let len = self.at - start;
        if len == 0 || (len > 1 && self.bytes.get(start) == Some(&b'0')) {
            return None;
        }
        match self.bytes.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(n),
        }
    }

    fn value(&mut self, depth: usize) -> Option<Scalar> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'0'..=b'9' => self.count().map(Scalar::Count),
            b'n' => self.literal(b"null").map(|()| Scalar::Null),
            b't' => self.literal(b"true").map(|()| Scalar::Other),
            b'f' => self.literal(b"false").map(|()| Scalar::Other),
            b'"' => self.plain_string().map(|_| Scalar::Other),
            b'{' if depth == 0 => {
                let fields = self.object(depth + 1)?;
                self.nested.push(fields);
                Some(Scalar::Object(self.nested.len() - 1))
            }
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<Fields<'a>> {
        self.eat(b'{')?;
        let mut fields = Fields::new();
        if self.eat(b'}').is_some() {
            return Some(fields);
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            let value = self.value(depth)?;
            if fields.len() == MAX_FIELDS || fields.iter().any(|(k, _)| *k == key) {
                return None;
            }
            fields.push((key, value));
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(fields);
            }
        }
    }
}

/// What the serde types would make of one field of a struct.
struct Object<'r, 'a> {
    fields: &'r [(&'a [u8], Scalar)],
    nested: &'r [Fields<'a>],
}

impl Object<'_, '_> {
    fn get(&self, name: &str) -> Option<Scalar> {
        self.fields.iter().find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| *v)
    }

    /// A `u64` with `#[serde(default)]`: `None` where serde would fail.
    fn count(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            None => Some(0),
            Some(Scalar::Count(n)) => Some(n),
            Some(_) => None,
        }
    }

    /// An `Option<u64>`: `None` where serde would fail.
    fn maybe_count(&self, name: &str) -> Option<Option<u64>> {
        match self.get(name) {
            None | Some(Scalar::Null) => Some(None),
            Some(Scalar::Count(n)) => Some(Some(n)),
            Some(_) => None,
        }
    }

    /// OpenAI's `Option<Details>`: its `(cached_tokens, reasoning_tokens)`,
    /// `None` where serde would fail.
    fn details(&self, name: &str) -> Option<(Option<u64>, Option<u64>)> {
        match self.get(name) {
            None | Some(Scalar::Null) => Some((None, None)),
            Some(Scalar::Object(i)) => {
                let inner = Object { fields: self.nested.get(i)?, nested: &[] };
                Some((inner.maybe_count("cached_tokens")?, inner.maybe_count("reasoning_tokens")?))
            }
            Some(_) => None,
        }
    }

    /// OpenAI's two shapes (Chat Completions, Responses): the same fields
    /// under other names, `[input, output, input details, output details]`.
    fn openai_shaped(&self, [input, output, input_details, output_details]: [&str; 4]) -> Option<Usage> {
        let (cached, _) = self.details(input_details)?;
        let (_, reasoning) = self.details(output_details)?;
        Some(Usage {
            input_tokens: self.count(input)?,
            output_tokens: self.count(output)?,
            cached_input_tokens: cached.unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: reasoning.unwrap_or(0),
        })
    }
}

/// The usage in `value`, as [`super::usage::from_usage_value`] reads it;
/// `None` when this reader cannot be sure (serde then reads it).
pub fn read(format: ClientFormat, value: &[u8]) -> Option<Usage> {
    let mut reader = Reader { bytes: value, at: 0, nested: smallvec::SmallVec::new() };
    let fields = reader.object(0)?;
    reader.skip_space();
    if reader.at != value.len() {
        return None;
    }
    let o = Object { fields: &fields, nested: &reader.nested };
    match format {
        ClientFormat::Openai => o.openai_shaped([
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        ]),
        ClientFormat::Responses => o.openai_shaped([
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "output_tokens_details",
        ]),
        ClientFormat::Anthropic => {
            let input = o.maybe_count("input_tokens")?;
            let output = o.maybe_count("output_tokens")?;
            let write = o.maybe_count("cache_creation_input_tokens")?.unwrap_or(0);
            let read = o.maybe_count("cache_read_input_tokens")?.unwrap_or(0);
            Some(Usage {
                input_tokens: input.map_or(0, |i| i.saturating_add(read).saturating_add(write)),
                output_tokens: output.unwrap_or(0),
                cached_input_tokens: read,
                cache_write_tokens: write,
                reasoning_tokens: 0,
            })
        }
        ClientFormat::Gemini => {
            let thoughts = o.count("thoughtsTokenCount")?;
            Some(Usage {
                input_tokens: o.count("promptTokenCount")?,
                output_tokens: o.count("candidatesTokenCount")?.saturating_add(thoughts),
                cached_input_tokens: o.count("cachedContentTokenCount")?,
                cache_write_tokens: 0,
                reasoning_tokens: thoughts,
            })
        }
    }
}

#[cfg(test)]
mod tests;
