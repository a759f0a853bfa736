//! `store:`: where accounts, keys and the ledger are kept. An SQLite file
//! (`path`), a PostgreSQL database (`url`), or neither: SQLite in memory.

use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The SQLite file; unset (and no `url`), the store is in memory and
    /// lost at exit.
    #[serde(default)]
    pub path: Option<String>,
    /// A PostgreSQL database (`postgres://user:password@host/db`) instead
    /// of SQLite: the store a fleet of nodes shares.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Connections to PostgreSQL this node keeps at most (default 8).
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Where the journal files go (default: beside the SQLite file; with
    /// PostgreSQL it must be set).
    #[serde(default)]
    pub journal_dir: Option<String>,
    /// Milliseconds between the batches the writer moves from the journal
    /// into the store (readers of the ledger wait for the next one).
    #[serde(default = "batch_ms")]
    pub batch_ms: u64,
}

fn batch_ms() -> u64 {
    100
}

impl Default for StoreSection {
    fn default() -> Self {
        Self { path: None, url: None, pool_size: None, journal_dir: None, batch_ms: batch_ms() }
    }
}

/// Connections to PostgreSQL when `store.pool_size` is not set.
pub const DEFAULT_POOL_SIZE: u32 = 8;

impl StoreSection {
    /// One backend at most, a URL that names PostgreSQL, and a journal
    /// directory whenever there is no SQLite file to put it beside.
    pub fn validate(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            if self.pool_size.is_some() {
                return Err("store.pool_size: only for PostgreSQL (store.url)".into());
            }
            return Ok(());
        };
        let url = url.expose();
        if self.path.is_some() {
            return Err("store: set path (SQLite) or url (PostgreSQL), not both".into());
        }
        if url.is_empty() {
            return Err("store.url: empty; is its variable set?".into());
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // The URL may hold a password: never repeated in a message.
            return Err("store.url: must be a postgres:// or postgresql:// URL".into());
        }
        if self.pool_size == Some(0) {
            return Err("store.pool_size: must be more than 0".into());
        }
        if self.journal_dir.as_deref().is_none_or(str::is_empty) {
            return Err("store.journal_dir: must be set with store.url (PostgreSQL): the journal, where \
                        each charge is kept before the database has it, needs a local directory and \
                        there is no database file to put it beside"
                .into());
        }
        Ok(())
    }

    /// What the pool of PostgreSQL connections may grow to.
    pub fn pool_size(&self) -> u32 {
        self.pool_size.unwrap_or(DEFAULT_POOL_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(yaml: &str) -> StoreSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn sqlite_a_file_or_memory_as_before() {
        assert!(store("path: x.db").validate().is_ok());
        assert!(store("{}").validate().is_ok());
        assert_eq!(StoreSection::default().pool_size(), 8);
    }

    #[test]
    fn postgres_with_its_journal_directory_and_pool() {
        let s = store("url: postgresql://u:pw@db/t\njournal_dir: /var/lib/tollgate\npool_size: 20");
        assert!(s.validate().is_ok());
        assert_eq!(s.pool_size(), 20);
        assert!(store("url: postgres://db/t\njournal_dir: j").validate().is_ok());
    }

    #[test]
    fn a_postgres_store_without_a_journal_directory_is_refused() {
        let e = store("url: postgres://u:hunter2@db/t").validate().unwrap_err();
        assert!(e.starts_with("store.journal_dir: must be set with store.url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("path: a.db\nurl: postgres://db/t\njournal_dir: j", "not both"),
            ("url: mysql://u:hunter2@db/t\njournal_dir: j", "store.url: must be a postgres://"),
            ("url: ''\njournal_dir: j", "is its variable set"),
            ("url: postgres://db/t\njournal_dir: j\npool_size: 0", "store.pool_size: must be more"),
            ("path: a.db\npool_size: 4", "only for PostgreSQL"),
        ];
        for (yaml, says) in cases {
            let e = store(yaml).validate().unwrap_err();
            assert!(e.contains(says) && !e.contains("hunter2"), "{yaml}: {e}");
        }
    }
}
