-- Creating an API key counts the tenant's unrevoked keys against its cap
-- (postgres.TenantConfig.MaxActiveKeys) while holding the tenant's row lock:
-- this index keeps that count to the live keys, however many were revoked.
CREATE INDEX api_keys_tenant_active ON api_keys (tenant_id) WHERE revoked_at IS NULL;
