-- Rewards catalogue and counter fulfilment (issue #4).
--
-- The catalogue itself lives in the tenant's event stream (RewardCreated, RewardRetired);
-- the only new table is a write-side index, like customer_phone_index: which redemption a
-- code shown at the counter names. The group-commit writer inserts the row in the same
-- transaction as the RewardRedeemed event that carries the code, so a code exists exactly
-- when its redemption does. The primary key makes a code unique per tenant: a (rare)
-- collision fails the transaction instead of naming two redemptions.

CREATE TABLE redemption_codes (
    tenant_id      uuid NOT NULL,
    -- Canonical form: 8 characters of Crockford's base32 (no I, L, O, U).
    code           text NOT NULL CHECK (code ~ '^[0-9A-HJKMNP-TV-Z]{8}$'),
    customer_id    uuid NOT NULL,
    redemption_id  uuid NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, code)
);

ALTER TABLE redemption_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON redemption_codes FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);

-- Codes are written once and never change; the platform role has no use for them.
GRANT SELECT, INSERT ON redemption_codes TO loyalty_app;
