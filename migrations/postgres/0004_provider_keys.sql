-- Customers' own provider keys (seed 004), sealed (AES-256-GCM: the
-- nonce, then the ciphertext); only the last four characters are kept in
-- the clear, to tell keys apart.
CREATE TABLE provider_keys (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    provider TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    last4 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX provider_keys_by_account ON provider_keys (account_id);
