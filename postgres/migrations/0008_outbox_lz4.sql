-- A group-commit batch's events travel in one outbox row (0005), tens of
-- kilobytes that PostgreSQL compresses on insert and the relay decompresses
-- a few milliseconds later, before deleting the row. With the default
-- method, pglz, compressing them was 2% of the machine's CPU under load
-- (perf, `holdfast-lab bench transfers`, hot workload; docs/decisions/0016-packed-outbox-rows-compress-with-lz4.md); lz4
-- does the same work several times faster. A server built without lz4
-- keeps pglz.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN event_data SET COMPRESSION lz4,
                       ALTER COLUMN event_ids SET COMPRESSION lz4,
                       ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
