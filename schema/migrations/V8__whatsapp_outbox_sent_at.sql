-- When the row was accepted by the Cloud API. The notifier's per-recipient pacing counts
-- from here: it used to count from `updated_at`, which every delivery status (sent,
-- delivered, read, each a webhook arriving later) moves, so each status restarted a
-- recipient's pause and a chatty customer's replies fell seconds behind under load.
-- Rows sent before this migration have none and no longer hold their recipient back.
ALTER TABLE whatsapp_outbox ADD COLUMN sent_at timestamptz;

-- The claim's two per-recipient checks, independent of how much history the outbox holds:
-- the earlier pending rows of a recipient (only pending rows are indexed, so a customer's
-- past messages are not scanned for every candidate), and the recipient's sends of the last
-- pause (a range of `sent_at` within the recipient). The second replaces V7's
-- (customer_digest, phone_number_id) index, which it extends, so the outbox's updates
-- maintain no more indexes than before plus the small pending one.
CREATE INDEX whatsapp_outbox_pending_recipient_idx
    ON whatsapp_outbox (customer_digest, phone_number_id, queued_at, message_id)
    WHERE state IN ('queued', 'sending');
CREATE INDEX whatsapp_outbox_recipient_sent_idx
    ON whatsapp_outbox (customer_digest, phone_number_id, sent_at);
DROP INDEX whatsapp_outbox_recipient_idx;
