//! Customer keys: where a caller may put one, and the key ring that knows
//! them. Keys are held only as SHA-256 digests; a presented key is hashed
//! and compared in constant time, and is never logged or forwarded.

pub mod abuse;

use crate::config::KeyConfig;
use crate::secret::Secret;
use foldhash::{HashMap, HashMapExt};
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The headers and query parameter a key may arrive in, in the order they
/// are tried. The gateway removes every one of them before going upstream.
pub const KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "anthropic-api-key", "x-goog-api-key"];

static AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static ANTHROPIC_API_KEY: HeaderName = HeaderName::from_static("anthropic-api-key");
pub static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
/// [`KEY_HEADERS`] as header names, made at compile time, in the same
/// order: a look by name then hashes no text (a standard name hashes as
/// its number).
pub static KEY_HEADER_NAMES: [&HeaderName; 4] =
    [&AUTHORIZATION, &X_API_KEY, &ANTHROPIC_API_KEY, &X_GOOG_API_KEY];
pub const KEY_QUERY_PARAM: &str = "key";

/// Who is calling, once the key is known.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name from the configuration; safe to log.
    pub key_name: Arc<str>,
    /// The key's record, when calls are billed.
    pub billed: Option<Arc<crate::billing::KeyState>>,
}

pub use crate::billing::KeyDigest;

pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Finds the customer key in the request: `Authorization: Bearer`, then the
/// provider-style headers, then Gemini's `?key=`.
pub fn extract_key<'h>(
    header: &dyn Fn(&HeaderName) -> Option<&'h str>,
    query: Option<&str>,
) -> Option<Secret> {
    for name in KEY_HEADER_NAMES {
        let Some(value) = header(name) else { continue };
        let value = value.trim();
        let key = if *name == http::header::AUTHORIZATION {
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => continue,
            }
        } else {
            value
        };
        if !key.is_empty() {
            return Some(Secret::new(key));
        }
    }
    query_param(query?, KEY_QUERY_PARAM).filter(|k| !k.is_empty()).map(Secret::new)
}

/// The decoded value of `name` in a query string; names are decoded too
/// (`k%65y` is `key`), as the providers' own servers decode them.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name || decode(k) == name).then(|| decode(v))
    })
}

/// The query with the value of every customer-key parameter replaced by `*****`.
pub fn mask_query_key(query: &str) -> String {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            if name == KEY_QUERY_PARAM || decode(name) == KEY_QUERY_PARAM {
                format!("{name}=*****")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Debug, Default)]
pub struct KeyRing {
    by_digest: HashMap<KeyDigest, Principal>,
}

impl KeyRing {
    pub fn from_config(keys: &[KeyConfig]) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let digest = match (&k.key, &k.key_sha256) {
                (Some(key), None) if !key.expose().is_empty() => digest(key.expose()),
                (None, Some(hex_digest)) => parse_digest(hex_digest)
                    .ok_or_else(|| format!("keys[{i}].key_sha256: expected 64 hex digits"))?,
                (Some(_), None) => return Err(format!("keys[{i}].key: the key is empty")),
                _ => return Err(format!("keys[{i}]: give exactly one of 'key' and 'key_sha256'")),
            };
            let principal = Principal { key_name: Arc::from(k.name.as_str()), billed: None };
            if by_digest.insert(digest, principal).is_some() {
                return Err(format!("keys[{i}] ({}): the same key is configured twice", k.name));
            }
        }
        Ok(Self { by_digest })
    }

    pub fn authenticate(&self, presented: &Secret) -> Option<&Principal> {
        let presented = digest(presented.expose());
        // The map lookup is by digest, which tells an attacker nothing about
        // the key; the final comparison is constant-time anyway.
        self.by_digest
            .get_key_value(&presented)
            .filter(|(stored, _)| bool::from(stored.ct_eq(&presented)))
            .map(|(_, principal)| principal)
    }
}

pub fn parse_digest(hex_digest: &str) -> Option<KeyDigest> {
    let bytes = hex::decode(hex_digest.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&HeaderName) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *name == *k).map(|(_, v)| *v)
    }

    #[test]
    fn the_key_headers_names_are_their_texts() {
        assert_eq!(KEY_HEADER_NAMES.map(HeaderName::as_str), KEY_HEADERS);
    }

    #[test]
    fn finds_the_key_in_every_place() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: [Case; 6] = [
            (&[("authorization", "Bearer sk-1")], None),
            (&[("authorization", "bearer  sk-1 ")], None),
            (&[("x-api-key", "sk-1")], None),
            (&[("anthropic-api-key", "sk-1")], None),
            (&[("x-goog-api-key", "sk-1")], None),
            (&[], Some("alt=sse&key=sk-1")),
        ];
        for (h, q) in cases {
            let got = extract_key(&headers(h), q).map(|s| s.expose().to_string());
            assert_eq!(got.as_deref(), Some("sk-1"), "{h:?} {q:?}");
        }
        assert!(extract_key(&headers(&[("authorization", "Basic abc")]), None).is_none());
        assert!(extract_key(&headers(&[]), Some("alt=sse")).is_none());
    }

    #[test]
    fn key_ring_accepts_plain_and_hashed_keys() {
        let hashed = hex::encode(digest("sk-hashed"));
        let ring = KeyRing::from_config(&[
            KeyConfig {
                name: "plain".into(),
                key: Some(Secret::new("sk-plain")),
                key_sha256: None,
                account: None,
            },
            KeyConfig { name: "hashed".into(), key: None, key_sha256: Some(hashed), account: None },
        ])
        .unwrap();
        assert_eq!(&*ring.authenticate(&Secret::new("sk-plain")).unwrap().key_name, "plain");
        assert_eq!(&*ring.authenticate(&Secret::new("sk-hashed")).unwrap().key_name, "hashed");
        assert!(ring.authenticate(&Secret::new("sk-other")).is_none());
    }

    #[test]
    fn key_ring_rejects_bad_entries() {
        let both = KeyConfig {
            name: "x".into(),
            key: Some(Secret::new("a")),
            key_sha256: Some("00".into()),
            account: None,
        };
        assert!(KeyRing::from_config(&[both]).is_err());
        let short = KeyConfig { name: "x".into(), key: None, key_sha256: Some("abcd".into()), account: None };
        assert!(KeyRing::from_config(&[short]).unwrap_err().contains("64 hex"));
    }
}
