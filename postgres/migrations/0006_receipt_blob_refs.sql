-- Blob garbage collection asks which blob keys a receipt still refers to,
-- as its original or as one of its variants (ReceiptStore.BlobsInUse), a
-- thousand keys at a time; each question is two index lookups, not a scan
-- of every receipt.
CREATE INDEX receipts_original_key ON receipts (original_key);

-- The blob keys of a receipt's variants ({"thumbnail": {"key": …}, …}).
CREATE FUNCTION receipt_variant_keys(variants jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT v ->> 'key' FROM jsonb_each(variants) AS e(name, v));
CREATE INDEX receipts_variant_keys ON receipts USING gin (receipt_variant_keys(variants));
