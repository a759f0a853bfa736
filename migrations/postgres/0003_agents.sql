-- Saved agents (seed 002): a system prompt and a model an account's calls
-- may name by `agentId`.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agents_by_account ON agents (account_id);
