-- Tenants, their API keys, accounts, transfers and entries, idempotency keys.

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    hash       bytea NOT NULL UNIQUE, -- sha256 of the secret; the secret is never stored
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    currency        text NOT NULL,
    allow_overdraft boolean NOT NULL,
    balance         bigint NOT NULL DEFAULT 0,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    -- The last line of defence: whatever the code does, a balance that may
    -- not go negative cannot be committed negative.
    CONSTRAINT balance_not_negative CHECK (allow_overdraft OR balance >= 0)
) WITH (fillfactor = 80); -- room on each page, so balance updates are HOT (no index writes)
CREATE INDEX accounts_tenant ON accounts (tenant_id, id);

-- Transfer ids are scoped per tenant, so a client-chosen id says nothing
-- about other tenants. No foreign keys to accounts: the writer has locked and
-- checked both accounts in the same transaction, and per-row FK triggers would
-- tax the hottest insert path.
CREATE TABLE transfers (
    tenant_id         uuid NOT NULL,
    id                uuid NOT NULL,
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    description       text NOT NULL,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK (debit_account_id <> credit_account_id)
);

-- Two entries per transfer: the debit (negative) and the credit (positive).
-- An account's balance is always the sum of its entries; balance_after is the
-- running balance right after the entry.
CREATE TABLE entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    uuid NOT NULL,
    transfer_id   uuid NOT NULL,
    amount        bigint NOT NULL CHECK (amount <> 0),
    balance_after bigint NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX entries_account ON entries (account_id, id);

CREATE TABLE idempotency_keys (
    tenant_id       uuid NOT NULL,
    key             text NOT NULL,
    fingerprint     bytea NOT NULL,  -- sha256 of method, path and body
    lock_token      uuid,            -- set while a request holds the key
    locked_at       timestamptz,
    created_at      timestamptz NOT NULL,
    response_status integer,         -- set once the request finished
    response_type   text,
    response_body   bytea,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
