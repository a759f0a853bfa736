-- What the background writer keeps from the journal's records: the key
-- behind a charge, the paid value it used up, cache writes; each credit
-- lot is tied to the record that made it, once.
ALTER TABLE ledger_postings ADD COLUMN key_id INTEGER;
ALTER TABLE ledger_postings ADD COLUMN paid_nano INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger_postings ADD COLUMN cache_write_tokens INTEGER;
ALTER TABLE credit_lots ADD COLUMN entry_key TEXT;
-- A grant (opening balance, adjustment up, refund) is a lot with no paid value.
ALTER TABLE credit_lots ADD COLUMN granted_nano INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX credit_lots_entry ON credit_lots (entry_key);
CREATE INDEX ledger_postings_request ON ledger_postings (request_id);
CREATE UNIQUE INDEX accounts_name ON accounts (name);
