-- Usage per account, key, UTC day and model, kept by the store itself as
-- charges are written (a trigger on the ledger), so dashboards and usage
-- queries read a few rows a day instead of adding up the ledger: they stay
-- fast with millions of postings. key_id 0: a charge without a key.
CREATE TABLE usage_daily (
    account_id    BIGINT NOT NULL,
    key_id        BIGINT NOT NULL,
    day           TEXT   NOT NULL,
    model         TEXT   NOT NULL,
    requests      BIGINT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_nano     BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, model, key_id)
);
CREATE INDEX usage_daily_by_day ON usage_daily (day);

INSERT INTO usage_daily
SELECT account_id, COALESCE(key_id, 0), to_char(to_timestamp(at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
       COALESCE(model, ''), COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
       COALESCE(SUM(cached_tokens), 0), -SUM(amount_nano)
FROM ledger_postings WHERE book = 'wallet' AND kind = 'charge'
GROUP BY 1, 2, 3, 4;

CREATE FUNCTION usage_daily_charge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily VALUES (
        NEW.account_id, COALESCE(NEW.key_id, 0),
        to_char(to_timestamp(NEW.at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
        COALESCE(NEW.model, ''), 1, COALESCE(NEW.input_tokens, 0), COALESCE(NEW.output_tokens, 0),
        COALESCE(NEW.cached_tokens, 0), -NEW.amount_nano)
    ON CONFLICT (account_id, day, model, key_id) DO UPDATE SET
        requests = usage_daily.requests + 1,
        input_tokens = usage_daily.input_tokens + excluded.input_tokens,
        output_tokens = usage_daily.output_tokens + excluded.output_tokens,
        cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens,
        cost_nano = usage_daily.cost_nano + excluded.cost_nano;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_daily_charge AFTER INSERT ON ledger_postings
FOR EACH ROW WHEN (NEW.book = 'wallet' AND NEW.kind = 'charge')
EXECUTE FUNCTION usage_daily_charge();

-- The customer's and the console's pages of an account's postings, newest
-- first, by id.
CREATE INDEX ledger_postings_account_id ON ledger_postings (account_id, id);
