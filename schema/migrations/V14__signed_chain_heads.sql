-- Signed chain heads (issue #6, item 1): the platform periodically signs each tenant's chain
-- head — (tenant, sequence, hash, time) — with its Ed25519 audit key, so an auditor holding
-- only an export and the public key can tell the ledger was not rewritten after it was
-- signed. One row per (tenant, sequence) signed; rows are never updated.

CREATE TABLE signed_chain_heads (
    tenant_id  uuid        NOT NULL,
    sequence   bigint      NOT NULL CHECK (sequence >= 1),
    head_hash  bytea       NOT NULL CHECK (length(head_hash) = 32),
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (tenant_id, sequence)
);

ALTER TABLE signed_chain_heads ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON signed_chain_heads FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);
CREATE POLICY platform_owns_all ON signed_chain_heads FOR ALL TO loyalty_platform
    USING (true) WITH CHECK (true);

-- The API reads its tenant's signatures; only the platform's signer writes them.
REVOKE ALL ON signed_chain_heads FROM loyalty_app;
GRANT SELECT ON signed_chain_heads TO loyalty_app;
GRANT SELECT, INSERT ON signed_chain_heads TO loyalty_platform;
