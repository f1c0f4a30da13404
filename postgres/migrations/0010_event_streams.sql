-- Progress in the event log is counted in stream sequences, and a stream
-- that replaced another (a second replica's private embedded NATS, a move
-- to another NATS, a lost data directory) numbers its messages from 1
-- again. So the database records which stream it is bound to: the identity
-- of each stream the relay publishes into and the groups consume (the id in
-- the stream's metadata, or its creation time where the server keeps no
-- metadata), and the identity each group's progress was counted in. Nothing
-- publishes into or consumes a stream whose identity is not the one recorded.
CREATE TABLE event_streams (
    name     text PRIMARY KEY,
    identity text NOT NULL,
    bound_at timestamptz NOT NULL DEFAULT now()
);

-- NULL in a group that predates the binding: the stream in use is recorded
-- at the next start.
ALTER TABLE consumer_groups ADD COLUMN stream text;
ALTER TABLE consumer_groups ADD COLUMN stream_identity text;

-- The replica running an embedded NATS on this database, for the message
-- that refuses a second one. Who holds it is decided by an advisory lock
-- held on that replica's connection, released when it goes; this row only
-- describes the last holder.
CREATE TABLE embedded_nats (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder text NOT NULL,
    since  timestamptz NOT NULL
);
