-- The bytes of receipt images (originals) each tenant has stored, against
-- its quota. An upload locks its tenant's row, checks the quota and writes
-- its receipt in one transaction, so concurrent uploads in any replica
-- cannot together pass the quota; replacing an image adjusts the total by
-- the difference.
CREATE TABLE receipt_usage (
    tenant_id uuid PRIMARY KEY,
    bytes     bigint NOT NULL CHECK (bytes >= 0)
);

INSERT INTO receipt_usage (tenant_id, bytes)
    SELECT tenant_id, sum(size) FROM receipts GROUP BY tenant_id;
