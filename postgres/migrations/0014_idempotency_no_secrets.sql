-- Responses stored for an Idempotency-Key used to include the secret of the
-- API key they created (POST /v1/api-keys, POST /v1/admin/tenants). A replay
-- now shows such a key with "secret":null,"secret_redacted":true; give the
-- responses already stored the same form, so that no secret stays at rest.
-- Inside a JSON string a quote is escaped, so the pattern matches members only.
UPDATE idempotency_keys
SET response_body = convert_to(regexp_replace(convert_from(response_body, 'UTF8'),
        '"secret":"hf_[A-Z2-7]{32}"', '"secret":null,"secret_redacted":true', 'g'), 'UTF8')
WHERE response_type = 'application/json'
  AND position('"secret":"hf_'::bytea IN response_body) > 0;
