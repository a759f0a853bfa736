-- Every read of the ledger by account or by request is of the wallet's
-- postings (`book = 'wallet'`): the counter postings of each entry (held,
-- revenue, funding) need no place in these indexes, which halves what a
-- charge writes into them.
DROP INDEX ledger_postings_account;
CREATE INDEX ledger_postings_account ON ledger_postings (account_id, at) WHERE book = 'wallet';
DROP INDEX ledger_postings_request;
CREATE INDEX ledger_postings_request ON ledger_postings (request_id) WHERE book = 'wallet';
DROP INDEX ledger_postings_account_id;
CREATE INDEX ledger_postings_account_id ON ledger_postings (account_id, id) WHERE book = 'wallet';
