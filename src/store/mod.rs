//! Where accounts, customer keys, credit lots and the ledger are kept for
//! good. The request path never waits on it: it works on in-memory state
//! (`billing`) and hands what changed to the store in the background. One
//! trait, so the embedded SQLite default and the PostgreSQL backend of a
//! fleet are interchangeable; both through sqlx, whose versioned
//! migrations (`migrations/`) run at start.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::billing::{Entry, NanoUsd};
use crate::secret::Secret;
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub trial_ends_at: Option<i64>,
}

/// What a new key is created with.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub spend_cap: Option<NanoUsd>,
    pub models: Option<Vec<String>>,
    pub fallback_model: Option<String>,
    pub expires_at: Option<i64>,
}

/// A customer key as kept: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub expires_at: Option<i64>,
    pub spend_cap: Option<NanoUsd>,
    pub models: Option<Vec<String>>,
    pub fallback_model: Option<String>,
    pub created_at: i64,
}

/// One posting of a ledger entry, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub entry_key: String,
    pub kind: String,
    pub account_id: i64,
    pub book: String,
    pub amount: NanoUsd,
    pub at: i64,
}

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn create_account(
        &self,
        name: &str,
        plan: &str,
        trial_ends_at: Option<i64>,
        now: i64,
    ) -> Result<Account, StoreError>;
    async fn account(&self, id: i64) -> Result<Option<Account>, StoreError>;
    /// Creates a key for `account`: `prefix` and 32 random bytes. The key is
    /// returned this once; only its SHA-256 is kept.
    async fn create_key(
        &self,
        account: i64,
        prefix: &str,
        new: &NewKey,
        now: i64,
    ) -> Result<(KeyRecord, Secret), StoreError>;
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;
    /// `false` when there was no such active key.
    async fn revoke_key(&self, id: i64) -> Result<bool, StoreError>;
    /// Writes ledger entries; an entry already written (same key) is
    /// skipped, so a batch retried after a crash is written once.
    /// Returns how many postings were new.
    async fn append(&self, entries: &[Entry], at: i64) -> Result<u64, StoreError>;
    async fn postings(&self, account: i64) -> Result<Vec<Posting>, StoreError>;
}

/// A customer key: `prefix` and 32 random bytes in hex.
pub fn new_key(prefix: &str) -> Result<Secret, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| StoreError(format!("no randomness: {e}")))?;
    Ok(Secret::new(format!("{prefix}{}", hex::encode(bytes))))
}
