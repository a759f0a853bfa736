-- Customers' own provider keys (seed 004), sealed (AES-256-GCM: the
-- nonce, then the ciphertext); only the last four characters are kept in
-- the clear, to tell keys apart.
CREATE TABLE provider_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    provider TEXT NOT NULL,
    sealed BLOB NOT NULL,
    last4 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX provider_keys_by_account ON provider_keys (account_id);
