-- loyalty-ledger: notifications from the ledger (issue #4, item 6).
--
-- The notifications projector (src/notifications.rs, role loyalty_platform) consumes the
-- event stream and queues receipts in whatsapp_outbox (kind 'notification', dedupe key
-- notify:<event id>) for customers with a whatsapp_members row. It needs nothing new: it
-- reads events (platform_reads_all) and the WhatsApp tables (V5's grants).
--
-- The expiry-reminder job queues one reminder per lot. The outbox's UNIQUE dedupe_key
-- (reminder:<lot id>) already stops a second one while the row exists; this table is the
-- permanent record that a lot was reminded, so pruning sent outbox rows can never make the
-- job remind again (the outbox row is the one keyed reminder:<lot id>; no foreign key, as
-- the outbox may be pruned and this may not). No phone number here: ids and dates only.
CREATE TABLE whatsapp_expiry_reminders (
    customer_id  uuid        NOT NULL,
    lot_id       uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    expires_at   timestamptz NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, lot_id)
);

GRANT SELECT, INSERT ON whatsapp_expiry_reminders TO loyalty_platform;
