-- The notifier's claim checks, for every candidate row, the earlier rows and the recent
-- sends to the same recipient on the same number (queued order, per-recipient pacing).
-- Without an index each check scanned the whole outbox, so every claim grew with it; the
-- claim now runs on every wake-up (LISTEN/NOTIFY), not every 250 ms.
CREATE INDEX whatsapp_outbox_recipient_idx
    ON whatsapp_outbox (customer_digest, phone_number_id);
