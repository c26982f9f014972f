//! WhatsApp traffic per tenant per local day (`analytics.whatsapp_daily`, V16), computed
//! from the WhatsApp tables rather than from ledger events: inbound messages from
//! `whatsapp_inbox`, outbound messages and their delivery outcomes from `whatsapp_outbox`.
//!
//! An outbox row changes state after it is queued (sent, delivered, read, failed), so the
//! figures are not a fold of appended facts: a refresh recomputes whole days from the
//! tables, in one transaction under the same kind of advisory lock as a projector. The live
//! refresher recomputes a trailing window of days every interval; a rebuild
//! (`loyalty project rebuild analytics-whatsapp`) recomputes every day. Both run the one
//! statement below, so a rebuild equals the live table for every day the window covered
//! when its messages last changed.
//!
//! Attribution: an outbound row has its tenant (rows queued before a customer on the shared
//! number chose a vendor have none and are not counted). An inbound message belongs to the
//! tenant of the business number it came to, or, on the shared number, to the tenant its
//! first reply was queued for (`reply:<inbox dedupe key>:0`); one that got no such reply is
//! not counted.

use crate::runner::{projection_lock_key, ProjectionError};
use crate::Shutdown;
use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_postgres::Pool;
use std::time::Duration;

pub const NAME: &str = "analytics-whatsapp";

#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Time between two live refreshes.
    pub interval: Duration,
    /// Local days recomputed by a live refresh: today and the `window_days - 1` before.
    pub window_days: u32,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            interval: Duration::from_secs(60),
            window_days: 3,
        }
    }
}

/// The first local day a live refresh at `now` recomputes. Local dates run at most 14 hours
/// behind UTC, so starting a day before the UTC date covers every zone's window.
pub fn window_start(now: DateTime<Utc>, window_days: u32) -> NaiveDate {
    let today = now.date_naive();
    today
        .checked_sub_days(Days::new(u64::from(window_days.max(1))))
        .unwrap_or(today)
}

/// Recomputes the days from `from` on (every day when `None`); returns the rows written.
pub async fn refresh(pool: &Pool, from: Option<NaiveDate>) -> Result<u64, ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&projection_lock_key(NAME)],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM analytics.whatsapp_daily WHERE $1::date IS NULL OR day >= $1",
            &[&from],
        )
        .await?;
    // Instants before the window's first local midnight in any zone are not read (the index
    // on each timestamp); the local-day filter at the end is the exact one.
    let since: Option<DateTime<Utc>> = from
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc() - chrono::Duration::hours(15));
    let written = transaction
        .execute(
            "WITH zones AS ( \
                 SELECT tenant_id, time_zone FROM analytics.tenants \
             ), inbound AS ( \
                 SELECT coalesce(n.tenant_id, r.tenant_id) AS tenant_id, i.received_at AS at \
                 FROM whatsapp_inbox i \
                 LEFT JOIN whatsapp_numbers n ON n.phone_number_id = i.phone_number_id \
                 LEFT JOIN whatsapp_outbox r ON r.dedupe_key = 'reply:' || i.dedupe_key || ':0' \
                 WHERE i.kind = 'message' AND ($1::timestamptz IS NULL OR i.received_at >= $1) \
             ), inbound_days AS ( \
                 SELECT x.tenant_id, \
                        (x.at AT TIME ZONE coalesce(z.time_zone, 'Africa/Lagos'))::date AS day, \
                        count(*) AS inbound \
                 FROM inbound x LEFT JOIN zones z ON z.tenant_id = x.tenant_id \
                 WHERE x.tenant_id IS NOT NULL \
                 GROUP BY 1, 2 \
             ), outbound_days AS ( \
                 SELECT o.tenant_id, \
                        (o.queued_at AT TIME ZONE coalesce(z.time_zone, 'Africa/Lagos'))::date \
                            AS day, \
                        count(*) AS outbound, \
                        count(*) FILTER (WHERE o.kind = 'reply') AS replies, \
                        count(*) FILTER (WHERE o.kind = 'notification') AS notifications, \
                        count(*) FILTER (WHERE o.kind = 'broadcast') AS broadcasts, \
                        count(*) FILTER (WHERE o.state IN ('queued', 'sending')) AS pending, \
                        count(*) FILTER (WHERE o.state IN ('sent', 'delivered', 'read')) AS sent, \
                        count(*) FILTER (WHERE o.state IN ('delivered', 'read')) AS delivered, \
                        count(*) FILTER (WHERE o.state = 'read') AS read, \
                        count(*) FILTER (WHERE o.state = 'failed') AS failed, \
                        count(*) FILTER (WHERE o.state = 'withdrawn') AS withdrawn \
                 FROM whatsapp_outbox o LEFT JOIN zones z ON z.tenant_id = o.tenant_id \
                 WHERE o.tenant_id IS NOT NULL AND ($1::timestamptz IS NULL OR o.queued_at >= $1) \
                 GROUP BY 1, 2 \
             ) \
             INSERT INTO analytics.whatsapp_daily (tenant_id, day, inbound, outbound, \
                 outbound_replies, outbound_notifications, outbound_broadcasts, pending, sent, \
                 delivered, read, failed, withdrawn) \
             SELECT coalesce(i.tenant_id, o.tenant_id), coalesce(i.day, o.day), \
                    coalesce(i.inbound, 0), coalesce(o.outbound, 0), coalesce(o.replies, 0), \
                    coalesce(o.notifications, 0), coalesce(o.broadcasts, 0), \
                    coalesce(o.pending, 0), coalesce(o.sent, 0), coalesce(o.delivered, 0), \
                    coalesce(o.read, 0), coalesce(o.failed, 0), coalesce(o.withdrawn, 0) \
             FROM inbound_days i \
             FULL JOIN outbound_days o ON o.tenant_id = i.tenant_id AND o.day = i.day \
             WHERE $2::date IS NULL OR coalesce(i.day, o.day) >= $2",
            &[&since, &from],
        )
        .await?;
    transaction.commit().await?;
    Ok(written)
}

/// Recomputes every day: `loyalty project rebuild analytics-whatsapp`.
pub async fn rebuild(pool: &Pool) -> Result<u64, ProjectionError> {
    refresh(pool, None).await
}

/// The live refresher: a window refresh every interval until shutdown.
pub async fn run(pool: Pool, settings: RefreshSettings, mut shutdown: Shutdown) {
    loop {
        let from = window_start(Utc::now(), settings.window_days);
        if let Err(error) = refresh(&pool, Some(from)).await {
            tracing::warn!(%error, "WhatsApp analytics refresh failed; retrying next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_window_starts_a_day_early_to_cover_every_zone() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 1, 0, 0).unwrap();
        assert_eq!(
            window_start(now, 3),
            NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()
        );
        // A zero window still recomputes today (and yesterday, for zones behind UTC).
        assert_eq!(
            window_start(now, 0),
            NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
        );
    }
}
