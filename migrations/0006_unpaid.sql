-- A charge's cost that nothing could pay (the provider reported more than
-- was held, and the wallet or the key's cap had no more): recorded on the
-- wallet's posting so the loss is seen, never taken from the wallet.
ALTER TABLE ledger_postings ADD COLUMN unpaid_nano INTEGER NOT NULL DEFAULT 0;
