//! What the ledger hands to durable storage: one record per transaction
//! that changes what an account may spend (top-ups, charges, refunds,
//! adjustments), with what the caller's bill shows (model, tokens,
//! whether the count was estimated). Holds and releases are not recorded:
//! they live for one request, and a crash releases them, as their lease
//! would. A [`Sink`] takes each record before the response it bills ends.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Topup,
    Charge,
    Refund,
    Adjustment,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Topup => "topup",
            RecordKind::Charge => "charge",
            RecordKind::Refund => "refund",
            RecordKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Topup, Self::Charge, Self::Refund, Self::Adjustment].into_iter().find(|k| k.as_str() == text)
    }

    /// The book on the other side of the wallet: the outside world for
    /// money paid in or granted, revenue for money earned or given back.
    pub fn counter_book(self) -> &'static str {
        match self {
            RecordKind::Topup | RecordKind::Adjustment => "funding",
            RecordKind::Charge | RecordKind::Refund => "revenue",
        }
    }
}

/// The ledger key of the charge of the call whose hold is `hold_key` (its
/// request id): the store finds a call's charge by it.
pub fn charge_key(hold_key: &str) -> String {
    [hold_key, ":charge"].concat()
}

/// The model's name is the catalog's `Arc<str>` (the admission, the
/// charge and the metrics share it), and SQLite binds it and the request
/// id as they are, where each `String` was copied again into the
/// statement. The group is the endpoint's static name (owned once read
/// back from a journal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metered {
    pub model: Arc<str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// The provider sent no count: the tokens were estimated.
    pub estimated: bool,
    pub request_id: Arc<str>,
    /// The endpoint group its call counted in (`Endpoint::limit_group`:
    /// `messages`, `responses`, `embeddings`, `rerank`, `images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'static, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Idempotency key: a record is kept once, however often it is written.
    pub key: String,
    pub kind: RecordKind,
    pub account: u64,
    #[serde(default)]
    pub key_id: Option<u64>,
    /// What the wallet gained (positive) or lost (negative), nano-USD; the
    /// counter book moves by the opposite, so each record balances.
    pub wallet_nano: i64,
    /// Paid dollars behind it: a top-up's payment, or the part of paid
    /// lots a charge used up.
    #[serde(default)]
    pub paid_nano: i64,
    /// A charge's cost that nothing could pay (the provider reported more
    /// than was held, and the wallet or the key's cap had no more): kept
    /// so the loss is seen, never taken from the wallet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpaid_nano: i64,
    #[serde(default)]
    pub multiplier: Option<u32>,
    #[serde(default)]
    pub metered: Option<Metered>,
    /// Unix milliseconds.
    pub at: u64,
}

/// `paid_nano` of a charge whose paid value the store attributes as the
/// ledger receives it, from the account's lots in the ledger's order (a
/// fleet's charges: see `store::postgres::attribute`).
pub const PAID_AT_DELIVERY: i64 = -1;

impl LedgerRecord {
    /// Credit granted or taken back by the operator (an opening balance, a
    /// correction): no paid value, nothing metered.
    pub fn adjustment(key: String, account: u64, wallet_nano: i64, at: u64) -> Self {
        Self {
            key,
            kind: RecordKind::Adjustment,
            account,
            key_id: None,
            wallet_nano,
            paid_nano: 0,
            unpaid_nano: 0,
            multiplier: None,
            metered: None,
            at,
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A change to the wallets that is not a ledger record: what a peer must
/// mirror to decide as this process would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerLine {
    /// Request `key` holds `amount` of `account`'s wallet (and of key
    /// `key_id`'s cap).
    Hold { key: String, account: u64, key_id: Option<u64>, cap: Option<i64>, amount: i64 },
    /// Request `key` ended costing nothing: its hold is given back whole.
    /// (One that cost something ends with its charge record.)
    Release { key: String },
    /// This process has seen process `pid` and journals every change from
    /// now on, its open holds first.
    Ack { pid: u32 },
}

/// How a [`PeerLine`] is written in a journal: under a key no ledger
/// record has, so each reader can tell the two apart.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerEnvelope {
    pub peer: PeerLine,
}

/// Where records go: the journal, in production; a vector, in tests.
pub trait Sink: Send + Sync {
    fn record(&self, record: LedgerRecord);

    /// A line for the processes sharing these wallets only (see
    /// [`super::peers`]): nothing, where there can be none.
    fn peer(&self, _line: PeerLine) {}
}

/// Keeps records in memory (tests, and configurations with no store).
#[derive(Debug, Default)]
pub struct MemorySink(pub std::sync::Mutex<Vec<LedgerRecord>>);

impl Sink for MemorySink {
    fn record(&self, record: LedgerRecord) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record);
    }
}

impl MemorySink {
    pub fn take(&self) -> Vec<LedgerRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}
