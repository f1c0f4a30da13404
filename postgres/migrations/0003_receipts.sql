-- Receipts: images attached to transfers, processed by workers through the
-- jobs stream; the outbox learns topics so jobs travel the same way as events.

ALTER TABLE outbox ADD COLUMN topic text NOT NULL DEFAULT 'events';

CREATE TABLE receipts (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    transfer_id   uuid NOT NULL,
    status        text NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'failed')),
    original_key  text NOT NULL, -- blob key (sha256) of the upload
    format        text NOT NULL,
    width         integer NOT NULL,
    height        integer NOT NULL,
    size          bigint NOT NULL,
    variants      jsonb NOT NULL DEFAULT '{}', -- name → {key, content_type, width, height, size}
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, transfer_id) -- one receipt per transfer; a new upload replaces its image
);

-- Jobs that failed every delivery, as listed and redriven by the admin API;
-- the message itself also goes to the jobs-dead stream.
CREATE TABLE dead_letters (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    receipt_id  uuid NOT NULL,
    job         bytea NOT NULL,   -- the job message, JSON
    last_error  text NOT NULL,
    deliveries  integer NOT NULL,
    dead_seq    bigint NOT NULL,  -- its sequence in the jobs-dead stream
    created_at  timestamptz NOT NULL,
    redriven_at timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE redriven_at IS NULL;
