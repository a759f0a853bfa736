//! The names of an account's keys on Redis: all under its hash tag
//! (`tg:{a:<account>}`), so one account's keys share a hash slot and its
//! calls run on Redis Cluster. Joined by hand: `format!` cost more than
//! the rest of an admit's work on the node.

/// How many keys an account's wallet has (they come first in a call).
pub const WALLET_KEYS: usize = 4;

/// Every key of an account starts with this: one hash slot per account.
pub fn account_tag(account: u64) -> String {
    join(&["tg:{a:", itoa::Buffer::new().format(account), "}"])
}

/// The wallet's keys: its hash, its holds, their leases, its records
/// applied and not yet known to be in the ledger.
pub fn wallet_keys(account: u64) -> [String; WALLET_KEYS] {
    let a = account_tag(account);
    [join(&[&a, ":w"]), join(&[&a, ":holds"]), join(&[&a, ":leases"]), join(&[&a, ":pend"])]
}

/// A call's keys as `admit.lua` takes them: the account's wallet keys
/// first, then the calls' own (from `WALLET_KEYS` on).
pub fn with_wallet(account: u64, own: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut keys = Vec::from(wallet_keys(account));
    keys.extend(own);
    keys
}

pub fn join(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_accounts_keys_share_its_tag() {
        assert_eq!(super::wallet_keys(42)[3], "tg:{a:42}:pend");
        assert_eq!(super::join(&["a", "", "bc"]), "abc");
    }
}
