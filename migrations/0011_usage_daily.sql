-- Usage per account, key, UTC day and model, kept by the store itself as
-- charges are written (a trigger on the ledger), so dashboards and usage
-- queries read a few rows a day instead of adding up the ledger: they stay
-- fast with millions of postings. key_id 0: a charge without a key.
CREATE TABLE usage_daily (
    account_id    INTEGER NOT NULL,
    key_id        INTEGER NOT NULL,
    day           TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_nano     INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, model, key_id)
);
CREATE INDEX usage_daily_by_day ON usage_daily (day);

INSERT INTO usage_daily
SELECT account_id, COALESCE(key_id, 0), strftime('%Y-%m-%d', at / 1000, 'unixepoch'), COALESCE(model, ''),
       COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
       COALESCE(SUM(cached_tokens), 0), -SUM(amount_nano)
FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge'
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER usage_daily_charge AFTER INSERT ON ledger_postings
WHEN NEW.book = 'wallet' AND NEW.kind = 'charge'
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

-- The customer's and the console's pages of an account's postings, newest
-- first, by id.
CREATE INDEX ledger_postings_account_id ON ledger_postings (account_id, id);
