//! The wallets on Redis off the request path (`wallet.lua`): seeding an
//! account's wallet from the ledger (first use, or after Redis lost its
//! data), applying an operator's credit or debit once, and the reads and
//! corrections of the reconciler. Holds and charges are `admit.lua`'s.

use super::redis::{int, invoke, wallet_keys, RedisState, Unavailable};
use redis::Value;

/// A wallet as the ledger has it, with the records this node journaled
/// and the ledger does not have yet (counted in `credit`/`debit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seed {
    pub credit: i64,
    pub debit: i64,
    pub key_spent: Vec<(i64, i64)>,
    /// (record key, amount: + credit, - debit, key id)
    pub pending: Vec<(String, i64, Option<u64>)>,
}

/// A wallet as Redis has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnRedis {
    pub seeded: bool,
    pub credit: i64,
    pub debit: i64,
    pub held: i64,
    /// What the key asked about has spent.
    pub key_spent: i64,
    /// Records applied on Redis, not yet known to be in the ledger:
    /// (record key, amount, key id).
    pub pending: Vec<(String, i64, Option<u64>)>,
    /// What every key of the wallet has spent, as Redis counts it.
    pub keys: Vec<(u64, i64)>,
}

/// A correction the reconciler found twice: added to the wallet, and the
/// pending records found in the ledger forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correction {
    pub credit: i64,
    pub debit: i64,
    pub key_spent: Vec<(i64, i64)>,
    pub delivered: Vec<String>,
}

fn key_arg(key: Option<u64>) -> String {
    key.map_or_else(|| "-".into(), |k| k.to_string())
}

impl RedisState {
    async fn wallet(&self, account: u64, args: Vec<String>) -> Result<Value, Unavailable> {
        let [w, holds, leases, pend] = wallet_keys(account);
        let mut keys = vec![w, pend, holds, leases];
        if args.first().is_some_and(|op| op == "apply") {
            let record = args.get(1).map_or("", String::as_str);
            keys.push(format!("{}:r:{record}", super::redis::account_tag(account)));
        }
        invoke(&self.conn, &self.wallet_script, &keys, &args).await
    }

    /// Seeds `account`'s wallet unless a node did already: `true` when
    /// this seed is the one that stands.
    pub async fn seed(&self, account: u64, seed: &Seed) -> Result<bool, Unavailable> {
        let mut args = vec!["seed".into(), seed.credit.to_string(), seed.debit.to_string()];
        for (key, spent) in &seed.key_spent {
            args.push(key.to_string());
            args.push(spent.to_string());
        }
        args.push("--".into());
        for (record, amount, key) in &seed.pending {
            args.extend([record.clone(), amount.to_string(), key_arg(*key)]);
        }
        Ok(int(&self.wallet(account, args).await?)? == 1)
    }

    /// Applies an operator's record (a top-up, a grant, an adjustment):
    /// `amount` credited (or debited when negative), once per `record`.
    /// `false` when the wallet is not seeded: its seed reads the record.
    pub async fn apply(&self, account: u64, record: &str, amount: i64) -> Result<bool, Unavailable> {
        let args = vec!["apply".into(), record.into(), amount.to_string(), "-".into()];
        Ok(int(&self.wallet(account, args).await?)? != 3)
    }

    /// The wallet, `key`'s spend and the wallet's pending records.
    pub async fn read(&self, account: u64, key: Option<u64>) -> Result<OnRedis, Unavailable> {
        let Value::Array(items) = self.wallet(account, vec!["read".into(), key_arg(key)]).await? else {
            return Err(Unavailable("unexpected answer to read".into()));
        };
        let num = |v: Option<&Value>| -> Result<i64, Unavailable> {
            match v {
                Some(Value::Int(i)) => Ok(*i),
                Some(Value::BulkString(b)) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Unavailable("a wallet field is not a number".into())),
                _ => Err(Unavailable("short answer to read".into())),
            }
        };
        let mut out = OnRedis {
            seeded: num(items.first())? == 1,
            credit: num(items.get(1))?,
            debit: num(items.get(2))?,
            held: num(items.get(3))?,
            key_spent: num(items.get(4))?,
            pending: Vec::new(),
            keys: Vec::new(),
        };
        let pending = usize::try_from(num(items.get(5))?).unwrap_or(0);
        let rest = items.get(6..).unwrap_or_default();
        let (triples, pairs) = rest.split_at((pending * 3).min(rest.len()));
        for t in triples.chunks(3) {
            if let [Value::BulkString(record), amount, Value::BulkString(key)] = t {
                let key = std::str::from_utf8(key).ok().and_then(|k| k.parse().ok());
                out.pending.push((String::from_utf8_lossy(record).into_owned(), num(Some(amount))?, key));
            }
        }
        for p in pairs.chunks(2) {
            if let [key, spent] = p {
                out.keys.push((u64::try_from(num(Some(key))?).unwrap_or(0), num(Some(spent))?));
            }
        }
        Ok(out)
    }

    /// Adds `fix` to the wallet (a no-op on a wallet not seeded).
    pub async fn correct(&self, account: u64, fix: &Correction) -> Result<bool, Unavailable> {
        let mut args = vec!["correct".into(), fix.credit.to_string(), fix.debit.to_string()];
        for (key, delta) in &fix.key_spent {
            args.push(key.to_string());
            args.push(delta.to_string());
        }
        args.push("--".into());
        args.extend(fix.delivered.iter().cloned());
        Ok(int(&self.wallet(account, args).await?)? == 1)
    }

    /// `records` of `account` are in the ledger now: no longer pending.
    pub async fn delivered(&self, account: u64, records: &[String]) -> Result<(), Unavailable> {
        let mut args = vec!["delivered".to_string()];
        args.extend(records.iter().cloned());
        self.wallet(account, args).await.map(drop)
    }
}

#[cfg(test)]
mod tests;
