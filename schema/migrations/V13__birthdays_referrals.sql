-- Birthdays and referrals (issue #5, item 1).
--
-- `referral_codes` is a write-side index like `redemption_codes`: which customer a referral
-- code names. The group-commit writer inserts the row in the same transaction as the
-- CustomerEnrolled event that carries the code, so a code exists exactly when its customer
-- does; the primary key makes a code unique per tenant (a rare collision fails the
-- enrolment's transaction instead of naming two customers). A customer has one code, for
-- good: erasure keeps it (a random code is not personal data, and the referrer's pending
-- credit must still find its way).
--
-- The balances read model gains the birthday (month and day, no year) for the
-- `birthday_month` broadcast segment and the customer view; the projector nulls both on
-- erasure (docs/PROGRAMME.md, "Birthdays and referrals").

CREATE TABLE referral_codes (
    tenant_id    uuid NOT NULL,
    -- Canonical form: 8 characters of Crockford's base32 (no I, L, O, U).
    code         text NOT NULL CHECK (code ~ '^[0-9A-HJKMNP-TV-Z]{8}$'),
    customer_id  uuid NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, code)
);

ALTER TABLE referral_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON referral_codes FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);

-- Codes are written once and never change; the platform role has no use for them.
GRANT SELECT, INSERT ON referral_codes TO loyalty_app;

ALTER TABLE projection.customer_balances
    ADD COLUMN birth_month smallint CHECK (birth_month BETWEEN 1 AND 12),
    ADD COLUMN birth_day smallint CHECK (birth_day BETWEEN 1 AND 31);

CREATE INDEX customer_balances_birth_month_idx ON projection.customer_balances (tenant_id, birth_month)
    WHERE birth_month IS NOT NULL;
