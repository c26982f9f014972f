-- Liability in money (issue #6): each lot keeps the tenant's point value in force when it
-- opened (minor units per point, from PointsEarned v3, PointsAdjusted v2 and
-- ReferralBonusAwarded v2). NULL: no value was set then, or the lot predates the field.
-- Rebuild the balances read model (`loyalty project rebuild balances`) to fill it for lots
-- projected before this migration; their events say NULL anyway.
ALTER TABLE projection.point_lots ADD COLUMN point_value_minor bigint
    CHECK (point_value_minor IS NULL OR point_value_minor >= 0);
