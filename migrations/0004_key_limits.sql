-- A key's overrides of its plan's rate limits, as JSON
-- ({"rpm":5,"concurrent":2}); NULL: the plan's own.
ALTER TABLE api_keys ADD COLUMN limits TEXT;
