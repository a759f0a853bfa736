-- Where each account stands in its credit lots: the list value debited so
-- far, in the order the ledger received the debits. A fleet's charges are
-- attributed their paid value here, as they arrive (issue #18): the nodes
-- settle on Redis, and no node's memory sees every charge.
CREATE TABLE wallet_spend (
    account_id BIGINT PRIMARY KEY,
    debited_nano BIGINT NOT NULL
);
