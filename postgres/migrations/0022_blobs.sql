-- The blobs of a shared bucket (--blob-url s3://…) and when a put last
-- claimed each (BlobLedger). Every put claims its keys before it looks for
-- or writes the objects; a sweep deletes an object only under its row's
-- lock and only if the claim is older than the grace period, so a put of
-- the same content is never left with its object deleted. The local
-- directory store does not use this table: its files' times do that job.
CREATE TABLE blobs (
    key        text PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    claimed_at timestamptz NOT NULL
);
