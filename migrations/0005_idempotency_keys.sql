-- Idempotency keys scoped to the API key that made the call and bound to a
-- fingerprint of the request (SHA-256 of method, path and body). One row per
-- (account, API key, Idempotency-Key): 'running' while the first call runs,
-- until expires_at (the hold lease), so a process that died does not block
-- the key for good; 'done' with the answer retries get; 'unkept' when the
-- call completed and was billed but its answer was too large to keep. A
-- claim is one upsert, so processes sharing this file never both run a key.
-- idempotent_answers (0003) is no longer read (its answers were scoped to
-- the account and bound to no request); it stays for a process of the
-- previous release that may still write to it during an upgrade.
CREATE TABLE idempotency_keys (
    account_id   INTEGER NOT NULL,
    key_id       INTEGER NOT NULL,
    idem_key     TEXT    NOT NULL,
    fingerprint  BLOB    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('running', 'done', 'unkept')),
    owner        TEXT    NOT NULL,
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    at           INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, key_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
