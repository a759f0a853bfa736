//! Tool-call ids that carry what a caller's format has no field for.
//!
//! Gemini signs each function call (`thoughtSignature`) and rejects the
//! next turn if the signature is not replayed. OpenAI and Anthropic
//! clients replay tool-call ids faithfully but have no signature field, so
//! the signature rides inside the id: `<id>__ts<base64url>`. The alphabet
//! stays within `[A-Za-z0-9_-]`, which Anthropic requires of tool ids.

const MARK: &str = "__ts";

/// A fresh id for a call the provider did not name.
pub fn new_call_id(prefix: &str, seed: &str, n: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(n.to_le_bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}{hash:016x}{n}")
}

/// The id to hand the caller for a call with this signature.
pub fn wrap(id: &str, signature: Option<&str>) -> String {
    match signature {
        Some(sig) if !sig.is_empty() => {
            let mut out = String::with_capacity(id.len() + MARK.len() + sig.len());
            out.push_str(id);
            out.push_str(MARK);
            out.extend(sig.chars().filter(|c| *c != '=').map(|c| match c {
                '+' => '-',
                '/' => '_',
                other => other,
            }));
            out
        }
        _ => id.to_string(),
    }
}

/// Splits an id from [`wrap`] back into the provider's id and signature.
pub fn unwrap(id: &str) -> (&str, Option<String>) {
    let Some((base, encoded)) = id.split_once(MARK) else {
        return (id, None);
    };
    let mut sig: String = encoded
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    while !sig.len().is_multiple_of(4) {
        sig.push('=');
    }
    (base, Some(sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_ids_pass_unchanged() {
        assert_eq!(wrap("call_1", None), "call_1");
        assert_eq!(unwrap("toolu_01A"), ("toolu_01A", None));
    }

    proptest! {
        #[test]
        fn signatures_survive_the_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            // A standard base64 text, as Gemini sends.
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut sig: String = bytes.iter().map(|b| ALPHABET[usize::from(*b) % 64] as char).collect();
            while !sig.len().is_multiple_of(4) { sig.push('='); }
            let id = wrap("call_abc", Some(&sig));
            prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            let (base, back) = unwrap(&id);
            prop_assert_eq!(base, "call_abc");
            prop_assert_eq!(back.as_deref(), Some(sig.as_str()));
        }
    }
}
