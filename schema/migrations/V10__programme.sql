-- The full loyalty programme (issue #5): the balance vocabulary in the balances read model,
-- lots opened by adjustments (no purchase), pending lots, points reserved by reward holds,
-- and the open holds the scheduled run releases when they pass their window.
--
-- (V9 is the broadcasts migration.)

ALTER TABLE projection.customer_balances
    ADD COLUMN pending  bigint NOT NULL DEFAULT 0,
    ADD COLUMN held     bigint NOT NULL DEFAULT 0,
    ADD COLUMN debt     bigint NOT NULL DEFAULT 0,
    ADD COLUMN reversed bigint NOT NULL DEFAULT 0,
    ADD COLUMN adjusted bigint NOT NULL DEFAULT 0;

ALTER TABLE projection.point_lots
    ALTER COLUMN purchase_id DROP NOT NULL,
    ADD COLUMN reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    ADD COLUMN pending_until timestamptz;

-- The scheduled run's "pending lots whose window has passed".
CREATE INDEX point_lots_pending_idx ON projection.point_lots (pending_until)
    WHERE pending_until IS NOT NULL;

-- Holds neither fulfilled nor released; a row is deleted when its hold resolves.
CREATE TABLE projection.open_holds (
    customer_id   uuid        NOT NULL,
    redemption_id uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    points        bigint      NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (customer_id, redemption_id)
);
CREATE INDEX open_holds_expires_idx ON projection.open_holds (expires_at);

ALTER TABLE projection.open_holds ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON projection.open_holds FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);
CREATE POLICY platform_owns_all ON projection.open_holds FOR ALL TO loyalty_platform
    USING (true) WITH CHECK (true);
-- Like the other read models: the API reads, the platform's projector writes.
REVOKE ALL ON projection.open_holds FROM loyalty_app;
GRANT SELECT ON projection.open_holds TO loyalty_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON projection.open_holds TO loyalty_platform;
