-- The wallet's `(account_id, at)` index served one read the gateway never
-- makes: usage summed from the ledger since a time (the dashboards read
-- `usage_daily`, pages go by `(account_id, id)`, and the customer's days
-- are matched on an expression of `at` that no index serves). Every read
-- by account is served as well by `(account_id, id)`, and each charge
-- wrote an entry into this one: about a sixth of the writer's work a
-- record (BENCHMARKS.md, #20's third pass).
DROP INDEX IF EXISTS ledger_postings_account;
