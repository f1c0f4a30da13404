-- The relay claims each topic's rows on its own (docs/decisions/0080): a
-- topic whose stream refuses keeps its rows here, and the other topics'
-- claims must not walk them. This index is what each claim and each
-- per-topic backlog count reads.
CREATE INDEX outbox_topic_seq ON outbox (topic, seq);

-- Client events of a keyed POST /v1/events that the stream stored before
-- the batch was refused (docs/decisions/0082): a retry with the same key
-- publishes only the others, however long after the stream's duplicate
-- window it comes. Written only for refused keyed batches, so it stays
-- small; rows are reaped after the Idempotency-Key rules' 24 hours.
CREATE TABLE client_events_stored (
    tenant_id uuid NOT NULL,
    event_id  uuid NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX client_events_stored_at ON client_events_stored (stored_at);
