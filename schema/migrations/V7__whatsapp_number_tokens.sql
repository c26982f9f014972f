-- loyalty-ledger: a tenant's own WhatsApp number with its own access token (issue #4).
--
-- A tenant may send from its own business number (registered by an owner with
-- PUT /v1/whatsapp/number) instead of the platform's shared number. Meta accepts a send from
-- a number only with a token of a system user that has access to that number's WhatsApp
-- Business Account, so each own number carries the tenant's token, SEALED with the vault
-- (vault::Vault::seal_record: a fresh data key per row, wrapped by the current master key;
-- associated data `whatsapp_numbers\0 ‖ phone_number_id ‖ \0 ‖ tenant id`, so a sealed token
-- cannot be moved to another number or tenant and still open). The shared number
-- (tenant_id NULL) has no token here: it uses the platform's LOYALTY_WHATSAPP_ACCESS_TOKEN.
--
-- whatsapp_numbers stays a platform table (the processor routes by it, the notifier sends by
-- it). The tenant-scoped API role reaches it only through the SECURITY DEFINER functions
-- below, which take the tenant from the transaction's scope (tenancy.current_tenants(), set
-- per transaction, exactly one tenant required), never from an argument: a tenant can see,
-- change or detach only its own number, and can never take the shared number or another
-- tenant's. Every change is recorded in whatsapp_number_changes (who, when, what; never the
-- token). See docs/WHATSAPP.md (## Own numbers) and docs/SECURITY.md.

ALTER TABLE whatsapp_numbers
    ADD COLUMN master_key_id       text,
    ADD COLUMN wrapped_key         bytea,
    ADD COLUMN sealed_access_token bytea,
    ADD COLUMN updated_at          timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT whatsapp_numbers_token_sealed_whole CHECK (
        (master_key_id IS NULL) = (wrapped_key IS NULL)
        AND (wrapped_key IS NULL) = (sealed_access_token IS NULL)),
    ADD CONSTRAINT whatsapp_numbers_shared_has_no_token CHECK (
        tenant_id IS NOT NULL OR sealed_access_token IS NULL);

-- One own number per tenant (the API's resource is singular). Before V7 own numbers could only
-- be registered by direct SQL or tests, one per tenant.
CREATE UNIQUE INDEX whatsapp_numbers_one_per_tenant ON whatsapp_numbers (tenant_id)
    WHERE tenant_id IS NOT NULL;

-- The notifier's claim checks, per candidate row, earlier queued/sending rows and recent sends
-- to the same recipient on the same number: `customer_digest = … AND phone_number_id = …`.
CREATE INDEX whatsapp_outbox_recipient_idx ON whatsapp_outbox (customer_digest, phone_number_id);

-- The audit trail of own-number changes. Configuration, like users and API keys, is kept as
-- rows rather than ledger events (docs/DECISIONS.md). Written only by the definer functions.
CREATE TABLE whatsapp_number_changes (
    change_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    phone_number_id  text        NOT NULL,
    action           text        NOT NULL CHECK (action IN ('registered', 'updated', 'detached')),
    -- Whether the access token was set or replaced (never the token itself).
    token_changed    boolean     NOT NULL,
    -- For 'detached': queued messages of the number that were failed.
    outbox_failed    integer     NOT NULL DEFAULT 0,
    actor_kind       text        NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'system')),
    actor_id         uuid,
    correlation_id   uuid,
    at               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX whatsapp_number_changes_tenant_idx ON whatsapp_number_changes (tenant_id, change_id);

-- The single tenant of the transaction's scope, or an error (a definer function must never act
-- for "all tenants" or for none).
CREATE FUNCTION tenancy.single_current_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tenants uuid[] := tenancy.current_tenants();
BEGIN
    IF cardinality(tenants) <> 1 THEN
        RAISE EXCEPTION 'exactly one tenant must be in scope (found %)', cardinality(tenants)
            USING ERRCODE = '42501';
    END IF;
    RETURN tenants[1];
END
$$;

-- Fails the number's queued messages (they would otherwise be sent from a number that is no
-- longer the tenant's, or with a token that was withdrawn). Rows being sent right now finish
-- with whatever token their attempt holds; the notifier reads the number again for the next.
CREATE FUNCTION tenancy.whatsapp_number_fail_queued(number_id text, reason text) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH failed AS (
        UPDATE public.whatsapp_outbox SET state = 'failed', updated_at = now()
         WHERE phone_number_id = number_id AND state = 'queued'
        RETURNING message_id),
    logged AS (
        INSERT INTO public.whatsapp_outbox_log (message_id, outcome, detail)
        SELECT message_id, 'failed', reason FROM failed)
    SELECT count(*)::integer FROM failed
$$;

-- Registers or updates the scope's tenant's own number. Returns 'created', 'updated', or
-- 'taken' (changing nothing) when the number is the shared number, another tenant's, or has
-- members of another tenant from an earlier registration (their conversations and receipts
-- name that number; handing it over is an operator's decision). A tenant that registers a
-- different number replaces its old one, which is detached as by whatsapp_number_detach.
CREATE FUNCTION tenancy.whatsapp_number_put(
    number_id text, display_number text, template text, language text,
    token_master_key_id text, token_wrapped_key bytea, token_sealed bytea,
    actor_kind text, actor_id uuid, correlation_id uuid)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me uuid := tenancy.single_current_tenant();
    owner uuid;
    registered boolean;
    old record;
    failed integer;
    inserted integer;
BEGIN
    -- Serialises a tenant's changes (two PUTs of different numbers would both find no old
    -- number and collide on the one-per-tenant index), then registrations of one number (the
    -- row may not exist yet); always in this order.
    PERFORM pg_advisory_xact_lock(7319008, hashtext(me::text));
    PERFORM pg_advisory_xact_lock(7319007, hashtext(number_id));
    SELECT n.tenant_id INTO owner FROM public.whatsapp_numbers n
     WHERE n.phone_number_id = number_id FOR UPDATE;
    registered := FOUND;
    IF registered AND (owner IS NULL OR owner <> me) THEN
        RETURN 'taken';
    END IF;
    IF NOT registered AND EXISTS (SELECT 1 FROM public.whatsapp_members m
                                   WHERE m.phone_number_id = number_id AND m.tenant_id <> me) THEN
        RETURN 'taken';
    END IF;
    FOR old IN SELECT n.phone_number_id FROM public.whatsapp_numbers n
                WHERE n.tenant_id = me AND n.phone_number_id <> number_id FOR UPDATE LOOP
        failed := tenancy.whatsapp_number_fail_queued(old.phone_number_id,
            'the number was replaced by another of its tenant');
        DELETE FROM public.whatsapp_numbers n WHERE n.phone_number_id = old.phone_number_id;
        INSERT INTO public.whatsapp_number_changes
            (tenant_id, phone_number_id, action, token_changed, outbox_failed,
             actor_kind, actor_id, correlation_id)
        VALUES (me, old.phone_number_id, 'detached', true, failed,
                actor_kind, actor_id, correlation_id);
    END LOOP;
    IF registered THEN
        UPDATE public.whatsapp_numbers n
           SET display_phone_number = display_number, fallback_template = template,
               template_language = language, master_key_id = token_master_key_id,
               wrapped_key = token_wrapped_key, sealed_access_token = token_sealed,
               updated_at = now()
         WHERE n.phone_number_id = number_id;
        INSERT INTO public.whatsapp_number_changes
            (tenant_id, phone_number_id, action, token_changed, actor_kind, actor_id,
             correlation_id)
        VALUES (me, number_id, 'updated', true, actor_kind, actor_id, correlation_id);
        RETURN 'updated';
    END IF;
    INSERT INTO public.whatsapp_numbers
        (phone_number_id, tenant_id, display_phone_number, fallback_template,
         template_language, master_key_id, wrapped_key, sealed_access_token)
    VALUES (number_id, me, display_number, template, language, token_master_key_id,
            token_wrapped_key, token_sealed)
    ON CONFLICT (phone_number_id) DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted = 0 THEN
        RETURN 'taken';
    END IF;
    INSERT INTO public.whatsapp_number_changes
        (tenant_id, phone_number_id, action, token_changed, actor_kind, actor_id, correlation_id)
    VALUES (me, number_id, 'registered', true, actor_kind, actor_id, correlation_id);
    RETURN 'created';
END
$$;

-- The scope's tenant's own number, without its token.
CREATE FUNCTION tenancy.whatsapp_number_get()
RETURNS TABLE (phone_number_id text, display_phone_number text, fallback_template text,
               template_language text, access_token_set boolean, created_at timestamptz,
               updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.phone_number_id, n.display_phone_number, n.fallback_template, n.template_language,
           n.sealed_access_token IS NOT NULL, n.created_at, n.updated_at
      FROM public.whatsapp_numbers n
     WHERE n.tenant_id = tenancy.single_current_tenant()
$$;

-- Detaches the scope's tenant's own number: the row (and with it the sealed token) is
-- deleted, so messages to the number are no longer routed, its queued messages are failed,
-- and the tenant's customers reach it on the shared number (JOIN <vendor code>). Returns the
-- number and how many queued messages were failed; no row when the tenant has none.
CREATE FUNCTION tenancy.whatsapp_number_detach(actor_kind text, actor_id uuid,
                                               correlation_id uuid)
RETURNS TABLE (phone_number_id text, outbox_failed integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me uuid := tenancy.single_current_tenant();
    number_id text;
    failed integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7319008, hashtext(me::text));
    SELECT n.phone_number_id INTO number_id FROM public.whatsapp_numbers n
     WHERE n.tenant_id = me FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    failed := tenancy.whatsapp_number_fail_queued(number_id,
        'the number was detached from its tenant');
    DELETE FROM public.whatsapp_numbers n WHERE n.phone_number_id = number_id;
    INSERT INTO public.whatsapp_number_changes
        (tenant_id, phone_number_id, action, token_changed, outbox_failed, actor_kind,
         actor_id, correlation_id)
    VALUES (me, number_id, 'detached', true, failed, actor_kind, actor_id, correlation_id);
    phone_number_id := number_id;
    outbox_failed := failed;
    RETURN NEXT;
END
$$;

DO $$
DECLARE
    definer text;
BEGIN
    FOREACH definer IN ARRAY ARRAY[
        'tenancy.single_current_tenant()',
        'tenancy.whatsapp_number_fail_queued(text, text)',
        'tenancy.whatsapp_number_put(text, text, text, text, text, bytea, bytea, text, uuid, uuid)',
        'tenancy.whatsapp_number_get()',
        'tenancy.whatsapp_number_detach(text, uuid, uuid)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', definer);
    END LOOP;
    FOREACH definer IN ARRAY ARRAY[
        'tenancy.whatsapp_number_put(text, text, text, text, text, bytea, bytea, text, uuid, uuid)',
        'tenancy.whatsapp_number_get()',
        'tenancy.whatsapp_number_detach(text, uuid, uuid)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO loyalty_app', definer);
    END LOOP;
END
$$;

-- The platform role already reads and writes whatsapp_numbers (V5); it may read the new
-- columns (the notifier opens the token) but the audit trail is the operators'.
