-- Responses kept for models served through translation (store: true), for
-- previous_response_id, item_reference and GET /v1/responses/{id}: kept
-- until expires_at; `size` counts their bytes.
CREATE TABLE stored_responses (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    input TEXT NOT NULL,
    response TEXT NOT NULL,
    size BIGINT NOT NULL
);
CREATE INDEX stored_responses_expiry ON stored_responses (expires_at);
CREATE TABLE response_items (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    response_id TEXT NOT NULL REFERENCES stored_responses(id) ON DELETE CASCADE,
    item TEXT NOT NULL
);
CREATE INDEX response_items_by_response ON response_items (response_id);
