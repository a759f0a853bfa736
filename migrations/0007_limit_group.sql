-- The endpoint group a charged call counted in for the hourly limits
-- (`messages`, `responses`), so a restart rebuilds the open windows and the
-- day's count from the ledger instead of granting a new allowance.
ALTER TABLE ledger_postings ADD COLUMN limit_group TEXT;
CREATE INDEX ledger_postings_recent ON ledger_postings (at) WHERE book = 'wallet' AND kind = 'charge';
