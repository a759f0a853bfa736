-- A call's charge is found by its entry key, `<request id>:charge`, which
-- the `(entry_key, book)` key every posting has already serves: the
-- request-id index repeated it, and each charge wrote an entry into it
-- (BENCHMARKS.md, #20's fifth pass). The column stays, for what reads a
-- posting's request.
DROP INDEX IF EXISTS ledger_postings_request;
