-- Reward stock (issue #5, item 7): the units used of each catalogue reward across all the
-- tenant's customers, that is its open and fulfilled holds.
--
-- A reward's stock is the one catalogue rule that no single stream can decide (a customer's
-- stream knows only that customer's holds), so the group-commit writer reads these counts
-- under the tenant's head lock, hands them to `decide` as an input, and writes each batch's
-- changes (+1 per RewardHeld, -1 per HoldReleased) in the same transaction as the events:
-- the count and the holds it counts commit together or not at all, and two writers of one
-- tenant take turns on the head lock. A row appears with a reward's first hold.
--
-- Holds made before this migration are not counted (their events cannot be read in SQL);
-- a release of one is not subtracted either (the count never goes below zero).

CREATE TABLE reward_stock (
    tenant_id  uuid    NOT NULL,
    reward_id  uuid    NOT NULL,
    used       integer NOT NULL CHECK (used >= 0),
    PRIMARY KEY (tenant_id, reward_id)
);

ALTER TABLE reward_stock ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON reward_stock FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);

-- Written only by the writer (as loyalty_app), read by the catalogue and the WhatsApp list.
GRANT SELECT, INSERT, UPDATE ON reward_stock TO loyalty_app;
