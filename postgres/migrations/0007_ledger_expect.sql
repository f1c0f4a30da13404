-- A pipelined group-commit batch applies its transfers against the balances
-- the batch before it will commit, then, holding the accounts' locks, checks
-- that they are what it assumed: ledger_expect(false) fails the transaction
-- with a serialization failure (SQLSTATE 40001), which the writer retries
-- the ordinary way (locking the accounts first).
CREATE FUNCTION ledger_expect(ok boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'account balances changed since the batch applied against them'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END $$;
