-- Tiers (issue #5): the customer's tier and its next review in the balances read model.
-- The scheduled run finds the customers whose review is due from `tier_review_at`;
-- broadcasts segment by `tier`.

ALTER TABLE projection.customer_balances
    ADD COLUMN tier text,
    ADD COLUMN tier_review_at timestamptz;

CREATE INDEX customer_balances_tier_review_idx ON projection.customer_balances (tier_review_at)
    WHERE tier_review_at IS NOT NULL;
