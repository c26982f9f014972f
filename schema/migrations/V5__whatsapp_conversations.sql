-- loyalty-ledger: routing, conversation state and the outbound message outbox (issue #4).
--
-- The conversation processor tails `whatsapp_inbox`, routes each inbound message to a
-- tenant (its own number, or the platform's shared number plus the customer's conversation
-- state), steps the pure state machine (ledger_core::conversation), runs its ledger effects
-- through the group-commit writer (idempotency key derived from the wamid), and in ONE
-- transaction stores the new state, queues the replies in `whatsapp_outbox` and advances its
-- cursor. The notifier claims queued rows (FOR UPDATE SKIP LOCKED), sends them to the Cloud
-- API (or the sandbox), and records each attempt's outcome in `whatsapp_outbox_log`;
-- delivery statuses from the inbox move a row forward, never backwards.
--
-- All are platform tables (no tenant on an unrouted message; the processor and notifier
-- run with loyalty_platform). Nothing personal in plain text: the recipient's number is
-- sealed per row (vault::Vault::seal_record); look-ups use keyed digests
-- (vault::Vault::keyed_digest under the blind-index key).

-- Which tenant a business number belongs to; tenant_id NULL = the platform's shared number
-- (customers join vendors there with a vendor code).
CREATE TABLE whatsapp_numbers (
    phone_number_id       text        PRIMARY KEY CHECK (length(phone_number_id) BETWEEN 1 AND 128),
    tenant_id             uuid,
    display_phone_number  text        NOT NULL CHECK (length(display_phone_number) BETWEEN 1 AND 32),
    -- Template sent instead of free-form text outside the 24-hour customer-service window.
    fallback_template     text        NOT NULL DEFAULT 'loyalty_update',
    template_language     text        NOT NULL DEFAULT 'en',
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- One conversation per (customer, business number). `customer_digest` is
-- keyed_digest("wa-customer", wa_id); `state` is ledger_core::conversation::ConversationState
-- as JSON (vendor ids and names, menu position, opt-in; no phone number).
CREATE TABLE whatsapp_conversations (
    customer_digest   bytea       NOT NULL CHECK (length(customer_digest) = 32),
    phone_number_id   text        NOT NULL,
    state             jsonb       NOT NULL,
    -- The customer's number, sealed, so notifications (receipts, reminders) can reach them.
    master_key_id     text        NOT NULL,
    wrapped_key       bytea       NOT NULL,
    sealed_wa_id      bytea       NOT NULL,
    last_inbound_at   timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_digest, phone_number_id)
);

-- Which customer of which tenant a conversation's member is, for ledger-triggered
-- notifications ("you earned N points"): written when the processor enrols or joins.
CREATE TABLE whatsapp_members (
    tenant_id         uuid        NOT NULL,
    customer_id       uuid        NOT NULL,
    customer_digest   bytea       NOT NULL CHECK (length(customer_digest) = 32),
    phone_number_id   text        NOT NULL,
    joined_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id),
    FOREIGN KEY (customer_digest, phone_number_id)
        REFERENCES whatsapp_conversations (customer_digest, phone_number_id)
);

-- A consumer's position in the inbox, advanced in the same transaction as its work.
CREATE TABLE whatsapp_inbox_cursors (
    name                  text        PRIMARY KEY,
    last_transaction_id   xid8        NOT NULL DEFAULT '0',
    last_inbox_id         bigint      NOT NULL DEFAULT 0,
    processed_total       bigint      NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Messages to send. `dedupe_key` makes queuing idempotent (e.g. reply:<inbox dedupe key>:<n>,
-- receipt:<event id>, reminder:<lot id>:<days>).
CREATE TABLE whatsapp_outbox (
    message_id        uuid        PRIMARY KEY,
    dedupe_key        text        NOT NULL UNIQUE CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    tenant_id         uuid,
    phone_number_id   text        NOT NULL,
    customer_digest   bytea       NOT NULL CHECK (length(customer_digest) = 32),
    -- The recipient's wa_id, sealed (context: 'whatsapp_outbox' and the dedupe key).
    master_key_id     text        NOT NULL,
    wrapped_key       bytea       NOT NULL,
    sealed_recipient  bytea       NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('reply', 'notification')),
    -- ledger_core::conversation::OutgoingMessage as JSON: within Meta's limits by construction.
    body              jsonb       NOT NULL,
    state             text        NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    wamid_digest      bytea       CHECK (length(wamid_digest) = 32),
    last_error_code   integer,
    queued_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX whatsapp_outbox_due_idx ON whatsapp_outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX whatsapp_outbox_wamid_idx ON whatsapp_outbox (wamid_digest) WHERE wamid_digest IS NOT NULL;

-- Every attempt's outcome and every delivery status, append-only: the outbox row is the
-- current state, this is its history ("sent with the wamid, failed with the code").
CREATE TABLE whatsapp_outbox_log (
    log_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id    uuid        NOT NULL REFERENCES whatsapp_outbox (message_id),
    outcome       text        NOT NULL CHECK (outcome IN
                  ('attempt', 'sent', 'retry', 'failed', 'template_fallback',
                   'delivered', 'read', 'status_failed')),
    error_code    integer,
    wamid_digest  bytea,
    detail        text        CHECK (length(detail) <= 500),
    at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX whatsapp_outbox_log_message_idx ON whatsapp_outbox_log (message_id);

GRANT SELECT, INSERT, UPDATE ON whatsapp_numbers, whatsapp_conversations, whatsapp_members,
    whatsapp_inbox_cursors, whatsapp_outbox TO loyalty_platform;
GRANT SELECT, INSERT ON whatsapp_outbox_log TO loyalty_platform;
