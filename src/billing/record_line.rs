//! A ledger record's journal line, written field by field: byte for byte
//! what `serde_json` writes for the record (a property test holds the two
//! equal; the journal is still read back with serde), in a fraction of
//! the instructions: one is written on every billed request's path, and
//! serde's generic serializer, its per-byte string escaping and its
//! growing buffer were ~8k instructions of it.

use super::record::{LedgerRecord, Metered};

/// Room for a charge's line, so the buffer never grows.
const LINE_CAPACITY: usize = 384;

impl LedgerRecord {
    /// The record as one JSON line, its newline included.
    pub fn json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINE_CAPACITY);
        out.extend_from_slice(b"{\"key\":");
        string(&mut out, &self.key);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"account\":");
        integer(&mut out, self.account);
        out.extend_from_slice(b",\"key_id\":");
        optional(&mut out, self.key_id);
        out.extend_from_slice(b",\"wallet_nano\":");
        integer(&mut out, self.wallet_nano);
        out.extend_from_slice(b",\"paid_nano\":");
        integer(&mut out, self.paid_nano);
        if self.unpaid_nano != 0 {
            out.extend_from_slice(b",\"unpaid_nano\":");
            integer(&mut out, self.unpaid_nano);
        }
        out.extend_from_slice(b",\"multiplier\":");
        optional(&mut out, self.multiplier);
        out.extend_from_slice(b",\"metered\":");
        match &self.metered {
            Some(m) => metered(&mut out, m),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"at\":");
        integer(&mut out, self.at);
        out.extend_from_slice(b"}\n");
        out
    }
}

fn metered(out: &mut Vec<u8>, m: &Metered) {
    out.extend_from_slice(b"{\"model\":");
    string(out, &m.model);
    out.extend_from_slice(b",\"input_tokens\":");
    integer(out, m.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    integer(out, m.output_tokens);
    out.extend_from_slice(b",\"cached_tokens\":");
    integer(out, m.cached_tokens);
    out.extend_from_slice(b",\"cache_write_tokens\":");
    integer(out, m.cache_write_tokens);
    out.extend_from_slice(if m.estimated { b",\"estimated\":true" } else { b",\"estimated\":false" });
    out.extend_from_slice(b",\"request_id\":");
    string(out, &m.request_id);
    if let Some(group) = &m.group {
        out.extend_from_slice(b",\"group\":");
        string(out, group);
    }
    out.push(b'}');
}

fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn optional(out: &mut Vec<u8>, n: Option<impl itoa::Integer>) {
    match n {
        Some(n) => integer(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: as it is when nothing in it needs escaping (keys, ids
/// and model names), else escaped by serde_json itself.
fn string(out: &mut Vec<u8>, s: &str) {
    if crate::formats::escape::needs_no_escape(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a string into a vector cannot fail; an empty string
        // keeps the line valid JSON if it ever did.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::RecordKind;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = RecordKind> {
        prop_oneof![
            Just(RecordKind::Topup),
            Just(RecordKind::Charge),
            Just(RecordKind::Refund),
            Just(RecordKind::Adjustment)
        ]
    }

    prop_compose! {
        fn any_metered()(
            model in any::<String>(),
            counts in any::<(u64, u64, u64, u64)>(),
            estimated in any::<bool>(),
            request_id in "[ -~\u{0}-\u{1f}\u{7f}é☃]{0,40}",
            group in proptest::option::of(any::<String>()),
        ) -> Metered {
            Metered {
                model: model.into(),
                input_tokens: counts.0,
                output_tokens: counts.1,
                cached_tokens: counts.2,
                cache_write_tokens: counts.3,
                estimated,
                request_id: request_id.into(),
                group: group.map(Into::into),
            }
        }
    }

    prop_compose! {
        fn any_record()(
            key in "[ -~\u{0}-\u{1f}]{0,60}",
            kind in kind(),
            account in any::<u64>(),
            key_id in proptest::option::of(any::<u64>()),
            amounts in any::<(i64, i64)>(),
            unpaid_nano in prop_oneof![Just(0i64), any::<i64>()],
            multiplier in proptest::option::of(any::<u32>()),
            metered in proptest::option::of(any_metered()),
            at in any::<u64>(),
        ) -> LedgerRecord {
            LedgerRecord {
                key,
                kind,
                account,
                key_id,
                wallet_nano: amounts.0,
                paid_nano: amounts.1,
                unpaid_nano,
                multiplier,
                metered,
                at,
            }
        }
    }

    proptest! {
        #[test]
        fn the_line_is_byte_for_byte_what_serde_writes(record in any_record()) {
            let mut expected = serde_json::to_vec(&record).unwrap();
            expected.push(b'\n');
            let line = record.json_line();
            prop_assert_eq!(&line, &expected);
            // The journal's readers stop at the first zero byte (the file
            // is sized ahead with zeros): a line never holds one.
            prop_assert!(!line.contains(&0));
            let back: LedgerRecord = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(back, record);
        }
    }
}
