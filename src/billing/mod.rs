//! Money: prices, what a call costs, who may call (accounts, keys, plans)
//! and the double-entry ledger that every top-up, hold, charge, release,
//! refund and adjustment goes through. Pure: no Pingora, no I/O, no clock
//! of its own; amounts are integer nano-USD ([`NanoUsd`]) from the YAML to
//! the ledger, and f64 never touches money. What must be kept leaves
//! through a [`Sink`] (the store's journal).

pub mod directory;
pub mod holds;
pub mod ledger;
pub mod lots;
mod mirror;
pub mod money;
pub mod peers;
pub mod plan;
pub mod price;
pub mod record;
mod record_line;
pub mod replay;
pub mod service;
mod shared;
#[cfg(test)]
mod tests;

pub use directory::{AccountState, Directory, KeyDigest, KeyState, Status};
pub use holds::{Clock, ManualClock, SystemClock, Wallets};
pub use ledger::{Book, Entry, EntryKind, Ledger, LedgerError, Settled};
pub use lots::{Lots, Spent};
pub use money::{NanoUsd, CREDITS_PER_USD};
pub use peers::{PeerApply, PeerLine, Peers};
pub use price::{ModelPrice, PriceConfig, PriceError};
pub use record::{charge_key, LedgerRecord, MemorySink, Metered, RecordKind, Sink, PAID_AT_DELIVERY};
pub use service::{Admission, Billing, BillingOptions, Call, Charge, Ending, Plan, Quote, Refusal};
