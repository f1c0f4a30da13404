-- Balances at a moment and transfer search (decisions 0067, 0068).
--
-- The balance of an account at a moment is its last entry at or before it
-- (entries carry the running balance and pending totals): one seek in
-- entries_account_time. Plain CREATE INDEX inside the migration's
-- transaction: on a large existing ledger it holds writes to the table
-- while it builds (see docs/operations.md).
CREATE INDEX entries_account_time ON entries (account_id, created_at, id);

-- GET /v1/transfers, newest first, with a cursor: the tenant's transfers by
-- creation time. Status filters other than posted (the bulk) have a
-- partial index, which single-phase transfers never enter; metadata a GIN
-- index over the transfers that have any.
CREATE INDEX transfers_tenant_created ON transfers (tenant_id, created_at, id);
CREATE INDEX transfers_tenant_unposted ON transfers (tenant_id, status, created_at, id) WHERE status <> 'posted';
CREATE INDEX transfers_metadata ON transfers USING gin (metadata jsonb_path_ops) WHERE metadata <> '{}';
