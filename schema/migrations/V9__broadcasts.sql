-- loyalty-ledger: broadcasts (issue #5, item 8). docs/BROADCASTS.md has the design.
--
-- A vendor (owner or staff, through the API as loyalty_app) creates a broadcast: a template
-- with parameters for a segment of its customers. Its recipients are resolved once, in the
-- creating transaction, into broadcast_recipients (a fixed denominator for progress). The
-- feeder (src/broadcasts.rs, loyalty_platform, one runner at a time by an advisory lock)
-- moves the recipients of running broadcasts into whatsapp_outbox in bounded chunks (kind
-- 'broadcast', dedupe key broadcast:<broadcast id>:<customer id>), re-checking the opt-in;
-- the notifier sends them as templates, throttled like every other row.
--
-- Pausing (or cancelling) withdraws the broadcast's outbox rows that no notifier has claimed
-- (state 'withdrawn', which no claim takes and which holds no recipient's later messages
-- back); resuming puts them back to 'queued'. Configuration-like, so rows, not ledger events
-- (docs/DECISIONS.md); the vendor's actor is recorded on the broadcast.

CREATE TABLE broadcasts (
    broadcast_id         uuid        PRIMARY KEY,
    tenant_id            uuid        NOT NULL,
    -- The client's Idempotency-Key and the SHA-256 of the request it was first used with:
    -- the same key with the same request returns this broadcast, with another is refused.
    idempotency_key      text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash         bytea       NOT NULL CHECK (length(request_hash) = 32),
    name                 text        NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    -- ledger_core::broadcast::Segment as JSON ({"kind": ..., ...}).
    segment              jsonb       NOT NULL,
    -- ledger_core::broadcast::BroadcastTemplate as JSON: the body of every outbox row.
    template             jsonb       NOT NULL,
    state                text        NOT NULL DEFAULT 'running'
                         CHECK (state IN ('running', 'paused', 'completed', 'cancelled')),
    created_by_kind      text        NOT NULL CHECK (created_by_kind IN ('user', 'api_key', 'system')),
    created_by_id        uuid,
    correlation_id       uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    CONSTRAINT broadcasts_idempotency_key_unique UNIQUE (tenant_id, idempotency_key)
);

-- The API's list (a tenant's newest first) and the feeder's scan of running broadcasts.
CREATE INDEX broadcasts_tenant_idx ON broadcasts (tenant_id, created_at DESC, broadcast_id);
CREATE INDEX broadcasts_running_idx ON broadcasts (created_at, broadcast_id) WHERE state = 'running';

-- One row per customer of the segment, resolved at creation. 'queued' waits for the feeder;
-- 'enqueued' is in the outbox (dedupe_key names the row); the skipped states were counted
-- out at creation or when the feeder re-checked the opt-in.
CREATE TABLE broadcast_recipients (
    broadcast_id  uuid        NOT NULL REFERENCES broadcasts (broadcast_id),
    customer_id   uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    state         text        NOT NULL
                  CHECK (state IN ('queued', 'skipped_opted_out', 'skipped_no_whatsapp', 'enqueued')),
    dedupe_key    text        CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broadcast_id, customer_id),
    CHECK ((state = 'enqueued') = (dedupe_key IS NOT NULL))
);

-- The feeder's next chunk: a broadcast's recipients still waiting, in customer order.
CREATE INDEX broadcast_recipients_queued_idx ON broadcast_recipients (broadcast_id, customer_id)
    WHERE state = 'queued';

-- The outbox learns the broadcast kind, which broadcast a row belongs to, and the state of a
-- row withdrawn by a pause or cancel.
ALTER TABLE whatsapp_outbox ADD COLUMN broadcast_id uuid;
ALTER TABLE whatsapp_outbox DROP CONSTRAINT whatsapp_outbox_kind_check;
ALTER TABLE whatsapp_outbox ADD CONSTRAINT whatsapp_outbox_kind_check
    CHECK (kind IN ('reply', 'notification', 'broadcast'));
ALTER TABLE whatsapp_outbox ADD CONSTRAINT whatsapp_outbox_broadcast_kind
    CHECK ((kind = 'broadcast') = (broadcast_id IS NOT NULL));
ALTER TABLE whatsapp_outbox DROP CONSTRAINT whatsapp_outbox_state_check;
ALTER TABLE whatsapp_outbox ADD CONSTRAINT whatsapp_outbox_state_check
    CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'withdrawn'));
ALTER TABLE whatsapp_outbox_log DROP CONSTRAINT whatsapp_outbox_log_outcome_check;
ALTER TABLE whatsapp_outbox_log ADD CONSTRAINT whatsapp_outbox_log_outcome_check
    CHECK (outcome IN ('attempt', 'sent', 'retry', 'failed', 'template_fallback',
                       'delivered', 'read', 'status_failed', 'withdrawn', 'restored'));

-- A broadcast's rows by state: progress, withdraw and restore, completion.
CREATE INDEX whatsapp_outbox_broadcast_idx ON whatsapp_outbox (broadcast_id, state)
    WHERE broadcast_id IS NOT NULL;
-- The claim takes replies and notifications before broadcast rows (a broadcast must not hold
-- a customer's answer back), then by due time; this is its order, on the due rows only. It
-- replaces V5's due index (by due time alone), which nothing else reads. (The two broadcast
-- indexes below are partial: rows of other kinds are never entered in them.)
CREATE INDEX whatsapp_outbox_due_priority_idx
    ON whatsapp_outbox ((kind = 'broadcast'), next_attempt_at) WHERE state = 'queued';
DROP INDEX whatsapp_outbox_due_idx;
-- The feeder's bound: a tenant's broadcast rows not yet sent.
CREATE INDEX whatsapp_outbox_tenant_broadcast_unsent_idx ON whatsapp_outbox (tenant_id)
    WHERE kind = 'broadcast' AND state IN ('queued', 'sending');

-- Row-level security like every tenant-owned table: the API sees its tenant's rows only; the
-- feeder (platform role) works across tenants.
ALTER TABLE broadcasts ENABLE ROW LEVEL SECURITY;
ALTER TABLE broadcast_recipients ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON broadcasts FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);
CREATE POLICY tenant_scope ON broadcast_recipients FOR ALL TO loyalty_app
    USING ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id])
    WITH CHECK ((SELECT tenancy.current_tenants()) @> ARRAY[tenant_id]);
CREATE POLICY platform_owns_all ON broadcasts FOR ALL TO loyalty_platform
    USING (true) WITH CHECK (true);
CREATE POLICY platform_owns_all ON broadcast_recipients FOR ALL TO loyalty_platform
    USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE ON broadcasts, broadcast_recipients TO loyalty_app;
GRANT SELECT, UPDATE ON broadcasts, broadcast_recipients TO loyalty_platform;

-- The API reaches the WhatsApp tables (platform tables) only through these definer functions,
-- which take the tenant from the transaction's scope (exactly one), never from an argument.

-- The scope's tenant's WhatsApp members and whether each accepts broadcasts (the
-- conversation state's `broadcasts` flag, opted in unless the customer said STOP).
CREATE FUNCTION tenancy.broadcast_audience()
RETURNS TABLE (customer_id uuid, opted_in boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.customer_id, coalesce(c.state ->> 'broadcasts', 'opted_in') = 'opted_in'
      FROM public.whatsapp_members m
      JOIN public.whatsapp_conversations c
        ON c.customer_digest = m.customer_digest AND c.phone_number_id = m.phone_number_id
     WHERE m.tenant_id = tenancy.single_current_tenant()
$$;

-- How many of these broadcasts' outbox rows are in each state (the scope's tenant's only).
CREATE FUNCTION tenancy.broadcast_outbox_counts(wanted uuid[])
RETURNS TABLE (broadcast_id uuid, state text, messages bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.broadcast_id, o.state, count(*)
      FROM public.whatsapp_outbox o
     WHERE o.broadcast_id = ANY (wanted) AND o.tenant_id = tenancy.single_current_tenant()
     GROUP BY o.broadcast_id, o.state
$$;

-- The state of each of these outbox rows (a page of a broadcast's recipients), the scope's
-- tenant's only.
CREATE FUNCTION tenancy.broadcast_message_states(keys text[])
RETURNS TABLE (dedupe_key text, state text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.dedupe_key, o.state
      FROM public.whatsapp_outbox o
     WHERE o.dedupe_key = ANY (keys) AND o.tenant_id = tenancy.single_current_tenant()
$$;

-- Withdraws a broadcast's rows no notifier has claimed (pause, cancel). A row being claimed
-- right now is locked by the claim: this waits for it and then finds it no longer queued.
CREATE FUNCTION tenancy.broadcast_outbox_withdraw(wanted uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH withdrawn AS (
        UPDATE public.whatsapp_outbox o SET state = 'withdrawn', updated_at = now()
         WHERE o.broadcast_id = wanted AND o.tenant_id = tenancy.single_current_tenant()
           AND o.state = 'queued'
        RETURNING o.message_id),
    logged AS (
        INSERT INTO public.whatsapp_outbox_log (message_id, outcome, detail)
        SELECT message_id, 'withdrawn', 'the broadcast was paused or cancelled' FROM withdrawn)
    SELECT count(*)::integer FROM withdrawn
$$;

-- Puts a resumed broadcast's withdrawn rows back in the queue, due now.
CREATE FUNCTION tenancy.broadcast_outbox_restore(wanted uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH restored AS (
        UPDATE public.whatsapp_outbox o
           SET state = 'queued', next_attempt_at = now(), updated_at = now()
         WHERE o.broadcast_id = wanted AND o.tenant_id = tenancy.single_current_tenant()
           AND o.state = 'withdrawn'
        RETURNING o.message_id),
    logged AS (
        INSERT INTO public.whatsapp_outbox_log (message_id, outcome, detail)
        SELECT message_id, 'restored', 'the broadcast was resumed' FROM restored)
    SELECT count(*)::integer FROM restored
$$;

DO $$
DECLARE
    definer text;
BEGIN
    FOREACH definer IN ARRAY ARRAY[
        'tenancy.broadcast_audience()',
        'tenancy.broadcast_outbox_counts(uuid[])',
        'tenancy.broadcast_message_states(text[])',
        'tenancy.broadcast_outbox_withdraw(uuid)',
        'tenancy.broadcast_outbox_restore(uuid)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', definer);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO loyalty_app', definer);
    END LOOP;
END
$$;
