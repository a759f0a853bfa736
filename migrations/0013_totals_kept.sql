-- The writer adds a batch's charges to usage_daily itself, one upsert per
-- account, key, day and model (src/store/sqlite/append.rs), and marks the
-- postings it wrote so: the per-row trigger, an upsert and a date format
-- for every charge, was a sixth of a billed request's instructions. The
-- trigger stays for postings not so marked, which a process of an older
-- release writes while an upgrade hands over (both share the file).
-- PostgreSQL's trigger runs once per statement already.
ALTER TABLE ledger_postings ADD COLUMN totals_kept INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER usage_daily_charge;
CREATE TRIGGER usage_daily_charge AFTER INSERT ON ledger_postings
WHEN NEW.book = 'wallet' AND NEW.kind = 'charge' AND NEW.totals_kept = 0
BEGIN
    INSERT INTO usage_daily VALUES (
        NEW.account_id, COALESCE(NEW.key_id, 0), strftime('%Y-%m-%d', NEW.at / 1000, 'unixepoch'),
        COALESCE(NEW.model, ''), 1, COALESCE(NEW.input_tokens, 0), COALESCE(NEW.output_tokens, 0),
        COALESCE(NEW.cached_tokens, 0), -NEW.amount_nano)
    ON CONFLICT (account_id, day, model, key_id) DO UPDATE SET
        requests = requests + 1,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens,
        cost_nano = cost_nano + excluded.cost_nano;
END;
