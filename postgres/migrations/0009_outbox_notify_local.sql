-- A transaction that notifies takes, at commit, a lock that every other
-- notifying transaction of the server waits for until it has committed
-- (PostgreSQL's async.c, PreCommit_Notify), so the outbox trigger (0002)
-- made the commits of concurrent group-commit batches one at a time: the
-- second could not flush the WAL with the first. A batch whose relay runs
-- in the same process sets holdfast.outbox_notify to 'off' and wakes that
-- relay itself once committed; every other insert still notifies.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('holdfast.outbox_notify', true) IS DISTINCT FROM 'off' THEN
        PERFORM pg_notify('holdfast_outbox', '');
    END IF;
    RETURN NULL;
END $$;
