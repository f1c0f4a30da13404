-- Two-phase transfers, limits and transfer metadata (decisions 0065, 0066).
--
-- Every statement is safe on a database with data: added columns have
-- constant defaults (no table rewrite), and the replaced CHECK constraints
-- hold for every existing row (no row has anything pending, and an account
-- without an overdraft has a balance of at least zero).

-- An account's balance is what is posted; pending_debits and
-- pending_credits are what holds reserve on it. available = balance -
-- pending_debits. overdraft_limit is how far below zero available may go
-- (allow_overdraft: without a bound); max_balance bounds balance +
-- pending_credits.
ALTER TABLE accounts
    ADD COLUMN pending_debits  bigint NOT NULL DEFAULT 0,
    ADD COLUMN pending_credits bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdraft_limit bigint NOT NULL DEFAULT 0,
    ADD COLUMN max_balance     bigint;

-- The last line of defence, as before, now over what is available: CASE so
-- that an unbounded overdraft (or balance) never evaluates a sum that could
-- overflow.
ALTER TABLE accounts DROP CONSTRAINT balance_not_negative;
ALTER TABLE accounts
    ADD CONSTRAINT available_within_limit
        CHECK (CASE WHEN allow_overdraft THEN true ELSE balance - pending_debits >= -overdraft_limit END),
    ADD CONSTRAINT balance_within_max
        CHECK (CASE WHEN max_balance IS NULL THEN true ELSE balance + pending_credits <= max_balance END),
    ADD CONSTRAINT pending_not_negative CHECK (pending_debits >= 0 AND pending_credits >= 0),
    ADD CONSTRAINT overdraft_limit_not_negative CHECK (overdraft_limit >= 0 AND NOT (allow_overdraft AND overdraft_limit > 0));

-- A transfer is posted at once, or created as a hold (pending = true) that
-- is later posted, voided or expired: its status records which. The
-- transfer that resolves a hold names it in pending_id; at most one may, so
-- no hold is resolved twice whatever the code does.
ALTER TABLE transfers
    ADD COLUMN status     text NOT NULL DEFAULT 'posted',
    ADD COLUMN pending    boolean NOT NULL DEFAULT false,
    ADD COLUMN pending_id uuid,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN metadata   jsonb NOT NULL DEFAULT '{}';
ALTER TABLE transfers
    ADD CONSTRAINT transfers_status CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    ADD CONSTRAINT transfers_hold_status CHECK (pending OR status <> 'pending');
CREATE UNIQUE INDEX transfers_resolves ON transfers (tenant_id, pending_id) WHERE pending_id IS NOT NULL;
-- The sweeper's seek for holds past their timeout; a hold without one never
-- enters it.
CREATE INDEX transfers_expiry ON transfers (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;

-- An entry also records the account's pending totals after it, so the
-- balance at a moment is one entry's row. A hold and its void move nothing
-- posted: their entries have amount 0.
ALTER TABLE entries
    ADD COLUMN pending_debits_after  bigint NOT NULL DEFAULT 0,
    ADD COLUMN pending_credits_after bigint NOT NULL DEFAULT 0;
ALTER TABLE entries DROP CONSTRAINT entries_amount_check;
