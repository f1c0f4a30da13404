-- Webhooks: tenants' endpoints, the messages (events) to deliver to them,
-- one delivery per endpoint and message, and every attempt. The webhooks
-- consumer group writes messages and deliveries in the transaction that
-- records its stream sequences; dispatchers in every replica lease due
-- deliveries, post them, and record the attempt.

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    url                  text NOT NULL,
    event_types          text[] NOT NULL DEFAULT '{}', -- empty: every type
    description          text NOT NULL DEFAULT '',
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text NOT NULL DEFAULT '',
    secret_sealed        bytea NOT NULL,  -- AES-GCM under the configured key; never plaintext
    previous_sealed      bytea,           -- the secret before the last rotation, signing until previous_until
    previous_until       timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz,     -- first failure since the last success
    open_until           timestamptz,     -- the circuit breaker is open until then
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at DESC, id DESC);
-- The operator's list of failing and disabled endpoints, whatever the healthy ones.
CREATE INDEX webhook_endpoints_unhealthy ON webhook_endpoints (failing_since, id) WHERE consecutive_failures > 0 OR NOT enabled;

-- An event as delivered to a tenant's endpoints: the body is the envelope,
-- signed as sent. id is the event's id, the webhook-id of every attempt.
CREATE TABLE webhook_messages (
    tenant_id  uuid NOT NULL,
    id         text NOT NULL,
    type       text NOT NULL,
    body       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One message to one endpoint. state: pending (due at next_attempt_at;
-- leased while lease_until is in the future), succeeded, failed (retries
-- exhausted). attempts counts the attempts begun, a crashed one included.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id      text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (endpoint_id, message_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
-- A lease counts an endpoint's deliveries leased now: only those rows.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_id) WHERE state = 'pending' AND lease_until IS NOT NULL;
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, created_at) WHERE state = 'failed';
ALTER TABLE webhook_deliveries SET (autovacuum_vacuum_scale_factor = 0.02);

CREATE TABLE webhook_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL,
    message_id      text NOT NULL,
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL,
    latency_us      bigint NOT NULL,
    status_code     integer NOT NULL DEFAULT 0, -- 0: no response
    result          text NOT NULL,              -- succeeded, failed, timeout, refused
    error           text NOT NULL DEFAULT '',
    next_attempt_at timestamptz                 -- null: no further attempt
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);
