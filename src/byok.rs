//! Customers' own provider keys (issue #19 item 7, seed 004): sealed at
//! rest with AES-256-GCM under a key from the environment (each sealed key
//! bound to its account and provider, so a row copied elsewhere does not
//! open), never shown again once registered; and the platform fee a call
//! made with one is billed instead of the model's list price.

use crate::billing::{ModelPrice, NanoUsd};
use crate::secret::Secret;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a node keeps an account's keys before it reads them again
/// (a key registered or removed on another node applies within this).
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// An account's own keys: (provider name, key).
pub type OwnKeys = Arc<Vec<(String, Secret)>>;

/// Customers' own keys on this node: the sealer, the fee, and each
/// account's keys as last read.
#[derive(Debug)]
pub struct Byok {
    pub sealer: Sealer,
    fee_basis_points: i64,
    fee_per_request: NanoUsd,
    cache: Mutex<HashMap<i64, (Instant, OwnKeys)>>,
}

impl Byok {
    pub fn from_config(section: &crate::config::ByokSection) -> Result<Self, String> {
        let hex_key = std::env::var(&section.key_env)
            .map_err(|_| format!("byok.key_env: {} is not set (64 hex digits)", section.key_env))?;
        let per_request = if section.fee_per_request.trim().is_empty() {
            NanoUsd::ZERO
        } else {
            NanoUsd::parse_usd(&section.fee_per_request).map_err(|e| format!("byok.fee_per_request: {e}"))?
        };
        Ok(Self {
            sealer: Sealer::from_hex(&hex_key).map_err(|e| format!("byok: {e}"))?,
            fee_basis_points: basis_points(&section.fee_percent).map_err(|e| format!("byok.{e}"))?,
            fee_per_request: per_request,
            cache: Mutex::default(),
        })
    }

    /// What a call with the customer's own key is billed instead of `list`.
    pub fn fee(&self, list: ModelPrice) -> ModelPrice {
        fee_price(list, self.fee_basis_points, self.fee_per_request)
    }

    /// `account`'s keys as read less than [`CACHE_TTL`] ago.
    pub fn cached(&self, account: i64) -> Option<OwnKeys> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(&account).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, keys)| keys.clone())
    }

    pub fn remember(&self, account: i64, keys: Vec<(String, Secret)>) -> OwnKeys {
        let keys = Arc::new(keys);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(account, (Instant::now(), keys.clone()));
        keys
    }

    /// `account`'s keys changed on this node: read them again next time.
    pub fn forget(&self, account: i64) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(&account);
    }
}

/// Seals and opens customers' keys.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(*****)")
    }
}

const NONCE_LEN: usize = 12;

impl Sealer {
    /// From 64 hex digits (32 bytes).
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(hex_key.trim()).map_err(|_| "the sealing key must be 64 hex digits".to_string())?;
        if bytes.len() != 32 {
            return Err("the sealing key must be 32 bytes (64 hex digits)".into());
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Self { cipher })
    }

    /// `key` sealed for `account`'s `provider`: nonce then ciphertext.
    pub fn seal(&self, account: i64, provider: &str, key: &str) -> Result<Vec<u8>, String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = binding(account, provider);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: key.as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| "the key could not be sealed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The key `sealed` holds, if it was sealed for this account and provider.
    pub fn open(&self, account: i64, provider: &str, sealed: &[u8]) -> Result<Secret, String> {
        if sealed.len() <= NONCE_LEN {
            return Err("a sealed key is too short".into());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = binding(account, provider);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| {
                "a sealed key does not open (another sealing key, or another account's)".to_string()
            })?;
        String::from_utf8(plain).map(|k| Secret::new(&k)).map_err(|_| "a sealed key is not text".into())
    }
}

fn binding(account: i64, provider: &str) -> String {
    format!("tollgate-byok:{account}:{provider}")
}

/// What a call with the customer's own key is billed: `percent` of the
/// list price (in hundredths of a percent, so 2.5 % is 250) and
/// `per_request` on top.
pub fn fee_price(list: ModelPrice, basis_points: i64, per_request: NanoUsd) -> ModelPrice {
    let scale = |p: NanoUsd| {
        NanoUsd(i64::try_from(i128::from(p.0) * i128::from(basis_points) / 10_000).unwrap_or(i64::MAX))
    };
    ModelPrice {
        input: scale(list.input),
        output: scale(list.output),
        cache_read: scale(list.cache_read),
        cache_write: scale(list.cache_write),
        per_image: scale(list.per_image),
        per_search_unit: scale(list.per_search_unit),
        per_request: NanoUsd(scale(list.per_request).0.saturating_add(per_request.0)),
    }
}

/// `"5"` or `"2.5"` (percent) in basis points.
pub fn basis_points(percent: &str) -> Result<i64, String> {
    if percent.trim().is_empty() {
        return Ok(0);
    }
    // A percent is dollars' shape: two decimals more make basis points.
    let nanos = NanoUsd::parse_usd(percent).map_err(|e| format!("fee_percent: {e}"))?;
    if nanos.0 < 0 || nanos.0 % 10_000_000 != 0 {
        return Err("fee_percent: a percentage with at most two decimals".into());
    }
    Ok(nanos.0 / 10_000_000)
}

/// The last four characters of a key: all that is ever shown of it.
pub fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_key_opens_only_for_its_account_and_provider() {
        let s = Sealer::from_hex(KEY).unwrap();
        let sealed = s.seal(7, "openai", "sk-customer-123").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"customer"), "not in the clear");
        assert_eq!(s.open(7, "openai", &sealed).unwrap().expose(), "sk-customer-123");
        assert!(s.open(8, "openai", &sealed).is_err());
        assert!(s.open(7, "anthropic", &sealed).is_err());
        let other = Sealer::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert!(other.open(7, "openai", &sealed).is_err());
        assert_ne!(s.seal(7, "openai", "sk-customer-123").unwrap(), sealed, "a new nonce each time");
        assert!(Sealer::from_hex("abcd").is_err());
        assert_eq!(format!("{s:?}"), "Sealer(*****)");
    }

    #[test]
    fn the_fee_is_a_share_of_the_list_price_and_a_per_call_amount() {
        let list = ModelPrice {
            input: NanoUsd(1_250_000_000),
            output: NanoUsd(10_000_000_000),
            ..ModelPrice::default()
        };
        assert_eq!(basis_points("5"), Ok(500));
        assert_eq!(basis_points("2.5"), Ok(250));
        assert_eq!(basis_points(""), Ok(0));
        assert!(basis_points("0.001").is_err());
        let fee = fee_price(list, 500, NanoUsd(1_000));
        assert_eq!((fee.input.0, fee.output.0, fee.per_request.0), (62_500_000, 500_000_000, 1_000));
        assert_eq!(last4("sk-abcdef"), "cdef");
        assert_eq!(last4("ab"), "ab");
    }
}
