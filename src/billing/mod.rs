//! Money: prices, what a call costs, and the double-entry ledger that
//! every top-up, hold, charge, release, refund and adjustment goes
//! through. Pure: no Pingora, no I/O, no clock of its own; amounts are
//! integer nano-USD ([`NanoUsd`]) from the YAML to the ledger, and f64
//! never touches money. The store and the request path build on it.

pub mod holds;
pub mod ledger;
pub mod lots;
pub mod money;
pub mod price;
pub mod service;

pub use holds::{Clock, ManualClock, SystemClock, Wallets};
pub use ledger::{Book, Entry, EntryKind, Ledger, LedgerError, Settled};
pub use lots::{Lots, Spent};
pub use money::{NanoUsd, CREDITS_PER_USD};
pub use price::{ModelPrice, PriceConfig, PriceError};
pub use service::{AccountState, Admission, Billing, Call, Plan, Refusal};
