-- loyalty-ledger: the event store, its write-side indexes and the fan-out cursors.
--
-- Ordering: `global_position` is drawn at INSERT but rows become visible at COMMIT, so a
-- reader that follows it alone can skip a row committed late. Every row is therefore stamped
-- with its top-level transaction id (xid8) and readers tail the pair
-- (transaction_id, global_position), reading only rows whose transaction is older than
-- every transaction still running (pg_snapshot_xmin). See docs/ARCHITECTURE.md.

DO $$
BEGIN
    CREATE ROLE loyalty_app NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

-- One row per tenant: the head of its gapless sequence and of its hash chain. Every append
-- for a tenant locks this row first (FOR UPDATE, tenants in sorted order), which serialises
-- a tenant's appends and makes its transaction ids increase with its sequence.
CREATE TABLE tenant_heads (
    tenant_id  uuid PRIMARY KEY,
    sequence   bigint NOT NULL CHECK (sequence >= 0),
    head_hash  bytea  NOT NULL CHECK (length(head_hash) = 32)
);

CREATE TABLE events (
    global_position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id   xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id         uuid        NOT NULL,
    tenant_id        uuid        NOT NULL,
    tenant_sequence  bigint      NOT NULL CHECK (tenant_sequence >= 1),
    stream_id        text        NOT NULL,
    version          integer     NOT NULL CHECK (version >= 1),
    event_type       text        NOT NULL,
    type_version     smallint    NOT NULL CHECK (type_version >= 1),
    payload          bytea       NOT NULL,
    metadata         bytea       NOT NULL,
    recorded_at      timestamptz NOT NULL,
    previous_hash    bytea       NOT NULL CHECK (length(previous_hash) = 32),
    hash             bytea       NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency backstop: two appends of the same stream version cannot both commit.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_tenant_sequence_key UNIQUE (tenant_id, tenant_sequence)
);

CREATE INDEX events_safe_position_idx ON events (transaction_id, global_position);

-- Append-only, even for roles that were granted more than the application role has.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- A vendor command's idempotency key, the hash of the request it came with, and the
-- response it got: a retry with the same key and body gets these bytes back; the same key
-- with another body is refused.
CREATE TABLE idempotency_records (
    tenant_id        uuid        NOT NULL,
    idempotency_key  text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     bytea       NOT NULL CHECK (length(request_hash) = 32),
    response_status  smallint    NOT NULL,
    response_body    bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);

-- Write-side uniqueness of a phone number within a tenant, written in the same transaction
-- as the CustomerEnrolled event. (The tenancy issue replaces the plain number by a keyed
-- blind index.)
CREATE TABLE customer_phones (
    tenant_id     uuid NOT NULL,
    phone_lookup  text NOT NULL,
    customer_id   uuid NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, phone_lookup)
);

-- API keys of vendor systems: only a SHA-256 of the key is kept (keys are 256-bit random).
CREATE TABLE api_keys (
    api_key_id  uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    label       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The relay's position in the event table, advanced only after JetStream acknowledged.
CREATE TABLE relay_cursors (
    name                  text        PRIMARY KEY,
    last_transaction_id   xid8        NOT NULL DEFAULT '0',
    last_global_position  bigint      NOT NULL DEFAULT 0,
    published_total       bigint      NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Each projector's last applied JetStream stream sequence, written in the same transaction
-- as its read-model changes (for resume and lag; idempotency is by stream version).
CREATE TABLE projector_checkpoints (
    name                  text        PRIMARY KEY,
    last_stream_sequence  bigint      NOT NULL DEFAULT 0,
    applied_total         bigint      NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA projection;

-- Read model of the balances projector: one row per customer.
CREATE TABLE projection.customer_balances (
    customer_id     uuid        PRIMARY KEY,
    tenant_id       uuid        NOT NULL,
    phone           text        NOT NULL,
    stream_version  integer     NOT NULL,
    balance         bigint      NOT NULL,
    earned          bigint      NOT NULL,
    redeemed        bigint      NOT NULL,
    expired         bigint      NOT NULL,
    purchases       integer     NOT NULL,
    enrolled_at     timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE INDEX customer_balances_tenant_idx ON projection.customer_balances (tenant_id);

CREATE TABLE projection.point_lots (
    customer_id  uuid        NOT NULL,
    lot_id       uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    purchase_id  uuid        NOT NULL,
    points       bigint      NOT NULL,
    remaining    bigint      NOT NULL CHECK (remaining >= 0),
    earned_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, lot_id)
);

CREATE INDEX point_lots_due_idx ON projection.point_lots (expires_at) WHERE remaining > 0;

-- The application role: append and read events, nothing else on them.
GRANT USAGE ON SCHEMA public, projection TO loyalty_app;
GRANT SELECT, INSERT ON events TO loyalty_app;
GRANT SELECT, INSERT, UPDATE ON tenant_heads, relay_cursors, projector_checkpoints TO loyalty_app;
GRANT SELECT, INSERT ON idempotency_records, customer_phones TO loyalty_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO loyalty_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA projection TO loyalty_app;
