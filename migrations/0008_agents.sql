-- Saved agents (seed 002): a system prompt and a model an account's calls
-- may name by `agentId`.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX agents_by_account ON agents (account_id);
