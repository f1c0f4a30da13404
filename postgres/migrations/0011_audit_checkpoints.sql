-- Verifying a tenant's audit trail is paged: each call recomputes the chain
-- for a bounded page of records, from a checkpoint (a record whose hash a
-- verification from the start of the trail, or from an earlier checkpoint,
-- found right), and ends by recording a checkpoint at its last record. A
-- verification from the start compares each checkpoint it passes with the
-- hash it recomputed there: a trail rewritten after it was verified differs.
CREATE TABLE audit_checkpoints (
    tenant_id   uuid NOT NULL,
    seq         bigint NOT NULL,
    hash        bytea NOT NULL,
    verified_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- One verification of a tenant's trail at a time: a call holds its
-- tenant's row locked for its transaction.
CREATE TABLE audit_verifications (
    tenant_id uuid PRIMARY KEY
);
