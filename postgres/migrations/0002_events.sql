-- The event log: the transactional outbox, consumer groups' applied
-- sequences and pause state, and the effects of the analytics and audit
-- consumers.

-- Each ledger change writes its event here in the same transaction as the
-- change; the relay publishes rows to JetStream (Nats-Msg-Id = id) and
-- deletes them. seq orders the relay's claims.
CREATE TABLE outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        bytea NOT NULL -- the event's data, JSON
);

-- One notification per inserting statement wakes the relays at once; they
-- also poll, so a missed notification only delays.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('holdfast_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- A consumer group's position and pause state, shared by every replica.
CREATE TABLE consumer_groups (
    name          text PRIMARY KEY,
    applied_floor bigint NOT NULL DEFAULT 0, -- every stream sequence <= this was applied (or is not the group's)
    last_applied  bigint NOT NULL DEFAULT 0, -- the highest stream sequence applied
    paused        boolean NOT NULL DEFAULT false,  -- paused by an operator until resumed
    paused_until  timestamptz,                     -- paused automatically until then
    pause_reason  text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The stream sequences a group applied above its floor, written in the same
-- transaction as the effect: a redelivered message finds its sequence here
-- and changes nothing. Rows at or below the floor are pruned.
CREATE TABLE consumer_applied (
    name text NOT NULL,
    seq  bigint NOT NULL,
    PRIMARY KEY (name, seq)
);

-- Per-tenant, per-minute rollups: count and sum of amounts per event type
-- and currency ('' when the event carries none).
CREATE TABLE analytics_minutes (
    tenant_id  uuid NOT NULL,
    minute     timestamptz NOT NULL,
    type       text NOT NULL,
    currency   text NOT NULL,
    count      bigint NOT NULL,
    amount_sum numeric NOT NULL,
    PRIMARY KEY (tenant_id, minute, type, currency)
);

-- The audit trail: append-only, each record hash-chained to the tenant's
-- previous one (hash = sha256(prev_hash || event)). audit_heads holds each
-- tenant's last record, locked to append.
CREATE TABLE audit_records (
    tenant_id   uuid NOT NULL,
    seq         bigint NOT NULL,
    event_id    uuid NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    event       bytea NOT NULL, -- the event exactly as received, JSON
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE audit_heads (
    tenant_id uuid PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      bytea NOT NULL
);

-- The trail is append-only: no UPDATE or DELETE goes through.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_records is append-only';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
