-- Usage per account, key, UTC day and model, kept by the store itself as
-- charges are written (a trigger on the ledger), so dashboards and usage
-- queries read a few rows a day instead of adding up the ledger: they stay
-- fast with millions of postings. key_id 0: a charge without a key.

-- Nodes of a fleet may be appending while one of them migrates: no charge
-- may fall between the totals' first fill and the trigger.
LOCK TABLE ledger_postings IN SHARE ROW EXCLUSIVE MODE;

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

-- Once per statement, the batch's charges summed per row of the totals and
-- written in the totals' key order: nodes appending batches at once take
-- the rows' locks in one order (no deadlock), and a busy account's row is
-- written once per batch, not once per charge. Rows a conflict skipped are
-- not in the transition table, so a replayed journal counts once.
CREATE FUNCTION usage_daily_charges() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily
    SELECT account_id, COALESCE(key_id, 0), to_char(to_timestamp(at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
           COALESCE(model, ''), COUNT(*), COALESCE(SUM(input_tokens), 0)::bigint,
           COALESCE(SUM(output_tokens), 0)::bigint, COALESCE(SUM(cached_tokens), 0)::bigint,
           (-SUM(amount_nano))::bigint
    FROM new_rows WHERE book = 'wallet' AND kind = 'charge'
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 3, 4, 2
    ON CONFLICT (account_id, day, model, key_id) DO UPDATE SET
        requests = usage_daily.requests + excluded.requests,
        input_tokens = usage_daily.input_tokens + excluded.input_tokens,
        output_tokens = usage_daily.output_tokens + excluded.output_tokens,
        cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens,
        cost_nano = usage_daily.cost_nano + excluded.cost_nano;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_daily_charges AFTER INSERT ON ledger_postings
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_charges();

-- The customer's and the console's pages of an account's postings, newest
-- first, by id.
CREATE INDEX ledger_postings_account_id ON ledger_postings (account_id, id);
