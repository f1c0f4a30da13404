-- Idempotency keys are kept for a retention (24 h by default) and then
-- dropped. Deleted row by row, at thousands of keyed requests a second, they
-- left the table and its index bloated and autovacuum always behind. They
-- are partitioned by epoch instead: every key is inserted into the current
-- epoch's partition, and a partition is dropped whole once its epoch ended
-- longer ago than the retention (see KeyRotator).
--
-- The primary key of a partitioned table must include its partition key, so
-- it is (tenant_id, key, epoch): it makes a key unique within an epoch, and
-- the rest is the writers' rule (see decision 0083). A writer takes the
-- shared advisory lock epochLock before it looks a key
-- up, reads the key in every partition, and inserts into the current epoch;
-- the rotator takes that lock exclusively to start the next epoch. So every
-- writer that could insert a key at the same time inserts it into the same
-- partition, where the primary key refuses the second.
CREATE TABLE idempotency_epochs (
    epoch      bigint PRIMARY KEY,
    started_at timestamptz NOT NULL -- the epoch before ends when this one starts
);

-- The current epoch: the one new keys go to.
CREATE FUNCTION idempotency_epoch() RETURNS bigint
LANGUAGE sql STABLE AS 'SELECT max(epoch) FROM idempotency_epochs';

-- The keys stored so far become epoch 0, in place: they are not copied, and
-- they are dropped once epoch 1 is older than the retention.
INSERT INTO idempotency_epochs (epoch, started_at)
SELECT 0, coalesce(min(created_at), now()) FROM idempotency_keys;
INSERT INTO idempotency_epochs (epoch, started_at) VALUES (1, now());

DROP INDEX idempotency_keys_created;
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_e0;
ALTER TABLE idempotency_keys_e0 DROP CONSTRAINT idempotency_keys_pkey; -- (tenant_id, key, epoch) on attaching
ALTER TABLE idempotency_keys_e0 ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

CREATE TABLE idempotency_keys (
    tenant_id   uuid NOT NULL,
    key         text NOT NULL,
    fingerprint bytea NOT NULL,  -- sha256 of method, path and body
    lock_token  uuid,            -- set while a request holds the key
    locked_at   timestamptz,
    created_at  timestamptz NOT NULL,
    outcome     bytea,           -- set once the request finished
    epoch       bigint NOT NULL DEFAULT idempotency_epoch(),
    PRIMARY KEY (tenant_id, key, epoch)
) PARTITION BY LIST (epoch);

ALTER TABLE idempotency_keys ATTACH PARTITION idempotency_keys_e0 FOR VALUES IN (0);
ALTER TABLE idempotency_keys_e0 ALTER COLUMN epoch DROP DEFAULT;

-- A key's row is inserted once and, when a request claimed it up front,
-- updated once with its outcome: room on the page keeps that update HOT.
-- The partitions after these are created ahead by the rotator, alike.
CREATE TABLE idempotency_keys_e1 PARTITION OF idempotency_keys FOR VALUES IN (1) WITH (fillfactor = 85);
CREATE TABLE idempotency_keys_e2 PARTITION OF idempotency_keys FOR VALUES IN (2) WITH (fillfactor = 85);
