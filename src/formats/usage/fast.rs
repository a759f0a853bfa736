//! A usage object read without serde when it has the plain shape every
//! provider sends: an object of counts, with objects and arrays nested at
//! most two deep (OpenAI's `*_tokens_details`, Gemini's per-modality
//! `promptTokensDetails` list of objects), keys without escapes, and
//! values that are unsigned integers, `null`, `true`, `false` or strings
//! without escapes. Anything else (an array, a sign, a fraction, an
//! escape, a repeated field the bill reads, a count too large) is left to
//! the serde types in [`super`], which decide as before: this
//! reader answers only where it is sure to answer as they would (a
//! property test holds it to that). It is on every billed response's
//! path, where serde's derived visitors cost ~7k instructions for
//! OpenAI's ten fields. Each field is read once into the slot of the
//! count it is, or stepped over: nothing is kept to be looked up after.

use super::Usage;
use crate::formats::ClientFormat;
use memchr::memmem::FinderRev;
use std::sync::LazyLock;

/// What a field the bill reads held.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Absent,
    Null,
    Count(u64),
    /// OpenAI's `*_tokens_details`: its `(cached_tokens, reasoning_tokens)`.
    Details(Option<u64>, Option<u64>),
}

impl Slot {
    /// A `u64` with `#[serde(default)]`: `None` where serde would fail.
    fn count(self) -> Option<u64> {
        match self {
            Slot::Absent => Some(0),
            Slot::Count(n) => Some(n),
            _ => None,
        }
    }

    /// An `Option<u64>`: `None` where serde would fail.
    fn maybe_count(self) -> Option<Option<u64>> {
        match self {
            Slot::Absent | Slot::Null => Some(None),
            Slot::Count(n) => Some(Some(n)),
            Slot::Details(..) => None,
        }
    }

    /// OpenAI's `Option<Details>`: `None` where serde would fail.
    fn details(self) -> Option<(Option<u64>, Option<u64>)> {
        match self {
            Slot::Absent | Slot::Null => Some((None, None)),
            Slot::Details(cached, reasoning) => Some((cached, reasoning)),
            Slot::Count(_) => None,
        }
    }
}

/// The slot of a format's usage field, `None` for one the bill does not
/// read; OpenAI's two shapes have their details in slots 2 and 3.
fn slot(format: ClientFormat, key: &[u8]) -> Option<usize> {
    let names: [&[u8]; 4] = match format {
        ClientFormat::Openai => {
            [b"prompt_tokens", b"completion_tokens", b"prompt_tokens_details", b"completion_tokens_details"]
        }
        ClientFormat::Responses => {
            [b"input_tokens", b"output_tokens", b"input_tokens_details", b"output_tokens_details"]
        }
        ClientFormat::Anthropic => {
            [b"input_tokens", b"output_tokens", b"cache_creation_input_tokens", b"cache_read_input_tokens"]
        }
        ClientFormat::Gemini => {
            [b"promptTokenCount", b"candidatesTokenCount", b"cachedContentTokenCount", b"thoughtsTokenCount"]
        }
    };
    names.iter().position(|name| *name == key)
}

fn has_details(format: ClientFormat) -> bool {
    matches!(format, ClientFormat::Openai | ClientFormat::Responses)
}

/// The usage the slots say, as the format's serde type reads it.
fn usage_of(format: ClientFormat, [a, b, c, d]: [Slot; 4]) -> Option<Usage> {
    match format {
        ClientFormat::Openai | ClientFormat::Responses => {
            let (cached, _) = c.details()?;
            let (_, reasoning) = d.details()?;
            Some(Usage {
                input_tokens: a.count()?,
                output_tokens: b.count()?,
                cached_input_tokens: cached.unwrap_or(0),
                cache_write_tokens: 0,
                reasoning_tokens: reasoning.unwrap_or(0),
            })
        }
        ClientFormat::Anthropic => {
            let input = a.maybe_count()?;
            let output = b.maybe_count()?;
            let write = c.maybe_count()?.unwrap_or(0);
            let read = d.maybe_count()?.unwrap_or(0);
            Some(Usage {
                input_tokens: input.map_or(0, |i| i.saturating_add(read).saturating_add(write)),
                output_tokens: output.unwrap_or(0),
                cached_input_tokens: read,
                cache_write_tokens: write,
                reasoning_tokens: 0,
            })
        }
        ClientFormat::Gemini => {
            let thoughts = d.count()?;
            Some(Usage {
                input_tokens: a.count()?,
                output_tokens: b.count()?.saturating_add(thoughts),
                cached_input_tokens: c.count()?,
                cache_write_tokens: 0,
                reasoning_tokens: thoughts,
            })
        }
    }
}

/// How deep a usage field's value may nest objects and arrays.
const MAX_DEPTH: usize = 2;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| is_space(*b)) {
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

    /// A count or `null`; anything else is a value no count field takes.
    fn count_or_null(&mut self) -> Option<Slot> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'0'..=b'9' => self.count().map(Slot::Count),
            b'n' => self.literal(b"null").map(|()| Slot::Null),
            _ => None,
        }
    }

    /// A value of the plain shape, stepped over: an object or an array
    /// only above [`MAX_DEPTH`].
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'0'..=b'9' => self.count().map(drop),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'"' => self.plain_string().map(drop),
            b'{' if depth < MAX_DEPTH => self.fields(|reader, _| reader.skip_value(depth + 1)),
            b'[' if depth < MAX_DEPTH => self.elements(depth + 1),
            _ => None,
        }
    }

    /// An array's elements, each stepped over at `depth`.
    fn elements(&mut self, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.skip_value(depth)?;
            if self.eat(b',').is_none() {
                return self.eat(b']');
            }
        }
    }

    /// An object's fields, each read by `field` (given its key) with the
    /// reader after its colon.
    fn fields(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            field(self, key)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// OpenAI's `*_tokens_details`: `null`, or an object whose
    /// `cached_tokens` and `reasoning_tokens` are counts or `null`.
    fn details(&mut self) -> Option<Slot> {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b'n') {
            return self.literal(b"null").map(|()| Slot::Null);
        }
        let mut kept = [Slot::Absent; 2];
        self.fields(|reader, key| {
            let i = match key {
                b"cached_tokens" => 0,
                b"reasoning_tokens" => 1,
                _ => return reader.skip_value(1),
            };
            // A repeated field is an error to serde.
            if kept[i] != Slot::Absent {
                return None;
            }
            kept[i] = reader.count_or_null()?;
            Some(())
        })?;
        let [cached, reasoning] = kept.map(|s| match s {
            Slot::Count(n) => Some(n),
            _ => None,
        });
        Some(Slot::Details(cached, reasoning))
    }

    /// The usage object at `at` read as `format`'s, white space after it eaten.
    fn usage(&mut self, format: ClientFormat) -> Option<Usage> {
        let mut slots = [Slot::Absent; 4];
        self.fields(|reader, key| {
            let Some(i) = slot(format, key) else { return reader.skip_value(0) };
            if slots[i] != Slot::Absent {
                return None;
            }
            slots[i] =
                if i >= 2 && has_details(format) { reader.details()? } else { reader.count_or_null()? };
            Some(())
        })?;
        self.skip_space();
        usage_of(format, slots)
    }
}

/// The usage in `value`, as [`super::from_usage_value`] reads it;
/// `None` when this reader cannot be sure (serde then reads it).
pub fn read(format: ClientFormat, value: &[u8]) -> Option<Usage> {
    let mut reader = Reader { bytes: value, at: 0 };
    let usage = reader.usage(format)?;
    (reader.at == value.len()).then_some(usage)
}

/// The usage field's name with its quotes, found from a document's end.
static USAGE_KEY: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"usage\""));
static GEMINI_USAGE_KEY: LazyLock<FinderRev<'static>> =
    LazyLock::new(|| FinderRev::new(b"\"usageMetadata\""));

/// The usage of a whole document, read from its end: providers put the
/// usage among the last top-level fields (OpenAI before `service_tier`
/// and `system_fingerprint`, Gemini before `modelVersion` and
/// `responseId`, Anthropic last), so the document before it need not be
/// read. The last `"usage"` in the document is taken when it is a key
/// (after `{` or `,`: a quote inside a string is escaped), its value is
/// a usage this reader is sure of, and what follows is only fields of the
/// plain shape and the `}` that ends the document. That `}` closes the
/// object holding the key, so the key is at the top level, and no later
/// one repeats it (the last one counts, as for the scan from the start).
/// `None` otherwise: the caller then scans the document from its start.
pub fn from_document_end(format: ClientFormat, doc: &[u8]) -> Option<Usage> {
    let key = if format == ClientFormat::Gemini { &GEMINI_USAGE_KEY } else { &USAGE_KEY };
    let at = key.rfind(doc)?;
    let before = doc.get(..at)?;
    let opening = before.iter().rev().find(|b| !is_space(**b));
    if !matches!(opening, Some(b'{' | b',')) {
        return None;
    }
    let rest = doc.get(at + key.needle().len()..)?;
    let mut reader = Reader { bytes: rest, at: 0 };
    reader.eat(b':')?;
    let usage = reader.usage(format)?;
    loop {
        if reader.eat(b'}').is_some() {
            reader.skip_space();
            return (reader.at == rest.len()).then_some(usage);
        }
        reader.eat(b',')?;
        reader.plain_string()?;
        reader.eat(b':')?;
        reader.skip_value(0)?;
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests;
