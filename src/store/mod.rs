//! Where accounts, customer keys, credit lots and the ledger are kept for
//! good. The request path never waits on it: it works on in-memory state
//! (`billing`), whose records reach the [`journal`] before a response
//! ends and the store in batches from the [`writer`]. One trait, so the
//! embedded SQLite default ([`SqliteStore`]) and the PostgreSQL backend of
//! a fleet ([`PgStore`]) are interchangeable; both through sqlx, whose
//! versioned migrations (`migrations/`, `migrations/postgres/`) run at
//! start. [`runtime`] gives the store a runtime of
//! its own, so Pingora's services and the admin API can all call it.

pub mod boot;
pub mod idempotency;
pub mod journal;
pub mod peers;
mod postgres;
pub mod runtime;
mod sqlite;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub mod writer;

pub use postgres::PgStore;
pub use runtime::StoreHandle;
pub use sqlite::SqliteStore;

use crate::billing::replay::Answer;
use crate::billing::{LedgerRecord, NanoUsd};
use crate::secret::Secret;
use async_trait::async_trait;
use idempotency::{Claim, Claimed, Scope};

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
    pub limits: crate::limits::Overrides,
}

/// A saved agent (seed 002): a system prompt and a model, an account's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub id: String,
    pub account_id: i64,
    pub name: String,
    pub system_prompt: String,
    pub model: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored response (see `crate::formats::responses::stored`), its
/// input items and response object as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponseRow {
    pub id: String,
    pub account_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub input: String,
    pub response: String,
}

/// A customer's own provider key, sealed (see `crate::byok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKeyRow {
    pub id: i64,
    pub account_id: i64,
    pub provider: String,
    pub sealed: Vec<u8>,
    pub last4: String,
    pub created_at: i64,
}

/// What an agent's update changes (`None`: leave it).
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
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
    pub limits: crate::limits::Overrides,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub plan: Option<String>,
    pub status: Option<String>,
    pub trial_ends_at: Option<Option<i64>>,
}

/// A change to a key; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub status: Option<String>,
    pub spend_cap: Option<Option<NanoUsd>>,
    pub models: Option<Option<Vec<String>>>,
    pub fallback_model: Option<Option<String>>,
    pub expires_at: Option<Option<i64>>,
    /// The key's overrides, whole.
    pub limits: Option<crate::limits::Overrides>,
}

/// One lot of credit, in the order it was bought or granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotRow {
    pub account_id: i64,
    pub paid: NanoUsd,
    pub multiplier: u32,
    pub granted: NanoUsd,
}

/// Everything a node needs in memory at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub accounts: Vec<Account>,
    pub keys: Vec<(KeyRecord, [u8; 32])>,
    pub lots: Vec<LotRow>,
    /// Per account: all it has been debited (charges, adjustments down).
    pub debited: Vec<(i64, NanoUsd)>,
    /// Per key: all it has been charged.
    pub key_spent: Vec<(i64, NanoUsd)>,
    /// Idempotency keys of operator records, so retries stay no-ops.
    pub operator_keys: Vec<String>,
    /// Of the record keys asked about, those the store keeps.
    pub present: std::collections::HashSet<String>,
    /// Charges per account, model and period (of the time asked about):
    /// what the running totals of `whoami` and `usage` start from.
    pub charges: Vec<crate::usage_totals::LoadedSum>,
}

/// One account's wallet as the ledger has it: what the fleet's shared
/// wallet on Redis is seeded from and reconciled against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletSums {
    /// Every credit the wallet received (top-ups, grants).
    pub credit: i64,
    /// Every debit (charges, adjustments down), as a positive amount.
    pub debit: i64,
    /// Per key: what it has been charged.
    pub key_spent: Vec<(i64, i64)>,
    /// Of the record keys asked about, those the store keeps.
    pub present: std::collections::HashSet<String>,
}

/// Every account and key, for a directory refresh.
#[derive(Debug, Default)]
pub struct DirectoryRows {
    pub accounts: Vec<Account>,
    pub keys: Vec<(KeyRecord, [u8; 32])>,
}

/// A charged call, as the rate limits count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentCall {
    pub account_id: i64,
    pub key_id: Option<i64>,
    pub model: Option<String>,
    pub group: Option<String>,
    pub at: i64,
}

/// One ledger record as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    /// The posting's id: the cursor of the ledger's pages.
    pub id: i64,
    pub kind: String,
    pub amount_nano_usd: i64,
    pub paid_nano_usd: i64,
    pub unpaid_nano_usd: i64,
    pub key_id: Option<i64>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub estimated: bool,
    pub request_id: Option<String>,
    pub at: i64,
}

/// Totals of one model on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub day: String,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nano_usd: i64,
}

/// Which charges a usage query adds up.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    /// `None`: every account's.
    pub account: Option<i64>,
    pub key_id: Option<i64>,
    pub model: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    pub day: Option<String>,
    /// Unix milliseconds, inclusive (adds up the ledger itself: slower).
    pub since: Option<i64>,
    /// `YYYY-MM-DD` (UTC), inclusive: from the daily totals.
    pub from_day: Option<String>,
}

/// One page of an account's ledger, by posting id: newest first before
/// `before`, else oldest first after `after`.
#[derive(Debug, Clone, Default)]
pub struct LedgerPage {
    pub account: i64,
    /// Only the wallet's charges (the customer's "recent requests").
    pub charges_only: bool,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub newest_first: bool,
    pub limit: i64,
}

/// One page of accounts by id, after `after`, whose names contain `search`.
#[derive(Debug, Clone, Default)]
pub struct AccountsPage {
    pub search: Option<String>,
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub account_id: i64,
    pub row: LedgerRow,
}

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A row of usage by day and model, from the daily totals or the ledger
/// (whose charges may have no model), on either backend.
pub(crate) fn usage_row<R>(r: &R) -> Result<UsageRow, StoreError>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(UsageRow {
        day: r.try_get("day")?,
        model: r.try_get::<Option<String>, _>("model")?.unwrap_or_default(),
        requests: r.try_get("requests")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        cost_nano_usd: r.try_get("cost")?,
    })
}

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
    async fn account_named(&self, name: &str) -> Result<Option<Account>, StoreError>;
    async fn update_account(&self, id: i64, patch: &AccountPatch) -> Result<Option<Account>, StoreError>;
    /// Keeps a key by its hash: `prefix` is what may be shown of it.
    async fn insert_key(
        &self,
        account: i64,
        prefix: &str,
        hash: &[u8; 32],
        new: &NewKey,
        now: i64,
    ) -> Result<KeyRecord, StoreError>;
    async fn key(&self, id: i64) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;
    async fn update_key(&self, id: i64, patch: &KeyPatch) -> Result<Option<KeyRecord>, StoreError>;
    /// Last-used times, written in the background.
    async fn touch_keys(&self, used: &[(i64, i64)]) -> Result<(), StoreError>;
    /// Keeps ledger records; a record already kept (same key) is skipped,
    /// so a journal replayed after a crash is kept once. How many were new.
    async fn append(&self, records: &[LedgerRecord]) -> Result<u64, StoreError>;
    /// The charged calls since `since` (Unix ms), oldest first: what the
    /// rate limits rebuild their open windows and the day's count from.
    async fn recent_calls(&self, since: i64) -> Result<Vec<RecentCall>, StoreError>;
    /// Everything the wallets and the running totals are loaded from (the
    /// totals' periods as of `now`, Unix ms), and which of `records`
    /// (ledger record keys) the store already keeps, in one read.
    async fn snapshot(&self, records: &[String], now: i64) -> Result<Snapshot, StoreError>;
    async fn ledger(&self, account: i64) -> Result<Vec<LedgerRow>, StoreError>;
    /// One page of an account's wallet postings (keyset paging on the id).
    async fn ledger_page(&self, page: &LedgerPage) -> Result<Vec<LedgerRow>, StoreError>;
    /// Accounts by id; a search matches a part of the name, any case.
    async fn accounts(&self, page: &AccountsPage) -> Result<Vec<Account>, StoreError>;
    /// An account's keys, by id.
    async fn keys_of(&self, account: i64) -> Result<Vec<KeyRecord>, StoreError>;
    async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError>;
    async fn generation(&self, request_id: &str) -> Result<Option<Generation>, StoreError>;
    /// Claims an idempotency key for one call, in one atomic step: the key
    /// is the claimant's when it is new or its row has lapsed; otherwise
    /// what it holds, untouched.
    async fn claim_key(&self, claim: &Claim) -> Result<Claimed, StoreError>;
    /// `owner`'s call completed: its answer is kept for retries until
    /// `expires_at` (`None`: completed, but the answer was not kept).
    /// False when the key is no longer `owner`'s.
    async fn complete_key(
        &self,
        scope: &Scope,
        owner: &str,
        answer: Option<&Answer>,
        at: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
    /// `owner`'s call did not complete: the key is free again.
    async fn release_key(&self, scope: &Scope, owner: &str) -> Result<(), StoreError>;
    /// `owner`'s call still runs: its running mark holds until `expires_at`.
    /// False when the key holds no running mark of `owner`'s.
    async fn renew_key(&self, scope: &Scope, owner: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// The sum of every posting: zero, if the store is right.
    async fn total(&self) -> Result<i64, StoreError>;
    /// `account`'s wallet from the ledger, and which of `records` it keeps,
    /// in one consistent read.
    async fn wallet_sums(&self, account: i64, records: &[String]) -> Result<WalletSums, StoreError>;
    /// Every account and key as stored now.
    async fn directory(&self) -> Result<DirectoryRows, StoreError>;
    /// Answers when the store does (`SELECT 1`): the health check's probe.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Keeps a new agent (its id made by the caller).
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError>;
    /// An account's agents, oldest first.
    async fn agents(&self, account: i64) -> Result<Vec<Agent>, StoreError>;
    async fn update_agent(&self, id: &str, patch: &AgentPatch, now: i64)
        -> Result<Option<Agent>, StoreError>;
    /// Whether there was such an agent.
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError>;
    /// Keeps a customer's sealed provider key (its id filled in).
    async fn insert_provider_key(&self, key: &ProviderKeyRow) -> Result<ProviderKeyRow, StoreError>;
    /// An account's provider keys, oldest first.
    async fn provider_keys(&self, account: i64) -> Result<Vec<ProviderKeyRow>, StoreError>;
    /// The removed key's account, if there was such a key.
    async fn delete_provider_key(&self, id: i64) -> Result<Option<i64>, StoreError>;
    /// Keeps a response and its items (`(item id, item JSON)`, which
    /// `item_reference` names); the expired ones go at the same time.
    async fn put_response(
        &self,
        row: &StoredResponseRow,
        items: &[(String, String)],
    ) -> Result<(), StoreError>;
    /// A response not yet expired at `now`.
    async fn stored_response(&self, id: &str, now: i64) -> Result<Option<StoredResponseRow>, StoreError>;
    /// The removed response's account, if there was such a response.
    async fn delete_stored_response(&self, id: &str) -> Result<Option<i64>, StoreError>;
    /// Those of `ids` that are items of `account`'s responses: (id, item JSON).
    async fn response_items(&self, account: i64, ids: &[String])
        -> Result<Vec<(String, String)>, StoreError>;
}

/// A customer key: `prefix` and 32 random bytes in hex.
/// A `LIKE` pattern for names containing `search`: `%`, `_` and `\\`
/// in it match themselves (with `ESCAPE '\\'`).
fn like_pattern(search: &str) -> String {
    let escaped = search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

pub fn new_key(prefix: &str) -> Result<Secret, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| StoreError(format!("no randomness: {e}")))?;
    Ok(Secret::new(format!("{prefix}{}", hex::encode(bytes))))
}

/// What of a key may be shown: its prefix and the first 4 random characters.
pub fn shown_prefix(prefix: &str, key: &str) -> String {
    key.get(..prefix.len() + 4).unwrap_or(prefix).to_string()
}
