-- Accounts, their customer keys (hashes only), credit lots and the ledger.
-- Money is integer nano-USD everywhere; times are Unix milliseconds.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    plan          TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'active',
    trial_ends_at INTEGER,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    name           TEXT    NOT NULL,
    prefix         TEXT    NOT NULL,
    -- SHA-256 of the whole key; the key itself is shown once and never kept.
    key_hash       BLOB    NOT NULL UNIQUE,
    status         TEXT    NOT NULL DEFAULT 'active',
    expires_at     INTEGER,
    spend_cap_nano INTEGER,
    -- JSON array of model ids or globs; NULL: whatever the plan allows.
    models         TEXT,
    fallback_model TEXT,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);

CREATE TABLE credit_lots (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    paid_nano   INTEGER NOT NULL,
    multiplier  INTEGER NOT NULL,
    list_nano   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One row per posting of a ledger entry; an entry's rows sum to zero.
CREATE TABLE ledger_postings (
    id            INTEGER PRIMARY KEY,
    entry_key     TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    account_id    INTEGER NOT NULL,
    book          TEXT    NOT NULL,
    amount_nano   INTEGER NOT NULL,
    model         TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cached_tokens INTEGER,
    estimated     INTEGER NOT NULL DEFAULT 0,
    request_id    TEXT,
    at            INTEGER NOT NULL,
    UNIQUE (entry_key, book)
);

CREATE INDEX ledger_postings_account ON ledger_postings (account_id, at);
