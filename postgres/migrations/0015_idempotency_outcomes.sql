-- An Idempotency-Key keeps the outcome of its request's write, not the HTTP
-- response: the write's result as JSON of its domain type, or its final
-- error (code, message, extensions), and the first request's id
-- (holdfast.Outcome, stored as its JSON). The HTTP layer renders a live
-- result and a replayed outcome through the same view.
--
-- Responses stored before are converted: a success's body into its write's
-- result (a transfer into a list of one, a linked set into its transfers,
-- an events batch into its ids, a key shown without its secret into the key
-- without one; accounts, tenants, consumer groups and dead letters as they
-- are), a problem into its code, message, extension members and request id.
-- A body that cannot be read becomes an internal error: the key still
-- answers without running its request again.
CREATE FUNCTION pg_temp.holdfast_outcome(status integer, body bytea) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b    jsonb := convert_from(body, 'UTF8')::jsonb;
    code text;
    ext  jsonb;
BEGIN
    IF status >= 400 THEN
        code := substring(b->>'type' FROM '^https://holdfast\.dev/problems/(.+)$');
        IF code IS NULL OR b->>'detail' IS NULL THEN
            RAISE EXCEPTION 'not a problem document';
        END IF;
        ext := b - 'type' - 'title' - 'status' - 'detail' - 'instance' - 'request_id';
        RETURN jsonb_build_object('error', jsonb_build_object('code', code, 'message', b->>'detail')
                   || CASE WHEN ext = '{}' THEN '{}' ELSE jsonb_build_object('extensions', ext) END)
            || CASE WHEN jsonb_typeof(b->'request_id') = 'string' THEN jsonb_build_object('request_id', b->'request_id') ELSE '{}' END;
    END IF;
    RETURN jsonb_build_object('result', CASE
        WHEN jsonb_typeof(b) <> 'object' THEN b
        WHEN b ? 'transfers' THEN b->'transfers'
        WHEN b ? 'debit_account_id' THEN jsonb_build_array(b)
        WHEN b ? 'accepted' AND b ? 'ids' THEN b->'ids'
        WHEN b ? 'secret_redacted' THEN b - 'secret' - 'secret_redacted'
        WHEN b->'api_key' ? 'secret_redacted' THEN jsonb_set(b, '{api_key}', (b->'api_key') - 'secret' - 'secret_redacted')
        ELSE b
    END);
EXCEPTION WHEN others THEN
    RETURN jsonb_build_object('error', jsonb_build_object('code', 'internal',
        'message', 'the response stored before this version could not be read'));
END $$;

ALTER TABLE idempotency_keys ADD COLUMN outcome bytea; -- set once the request finished

UPDATE idempotency_keys
SET outcome = convert_to(pg_temp.holdfast_outcome(response_status, response_body)::text, 'UTF8')
WHERE response_status IS NOT NULL;

ALTER TABLE idempotency_keys
    DROP COLUMN response_status,
    DROP COLUMN response_type,
    DROP COLUMN response_body;

DROP FUNCTION pg_temp.holdfast_outcome(integer, bytea);
