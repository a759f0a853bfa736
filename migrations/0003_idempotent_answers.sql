-- Answers of calls made with an Idempotency-Key, replayed to retries for a day.
CREATE TABLE idempotent_answers (
    account_id   INTEGER NOT NULL,
    key          TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);
