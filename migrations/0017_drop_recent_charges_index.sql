-- The charges' `(at)` index served one read, at start: the rate limits
-- rebuilding their open windows from the last day's charges. Postings are
-- written in the order they were settled (one writer, in journal order),
-- so that read now walks the ledger back from its newest posting by id
-- and stops past the day (`store::sqlite`'s `recent_calls`); each charge
-- wrote an entry into this index (BENCHMARKS.md, #20's sixth pass).
DROP INDEX IF EXISTS ledger_postings_recent;
