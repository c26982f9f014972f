-- loyalty-ledger: the WhatsApp webhook inbox (issue #4, webhook ingest).
--
-- Every item of a signed webhook body (an inbound message, a delivery status, a marketing
-- preference, a change the bot does not read, or a whole body that does not parse) is
-- appended here, in one transaction per body, BEFORE the webhook is answered 200. Meta
-- retries for up to 7 days and sends duplicates: `dedupe_key` is unique, and the ingest
-- inserts with ON CONFLICT (dedupe_key) DO NOTHING, so an item is stored once however often
-- it arrives.
--
-- No tenant yet: routing a phone_number_id to a tenant happens downstream, so this is a
-- platform table (no row-level security), written and read by loyalty_platform.
--
-- Nothing personal in plain text: the item's JSON (with its metadata and contacts) is sealed
-- with AES-256-GCM under a fresh data key per row, wrapped by a master key
-- (vault::Vault::seal_record, associated data = 'whatsapp_inbox' and the dedupe key). Message
-- ids are not stored in plain text either: a wamid's base64 body carries the customer's
-- phone number, so `wamid_digest` and the dedupe keys hold a keyed HMAC of it
-- (vault::Vault::keyed_digest under the blind-index key).

CREATE TABLE whatsapp_inbox (
    inbox_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL
                     CHECK (kind IN ('message', 'status', 'preference', 'other', 'unparsed')),
    -- message: msg:<hex digest of wamid>; status: status:<hex digest of wamid>:<status>;
    -- preference: pref:<hex digest of wa_id or user_id>:<timestamp>:<value>;
    -- other: change:<field>:<hex digest of the change>; unparsed: unparsed:<hex digest of the body>.
    dedupe_key       text        NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    -- HMAC-SHA256 of the message id (message, status); NULL otherwise.
    wamid_digest     bytea       CHECK (length(wamid_digest) = 32),
    -- The business number the item came to (not personal data): routes to a tenant.
    phone_number_id  text        CHECK (length(phone_number_id) BETWEEN 1 AND 128),
    received_at      timestamptz NOT NULL DEFAULT now(),
    -- The item's own timestamp (Meta's clock), when it has one.
    occurred_at      timestamptz,
    master_key_id    text        NOT NULL CHECK (length(master_key_id) BETWEEN 1 AND 64),
    wrapped_key      bytea       NOT NULL,
    sealed           bytea       NOT NULL,
    -- Readers tail by (transaction_id, inbox_id) below pg_snapshot_xmin, like the events'
    -- safe-position cursor: an identity drawn at INSERT is visible only at COMMIT.
    transaction_id   xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT whatsapp_inbox_dedupe_key_key UNIQUE (dedupe_key)
);

CREATE INDEX whatsapp_inbox_position_idx ON whatsapp_inbox (transaction_id, inbox_id);
CREATE INDEX whatsapp_inbox_wamid_idx ON whatsapp_inbox (wamid_digest) WHERE wamid_digest IS NOT NULL;

-- The ingest runs with the platform pool: it appends and reads, never rewrites.
GRANT SELECT, INSERT ON whatsapp_inbox TO loyalty_platform;
