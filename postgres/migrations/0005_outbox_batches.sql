-- A group-commit batch writes the events of each tenant and type it produced
-- as one outbox row, relayed as one stream message: a message costs the event
-- log the same to store, deduplicate, deliver and acknowledge whatever it
-- holds, and one per transfer was the largest cost of a transfer after the
-- ledger itself. In such a row, id is the message's own id, data is empty,
-- and the events are event_ids and event_data, in order. A row with
-- event_ids NULL is one event, as before.
ALTER TABLE outbox ADD COLUMN event_ids uuid[];
ALTER TABLE outbox ADD COLUMN event_data bytea[];
ALTER TABLE outbox ADD CONSTRAINT outbox_events_match
    CHECK (event_ids IS NULL AND event_data IS NULL
        OR cardinality(event_ids) >= 1 AND cardinality(event_ids) = cardinality(event_data));
