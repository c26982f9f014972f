-- loyalty-ledger: analytics read models, their views and the analyst role (issue #6, item 6).
--
-- Two writers, both as loyalty_platform, each rebuildable by name (`loyalty project rebuild
-- analytics | analytics-whatsapp`):
--   the `analytics` projector (projections/src/analytics.rs) folds ledger events into the
--     tables below, effectively once: `analytics.tenants.applied_sequence` is the tenant
--     sequence each tenant's counters reflect, written in the batch's transaction with the
--     projector's checkpoint; an event at or below it is a duplicate and skipped;
--   the `analytics-whatsapp` refresher (projections/src/whatsapp_analytics.rs) recomputes
--     `analytics.whatsapp_daily` from the WhatsApp tables (a trailing window of days live,
--     every day on a rebuild).
--
-- Readers never see the tables: the documented views (docs/ANALYTICS.md) are the only
-- thing granted to loyalty_app (the API) and loyalty_analyst, and each view keeps only the
-- rows of the tenants named for the transaction (`loyalty.tenant_ids`, as everywhere). No
-- personal data is here: customers appear by their pseudonymous id only, never a phone
-- number or a name, and no view gives even the id.
--
-- No floats: counts, points and minor units are bigint; ratios are given as integer
-- numerators and denominators plus integer basis points.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'loyalty_analyst') THEN
        CREATE ROLE loyalty_analyst NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    -- Another database of this cluster created the role at the same moment.
    NULL;
END
$$;

CREATE SCHEMA analytics;

-- Per tenant: the tenant sequence the analytics reflect (the projector's guard) and the
-- time zone its local days are read in (the programme settings', Africa/Lagos by default).
CREATE TABLE analytics.tenants (
    tenant_id         uuid   PRIMARY KEY,
    applied_sequence  bigint NOT NULL CHECK (applied_sequence >= 0),
    time_zone         text   NOT NULL DEFAULT 'Africa/Lagos'
);

-- Ledger figures per tenant per local day (the day of each event's own timestamp).
CREATE TABLE analytics.daily (
    tenant_id              uuid   NOT NULL,
    day                    date   NOT NULL,
    points_issued          bigint NOT NULL DEFAULT 0,
    points_redeemed        bigint NOT NULL DEFAULT 0,
    points_expired         bigint NOT NULL DEFAULT 0,
    points_reversed        bigint NOT NULL DEFAULT 0,
    points_adjusted        bigint NOT NULL DEFAULT 0,
    purchases              bigint NOT NULL DEFAULT 0,
    purchase_amount_minor  bigint NOT NULL DEFAULT 0,
    refunds                bigint NOT NULL DEFAULT 0,
    refund_amount_minor    bigint NOT NULL DEFAULT 0,
    redemptions            bigint NOT NULL DEFAULT 0,
    holds                  bigint NOT NULL DEFAULT 0,
    holds_released         bigint NOT NULL DEFAULT 0,
    enrolments             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

-- One row per customer: pseudonymous id, local days of enrolment and of the last purchase
-- and redemption, current tier. Never read by the views row by row.
CREATE TABLE analytics.customers (
    customer_id         uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    enrolled_on         date,
    last_purchase_on    date,
    last_redemption_on  date,
    tier                text
);

CREATE INDEX analytics_customers_tenant_idx ON analytics.customers (tenant_id);

-- The months (first day, local) in which a customer purchased, earned, redeemed or was
-- active (purchased or redeemed): cohorts and customer-based redemption rates.
CREATE TABLE analytics.customer_months (
    tenant_id    uuid    NOT NULL,
    customer_id  uuid    NOT NULL,
    month        date    NOT NULL CHECK (extract(day FROM month) = 1),
    active       boolean NOT NULL DEFAULT false,
    earned       boolean NOT NULL DEFAULT false,
    redeemed     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, customer_id, month)
);

-- The catalogue as the events name it.
CREATE TABLE analytics.rewards (
    tenant_id    uuid    NOT NULL,
    reward_id    uuid    NOT NULL,
    name         text    NOT NULL,
    points_cost  bigint  NOT NULL,
    retired      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, reward_id)
);

-- Every redemption of a catalogue reward: a hold (outcome NULL while open, then fulfilled,
-- cancelled or expired) or a direct redemption (outcome 'redeemed' at once).
CREATE TABLE analytics.reward_redemptions (
    redemption_id  uuid   PRIMARY KEY,
    tenant_id      uuid   NOT NULL,
    reward_id      uuid   NOT NULL,
    points         bigint NOT NULL,
    redeemed_on    date   NOT NULL,
    outcome        text   CHECK (outcome IN ('redeemed', 'fulfilled', 'cancelled', 'expired')),
    resolved_on    date
);

CREATE INDEX analytics_reward_redemptions_reward_idx
    ON analytics.reward_redemptions (tenant_id, reward_id);

-- WhatsApp traffic per tenant per local day (refreshed from the WhatsApp tables).
CREATE TABLE analytics.whatsapp_daily (
    tenant_id               uuid   NOT NULL,
    day                     date   NOT NULL,
    inbound                 bigint NOT NULL,
    outbound                bigint NOT NULL,
    outbound_replies        bigint NOT NULL,
    outbound_notifications  bigint NOT NULL,
    outbound_broadcasts     bigint NOT NULL,
    pending                 bigint NOT NULL,
    sent                    bigint NOT NULL,
    delivered               bigint NOT NULL,
    read                    bigint NOT NULL,
    failed                  bigint NOT NULL,
    withdrawn               bigint NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- The refresher recomputes a trailing window of days: these let it read only that window
-- (neither column is ever updated, so the notifier's updates stay HOT).
CREATE INDEX whatsapp_outbox_queued_at_idx ON whatsapp_outbox (queued_at);
CREATE INDEX whatsapp_inbox_received_at_idx ON whatsapp_inbox (received_at) WHERE kind = 'message';

-- ---------------------------------------------------------------------------------------
-- Row-level security on the tables (defence in depth: no reader role is granted them)
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
    analytics_table text;
BEGIN
    FOREACH analytics_table IN ARRAY ARRAY[
        'analytics.tenants', 'analytics.daily', 'analytics.customers',
        'analytics.customer_months', 'analytics.rewards', 'analytics.reward_redemptions',
        'analytics.whatsapp_daily']
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', analytics_table);
        EXECUTE format(
            'CREATE POLICY platform_owns_all ON %s FOR ALL TO loyalty_platform '
            'USING (true) WITH CHECK (true)', analytics_table);
        EXECUTE format(
            'CREATE POLICY tenant_scope ON %s FOR SELECT TO loyalty_app, loyalty_analyst '
            'USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])', analytics_table);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The documented views (docs/ANALYTICS.md). Each is a security barrier that keeps only the
-- rows of the transaction's tenants: the views run with their owner's rights on the tables,
-- so this filter is the readers' boundary (none of them has a grant on a table).
-- ---------------------------------------------------------------------------------------

CREATE VIEW analytics.daily_activity WITH (security_barrier) AS
    SELECT d.tenant_id, d.day, d.points_issued, d.points_redeemed, d.points_expired,
           d.points_reversed, d.points_adjusted, d.purchases, d.purchase_amount_minor,
           d.refunds, d.refund_amount_minor, d.redemptions, d.holds, d.holds_released,
           d.enrolments
    FROM analytics.daily d
    WHERE (SELECT tenancy.current_tenants()) @> ARRAY[d.tenant_id];

-- "Today" is the tenant's local date now; a window of N days is today and the N-1 before.
CREATE VIEW analytics.active_customers WITH (security_barrier) AS
    SELECT t.tenant_id,
           (now() AT TIME ZONE t.time_zone)::date AS as_of,
           count(c.customer_id) AS customers,
           count(c.customer_id) FILTER (WHERE greatest(c.last_purchase_on, c.last_redemption_on)
               > (now() AT TIME ZONE t.time_zone)::date - 7) AS active_7d,
           count(c.customer_id) FILTER (WHERE greatest(c.last_purchase_on, c.last_redemption_on)
               > (now() AT TIME ZONE t.time_zone)::date - 30) AS active_30d,
           count(c.customer_id) FILTER (WHERE greatest(c.last_purchase_on, c.last_redemption_on)
               > (now() AT TIME ZONE t.time_zone)::date - 90) AS active_90d
    FROM analytics.tenants t
    LEFT JOIN analytics.customers c ON c.tenant_id = t.tenant_id
    WHERE (SELECT tenancy.current_tenants()) @> ARRAY[t.tenant_id]
    GROUP BY t.tenant_id, t.time_zone;

CREATE VIEW analytics.reward_popularity WITH (security_barrier) AS
    SELECT r.tenant_id, r.reward_id, r.name, r.points_cost, r.retired,
           count(x.redemption_id) AS redemptions,
           count(x.redemption_id) FILTER (WHERE x.outcome IS DISTINCT FROM 'redeemed') AS holds,
           count(x.redemption_id) FILTER (WHERE x.outcome IS NULL) AS holds_open,
           count(x.redemption_id) FILTER (WHERE x.outcome = 'fulfilled') AS holds_fulfilled,
           count(x.redemption_id) FILTER (WHERE x.outcome = 'cancelled') AS holds_cancelled,
           count(x.redemption_id) FILTER (WHERE x.outcome = 'expired') AS holds_expired,
           count(x.redemption_id) FILTER (WHERE x.outcome = 'redeemed') AS direct_redemptions,
           coalesce(sum(x.points) FILTER (WHERE x.outcome IN ('redeemed', 'fulfilled')), 0)::bigint
               AS points_redeemed,
           coalesce(sum(x.points) FILTER (WHERE x.outcome IS NULL), 0)::bigint AS points_held
    FROM analytics.rewards r
    LEFT JOIN analytics.reward_redemptions x
        ON x.tenant_id = r.tenant_id AND x.reward_id = r.reward_id
    WHERE (SELECT tenancy.current_tenants()) @> ARRAY[r.tenant_id]
    GROUP BY r.tenant_id, r.reward_id, r.name, r.points_cost, r.retired;

CREATE VIEW analytics.cohort_retention WITH (security_barrier) AS
    WITH cohorts AS (
        SELECT c.tenant_id, c.customer_id,
               date_trunc('month', c.enrolled_on)::date AS cohort_month
        FROM analytics.customers c
        WHERE c.enrolled_on IS NOT NULL
          AND (SELECT tenancy.current_tenants()) @> ARRAY[c.tenant_id]
    ), sizes AS (
        SELECT tenant_id, cohort_month, count(*) AS cohort_size
        FROM cohorts GROUP BY tenant_id, cohort_month
    )
    SELECT k.tenant_id, k.cohort_month, m.month AS activity_month,
           ((extract(year FROM m.month) - extract(year FROM k.cohort_month)) * 12
             + extract(month FROM m.month) - extract(month FROM k.cohort_month))::integer
               AS months_since_enrolment,
           s.cohort_size,
           count(*) AS active_customers
    FROM cohorts k
    JOIN analytics.customer_months m
        ON m.tenant_id = k.tenant_id AND m.customer_id = k.customer_id AND m.active
    JOIN sizes s ON s.tenant_id = k.tenant_id AND s.cohort_month = k.cohort_month
    GROUP BY k.tenant_id, k.cohort_month, m.month, s.cohort_size;

CREATE VIEW analytics.tier_distribution WITH (security_barrier) AS
    SELECT c.tenant_id, c.tier, count(*) AS customers
    FROM analytics.customers c
    WHERE (SELECT tenancy.current_tenants()) @> ARRAY[c.tenant_id]
    GROUP BY c.tenant_id, c.tier;

-- Per local month: points (from the daily figures) and customers (from customer_months).
CREATE VIEW analytics.redemption_rate WITH (security_barrier) AS
    WITH points AS (
        SELECT d.tenant_id, date_trunc('month', d.day)::date AS month,
               sum(d.points_redeemed)::bigint AS points_redeemed,
               sum(d.points_issued)::bigint AS points_issued
        FROM analytics.daily d
        WHERE (SELECT tenancy.current_tenants()) @> ARRAY[d.tenant_id]
        GROUP BY 1, 2
    ), people AS (
        SELECT m.tenant_id, m.month,
               count(*) FILTER (WHERE m.redeemed) AS customers_redeemed,
               count(*) FILTER (WHERE m.earned) AS customers_earned
        FROM analytics.customer_months m
        WHERE (SELECT tenancy.current_tenants()) @> ARRAY[m.tenant_id]
        GROUP BY 1, 2
    )
    SELECT coalesce(p.tenant_id, q.tenant_id) AS tenant_id,
           coalesce(p.month, q.month) AS month,
           coalesce(p.points_redeemed, 0) AS points_redeemed,
           coalesce(p.points_issued, 0) AS points_issued,
           CASE WHEN coalesce(p.points_issued, 0) > 0
                THEN (p.points_redeemed * 10000 / p.points_issued) END AS points_rate_bps,
           coalesce(q.customers_redeemed, 0) AS customers_redeemed,
           coalesce(q.customers_earned, 0) AS customers_earned,
           CASE WHEN coalesce(q.customers_earned, 0) > 0
                THEN (q.customers_redeemed * 10000 / q.customers_earned) END
               AS customers_rate_bps
    FROM points p
    FULL JOIN people q ON q.tenant_id = p.tenant_id AND q.month = p.month;

CREATE VIEW analytics.whatsapp_activity WITH (security_barrier) AS
    SELECT w.tenant_id, w.day, w.inbound, w.outbound, w.outbound_replies,
           w.outbound_notifications, w.outbound_broadcasts, w.pending, w.sent, w.delivered,
           w.read, w.failed, w.withdrawn
    FROM analytics.whatsapp_daily w
    WHERE (SELECT tenancy.current_tenants()) @> ARRAY[w.tenant_id];

-- ---------------------------------------------------------------------------------------
-- Grants
-- ---------------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA analytics TO loyalty_platform, loyalty_app, loyalty_analyst;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA analytics
    TO loyalty_platform;
-- Views only: the readers have no privilege on any table of the schema.
REVOKE ALL ON analytics.daily_activity, analytics.active_customers,
    analytics.reward_popularity, analytics.cohort_retention, analytics.tier_distribution,
    analytics.redemption_rate, analytics.whatsapp_activity FROM loyalty_platform;
GRANT SELECT ON analytics.daily_activity, analytics.active_customers,
    analytics.reward_popularity, analytics.cohort_retention, analytics.tier_distribution,
    analytics.redemption_rate, analytics.whatsapp_activity TO loyalty_app, loyalty_analyst;
-- The views call tenancy.current_tenants() with the reader's rights (EXECUTE is checked,
-- the schema's USAGE is not: the view names the function by its oid). No USAGE on the
-- tenancy schema, so none of its definer functions is within the analyst's reach.
GRANT EXECUTE ON FUNCTION tenancy.current_tenants() TO loyalty_analyst;
